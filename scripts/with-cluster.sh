#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster and always stops it.
#
#   scripts/with-cluster.sh COMMAND [ARGS...]
#
# The cluster lives in a fresh temporary directory, owned by the postgres
# user when we are root (PostgreSQL refuses to run as root), listens only on
# a Unix socket in that directory, and is stopped and deleted when COMMAND
# ends, fails or is interrupted. COMMAND sees PGHOST, PGPORT, PGUSER and
# PGDATABASE pointing at it, BILLING_CLUSTER_DIR / BILLING_PGDATA, and
# BILLING_START_SERVER, a script that starts the server again after a crash.
# Extra server settings: BILLING_PG_OPTS="-c name=value ...".
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-$("$(dirname "$0")/pg-config.sh")}
BINDIR=$("$PG_CONFIG" --bindir)
DIR=$(mktemp -d /tmp/billing-cluster.XXXXXX)
PORT=${BILLING_PORT:-5432}

if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$DIR"
    as_pg() { runuser -u postgres -- "$@"; }
    PGUSER_NAME=postgres
else
    as_pg() { "$@"; }
    PGUSER_NAME=$(id -un)
fi

stop_cluster() {
    if [ -f "$DIR/data/postmaster.pid" ]; then
        as_pg "$BINDIR/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 ||
            as_pg "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "${BILLING_KEEP_LOG:-}" ] && [ -f "$DIR/server.log" ]; then
        cp "$DIR/server.log" "$BILLING_KEEP_LOG" || true
    fi
    rm -rf "$DIR"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

as_pg "$BINDIR/initdb" -D "$DIR/data" -U "$PGUSER_NAME" --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log" >&2; exit 1; }
# start_server: also used by tests that crash the server and start it again
# (they run "$BILLING_START_SERVER"). The server must not inherit
# RUST_BACKTRACE: pgrx would append a Rust backtrace to the DETAIL of every
# PostgreSQL error that passes through it.
cat >"$DIR/start-server.sh" <<START
#!/usr/bin/env bash
exec $( [ "$(id -u)" -eq 0 ] && echo "runuser -u postgres --" ) env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \\
    "$BINDIR/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \\
    -o "-p $PORT -k $DIR -c listen_addresses='' -c max_connections=200 ${BILLING_PG_OPTS:-}" start
START
chmod 755 "$DIR/start-server.sh"
"$DIR/start-server.sh" >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }

export PGHOST="$DIR" PGPORT="$PORT" PGUSER="$PGUSER_NAME" PGDATABASE=postgres
export BILLING_CLUSTER_DIR="$DIR" BILLING_PGDATA="$DIR/data" BILLING_PG_BINDIR="$BINDIR"
export BILLING_START_SERVER="$DIR/start-server.sh"
"$@"
