//! pg_dump and pg_restore keep balances, grants, holds, the ledger, added types and pricing rules.

mod common;

use std::process::Command;

use common::*;

fn tool(name: &str) -> String {
    format!("{}/{}", std::env::var("BILLING_PG_BINDIR").expect("run through scripts/with-cluster.sh"), name)
}

fn snapshot(c: &mut Client) -> String {
    text(
        c,
        "SELECT concat_ws(' | ',
           (SELECT string_agg(format('%s %s %s %s', user_id, permanent, grants_total, last_seq), ',' ORDER BY user_id) FROM billing.accounts),
           (SELECT string_agg(format('%s %s %s %s', user_id, id, remaining, expire_at), ',' ORDER BY user_id, id) FROM billing.grants),
           (SELECT string_agg(format('%s %s %s %s %s %s', user_id, seq, id, amount, balance_after, detail), ',' ORDER BY user_id, seq) FROM billing.account_log),
           (SELECT string_agg(code, ',' ORDER BY code) FROM billing.account_types),
           (SELECT string_agg(format('%s %s %s %s', code, tokens, power, description), ',' ORDER BY code) FROM billing.pricing_rules),
           (SELECT string_agg(format('%s %s %s %s %s %s', user_id, hold_id, status, amount, funding, scopes), ',' ORDER BY hold_id) FROM billing.holds),
           (SELECT string_agg(format('%s %s %s %s %s %s %s %s %s', user_id, scope, cap, period, period_start, period_end, spent, held, counted_after_seq), ',' ORDER BY user_id, scope) FROM billing.limits),
           (SELECT string_agg(format('%s %s', user_id, limited), ',' ORDER BY user_id) FROM billing.accounts))",
    )
}

#[test]
fn dump_and_restore_round_trip() {
    let source = fresh_database("dump_src");
    let mut c = connect(&source);
    c.batch_execute(
        "INSERT INTO billing.account_types (code, direction, description) VALUES ('IMAGE_DEC', -1, 'Images');
         INSERT INTO billing.source_types (code, description) VALUES ('IMAGE', 'Images');
         INSERT INTO billing.pricing_rules (code, tokens, power, description) VALUES ('gpt', 1000, 3, 'Chat'), ('cheap', 1000, 0.5, '');
         SELECT billing_add('a', 100, 'RECHARGE_INC', 'RECHARGE', 'shop', idempotency_key => 'pay-1');
         SELECT billing_add('a', 20, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '30 days');
         SELECT * FROM billing_set_limit('a', 'key:a', 50, 'month', 'Europe/Berlin');
         SELECT billing_deduct('a', 25, 'IMAGE_DEC', 'IMAGE', 'draw', scopes => ARRAY['key:a']);
         SELECT billing_add('b', 3, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_hold('a', 10, 'CHAT_DEC', 'CHAT', 'call-1', ttl => '1 day', scopes => ARRAY['key:a']);
         SELECT billing_settle((billing_hold('b', 1, 'CHAT_DEC', 'CHAT', 'call-2')).hold_id, 0.5);",
    )
    .unwrap();
    let before = snapshot(&mut c);

    let dump = format!("{}/{}.dump", std::env::var("BILLING_CLUSTER_DIR").unwrap(), source);
    let host = std::env::var("PGHOST").unwrap();
    let status = Command::new(tool("pg_dump")).args(["-Fc", "-h", &host, "-f", &dump, &source]).status().unwrap();
    assert!(status.success(), "pg_dump failed");
    let target = format!("{source}_restored");
    connect("postgres").batch_execute(&format!("CREATE DATABASE {target}")).unwrap();
    let output = Command::new(tool("pg_restore")).args(["--exit-on-error", "-h", &host, "-d", &target, &dump]).output().unwrap();
    assert!(output.status.success(), "pg_restore failed: {}", String::from_utf8_lossy(&output.stderr));

    let mut r = connect(&target);
    assert_eq!(snapshot(&mut r), before);
    assert_eq!(ledger_disagreements(&mut r), 0);
    // the restored database keeps working: sequences continue, keys still replay
    let row = r.query_one("SELECT seq, id > (SELECT max(id) FROM billing.account_log) - 1 FROM billing_deduct('a', 5, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap();
    assert_eq!(row.get::<_, i64>(0), 4);
    let max_ids: i64 = r.query_one("SELECT count(DISTINCT id) - count(*) FROM billing.account_log", &[]).unwrap().get(0);
    assert_eq!(max_ids, 0, "entry ids stay unique after restore");
    assert_eq!(text(&mut r, "SELECT seq::text FROM billing_add('a', 100, 'RECHARGE_INC', 'RECHARGE', 'shop', idempotency_key => 'pay-1')"), "1");
    // 'a' still has its open hold of 10, which a release gives back after the restore
    assert_eq!(text(&mut r, "SELECT (billing_power('a') = 80)::text"), "true");
    r.batch_execute("SELECT billing_release(hold_id) FROM billing.holds WHERE user_id = 'a' AND status = 'held'").unwrap();
    assert_eq!(text(&mut r, "SELECT (billing_power('a') = 90)::text"), "true");
    // the limit and its counters came through: the release gave the hold back to it
    assert_eq!(text(&mut r, "SELECT concat_ws('/', spent, held) FROM billing_limits('a')"), "25/0");
    assert_eq!(ledger_disagreements(&mut r), 0);
    let new_hold: i64 = r.query_one("SELECT hold_id FROM billing_hold('b', 1, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap().get(0);
    assert_eq!(new_hold, 3, "the holds sequence continues");
    assert_eq!(text(&mut r, "SELECT billing_price('gpt', 12000)::text"), "36");
}
