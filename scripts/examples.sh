#!/usr/bin/env bash
# Runs the SQL walk-throughs in examples/ (NAME.sql) against the cluster in
# PGHOST/PGPORT and compares each output with examples/NAME.out, through
# pg_regress: each example gets a fresh database (ids start at 1, so the output
# is the same every run). Run it through scripts/with-cluster.sh; `make examples`
# (part of `make test`) does, and `make demo` with BILLING_EXAMPLES_SHOW=1, which
# prints every example's output as it ran.
#   scripts/examples.sh [NAME...]        (default: every examples/*.sql)
# BILLING_EXAMPLES_RESULTS=DIR keeps the actual outputs (to review and adopt as NAME.out).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-$("$(dirname "$0")/pg-config.sh")}
PG_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress"
WORK=$(mktemp -d /tmp/billing-examples.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if [ $# -gt 0 ]; then names=("$@"); else
    mapfile -t names < <(cd examples && ls -- *.sql | sed 's/\.sql$//')
fi

# pg_regress reads INPUTDIR/sql/NAME.sql and INPUTDIR/expected/NAME.out.
mkdir -p "$WORK/in/sql" "$WORK/in/expected"
for name in "${names[@]}"; do
    cp "examples/$name.sql" "$WORK/in/sql/"
    if [ -f "examples/$name.out" ]; then cp "examples/$name.out" "$WORK/in/expected/"; else : >"$WORK/in/expected/$name.out"; fi
done

status=0
for name in "${names[@]}"; do
    db="billing_example_$name"
    PGOPTIONS="-c client_min_messages=warning" psql -X -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" postgres
    out="$WORK/out/$name"
    mkdir -p "$out"
    "$PG_REGRESS" --use-existing --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
        --bindir="$("$PG_CONFIG" --bindir)" --inputdir="$WORK/in" --outputdir="$out" \
        --dbname="$db" "$name" || { status=1; cat "$out/regression.diffs" 2>/dev/null || true; }
    if [ -n "${BILLING_EXAMPLES_SHOW:-}" ]; then
        echo "==================== examples/$name.sql"
        cat "$out/results/$name.out"
    fi
    if [ -n "${BILLING_EXAMPLES_RESULTS:-}" ]; then
        mkdir -p "$BILLING_EXAMPLES_RESULTS" && cp "$out/results/$name.out" "$BILLING_EXAMPLES_RESULTS"/
    fi
done
exit $status
