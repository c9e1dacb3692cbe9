#!/usr/bin/env bash
# Installs what building and testing the extension needs, skipping whatever is already there.
# Works as root (CI) or as a user with sudo. Idempotent: a second run only checks.
set -euo pipefail

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

PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
    echo "setup: cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
    cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

# As a user with sudo: let this user write the extension into the system
# server's directories, which cargo pgrx install and cargo pgrx test do.
if [ "$(id -u)" -ne 0 ]; then
    for dir in "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)/extension"; do
        if [ ! -w "$dir" ]; then
            echo "setup: letting group $(id -gn) write $dir"
            sudo chgrp "$(id -gn)" "$dir"
            sudo chmod g+w "$dir"
        fi
    done
fi

echo "setup: ready (cargo-pgrx $PGRX_VERSION, PostgreSQL $PG_MAJOR)"
