#!/usr/bin/env bash
# Installs what building and testing the extension needs, skipping whatever is already there.
# Works as root (CI) or as a user with sudo. Idempotent: a second run only checks.
#
# Where the build goes: as root, into the system PostgreSQL 15. As another user,
# setup never loosens the permissions of the system's directories (anyone in a
# group that could write pkglibdir could run code as the server): it copies the
# system PostgreSQL 15 tree into a directory the user owns (BILLING_PG_TREE,
# default ~/.local/share/billing/pg15) and builds, installs and tests against
# that copy. The Makefile picks the same pg_config (scripts/pg-config.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.0
PG_MAJOR=15

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_pkgs=()
for pkg in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-contrib postgresql-$PG_MAJOR-cron libclang-dev clang sudo pkg-config libssl-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

PG_CONFIG=$(scripts/pg-config.sh)
if [ "$(id -u)" -ne 0 ] && [ ! -x "$PG_CONFIG" ]; then
    scripts/private-pg-tree.sh "${PG_CONFIG%/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}"
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
    echo "setup: cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

echo "setup: ready (cargo-pgrx $PGRX_VERSION, PostgreSQL $PG_MAJOR at $PG_CONFIG)"
