#!/usr/bin/env bash
# make test: a user who is not root gets a private PostgreSQL tree, and the
# system's extension directories keep their owner and mode (issue 11, item 9).
# Runs the non-root part of setup as the postgres user in a throwaway HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "test-setup-permissions: skipped (needs root to act as another user)"; exit 0
fi
sys=/usr/lib/postgresql/15/bin/pg_config
dirs=("$($sys --pkglibdir)" "$($sys --sharedir)/extension")
before=$(stat -c '%U:%G %a %n' "${dirs[@]}")
home=$(mktemp -d /tmp/billing-setup-home.XXXXXX)
trap 'rm -rf "$home"' EXIT
chown postgres: "$home"
as_user() { runuser -u postgres -- env -i HOME="$home" PATH=/usr/bin:/bin "$@"; }
pg_config=$(as_user scripts/pg-config.sh)
case "$pg_config" in "$home"/*) ;; *) echo "FAIL: a non-root user's pg_config is $pg_config, not in its own tree"; exit 1;; esac
as_user scripts/private-pg-tree.sh "${pg_config%/usr/lib/postgresql/15/bin/pg_config}" >/dev/null
for what in --pkglibdir --sharedir --includedir-server --bindir; do
    got=$(as_user "$pg_config" "$what")
    case "$got" in "$home"/*) ;; *) echo "FAIL: the private tree's pg_config $what is $got"; exit 1;; esac
done
test "$(stat -c %U "$(as_user "$pg_config" --pkglibdir)")" = postgres || { echo "FAIL: the private pkglibdir is not the user's"; exit 1; }
after=$(stat -c '%U:%G %a %n' "${dirs[@]}")
[ "$before" = "$after" ] || { echo "FAIL: system directories changed:"; echo "$before"; echo "$after"; exit 1; }
# nothing in setup may loosen a directory it does not own
if grep -nE '\b(chmod|chgrp|chown)\b' scripts/setup.sh; then
    echo "FAIL: setup changes ownership or modes"; exit 1
fi
echo "test-setup-permissions: 1 passed, 0 failed"
