#!/usr/bin/env bash
# pg_upgrade of a cluster holding billing data, from one major to another:
#
#   scripts/pg-upgrade-test.sh [OLD NEW]     (default: 15 18; `make test-pg-upgrade`)
#
# Both servers must have the extension installed (make install PG=OLD and
# PG=NEW; the Makefile target does). It creates a cluster of OLD, fills it
# through the billing functions (grants, an expiring grant, deductions, a
# hold, a settle, a refund), records every balance, every ledger row and every
# table of schema billing, upgrades it with NEW's pg_upgrade (--link: no copy),
# and checks that NEW's server shows the same rows, that billing_verify finds
# nothing and that the functions still work on the upgraded cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:-15}; NEW=${2:-18}
old_bin=$("$(scripts/pg-config.sh "$OLD")" --bindir)
new_bin=$("$(scripts/pg-config.sh "$NEW")" --bindir)
PORT=${BILLING_PORT:-5432}
DIR=$(mktemp -d /tmp/billing-pg-upgrade.XXXXXX)
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR"; as_pg() { runuser -u postgres -- "$@"; }; user=postgres
else as_pg() { "$@"; }; user=$(id -un); fi
stop() {
    for d in old new; do
        [ -f "$DIR/$d/postmaster.pid" ] && as_pg "$([ $d = old ] && echo "$old_bin" || echo "$new_bin")/pg_ctl" -D "$DIR/$d" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$DIR"
}
trap stop EXIT
fail() { echo "pg-upgrade-test: $*" >&2; [ -f "$DIR/server.log" ] && tail -20 "$DIR/server.log" >&2; exit 1; }
start() { as_pg "$1/pg_ctl" -D "$2" -l "$DIR/server.log" -w -o "-p $PORT -k $DIR -c listen_addresses=''" start >/dev/null || fail "$1 did not start"; }
q() { as_pg "$1/psql" -X -v ON_ERROR_STOP=1 -At -h "$DIR" -p "$PORT" -U "$user" -d billing_data "${@:2}"; }

# PostgreSQL 18's initdb turns data checksums on by default, 15's off: pg_upgrade needs them alike.
init_opts=(-U "$user" --auth=trust -E UTF8 --locale=C.UTF-8)
as_pg "$old_bin/initdb" -D "$DIR/old" "${init_opts[@]}" >/dev/null
checksums=(); [ "$NEW" -ge 18 ] && checksums=(--no-data-checksums)
as_pg "$new_bin/initdb" -D "$DIR/new" "${init_opts[@]}" "${checksums[@]}" >/dev/null

start "$old_bin" "$DIR/old"
as_pg "$old_bin/createdb" -h "$DIR" -p "$PORT" -U "$user" billing_data
q "$old_bin" -q <<'SQL'
CREATE EXTENSION billing;
SELECT count(*) FROM billing_add(user_id => 'alice', amount => 100, account_type => 'RECHARGE_INC', source_type => 'RECHARGE', source => 'order-1');
SELECT count(*) FROM billing_add(user_id => 'alice', amount => 30, account_type => 'MEMBERSHIP_GIFT_INC', source_type => 'MEMBERSHIP_GIFT', source => 'vip', expire_at => now() + interval '30 days', subscription_id => 'sub-1');
SELECT count(*) FROM billing_add(user_id => 'bob', amount => 12.5, account_type => 'RECHARGE_INC', source_type => 'RECHARGE', source => 'order-2');
SELECT count(*) FROM billing_deduct(user_id => 'alice', amount => 45, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'chat-1', idempotency_key => 'chat-1');
SELECT count(*) FROM billing_deduct(user_id => 'bob', amount => 2.25, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'chat-2');
SELECT (billing_settle((billing_hold(user_id => 'alice', amount => 20, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'job-1')).hold_id, 7)).seq;
SELECT (billing_hold(user_id => 'bob', amount => 5, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'job-2')).hold_id;
SQL
snapshot() {
    q "$1" <<'SQL'
SELECT user_id, billing_power(user_id) FROM (SELECT DISTINCT user_id FROM billing.account_log) u ORDER BY 1;
SELECT l::text FROM billing.account_log l ORDER BY user_id, seq;
SELECT a::text FROM billing.accounts a ORDER BY 1;
SELECT g::text FROM billing.grant_store g ORDER BY 1;
SELECT h::text FROM billing.holds h ORDER BY 1;
SELECT count(*) FROM billing_verify();
SELECT extversion FROM pg_extension WHERE extname = 'billing';
SQL
}
snapshot "$old_bin" >"$DIR/before.txt"
# 100 + 30 - 45 - 7 settled of a hold of 20
[ "$(q "$old_bin" -c "SELECT billing_power('alice') = 78")" = t ] || fail "unexpected balances before the upgrade: $(head -2 "$DIR/before.txt")"
as_pg "$old_bin/pg_ctl" -D "$DIR/old" -m fast -w stop >/dev/null

echo "pg-upgrade-test: pg_upgrade $OLD -> $NEW"
(cd "$DIR" && as_pg "$new_bin/pg_upgrade" --link -U "$user" -b "$old_bin" -B "$new_bin" -d "$DIR/old" -D "$DIR/new" \
    -p "$PORT" -P "$PORT" >"$DIR/pg_upgrade.log" 2>&1) || {
        cat "$DIR/pg_upgrade.log" >&2; grep -h -B2 -A3 "error" "$DIR"/new/pg_upgrade_output.d/*/log/pg_upgrade_dump_*.log >&2 || true; fail "pg_upgrade failed"; }

start "$new_bin" "$DIR/new"
[ "$(q "$new_bin" -c 'SHOW server_version_num' | cut -c1-2)" = "$NEW" ] || fail "the upgraded server is not $NEW"
snapshot "$new_bin" >"$DIR/after.txt"
diff "$DIR/before.txt" "$DIR/after.txt" || fail "balances, ledger or tables differ after pg_upgrade (< before, > after)"
# the functions work on the upgraded cluster: the ledger continues where it was
q "$new_bin" -c "SELECT count(*) FROM billing_deduct(user_id => 'alice', amount => 8, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'chat-3')" >/dev/null
[ "$(q "$new_bin" -c "SELECT billing_power('alice') = 70")" = t ] || fail "billing_deduct after the upgrade: alice has $(q "$new_bin" -c "SELECT billing_power('alice')")"
[ "$(q "$new_bin" -c "SELECT count(*) FROM billing_verify()")" = 0 ] || fail "billing_verify finds problems after the upgrade"
echo "pg-upgrade-test: $(grep -c . "$DIR/before.txt") rows (balances, ledger, accounts, grants, holds) identical after pg_upgrade $OLD -> $NEW; billing works on $NEW"
