#!/usr/bin/env bash
# A/B of two builds (bench/builds.py): a throwaway cluster from each PostgreSQL
# tree, BENCH_A_PG_CONFIG and BENCH_B_PG_CONFIG, each with its own build of the
# extension installed (make install-release PG_CONFIG=...), both always stopped.
# BENCH_A_OPTS / BENCH_B_OPTS add server settings to one side only (the same
# tree twice with BENCH_B_OPTS="-c shared_preload_libraries=billing" measures
# the metrics counters).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BENCH_A_PG_CONFIG:?the pg_config of the tree with build A}" "${BENCH_B_PG_CONFIG:?the pg_config of the tree with build B}"
export BENCH_PG_OPTS=${BENCH_PG_OPTS:--c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min}
PG_CONFIG=$BENCH_A_PG_CONFIG BILLING_PORT=${BENCH_A_PORT:-5471} BILLING_PG_OPTS="$BENCH_PG_OPTS ${BENCH_A_OPTS:-}" \
  scripts/with-cluster.sh bash -c '
    export BENCH_A_HOST=$PGHOST BENCH_A_PORT=$PGPORT
    PG_CONFIG=$BENCH_B_PG_CONFIG BILLING_PORT=${BENCH_B_PORT:-5472} BILLING_PG_OPTS="$BENCH_PG_OPTS ${BENCH_B_OPTS:-}" \
      exec scripts/with-cluster.sh python3 bench/builds.py'
