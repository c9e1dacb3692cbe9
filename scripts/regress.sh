#!/usr/bin/env bash
# Runs the pg_regress SQL tests (regress/sql vs regress/expected) and the isolation
# specs (regress/specs; pg_isolation_regress reads their expected outputs from
# regress/expected too) against the cluster in PGHOST/PGPORT. Run it through
# scripts/with-cluster.sh; `make regress` does.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-$("$(dirname "$0")/pg-config.sh")}
PGXS_TEST="$(dirname "$("$PG_CONFIG" --pgxs)")/../test"
OUT=$(mktemp -d /tmp/billing-regress.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

common=(--use-existing --host="$PGHOST" --port="$PGPORT" --user="$PGUSER"
        --bindir="$("$PG_CONFIG" --bindir)" --inputdir=regress)
sql_tests=$(cd regress/sql && ls -- *.sql | sed 's/\.sql$//')
specs=$(cd regress/specs && ls -- *.spec | sed 's/\.spec$//')

# With --use-existing the tools do not create their databases.
for db in billing_regress billing_isolation; do
    psql -X -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" postgres
done

status=0
mkdir -p "$OUT/sql" "$OUT/isolation"
# shellcheck disable=SC2086
"$PGXS_TEST/regress/pg_regress" "${common[@]}" --outputdir="$OUT/sql" --dbname=billing_regress $sql_tests || status=1
# shellcheck disable=SC2086
"$PGXS_TEST/isolation/pg_isolation_regress" "${common[@]}" --outputdir="$OUT/isolation" --dbname=billing_isolation $specs || status=1
cat "$OUT"/*/regression.diffs 2>/dev/null || true
# BILLING_REGRESS_RESULTS=DIR keeps the actual outputs (to review and adopt as expected).
if [ -n "${BILLING_REGRESS_RESULTS:-}" ]; then
    mkdir -p "$BILLING_REGRESS_RESULTS" && cp "$OUT"/*/results/*.out "$BILLING_REGRESS_RESULTS"/
fi
exit $status
