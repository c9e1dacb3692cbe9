#!/usr/bin/env bash
# Runs a command through pgbouncer in transaction-pooling mode in front of the
# cluster that scripts/with-cluster.sh started, and always stops pgbouncer.
#
#   scripts/with-cluster.sh scripts/with-pgbouncer.sh COMMAND [ARGS...]
#
# pgbouncer (Debian's package; scripts/setup.sh installs it) runs as the
# postgres user (it refuses root), listens only on a Unix socket in a fresh
# temporary directory, on port BILLING_BOUNCER_PORT (default PGPORT + 1), and
# pools by transaction with 4 server connections for any number of clients:
# consecutive transactions of one client may run on different server
# connections, as in production. COMMAND sees PGHOST and PGPORT pointing at
# pgbouncer (same PGUSER and PGDATABASE), and BILLING_DIRECT_PGHOST and
# BILLING_DIRECT_PGPORT, the cluster itself (for setup a pooler cannot do).
set -euo pipefail

: "${PGHOST:?run under scripts/with-cluster.sh}" "${PGPORT:?}" "${PGUSER:?}" "${PGDATABASE:?}"
BOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$BOUNCER" ] || { echo "with-pgbouncer: pgbouncer is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/billing-bouncer.XXXXXX)
PORT=${BILLING_BOUNCER_PORT:-$((PGPORT + 1))}

if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$DIR"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

stop_bouncer() {
    if [ -f "$DIR/pgbouncer.pid" ]; then
        kill "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null || true
        for _ in $(seq 50); do [ -f "$DIR/pgbouncer.pid" ] || break; sleep 0.1; done
    fi
    rm -rf "$DIR"
}
trap stop_bouncer EXIT
trap 'exit 130' INT TERM

printf '"%s" ""\n' "$PGUSER" >"$DIR/users.txt"
cat >"$DIR/pgbouncer.ini" <<INI
[databases]
* = host=$PGHOST port=$PGPORT

[pgbouncer]
listen_addr =
listen_port = $PORT
unix_socket_dir = $DIR
auth_type = trust
auth_file = $DIR/users.txt
admin_users = $PGUSER
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
INI
[ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"/*
as_pg "$BOUNCER" -d "$DIR/pgbouncer.ini" >/dev/null || { cat "$DIR/pgbouncer.log" >&2 2>/dev/null; exit 1; }
for _ in $(seq 50); do [ -S "$DIR/.s.PGSQL.$PORT" ] && break; sleep 0.1; done
[ -S "$DIR/.s.PGSQL.$PORT" ] || { echo "with-pgbouncer: pgbouncer did not start" >&2; cat "$DIR/pgbouncer.log" >&2; exit 1; }

export BILLING_DIRECT_PGHOST="$PGHOST" BILLING_DIRECT_PGPORT="$PGPORT"
export PGHOST="$DIR" PGPORT="$PORT"
"$@"
