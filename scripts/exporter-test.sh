#!/usr/bin/env bash
# prometheus-postgres-exporter with metrics/billing-queries.yaml (make exporter, in make test).
#
# Starts a throwaway cluster that preloads billing (scripts/with-cluster.sh), a
# database with the extension, and a role that may execute only billing_metrics();
# starts the exporter as that role on 127.0.0.1 and a free port; scrapes /metrics;
# makes some billing calls (deducts, two PB001, holds, a hold and a grant left
# past their time); scrapes again and checks that the billing series moved by
# exactly that. The exporter and the cluster are always stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-$(scripts/pg-config.sh)}
if [ -z "${BILLING_CLUSTER_DIR:-}" ]; then
    # billing preloaded, as in production (pg_cron too on 15, whose server has it)
    preload=billing
    if [ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ]; then
        preload=pg_cron,billing
    fi
    export BILLING_PG_OPTS="-c shared_preload_libraries=$preload -c max_worker_processes=16"
    exec scripts/with-cluster.sh "$0" "$@"
fi

EXPORTER=${BILLING_EXPORTER:-prometheus-postgres-exporter}
command -v "$EXPORTER" >/dev/null || { echo "exporter-test: $EXPORTER is not installed (make setup)" >&2; exit 1; }
QUERIES=$PWD/metrics/billing-queries.yaml
LOG=$BILLING_CLUSTER_DIR/exporter.log
DB=billing_exporter
ROLE=billing_exporter_scraper

psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_ -d postgres -c "CREATE DATABASE $DB"
psql_ -d "$DB" <<SQL
CREATE EXTENSION billing;
CREATE ROLE $ROLE LOGIN;
GRANT EXECUTE ON FUNCTION billing_metrics() TO $ROLE;
SQL

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/metrics
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$ROLE dbname=$DB sslmode=disable" \
    "$EXPORTER" --web.listen-address="127.0.0.1:$PORT" --extend.query-path="$QUERIES" \
    --disable-default-metrics --disable-settings-metrics >"$LOG" 2>&1 &
EXPORTER_PID=$!
stop_exporter() {
    kill "$EXPORTER_PID" 2>/dev/null || true
    wait "$EXPORTER_PID" 2>/dev/null || true
}
fail() {
    echo "exporter-test: $*" >&2
    echo "--- exporter log" >&2; cat "$LOG" >&2
    if [ -f "$BILLING_CLUSTER_DIR/scrape" ]; then echo "--- last scrape" >&2; grep -v "^go_\|^process_\|^promhttp_" "$BILLING_CLUSTER_DIR/scrape" >&2; fi
    exit 1
}
trap stop_exporter EXIT

for _ in $(seq 100); do
    curl -fsS "$URL" >/dev/null 2>&1 && break
    kill -0 "$EXPORTER_PID" 2>/dev/null || fail "the exporter exited"
    sleep 0.1
done

# The value of one series, e.g. value 'billing_calls_total{function="billing_deduct"}' (empty if
# absent), named without the label server="host:port" that the exporter adds to every series.
scrape() {
    curl -fsS "$URL" >"$BILLING_CLUSTER_DIR/scrape.raw" || fail "scraping $URL failed"
    sed -E 's/,?server="[^"]*"//; s/\{,/{/; s/\{\}//' "$BILLING_CLUSTER_DIR/scrape.raw" >"$BILLING_CLUSTER_DIR/scrape"
}
value() { awk -v s="$1" '$1 == s { print $2 }' "$BILLING_CLUSTER_DIR/scrape"; }
expect() {
    local got
    got=$(value "$1")
    [ "$got" = "$2" ] || fail "$1 is '${got}', expected '$2'"
}

scrape
expect pg_exporter_last_scrape_error 0
expect billing_counters_active 1
expect billing_holds_open 0
expect billing_grants_unswept 0
deducts_before=$(value 'billing_calls_total{function="billing_deduct"}')
[ -n "$deducts_before" ] || fail "no billing_calls_total for billing_deduct"
[ -z "$(value 'billing_errors_total{function="billing_deduct",sqlstate="PB001"}')" ] || fail "PB001 before any call"

psql_ -d "$DB" -o /dev/null <<'SQL'
SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');
SELECT billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 'chat-' || n) FROM generate_series(1, 3) AS n;
SELECT billing_hold('u', 2, 'CHAT_DEC', 'CHAT', 'metered');
SELECT billing_hold('u', 2, 'CHAT_DEC', 'CHAT', 'short', ttl => interval '1 second');
SELECT billing_add('u', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 second');
SQL
for _ in 1 2; do
    psql_ -d "$DB" -o /dev/null -c "SELECT billing_deduct('u', 1000, 'CHAT_DEC', 'CHAT', 'too-much')" 2>/dev/null &&
        fail "a deduct of 1000 out of 100 worked"
done
sleep 1.5   # the short hold and the gift are now past their time

scrape
expect pg_exporter_last_scrape_error 0
expect 'billing_calls_total{function="billing_deduct"}' "$((deducts_before + 5))"
expect 'billing_errors_total{function="billing_deduct",sqlstate="PB001"}' 2
expect billing_holds_open 2
expect billing_holds_overdue 1
expect billing_grants_unswept 1
grep -q '^# TYPE billing_calls_total counter' "$BILLING_CLUSTER_DIR/scrape" || fail "billing_calls_total is not a counter"
grep -q '^# TYPE billing_holds_open gauge' "$BILLING_CLUSTER_DIR/scrape" || fail "billing_holds_open is not a gauge"

# the sweep brings the gauges back
psql_ -d "$DB" -c "SELECT billing_expire()" >/dev/null
scrape
expect billing_holds_overdue 0
expect billing_grants_unswept 0
expect billing_holds_open 1

echo "exporter-test: $(grep -c '^billing_' "$BILLING_CLUSTER_DIR/scrape") billing series exported and moved as the calls did"
