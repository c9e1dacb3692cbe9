#!/usr/bin/env bash
# Runs a command against a throwaway three-node Citus cluster on loopback and
# always stops it.
#
#   scripts/with-citus.sh COMMAND [ARGS...]
#
# A coordinator and two workers, each with its own fresh directory (under one
# temporary directory, owned by the postgres user when we are root: PostgreSQL
# refuses to run as root) and its own port: BILLING_CITUS_PORT (default 5701)
# for the coordinator, +1 and +2 for the workers. They listen on 127.0.0.1
# only (Citus nodes talk to each other over TCP) and on a Unix socket in their
# directory (mode 700: the postgres user's alone), which trusts its local
# users; on 127.0.0.1 a connection needs the superuser's password
# (scram-sha-256), a random one for each run, which the nodes (for their
# connections to each other) and COMMAND read from a password file in the
# temporary directory (PGPASSFILE; PGPASSWORD for COMMAND too). Every node preloads
# citus (prepended to any shared_preload_libraries of BILLING_PG_OPTS, which
# adds settings to every node: "-c name=value ..."), with max_connections and
# max_prepared_transactions of 300 (a storm of connections through the
# coordinator fans out to the workers, and Citus commits multi-shard writes with
# two-phase commit) and wal_level = logical (shard moves and the rebalancer).
# The script creates extension citus on every node and, from the coordinator,
# registers the coordinator and adds the two workers. It does not create the
# billing extension: that is for COMMAND (on the coordinator; Citus propagates
# it to the workers).
#
# COMMAND sees PGHOST=127.0.0.1, PGPORT (the coordinator), PGUSER, PGDATABASE, PGPASSFILE
# and PGPASSWORD (for clients that read no password file),
# BILLING_CITUS_WORKERS ("127.0.0.1:5702 127.0.0.1:5703"), BILLING_CITUS_DIR
# (the temporary directory: coordinator/, worker1/, worker2/, each with data/,
# server.log and start-server.sh), BILLING_PG_BINDIR, and BILLING_START_SERVER,
# the coordinator's start-server.sh (for tests that stop it and start it again).
# All three servers are stopped and the directory deleted when COMMAND ends,
# fails or is interrupted, and when startup fails half way.
# BILLING_KEEP_LOG=PATH keeps the server logs as PATH.coordinator, PATH.worker1
# and PATH.worker2.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-$("$(dirname "$0")/pg-config.sh")}
BINDIR=$("$PG_CONFIG" --bindir)
BASE_PORT=${BILLING_CITUS_PORT:-5701}
NODES=(coordinator worker1 worker2)
declare -A PORT=([coordinator]=$BASE_PORT [worker1]=$((BASE_PORT + 1)) [worker2]=$((BASE_PORT + 2)))

if [ ! -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
    echo "with-citus: Citus is not installed into $("$PG_CONFIG" --version): run CITUS_TARBALL=... scripts/setup-citus.sh" >&2
    exit 1
fi
for node in "${NODES[@]}"; do
    # 0: accepting, 1: rejecting; either way something listens there
    if "$BINDIR/pg_isready" -q -h 127.0.0.1 -p "${PORT[$node]}" -t 2 || [ $? -eq 1 ]; then
        echo "with-citus: port ${PORT[$node]} on 127.0.0.1 is in use (set BILLING_CITUS_PORT; the cluster takes it and the next two)" >&2
        exit 1
    fi
done

DIR=$(mktemp -d /tmp/billing-citus.XXXXXX)
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$DIR"
    as_pg() { runuser -u postgres -- "$@"; }
    PGUSER_NAME=postgres
else
    as_pg() { "$@"; }
    PGUSER_NAME=$(id -un)
fi
# the superuser's password for this run, in a file only its owner reads
PASSWORD=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$PASSWORD" | as_pg tee "$DIR/pwfile" >/dev/null
printf '127.0.0.1:*:*:%s:%s\n' "$PGUSER_NAME" "$PASSWORD" | as_pg tee "$DIR/pgpass" >/dev/null
as_pg chmod 600 "$DIR/pwfile" "$DIR/pgpass"
export PGPASSFILE=$DIR/pgpass PGPASSWORD=$PASSWORD

stop_cluster() {
    local node
    # the coordinator first: it holds connections to the workers
    for node in "${NODES[@]}"; do
        if [ -f "$DIR/$node/data/postmaster.pid" ]; then
            as_pg "$BINDIR/pg_ctl" -D "$DIR/$node/data" -m fast -w stop >/dev/null 2>&1 ||
                as_pg "$BINDIR/pg_ctl" -D "$DIR/$node/data" -m immediate -w stop >/dev/null 2>&1 || true
        fi
        if [ -n "${BILLING_KEEP_LOG:-}" ] && [ -f "$DIR/$node/server.log" ]; then
            cp "$DIR/$node/server.log" "$BILLING_KEEP_LOG.$node" || true
        fi
    done
    rm -rf "$DIR"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM HUP

# citus must come first in shared_preload_libraries: prepend it to the one
# BILLING_PG_OPTS names, if any (-c given twice: the last one wins).
OPTS=${BILLING_PG_OPTS:-}
if [[ $OPTS =~ shared_preload_libraries=\'?citus([,\' ]|$) ]]; then
    :
elif [[ $OPTS == *shared_preload_libraries=* ]]; then
    OPTS=$(sed -E "s/shared_preload_libraries=('?)/shared_preload_libraries=\1citus,/g" <<<"$OPTS")
else
    OPTS="-c shared_preload_libraries=citus $OPTS"
fi

fail() {
    local node=$1; shift
    echo "with-citus: $node: $*" >&2
    local log=$DIR/$node/server.log
    [ -f "$log" ] || log=$DIR/$node/initdb.log
    if [ -f "$log" ]; then echo "--- the end of $log:" >&2; tail -n 40 "$log" >&2; fi
    exit 1
}

for node in "${NODES[@]}"; do
    nd=$DIR/$node
    as_pg mkdir -m 700 "$nd"
    as_pg "$BINDIR/initdb" -D "$nd/data" -U "$PGUSER_NAME" --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$DIR/pwfile" -E UTF8 --locale=C.UTF-8 >"$nd/initdb.log" 2>&1 ||
        fail "$node" "initdb failed"
    # the node's own socket (its directory is the postgres user's alone) and
    # 127.0.0.1 with the password only (no ::1, no other address)
    as_pg tee "$nd/data/pg_hba.conf" >/dev/null <<'HBA'
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
local   replication  all                  trust
host    replication  all   127.0.0.1/32   scram-sha-256
HBA
    # As in with-cluster.sh: the server must not inherit RUST_BACKTRACE (pgrx
    # would append a backtrace to the DETAIL of every error passing through it).
    cat >"$nd/start-server.sh" <<START
#!/usr/bin/env bash
exec $( [ "$(id -u)" -eq 0 ] && echo "runuser -u postgres --" ) env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE PGPASSFILE="$DIR/pgpass" \\
    "$BINDIR/pg_ctl" -D "$nd/data" -l "$nd/server.log" -w \\
    -o "-p ${PORT[$node]} -k $nd -c listen_addresses=127.0.0.1 -c max_connections=300 -c max_prepared_transactions=300 -c wal_level=logical -c max_worker_processes=20 $OPTS" start
START
    chmod 755 "$nd/start-server.sh"
    "$nd/start-server.sh" >/dev/null 2>&1 || fail "$node" "the server did not start on port ${PORT[$node]}"
done

psql_node() {
    local node=$1; shift
    "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$node]}" -U "$PGUSER_NAME" -d postgres "$@"
}
for node in "${NODES[@]}"; do
    psql_node "$node" -c "CREATE EXTENSION citus" >/dev/null || fail "$node" "CREATE EXTENSION citus failed"
done
psql_node coordinator >/dev/null <<SQL || fail coordinator "registering the nodes failed"
SELECT citus_set_coordinator_host('127.0.0.1', ${PORT[coordinator]});
SELECT citus_add_node('127.0.0.1', ${PORT[worker1]});
SELECT citus_add_node('127.0.0.1', ${PORT[worker2]});
SQL
active=$(psql_node coordinator -At -c "SELECT count(*) FROM citus_get_active_worker_nodes()") ||
    fail coordinator "cannot list the workers"
[ "$active" = 2 ] || fail coordinator "$active active workers, not 2"

export PGHOST=127.0.0.1 PGPORT="${PORT[coordinator]}" PGUSER="$PGUSER_NAME" PGDATABASE=postgres
export BILLING_CITUS_WORKERS="127.0.0.1:${PORT[worker1]} 127.0.0.1:${PORT[worker2]}"
export BILLING_CITUS_DIR="$DIR" BILLING_PG_BINDIR="$BINDIR"
export BILLING_START_SERVER="$DIR/coordinator/start-server.sh"
"$@"
