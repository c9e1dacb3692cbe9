//! Each connection caches the type codes it has found valid (src/ledger.rs).
//! The cache never outlives the truth: a code added and rolled back (whole
//! transaction or savepoint) is refused afterwards in the same connection, a
//! code added again with the other direction has its new direction, and a
//! change committed by another connection reaches this one. billing_verify
//! reports an entry whose code is unknown or of the other direction.

mod common;

use common::*;

fn fails_with(c: &mut Client, statement: &str) -> String {
    sqlstate(c.batch_execute(statement))
}

/// (check, actual) of billing_verify's findings, in order.
fn findings(c: &mut Client) -> Vec<(String, String)> {
    c.query("SELECT \"check\", actual FROM billing_verify() ORDER BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn a_rolled_back_type_code_is_not_used_afterwards() {
    let db = fresh_database("cache_rollback");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();

    // an account type, used inside the transaction that adds it, then rolled back
    c.batch_execute(
        "BEGIN;
         INSERT INTO billing.account_types (code, direction) VALUES ('GHOST_INC', 1);
         SELECT billing_add('u', 1, 'GHOST_INC', 'RECHARGE', 'x');
         ROLLBACK;",
    )
    .unwrap();
    assert_eq!(fails_with(&mut c, "SELECT billing_add('u', 1, 'GHOST_INC', 'RECHARGE', 'x')"), "PB002");

    // a source type, likewise
    c.batch_execute(
        "BEGIN;
         INSERT INTO billing.source_types (code) VALUES ('GHOST');
         SELECT billing_deduct('u', 1, 'CHAT_DEC', 'GHOST', 'x');
         ROLLBACK;",
    )
    .unwrap();
    assert_eq!(fails_with(&mut c, "SELECT billing_deduct('u', 1, 'CHAT_DEC', 'GHOST', 'x')"), "PB002");

    // a savepoint rolled back: the code is gone for the rest of the transaction
    c.batch_execute(
        "BEGIN;
         SAVEPOINT s;
         INSERT INTO billing.account_types (code, direction) VALUES ('SPIRIT_DEC', -1);
         SELECT billing_hold('u', 1, 'SPIRIT_DEC', 'CHAT', 'x');
         ROLLBACK TO SAVEPOINT s;",
    )
    .unwrap();
    assert_eq!(fails_with(&mut c, "SELECT billing_deduct('u', 1, 'SPIRIT_DEC', 'CHAT', 'x')"), "PB002");
    c.batch_execute("ROLLBACK").unwrap();

    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.account_log"), "1");
    assert_eq!(power(&mut c, "u"), "100");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn a_code_added_again_with_the_other_direction_has_its_new_direction() {
    let db = fresh_database("cache_direction");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    c.batch_execute(
        "BEGIN;
         INSERT INTO billing.account_types (code, direction) VALUES ('FLIP', 1);
         SELECT billing_add('u', 1, 'FLIP', 'RECHARGE', 'x');
         ROLLBACK;
         INSERT INTO billing.account_types (code, direction) VALUES ('FLIP', -1);",
    )
    .unwrap();
    assert_eq!(fails_with(&mut c, "SELECT billing_add('u', 1, 'FLIP', 'RECHARGE', 'x')"), "PB002");
    assert_eq!(fails_with(&mut c, "SELECT billing_deduct('u', 1, 'FLIP', 'CHAT', 'x')"), "00000");
    assert_eq!(power(&mut c, "u"), "99");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn a_change_committed_elsewhere_reaches_a_connection_that_cached_the_code() {
    let db = fresh_database("cache_other");
    let mut dba = connect(&db);
    let mut app = connect(&db);
    dba.batch_execute("INSERT INTO billing.account_types (code, direction) VALUES ('ECHO_INC', 1)").unwrap();
    // the application's connection finds the code valid, and remembers it
    app.batch_execute("SELECT billing_add('u', 5, 'ECHO_INC', 'RECHARGE', 'x')").unwrap();
    assert_eq!(ledger_disagreements(&mut app), 0);
    // the guard does not fire under session_replication_role = replica (as in a
    // logical replication worker): the row goes, and the ledger names a code no table has
    dba.batch_execute(
        "SET session_replication_role = replica;
         DELETE FROM billing.account_types WHERE code = 'ECHO_INC';
         RESET session_replication_role;",
    )
    .unwrap();
    assert_eq!(fails_with(&mut app, "SELECT billing_add('u', 5, 'ECHO_INC', 'RECHARGE', 'x')"), "PB002");
    assert_eq!(power(&mut app, "u"), "5");
    assert_eq!(
        findings(&mut app),
        vec![("entry 1 account_type".to_string(), "ECHO_INC (unknown)".to_string())]
    );
    // a code whose direction was turned around the same way: the cache and billing_verify see it
    dba.batch_execute("INSERT INTO billing.account_types (code, direction) VALUES ('TURN_INC', 1)").unwrap();
    app.batch_execute("SELECT billing_add('u', 1, 'TURN_INC', 'RECHARGE', 'x')").unwrap();
    dba.batch_execute(
        "SET session_replication_role = replica;
         UPDATE billing.account_types SET direction = -1 WHERE code = 'TURN_INC';
         RESET session_replication_role;",
    )
    .unwrap();
    assert_eq!(fails_with(&mut app, "SELECT billing_add('u', 1, 'TURN_INC', 'RECHARGE', 'x')"), "PB002");
    assert_eq!(
        findings(&mut app),
        vec![
            ("entry 1 account_type".to_string(), "ECHO_INC (unknown)".to_string()),
            ("entry 2 account_type".to_string(), "TURN_INC (direction -1)".to_string()),
        ]
    );
}
