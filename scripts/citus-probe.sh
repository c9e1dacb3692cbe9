#!/usr/bin/env bash
# Diagnostic, not a test: what of the billing extension works through a Citus
# coordinator today. Run it under a fresh cluster:
#
#   scripts/with-citus.sh scripts/citus-probe.sh [> /tmp/citus-probe.out 2>&1]
#
# It creates the billing extension on the coordinator, distributes it with
# billing_distribute() (twice: the second must be harmless), then calls every function of docs/functions.md once in a
# small scenario, plus the views, the trigger guards and a charging trigger on
# a distributed tasks table. Each step prints its label, the statement, its
# result, then OK or the error as the server sent it (a step that must fail
# is OK only with the SQLSTATE it expects); a summary comes last.
# A step that needs an earlier result (a hold's id, a ledger id) gets NULL
# when that step failed. The exit status is 0 whatever failed.
set -euo pipefail

if [ -z "${BILLING_CITUS_WORKERS:-}" ]; then
    echo "citus-probe: run me under scripts/with-citus.sh (BILLING_CITUS_WORKERS is not set)" >&2
    exit 1
fi
PSQL=${BILLING_PG_BINDIR:+$BILLING_PG_BINDIR/}psql
run_psql() {
    # stdout line-buffered so that psql's errors (stderr) land next to their step
    stdbuf -oL "$PSQL" -X -q -v ON_ERROR_STOP=0 -P pager=off "$@" 2>&1
}

echo "citus-probe: coordinator $PGHOST:$PGPORT, workers $BILLING_CITUS_WORKERS"
run_psql -At -c "SELECT 'PostgreSQL ' || current_setting('server_version') || ', ' || citus_version()"
echo "== CREATE EXTENSION billing (on the coordinator)"
if ! "$PSQL" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION billing" 2>&1; then
    echo "citus-probe: CREATE EXTENSION billing failed: nothing else to probe"
    exit 0
fi
echo OK
run_psql -At -c "SELECT 'billing ' || extversion FROM pg_extension WHERE extname = 'billing'"
echo "== the extension on each worker (Citus propagates it)"
for w in $BILLING_CITUS_WORKERS; do
    run_psql -At -h "${w%:*}" -p "${w##*:}" -c "SELECT '$w: ' || coalesce((SELECT 'billing ' || extversion FROM pg_extension WHERE extname = 'billing'), 'no billing extension')"
done

# step LABEL SQL: one statement (one line), then OK or FAIL into the summary.
step() {
    local label=${1//\'/\'\'}  # quoted for psql: ' doubled
    printf '%s\n' "\\echo '== $label'" "$2" '\if :ERROR' \
        "\\set summary :summary '  FAIL  $label: ' :LAST_ERROR_SQLSTATE ' ' :LAST_ERROR_MESSAGE '\\n'" \
        '\else' '\echo OK' "\\set summary :summary '  OK    $label\\n'" '\endif'
}

# expect_error LABEL SQLSTATE SQL: a statement that must fail with SQLSTATE, run
# in a transaction that is always rolled back (so it changes nothing even when
# it wrongly succeeds): OK when it fails so, UNEXPECTED otherwise.
expect_error() {
    local label=${1//\'/\'\'}
    printf '%s\n' "\\echo '== $label'" '\set ECHO none' 'BEGIN;' '\set ECHO queries' "$3" \
        '\set probe_state :SQLSTATE' '\set ECHO none' 'ROLLBACK;' \
        "SELECT :'probe_state' = '$2' AS probe_ok \\gset" '\set ECHO queries' \
        '\if :probe_ok' "\\echo 'OK (failed with $2 as expected)'" "\\set summary :summary '  OK    $label\\n'" \
        '\else' "\\echo 'UNEXPECTED: SQLSTATE' :probe_state" \
        "\\set summary :summary '  UNEXP $label: SQLSTATE ' :probe_state '\\n'" '\endif'
}

{
    echo '\set summary'
    echo '\pset footer off'
    echo '\pset null (null)'
    echo '\set ECHO queries'
    echo "\\echo '#### distribution: billing_distribute()'"
    step "billing_distribute()" "SELECT * FROM billing_distribute();"
    step "billing_distribute() again (harmless)" "SELECT count(*) FROM billing_distribute();"
    step "the distribution as Citus sees it" \
        "SELECT logicalrelid, partmethod, colocationid, (SELECT count(*) FROM pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid) AS shards FROM pg_dist_partition p WHERE logicalrelid::text LIKE 'billing.%' ORDER BY 1::text;"
    step "a pricing rule (INSERT into billing.pricing_rules)" \
        "INSERT INTO billing.pricing_rules (code, tokens, power, description) VALUES ('gpt', 1000, 3, 'probe');"

    echo "\\echo '#### the scenario, all through the coordinator'"
    for v in add_id gift_id deduct_id deduct2_id hold1 hold2 settle_id; do echo "\\set $v NULL"; done
    step "billing_add permanent" \
        "SELECT id AS add_id FROM billing_add(user_id => 'alice', amount => 100, account_type => 'RECHARGE_INC', source_type => 'RECHARGE', source => 'order-1001', idempotency_key => 'order-1001') \\gset"
    echo '\echo add_id = :add_id'
    step "billing_add repeat of the same idempotency_key" \
        "SELECT id, seq, balance_after FROM billing_add(user_id => 'alice', amount => 100, account_type => 'RECHARGE_INC', source_type => 'RECHARGE', source => 'order-1001', idempotency_key => 'order-1001');"
    step "billing_add gift (expiring grant)" \
        "SELECT id AS gift_id FROM billing_add(user_id => 'alice', amount => 30, account_type => 'MEMBERSHIP_GIFT_INC', source_type => 'MEMBERSHIP_GIFT', source => 'vip-monthly', expire_at => now() + interval '30 days', subscription_id => 'sub-7') \\gset"
    step "billing_add(jsonb)" \
        "SELECT id, seq, balance_after, detail FROM billing_add('{\"userId\": \"alice\", \"amount\": 5, \"accountType\": \"CARD_KEY_REDEEM_INC\", \"source\": {\"type\": \"CARD_KEY_REDEEM\", \"source\": \"card-1\"}}');"
    step "billing_add gift for bob (subscription sub-42)" \
        "SELECT id, seq, balance_after FROM billing_add(user_id => 'bob', amount => 20, account_type => 'MEMBERSHIP_GIFT_INC', source_type => 'MEMBERSHIP_GIFT', source => 'vip-monthly', expire_at => now() + interval '30 days', subscription_id => 'sub-42');"
    step "billing_power" "SELECT billing_power('alice');"
    step "billing_has_power" "SELECT billing_has_power('alice', 10);"
    step "billing_deduct" \
        "SELECT id AS deduct_id FROM billing_deduct(user_id => 'alice', amount => 40, account_type => 'CHAT_DEC', source_type => 'CHAT', source => 'chat-7', association_no => 'task-7', idempotency_key => 'chat-7-msg-1') \\gset"
    echo '\echo deduct_id = :deduct_id'
    step "billing_deduct(jsonb)" \
        "SELECT id AS deduct2_id FROM billing_deduct('{\"userId\": \"alice\", \"amount\": 3, \"accountType\": \"CHAT_DEC\", \"source\": {\"type\": \"CHAT\", \"source\": \"chat-7\"}, \"associationNo\": \"task-7\"}') \\gset"
    echo '\echo deduct2_id = :deduct2_id'
    expect_error "billing_deduct beyond the balance (expect PB001)" PB001 \
        "SELECT id FROM billing_deduct('alice', 1000000, 'CHAT_DEC', 'CHAT', 'too-much');"
    step "billing_hold" \
        "SELECT hold_id AS hold1 FROM billing_hold('alice', 20, 'CHAT_DEC', 'CHAT', 'gpt-4', association_no => 'task-8', ttl => '5 minutes', idempotency_key => 'task-8') \\gset"
    echo '\echo hold1 = :hold1'
    step "billing_settle" "SELECT id AS settle_id FROM billing_settle(:hold1, 12.5) \\gset"
    echo '\echo settle_id = :settle_id'
    step "billing_hold (to release)" \
        "SELECT hold_id AS hold2 FROM billing_hold('alice', 10, 'PLUGIN_DEC', 'PLUGIN', 'search') \\gset"
    echo '\echo hold2 = :hold2'
    step "billing_release" "SELECT hold_id, status FROM billing_release(:hold2, 'upstream timeout');"
    step "billing_refund partial (of the deduct)" \
        "SELECT id, amount, detail FROM billing_refund(:deduct_id, 2.5, 'partial failure', idempotency_key => 'rf-1');"
    step "billing_refund full (of the jsonb deduct)" "SELECT id, amount, detail FROM billing_refund(:deduct2_id);"
    step "billing_refund of a settle" "SELECT id, amount, detail FROM billing_refund(:settle_id, 1);"
    step "billing_adjust +2" "SELECT seq, balance_after FROM billing_adjust('alice', 2, 'probe: credit');"
    step "billing_adjust -1" "SELECT seq, balance_after FROM billing_adjust('alice', -1, 'probe: debit');"
    step "billing_set_limit" "SELECT * FROM billing_set_limit('alice', 'key:sk-1', 100, 'day');"
    step "billing_deduct with scopes" \
        "SELECT id, scopes FROM billing_deduct('alice', 4, 'CHAT_DEC', 'CHAT', 'chat-8', scopes => ARRAY['key:sk-1']);"
    step "billing_limits" "SELECT * FROM billing_limits('alice');"
    step "billing_set_debt_limit" "SELECT billing_set_debt_limit('alice', 50);"
    step "billing_settle allow_debt (hold 5, settle 10)" \
        "SELECT id, amount, balance_after FROM billing_settle((SELECT hold_id FROM billing_hold('alice', 5, 'CHAT_DEC', 'CHAT', 'debt-1')), 10, allow_debt => true);"
    step "billing_set_low_balance (just below the power)" "SELECT billing_set_low_balance('alice', greatest(billing_power('alice') - 1, 0));"
    step "billing_deduct across the low-balance threshold" "SELECT id, balance_after FROM billing_deduct('alice', 2, 'CHAT_DEC', 'CHAT', 'chat-9');"
    step "billing_low_balance_events" "SELECT * FROM billing_low_balance_events(0);"
    step "billing_add a grant expiring in 1 s, for the sweep" \
        "SELECT id FROM billing_add('carol', 7, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'trial', expire_at => clock_timestamp() + interval '1 second');"
    step "billing_hold with a 1 s ttl, for the sweep" "SELECT hold_id FROM billing_hold('carol', 2, 'CHAT_DEC', 'CHAT', 'short', ttl => '1 second');"
    echo 'SELECT pg_sleep(1.5);'
    step "billing_expire (expect 2: one grant, one lapsed hold)" "SELECT billing_expire();"
    step "billing_revoke_subscription" "SELECT id, user_id, amount, balance_after FROM billing_revoke_subscription('sub-42', 'cancelled');"
    step "billing_history" "SELECT seq, account_type, direction, amount, balance_after FROM billing_history('alice', 5);"
    step "billing_by_association" "SELECT seq, account_type, amount FROM billing_by_association('alice', 'task-7');"
    step "billing_statement" "SELECT * FROM billing_statement('alice', '-infinity', 'infinity');"
    step "billing_price" "SELECT billing_price('gpt', 12000);"
    step "billing_metrics" "SELECT metric, labels, value FROM billing_metrics() WHERE value > 0;"
    step "billing_metrics_reset" "SELECT billing_metrics_reset();"
    step "view billing.balances" "SELECT * FROM billing.balances ORDER BY user_id;"
    step "view billing.grants" "SELECT user_id, id, amount, remaining, subscription_id FROM billing.grants ORDER BY user_id, id;"
    step "billing_power of each user" "SELECT u, billing_power(u) FROM unnest(ARRAY['alice', 'bob', 'carol']) AS u;"

    echo "\\echo '#### guards and ids'"
    expect_error "UPDATE billing.account_types direction (expect PB007)" PB007 \
        "UPDATE billing.account_types SET direction = 1 WHERE code = 'CHAT_DEC';"
    expect_error "UPDATE of alice's ledger entries (expect PB006; 00000 if she has none)" PB006 \
        "UPDATE billing.account_log SET remark = 'changed' WHERE user_id = 'alice';"
    step "ledger ids used more than once (expect no rows)" \
        "SELECT id, array_agg(user_id) FROM billing.account_log GROUP BY id HAVING count(*) > 1;"
    step "grant ids used more than once (expect no rows)" \
        "SELECT id, array_agg(user_id) FROM billing.grant_store GROUP BY id HAVING count(*) > 1;"

    echo "\\echo '#### a charging trigger on a tasks table distributed by user_id'"
    step "CREATE TABLE probe_tasks" \
        "CREATE TABLE public.probe_tasks (user_id text NOT NULL, task_no text NOT NULL, status text NOT NULL DEFAULT 'running', PRIMARY KEY (user_id, task_no));"
    step "CREATE TRIGGER billing_charge" \
        "CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.probe_tasks FOR EACH ROW EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=report', 'association_column=task_no', 'status_column=status', 'failed_status=failed');"
    echo "SET citus.enable_unsafe_triggers = on;"
    step "create_distributed_table probe_tasks (unsafe triggers on)" \
        "SELECT create_distributed_table('public.probe_tasks', 'user_id', colocate_with => 'billing.accounts');"
    echo "RESET citus.enable_unsafe_triggers;"
    step "INSERT a task (charges 5)" "INSERT INTO public.probe_tasks (user_id, task_no) VALUES ('alice', 't-1');"
    step "the task's ledger entry" "SELECT seq, account_type, amount, association_no, remark FROM billing_by_association('alice', 't-1');"
    step "UPDATE the task to failed (refunds the 5)" "UPDATE public.probe_tasks SET status = 'failed' WHERE user_id = 'alice' AND task_no = 't-1';"
    step "the task's ledger entries after the refund" "SELECT seq, account_type, amount, refund_of FROM billing.account_log WHERE user_id = 'alice' AND association_no = 't-1' ORDER BY seq;"

    echo "\\echo '#### finally'"
    step "billing_verify alice" "SELECT * FROM billing_verify('alice');"
    step "billing_verify() (expect no rows)" "SELECT * FROM billing_verify();"
    echo "\\echo '#### summary'"
    echo '\echo :summary'
} | run_psql -f -
