//! The caller's transaction decides: ROLLBACK, ROLLBACK TO SAVEPOINT and a
//! failed statement undo the charge and its ledger entry; a grant stops
//! counting the moment it expires, before any sweep.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn rollback_undoes_the_charge_and_its_entry() {
    let db = fresh_database("rollback");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    c.batch_execute("BEGIN; SELECT billing_deduct('u', 4, 'CHAT_DEC', 'CHAT', 'x'); ROLLBACK;").unwrap();
    assert_eq!(power(&mut c, "u"), "10");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.account_log"), "1");
}

#[test]
fn rollback_to_savepoint_undoes_only_what_came_after_it() {
    let db = fresh_database("savepoint");
    let mut c = connect(&db);
    c.batch_execute(
        "BEGIN;
         SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SAVEPOINT before_chat;
         SELECT billing_deduct('u', 4, 'CHAT_DEC', 'CHAT', 'x');
         ROLLBACK TO SAVEPOINT before_chat;
         SELECT billing_deduct('u', 1, 'PLUGIN_DEC', 'PLUGIN', 'y');
         COMMIT;",
    )
    .unwrap();
    assert_eq!(power(&mut c, "u"), "9");
    assert_eq!(
        text(&mut c, "SELECT string_agg(seq || ':' || account_type, ',' ORDER BY seq) FROM billing.account_log"),
        "1:RECHARGE_INC,2:PLUGIN_DEC"
    );
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn a_failed_deduct_aborts_the_callers_transaction_and_changes_nothing() {
    let db = fresh_database("aborts");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_add('u', 5, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap();
    let state = sqlstate(tx.execute("SELECT billing_deduct('u', 4, 'CHAT_DEC', 'CHAT', 'x')", &[]));
    assert_eq!(state, "PB001");
    // the transaction is aborted: PostgreSQL refuses anything but ROLLBACK
    assert_eq!(sqlstate(tx.execute("SELECT 1", &[])), "25P02");
    drop(tx);
    assert_eq!(power(&mut c, "u"), "5");
}

#[test]
fn a_commit_is_visible_to_other_connections_at_once() {
    let db = fresh_database("visible");
    let mut writer = connect(&db);
    let mut reader = connect(&db);
    writer.batch_execute("SELECT billing_add('u', 7, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    assert_eq!(power(&mut reader, "u"), "7");
    let mut tx = writer.transaction().unwrap();
    tx.execute("SELECT billing_deduct('u', 7, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap();
    assert_eq!(power(&mut reader, "u"), "7", "uncommitted charges are invisible");
    tx.commit().unwrap();
    assert_eq!(power(&mut reader, "u"), "0");
}

#[test]
fn a_grant_stops_counting_when_it_expires_in_real_time() {
    let db = fresh_database("expiry");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 2, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 50, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'trial', expire_at => clock_timestamp() + interval '1 second');",
    )
    .unwrap();
    assert_eq!(power(&mut c, "u"), "52");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(power(&mut c, "u"), "2");
    assert_eq!(text(&mut c, "SELECT billing_has_power('u', 3)::text"), "false");
    assert_eq!(sqlstate(c.execute("SELECT billing_deduct('u', 3, 'CHAT_DEC', 'CHAT', 'x')", &[])), "PB001");
    c.batch_execute("SELECT billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'x')").unwrap();
    assert_eq!(text(&mut c, "SELECT remaining::text FROM billing.grants"), "50", "the expired grant was not touched");
    assert_eq!(text(&mut c, "SELECT detail::text FROM billing.account_log WHERE direction = -1"), r#"{"permanent": 2}"#);
}

#[test]
fn pb_codes_reach_the_client_with_detail() {
    let db = fresh_database("sqlstate");
    let mut c = connect(&db);
    let err = c.execute("SELECT billing_deduct('nobody', 3, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap_err();
    let db_error = err.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "PB001");
    assert_eq!(db_error.detail(), Some("Requested 3, available 0."));
    assert!(db_error.message().contains("insufficient power"));
    assert_eq!(sqlstate(c.execute("SELECT billing_add('u', 1, 'CHAT_DEC', 'CHAT', 'x')", &[])), "PB002");
    assert_eq!(sqlstate(c.execute("SELECT billing_add('u', 0, 'RECHARGE_INC', 'RECHARGE', 'x')", &[])), "22023");
    assert_eq!(sqlstate(c.execute("SELECT billing_add('u', NULL, 'RECHARGE_INC', 'RECHARGE', 'x')", &[])), "22004");
}

#[test]
fn a_write_for_an_account_created_after_the_snapshot_is_a_serialization_failure() {
    // Under REPEATABLE READ and SERIALIZABLE, a deduct (or hold) for a user whose
    // first credit committed after the transaction's snapshot must fail with 40001,
    // which callers retry, not PB001, which they do not.
    let db = fresh_database("rr_new_account");
    for (level, write) in [
        ("REPEATABLE READ", "SELECT billing_deduct('{user}', 5, 'CHAT_DEC', 'CHAT', 'x')"),
        ("SERIALIZABLE", "SELECT billing_deduct('{user}', 5, 'CHAT_DEC', 'CHAT', 'x')"),
        ("REPEATABLE READ", "SELECT billing_hold('{user}', 5, 'CHAT_DEC', 'CHAT', 'x')"),
    ] {
        let user = format!("new-{}-{}", level.replace(' ', "-"), write.len());
        let write = write.replace("{user}", &user);
        let mut a = connect(&db);
        let mut b = connect(&db);
        a.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; SELECT count(*) FROM billing.accounts")).unwrap();
        b.batch_execute(&format!("SELECT billing_add('{user}', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')")).unwrap();
        assert_eq!(sqlstate(a.batch_execute(&write)), "40001", "{level}: {write}");
        a.batch_execute("ROLLBACK").unwrap();
        // retried, the transaction sees the account and succeeds
        a.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}; {write}; COMMIT")).unwrap();
        // an unknown user is still PB001 under every level
        assert_eq!(
            sqlstate(a.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL {level}; SELECT billing_deduct('nobody', 5, 'CHAT_DEC', 'CHAT', 'x')"
            ))),
            "PB001"
        );
        a.batch_execute("ROLLBACK").unwrap();
    }
    assert_eq!(ledger_disagreements(&mut connect(&db)), 0);
}
