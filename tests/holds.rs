//! Holds, settles and refunds over real connections: concurrent settles of one
//! hold, concurrent holds that together ask for more than there is, a failure
//! after a hold in the same transaction, a ttl passing in real time, and
//! concurrent refunds of one entry.

mod common;

use common::*;

#[test]
fn concurrent_settles_of_one_hold_settle_it_once() {
    let db = fresh_database("settle_once");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    let hold: i64 = c.query_one("SELECT hold_id FROM billing_hold('u', 10, 'CHAT_DEC', 'CHAT', 'gpt')", &[]).unwrap().get(0);
    // half settle for 4 (identical repeats), half for other amounts
    let outcomes = on_connections(&db, 8, move |c, n| {
        let actual = if n % 2 == 0 { 4i64 } else { 5 + n as i64 };
        match c.query_one("SELECT id FROM billing_settle($1, $2::bigint::numeric)", &[&hold, &actual]) {
            Ok(row) => (actual, Some(row.get::<_, i64>(0)), "00000".to_owned()),
            Err(e) => (actual, None, sqlstate(Err::<(), _>(e))),
        }
    });
    let winners: Vec<i64> = outcomes.iter().filter(|o| o.1.is_some()).map(|o| o.0).collect();
    let settled_for: i64 = c.query_one("SELECT settled_amount::bigint FROM billing.holds WHERE hold_id = $1", &[&hold]).unwrap().get(0);
    assert!(winners.iter().all(|a| *a == settled_for), "only the winning amount (or its identical repeats) succeeded: {outcomes:?}");
    let entry_ids: std::collections::HashSet<i64> = outcomes.iter().filter_map(|o| o.1).collect();
    assert_eq!(entry_ids.len(), 1, "every success returned the one entry: {outcomes:?}");
    assert!(outcomes.iter().all(|o| o.2 == "00000" || o.2 == "PB004"), "{outcomes:?}");
    let debits: i64 = c.query_one("SELECT count(*) FROM billing.account_log WHERE direction = -1", &[]).unwrap().get(0);
    assert_eq!(debits, 1);
    assert_eq!(power(&mut c, "u"), (100 - settled_for).to_string());
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn concurrent_holds_never_reserve_more_than_there_is() {
    let db = fresh_database("hold_race");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 70, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 30, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day');",
    )
    .unwrap();
    let outcomes = on_connections(&db, 16, |c, _| {
        let mut held = Vec::new();
        for _ in 0..4 {
            match c.query_one("SELECT hold_id FROM billing_hold('u', 3, 'CHAT_DEC', 'CHAT', 'gpt')", &[]) {
                Ok(row) => held.push(row.get::<_, i64>(0)),
                Err(e) => assert_eq!(sqlstate(Err::<(), _>(e)), "PB001"),
            }
        }
        held
    });
    // then settle half of what was held, release the rest
    for (i, hold) in outcomes.iter().flatten().enumerate() {
        let sql = if i % 2 == 0 { "SELECT billing_settle($1, 2)" } else { "SELECT billing_release($1)::text" };
        c.execute(sql, &[hold]).unwrap();
    }
    let outcomes: Vec<usize> = outcomes.iter().map(|h| h.len()).collect();
    let held: usize = outcomes.iter().sum();
    assert_eq!(held, 33, "100 power holds exactly 33 holds of 3 (16 x 4 were asked for)");
    let charged: i64 = c.query_one("SELECT coalesce(sum(amount), 0)::bigint FROM billing.account_log WHERE direction = -1", &[]).unwrap().get(0);
    let settles: i64 = c.query_one("SELECT count(*) FROM billing.holds WHERE status = 'settled'", &[]).unwrap().get(0);
    assert_eq!(charged, 2 * settles);
    assert_eq!(power(&mut c, "u"), (100 - charged).to_string());
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.holds WHERE status = 'held'"), "0");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn a_failure_after_the_hold_leaves_nothing_reserved() {
    let db = fresh_database("hold_rollback");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    let mut tx = c.transaction().unwrap();
    tx.query_one("SELECT hold_id FROM billing_hold('u', 8, 'CHAT_DEC', 'CHAT', 'gpt')", &[]).unwrap();
    assert!(tx.batch_execute("SELECT 1 / 0").is_err(), "the next step fails");
    drop(tx); // rolled back
    assert_eq!(power(&mut c, "u"), "10");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.holds"), "0");
    // and with a savepoint around the failing step, the hold stays until released
    let mut tx = c.transaction().unwrap();
    let hold: i64 = tx.query_one("SELECT hold_id FROM billing_hold('u', 8, 'CHAT_DEC', 'CHAT', 'gpt')", &[]).unwrap().get(0);
    tx.batch_execute("SAVEPOINT step").unwrap();
    assert!(tx.batch_execute("SELECT 1 / 0").is_err());
    tx.batch_execute("ROLLBACK TO SAVEPOINT step").unwrap();
    tx.execute("SELECT billing_release($1, 'step failed')::text", &[&hold]).unwrap();
    tx.commit().unwrap();
    assert_eq!(power(&mut c, "u"), "10");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn a_hold_lapses_when_its_ttl_passes_in_real_time() {
    let db = fresh_database("hold_ttl");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day');",
    )
    .unwrap();
    let hold: i64 = c.query_one("SELECT hold_id FROM billing_hold('u', 12, 'CHAT_DEC', 'CHAT', 'gpt', ttl => '1 second')", &[]).unwrap().get(0);
    assert_eq!(power(&mut c, "u"), "3");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(power(&mut c, "u"), "15", "a lapsed hold reserves nothing, before any write");
    assert_eq!(sqlstate(c.query_one("SELECT id FROM billing_settle($1, 1)", &[&hold])), "PB004");
    assert_eq!(text(&mut c, "SELECT seq::text FROM billing_deduct('u', 15, 'CHAT_DEC', 'CHAT', 'x')"), "3");
    assert_eq!(text(&mut c, &format!("SELECT status FROM billing.holds WHERE hold_id = {hold}")), "expired");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn concurrent_refunds_of_one_entry_never_exceed_it() {
    let db = fresh_database("refund_race");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 10, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day');",
    )
    .unwrap();
    let log_id: i64 = c.query_one("SELECT id FROM billing_deduct('u', 15, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap().get(0);
    let refunded = on_connections(&db, 8, move |c, _| {
        let mut given = 0i64;
        for _ in 0..3 {
            match c.query_one("SELECT amount::bigint FROM billing_refund($1, 1)", &[&log_id]) {
                Ok(row) => given += row.get::<_, i64>(0),
                Err(e) => assert_eq!(sqlstate(Err::<(), _>(e)), "PB005"),
            }
        }
        given
    });
    assert_eq!(refunded.iter().sum::<i64>(), 15, "exactly what the entry took came back");
    assert_eq!(power(&mut c, "u"), "20");
    assert_eq!(text(&mut c, "SELECT sum(remaining)::text FROM billing.grants"), "10");
    assert_eq!(ledger_disagreements(&mut c), 0);
}
