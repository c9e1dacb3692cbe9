#!/usr/bin/env bash
# The Rust client's checks and tests, from anywhere:
#
#   clients/rust/test.sh
#
# 1. fetches the locked dependencies from crates.io (Cargo.lock),
# 2. static checks: rustfmt --check, clippy --all-targets -D warnings,
# 3. the suite (unit tests, tests/*.rs, the README's quick start as a
#    doctest) against a throwaway cluster (scripts/with-cluster.sh, port
#    BILLING_PORT, default 5621),
# 4. the pgbouncer tests through scripts/with-pgbouncer.sh (transaction
#    pooling, port BILLING_PORT + 1).
# It builds into target/clients-rust/ of the repository, apart from the
# extension's own build. The extension must be installed in the server.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR="$ROOT/target/clients-rust"
export BILLING_PORT=${BILLING_PORT:-5621}
# a cargo build with two cores shared with others: no more than two jobs
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

run() {
    echo "+ $*" >&2
    "$@"
}

case "${1:-}" in
    --in-cluster)
        # Under scripts/with-cluster.sh: the README's quick start needs a
        # database with the extension (DATABASE_URL); every test makes its own.
        run "$BILLING_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE readme"
        run "$BILLING_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d readme -c "CREATE EXTENSION billing"
        export DATABASE_URL="host=$PGHOST port=$PGPORT user=$PGUSER dbname=readme"
        cd "$HERE"
        run cargo test --locked
        exit
        ;;
    --in-pgbouncer)
        cd "$HERE"
        run cargo test --locked --test pgbouncer -- --ignored
        exit
        ;;
    "") ;;
    *)
        echo "usage: $0" >&2
        exit 2
        ;;
esac

cd "$HERE"
start=$(date +%s)
run cargo fetch --locked
run cargo fmt --check
run cargo clippy --locked --all-targets -- -D warnings
# build the tests before a cluster starts, so it runs only as long as the tests
run cargo test --locked --no-run
run "$ROOT/scripts/with-cluster.sh" "$HERE/test.sh" --in-cluster
run "$ROOT/scripts/with-cluster.sh" "$ROOT/scripts/with-pgbouncer.sh" "$HERE/test.sh" --in-pgbouncer
echo "clients/rust: all checks and tests passed in $(($(date +%s) - start)) s" >&2
