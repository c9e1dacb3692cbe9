#!/usr/bin/env bash
# The TypeScript client's checks and suite, from anywhere:
#   clients/node/test.sh            (BILLING_PORT defaults to 5611; pgbouncer on BILLING_PORT + 1)
# 1. npm ci when node_modules is missing (exact versions from package-lock.json)
# 2. static checks: tsc --strict over the library (dist/, with .d.ts) and over the tests
# 3. the suite against a throwaway cluster (scripts/with-cluster.sh), with the
#    library preloaded so that billing_metrics' counters count
# 4. the basic calls through pgbouncer in transaction pooling
#    (scripts/with-cluster.sh scripts/with-pgbouncer.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$HERE"
export BILLING_PORT=${BILLING_PORT:-5611}
run() { echo "+ $*" >&2; "$@"; }
start=$(date +%s)

if [ ! -d node_modules ]; then
    run npm ci --no-audit --no-fund
fi
run node_modules/.bin/tsc -p tsconfig.json
rm -rf build
run node_modules/.bin/tsc -p tsconfig.test.json

suite=()
for f in build/test/*.test.js; do
    [ "$f" = build/test/pgbouncer.test.js ] || suite+=("$f")
done

PGBILLING_REQUIRE_COUNTERS=1 BILLING_PG_OPTS="${BILLING_PG_OPTS:-} -c shared_preload_libraries=billing" \
    run "$ROOT/scripts/with-cluster.sh" node --test --test-concurrency=2 --test-reporter=spec "${suite[@]}"

PGBILLING_REQUIRE_BOUNCER=1 \
    run "$ROOT/scripts/with-cluster.sh" "$ROOT/scripts/with-pgbouncer.sh" node --test --test-reporter=spec build/test/pgbouncer.test.js

echo "clients/node: all passed in $(( $(date +%s) - start )) s" >&2
