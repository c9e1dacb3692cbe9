#!/usr/bin/env bash
# Prints the pg_config that builds and tests use: $PG_CONFIG when set; as
# root, the system PostgreSQL 15; as another user, the private copy that
# scripts/setup.sh makes (the system directories are never made writable).
set -euo pipefail
if [ -n "${PG_CONFIG:-}" ]; then
    echo "$PG_CONFIG"
elif [ "$(id -u)" -eq 0 ]; then
    echo /usr/lib/postgresql/15/bin/pg_config
else
    echo "${BILLING_PG_TREE:-$HOME/.local/share/billing/pg15}/usr/lib/postgresql/15/bin/pg_config"
fi
