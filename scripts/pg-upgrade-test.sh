#!/usr/bin/env bash
# Moves a cluster holding billing data from one PostgreSQL major to another and
# checks that nothing changed:
#
#   scripts/pg-upgrade-test.sh dump|pg_upgrade [OLD NEW]   (default 15 18; `make test-pg-upgrade` runs both)
#
# Both servers must have the extension installed (make install PG=OLD and
# PG=NEW; the Makefile target does). It creates a cluster of OLD and fills it
# the way an application would: an application role with EXECUTE grants, a
# type and a pricing rule a DBA added, grants (one expiring), deductions, a
# settled hold and an open one, and an application table with a charging
# trigger. It records every balance, every ledger row, every billing table,
# the application table and the role's grant, then moves the data:
#
#   dump        the steps docs/installing.md gives: OLD's pg_dumpall --globals-only
#               and pg_dump -Fc (see below why OLD's), then NEW's psql and
#               pg_restore into a fresh NEW cluster;
#   pg_upgrade  NEW's pg_upgrade --link. Debian's 15.20 stamps every column with
#               the option pg_attver, which 18.6 does not know (pg_restore fails on
#               "unrecognized parameter"): when NEW rejects it, this test clears
#               the option from the user tables' columns in OLD's catalog first.
#               That is catalog surgery on a throwaway cluster, done only when no
#               user table has a composite-typed column (what the option guards);
#               docs/installing.md does not recommend it.
#
# On NEW it checks the same rows, billing_verify finds nothing, and the data
# keeps working: a deduct as the application role continues the ledger, the
# open hold settles, and an insert into the application table charges.
set -euo pipefail
cd "$(dirname "$0")/.."
METHOD=${1:?usage: scripts/pg-upgrade-test.sh dump|pg_upgrade [OLD NEW]}
case $METHOD in dump|pg_upgrade) ;; *) echo "pg-upgrade-test: method is dump or pg_upgrade, not $METHOD" >&2; exit 1 ;; esac
OLD=${2:-15}; NEW=${3:-18}
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
say() { echo "pg-upgrade-test ($METHOD $OLD -> $NEW): $*"; }
fail() { say "$*" >&2; for l in "$DIR"/*.log; do [ -f "$l" ] && { echo "--- $l" >&2; tail -20 "$l" >&2; }; done; exit 1; }
# each cluster its own socket folder, so both can run at once on the same port
start() { as_pg "$1/pg_ctl" -D "$DIR/$2" -l "$DIR/server-$2.log" -w -o "-p $PORT -k $DIR/$2.sock -c listen_addresses=''" start >/dev/null || fail "$2 did not start"; }
q() { local bin=$1 side=$2; shift 2; as_pg "$bin/psql" -X -v ON_ERROR_STOP=1 -At -h "$DIR/$side.sock" -p "$PORT" -U "$user" -d billing_data "$@"; }
qold() { q "$old_bin" old "$@"; }
qnew() { q "$new_bin" new "$@"; }

# PostgreSQL 18's initdb turns data checksums on by default, 15's off: pg_upgrade needs them alike.
init_opts=(-U "$user" --auth=trust -E UTF8 --locale=C.UTF-8)
install -d -o "$user" "$DIR/old.sock" "$DIR/new.sock"
as_pg "$old_bin/initdb" -D "$DIR/old" "${init_opts[@]}" >/dev/null
checksums=(); [ "$NEW" -ge 18 ] && [ "$OLD" -lt 18 ] && checksums=(--no-data-checksums)
as_pg "$new_bin/initdb" -D "$DIR/new" "${init_opts[@]}" "${checksums[@]}" >/dev/null

start "$old_bin" old
as_pg "$old_bin/createdb" -h "$DIR/old.sock" -p "$PORT" -U "$user" billing_data
qold -q <<'SQL' >/dev/null
CREATE EXTENSION billing;
CREATE ROLE app LOGIN;
GRANT EXECUTE ON FUNCTION billing_power(text),
  billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]),
  billing_settle(bigint, numeric, text, boolean) TO app;
INSERT INTO billing.account_types (code, direction, description) VALUES ('IMAGE_DEC', -1, 'Images');
INSERT INTO billing.source_types (code, description) VALUES ('IMAGE', 'Images');
INSERT INTO billing.pricing_rules (code, tokens, power, description) VALUES ('gpt', 1000, 3, 'Chat');
SELECT count(*) FROM billing_add(user_id => 'alice', amount => 100, account_type => 'RECHARGE_INC', source_type => 'RECHARGE', source => 'order-1', idempotency_key => 'order-1');
SELECT count(*) FROM billing_add(user_id => 'alice', amount => 30, account_type => 'MEMBERSHIP_GIFT_INC', source_type => 'MEMBERSHIP_GIFT', source => 'vip', expire_at => now() + interval '30 days', subscription_id => 'sub-1');
SELECT count(*) FROM billing_add(user_id => 'bob', amount => 20.5, account_type => 'RECHARGE_INC', source_type => 'RECHARGE', source => 'order-2');
SELECT count(*) FROM billing_deduct(user_id => 'alice', amount => 45, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'chat-1', idempotency_key => 'chat-1');
SELECT count(*) FROM billing_deduct(user_id => 'bob', amount => 2.25, account_type => 'IMAGE_DEC', source_type => 'IMAGE', source => 'draw-1');
SELECT count(*) FROM billing_set_limit('alice', 'key:a', 500, 'month', 'Europe/Berlin');
SELECT count(*) FROM billing_deduct(user_id => 'alice', amount => 5, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'chat-2', scopes => ARRAY['key:a']);
SELECT (billing_settle((billing_hold(user_id => 'alice', amount => 20, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'job-1')).hold_id, 7)).seq;
SELECT (billing_hold(user_id => 'bob', amount => 5, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'job-2', ttl => '1 day')).hold_id;
CREATE TABLE tasks (task_no text PRIMARY KEY, user_id text NOT NULL, status text NOT NULL DEFAULT 'running');
CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION billing_charge(
        'user_column=user_id', 'amount=4', 'account_type=CHAT_DEC', 'source_type=CHAT',
        'source=task', 'association_column=task_no', 'status_column=status', 'failed_status=failed');
INSERT INTO tasks (task_no, user_id) VALUES ('task-1', 'bob'), ('task-2', 'bob');
UPDATE tasks SET status = 'failed' WHERE task_no = 'task-2';
SQL
snapshot() {
    "$@" <<'SQL'
SELECT user_id, billing_power(user_id) FROM (SELECT DISTINCT user_id FROM billing.account_log) u ORDER BY 1;
SELECT l::text FROM billing.account_log l ORDER BY user_id, seq;
SELECT a::text FROM billing.accounts a ORDER BY 1;
SELECT g::text FROM billing.grant_store g ORDER BY 1;
SELECT h::text FROM billing.holds h ORDER BY 1;
SELECT t::text FROM billing.account_types t ORDER BY code;
SELECT t::text FROM billing.source_types t ORDER BY code;
SELECT p::text FROM billing.pricing_rules p ORDER BY code;
SELECT l::text FROM billing.limits l ORDER BY 1;
SELECT t::text FROM tasks t ORDER BY task_no;
SELECT s, last_value FROM (VALUES ('billing.account_log_id_seq'), ('billing.grants_id_seq'), ('billing.holds_id_seq')) v(s),
  LATERAL (SELECT pg_sequence_last_value(s::regclass) AS last_value) l ORDER BY 1;
SELECT has_function_privilege('app', 'billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])', 'EXECUTE');
SELECT has_function_privilege('app', 'billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text)', 'EXECUTE');
SELECT count(*) FROM billing_verify();
SELECT extversion FROM pg_extension WHERE extname = 'billing';
SQL
}
snapshot qold >"$DIR/before.txt"
# alice: 100 + 30 - 45 - 5 (under a limit of key:a) - 7 (settled of a hold of 20); bob: 20.5 - 2.25 - 4 (task-1; task-2 failed, refunded) - 5 held
[ "$(qold -c "SELECT billing_power('alice') = 73 AND billing_power('bob') = 9.25")" = t ] ||
    fail "unexpected balances before the move: $(head -2 "$DIR/before.txt" | tr '\n' ' ')"
bob_hold=$(qold -c "SELECT hold_id FROM billing.holds WHERE user_id = 'bob' AND status = 'held'")

if [ "$METHOD" = dump ]; then
    # OLD's pg_dump, not NEW's: Debian's 15.20 stamps every column with the option
    # pg_attver; its own pg_dump leaves the option out, 18.6's copies it into the
    # dump (ALTER COLUMN ... SET (pg_attver=...)) and 18.6's server then rejects it.
    say "pg_dumpall --globals-only and pg_dump -Fc (PostgreSQL $OLD's tools) against the $OLD server"
    as_pg "$old_bin/pg_dumpall" -h "$DIR/old.sock" -p "$PORT" -U "$user" --globals-only -f "$DIR/globals.sql" 2>"$DIR/dump.log" || fail "pg_dumpall failed"
    as_pg "$old_bin/pg_dump" -h "$DIR/old.sock" -p "$PORT" -U "$user" -Fc -f "$DIR/billing_data.dump" billing_data 2>>"$DIR/dump.log" || fail "pg_dump failed"
    start "$new_bin" new
    # the globals re-create every role; the one that ran initdb exists already (the only error allowed)
    as_pg "$new_bin/psql" -X -q -h "$DIR/new.sock" -p "$PORT" -U "$user" -d postgres -f "$DIR/globals.sql" >"$DIR/globals.log" 2>&1 || true
    errors=$(grep 'ERROR' "$DIR/globals.log" | grep -v "role \"$user\" already exists" || true)
    [ -z "$errors" ] || fail "restoring the globals: $errors"
    as_pg "$new_bin/createdb" -h "$DIR/new.sock" -p "$PORT" -U "$user" billing_data
    say "pg_restore into the $NEW cluster"
    as_pg "$new_bin/pg_restore" --exit-on-error -h "$DIR/new.sock" -p "$PORT" -U "$user" -d billing_data "$DIR/billing_data.dump" >"$DIR/restore.log" 2>&1 ||
        fail "pg_restore failed"
    as_pg "$old_bin/pg_ctl" -D "$DIR/old" -m fast -w stop >/dev/null
else
    if [ -n "$(qold -c "SELECT 1 FROM pg_attribute WHERE attrelid >= 16384 AND attoptions::text LIKE '%pg_attver=%' LIMIT 1")" ]; then
        start "$new_bin" new
        knows=$(as_pg "$new_bin/psql" -X -At -h "$DIR/new.sock" -p "$PORT" -U "$user" -d postgres \
            -c "CREATE TEMP TABLE t (a int); ALTER TABLE t ALTER a SET (pg_attver = 1); SELECT 'yes'" 2>/dev/null || true)
        as_pg "$new_bin/pg_ctl" -D "$DIR/new" -m fast -w stop >/dev/null
        if [ "$knows" != yes ]; then
            composite=$(qold -c "SELECT string_agg(a.attrelid::regclass || '.' || a.attname, ', ')
                FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attrelid >= 16384 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm')
                  AND (t.typtype = 'c' OR EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typtype = 'c'))")
            [ -z "$composite" ] || fail "columns of composite type ($composite): the pg_attver stamps matter there, not clearing them"
            n=$(qold -c "WITH u AS (
                UPDATE pg_catalog.pg_attribute SET attoptions = NULLIF(ARRAY(SELECT o FROM unnest(attoptions) o WHERE o NOT LIKE 'pg_attver=%'), '{}')
                 WHERE attrelid >= 16384 AND attoptions::text LIKE '%pg_attver=%' RETURNING 1) SELECT count(*) FROM u")
            say "NOTE: PostgreSQL $NEW rejects $OLD's column option pg_attver; cleared it from $n columns of user tables in the throwaway $OLD cluster's catalog"
        fi
    fi
    as_pg "$old_bin/pg_ctl" -D "$DIR/old" -m fast -w stop >/dev/null
    say "pg_upgrade --link"
    (cd "$DIR" && as_pg "$new_bin/pg_upgrade" --link -U "$user" -b "$old_bin" -B "$new_bin" -d "$DIR/old" -D "$DIR/new" \
        -s "$DIR/new.sock" -p "$PORT" -P "$PORT" >"$DIR/pg_upgrade.log" 2>&1) || {
            grep -h -B2 -A3 "error" "$DIR"/new/pg_upgrade_output.d/*/log/pg_upgrade_dump_*.log >&2 || true; fail "pg_upgrade failed"; }
    start "$new_bin" new
fi

[ "$(qnew -c 'SHOW server_version_num' | cut -c1-2)" = "$NEW" ] || fail "the new server is not $NEW"
snapshot qnew >"$DIR/after.txt"
diff "$DIR/before.txt" "$DIR/after.txt" || fail "balances, ledger or tables differ after the move (< before, > after)"
# the data keeps working on NEW: the application's deduct continues the ledger,
# bob's open hold settles, and the application table's trigger charges
last_id=$(qnew -c "SELECT max(id) FROM billing.account_log")
qnew -q <<SQL >/dev/null
SET ROLE app;
SELECT billing_deduct('alice', 8, 'CHAT_DEC', 'CHAT', 'chat-3', scopes => ARRAY['key:a']);
SELECT billing_settle($bob_hold, 5);
RESET ROLE;
INSERT INTO tasks (task_no, user_id) VALUES ('task-3', 'alice');
SQL
[ "$(qnew -c "SELECT billing_power('alice') = 61 AND billing_power('bob') = 9.25")" = t ] ||
    fail "after the move: alice has $(qnew -c "SELECT billing_power('alice')"), bob $(qnew -c "SELECT billing_power('bob')") (expected 61 and 9.25)"
# alice's limit of key:a came through and counts on: 5 before the move, 8 after
[ "$(qnew -c "SELECT spent = 13 FROM billing_limits('alice')")" = t ] ||
    fail "after the move: alice's limit of key:a shows $(qnew -c "SELECT spent FROM billing_limits('alice')") spent (expected 13)"
[ "$(qnew -c "SELECT count(*) = 3 FROM billing.account_log WHERE id > $last_id")" = t ] ||
    fail "the ledger's ids do not continue after $last_id"
[ "$(qnew -c "SELECT count(*) FROM billing_verify()")" = 0 ] || fail "billing_verify finds problems after the move: $(qnew -c "SELECT * FROM billing_verify()")"
say "$(grep -c . "$DIR/before.txt") rows (balances, ledger, accounts, grants, holds, types, pricing, spending limits, the application's table, sequences, grants to the role) identical; billing_verify finds nothing; deduct, settle and the charging trigger work on $NEW"
