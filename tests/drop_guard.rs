//! Dropping the extension refuses (2BP01) while the ledger holds entries, by
//! every path that drops it: DROP EXTENSION, DROP EXTENSION ... CASCADE, DROP
//! SCHEMA ... CASCADE of the extension's schema, DROP OWNED BY its owner. It goes
//! through when `billing.allow_drop` is turned on in the same transaction, and
//! freely when the ledger is empty. Each refusal is checked on a connection that
//! has never called a billing function (the library is not loaded yet), and on
//! one that has.

mod common;

use common::*;

fn extension_exists(c: &mut Client) -> bool {
    text(c, "SELECT count(*)::text FROM pg_extension WHERE extname = 'billing'") == "1"
}

/// Runs `statement` and expects the drop guard's refusal, with a message, detail and hint that say what to do.
fn refused(c: &mut Client, statement: &str) {
    let error = c.batch_execute(statement).expect_err(statement);
    let db = error.as_db_error().unwrap_or_else(|| panic!("{statement}: {error}"));
    assert_eq!(db.code().code(), "2BP01", "{statement}: {db:?}");
    assert!(db.message().contains("billing.account_log holds entries"), "{statement}: {}", db.message());
    let hint = db.hint().unwrap_or_default();
    assert!(hint.contains("pg_dump") && hint.contains("SET LOCAL billing.allow_drop = on"), "{statement}: {hint}");
    c.batch_execute("ROLLBACK").ok();
}

/// A fresh database whose extension has a ledger entry (user u with 10 power).
fn with_ledger(test: &str) -> String {
    let db = fresh_database(test);
    connect(&db).batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    db
}

#[test]
fn drop_extension_refuses_while_the_ledger_holds_entries() {
    let db = with_ledger("drop_ext");
    for statement in ["DROP EXTENSION billing", "DROP EXTENSION billing CASCADE", "DROP EXTENSION IF EXISTS billing RESTRICT"] {
        // a new connection: the library is not loaded until the event trigger loads it
        refused(&mut connect(&db), statement);
        // a connection that has used the extension
        let mut c = connect(&db);
        assert_eq!(power(&mut c, "u"), "10");
        refused(&mut c, statement);
    }
    // also inside a transaction that wrote the only entry
    let empty = fresh_database("drop_ext_own");
    let mut c = connect(&empty);
    refused(
        &mut c,
        "BEGIN; SELECT billing_add('v', 1, 'RECHARGE_INC', 'RECHARGE', 'shop'); DROP EXTENSION billing;",
    );
    let mut c = connect(&db);
    assert!(extension_exists(&mut c));
    assert_eq!(power(&mut c, "u"), "10");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn the_setting_counts_only_in_the_transaction_that_drops() {
    let db = with_ledger("drop_setting");
    // turned on in an earlier transaction of the session: before and after the library was loaded
    let mut c = connect(&db);
    c.batch_execute("SET billing.allow_drop = on").unwrap();
    refused(&mut c, "DROP EXTENSION billing");
    refused(&mut c, "DROP EXTENSION billing");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_power('u'); SET billing.allow_drop = on").unwrap();
    refused(&mut c, "DROP EXTENSION billing");
    // turned on, then off again, in the same transaction
    refused(&mut connect(&db), "BEGIN; SET LOCAL billing.allow_drop = on; SET LOCAL billing.allow_drop = off; DROP EXTENSION billing;");
    // only a superuser may turn it on
    let role = format!("{db}_app");
    let mut c = connect(&db);
    c.batch_execute(&format!("SELECT billing_power('u'); CREATE ROLE {role}")).unwrap();
    assert_eq!(sqlstate(c.batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}; SET LOCAL billing.allow_drop = on;"))), "42501");
    c.batch_execute(&format!("ROLLBACK; DROP ROLE {role}")).unwrap();
    assert!(extension_exists(&mut c));
    // SET LOCAL in the transaction that drops, on a connection that never loaded the library
    connect(&db)
        .batch_execute("BEGIN; SET LOCAL billing.allow_drop = on; DROP EXTENSION billing; COMMIT;")
        .unwrap();
    let mut c = connect(&db);
    assert!(!extension_exists(&mut c));
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM pg_event_trigger WHERE evtname = 'billing_guard_drop'"), "0");
    // and on a connection that had: a plain SET inside the transaction counts too
    let db = with_ledger("drop_setting_loaded");
    let mut c = connect(&db);
    c.batch_execute("SELECT billing_power('u'); BEGIN; SET billing.allow_drop = on; DROP EXTENSION billing CASCADE; COMMIT;")
        .unwrap();
    assert!(!extension_exists(&mut c));
}

#[test]
fn an_empty_ledger_drops_freely() {
    let db = fresh_database("drop_empty");
    let mut c = connect(&db);
    // balances without entries (a low-balance threshold) do not count as a ledger
    c.batch_execute("SELECT billing_set_low_balance('u', 5)").unwrap();
    c.batch_execute("DROP EXTENSION billing").unwrap();
    assert!(!extension_exists(&mut c));
    // a new connection, and a schema of its own dropped with CASCADE
    c.batch_execute("CREATE SCHEMA own; CREATE EXTENSION billing SCHEMA own").unwrap();
    connect(&db).batch_execute("DROP SCHEMA own CASCADE").unwrap();
    assert!(!extension_exists(&mut c));
    // entries written and rolled back leave nothing to keep
    c.batch_execute("CREATE EXTENSION billing").unwrap();
    c.batch_execute("BEGIN; SELECT billing_add('u', 1, 'RECHARGE_INC', 'RECHARGE', 'shop'); ROLLBACK;").unwrap();
    c.batch_execute("DROP EXTENSION billing CASCADE").unwrap();
    assert!(!extension_exists(&mut c));
}

#[test]
fn drop_schema_cascade_refuses_while_the_ledger_holds_entries() {
    let db = fresh_database("drop_schema");
    let mut c = connect(&db);
    c.batch_execute(
        "DROP EXTENSION billing;
         CREATE SCHEMA app_billing;
         CREATE EXTENSION billing SCHEMA app_billing;
         SELECT app_billing.billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');",
    )
    .unwrap();
    refused(&mut connect(&db), "DROP SCHEMA app_billing CASCADE");
    refused(&mut c, "DROP SCHEMA app_billing CASCADE");
    // the schema billing belongs to the extension: PostgreSQL refuses to drop it on its own
    assert_eq!(sqlstate(connect(&db).batch_execute("DROP SCHEMA billing CASCADE")), "2BP01");
    assert!(extension_exists(&mut c));
    assert_eq!(text(&mut c, "SELECT app_billing.billing_power('u')::text"), "10");
    connect(&db)
        .batch_execute("BEGIN; SET LOCAL billing.allow_drop = on; DROP SCHEMA app_billing CASCADE; COMMIT;")
        .unwrap();
    assert!(!extension_exists(&mut c));
}

#[test]
fn drop_owned_by_the_owner_refuses_while_the_ledger_holds_entries() {
    let db = fresh_database("drop_owned");
    let owner = format!("{db}_owner");
    let mut c = connect(&db);
    c.batch_execute(&format!(
        "DROP EXTENSION billing;
         CREATE ROLE {owner} SUPERUSER;
         SET ROLE {owner};
         CREATE EXTENSION billing;
         RESET ROLE;
         SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');"
    ))
    .unwrap();
    assert_eq!(text(&mut c, "SELECT extowner::regrole::text FROM pg_extension WHERE extname = 'billing'"), owner);
    refused(&mut connect(&db), &format!("DROP OWNED BY {owner}"));
    refused(&mut c, &format!("DROP OWNED BY {owner} CASCADE"));
    assert!(extension_exists(&mut c));
    connect(&db)
        .batch_execute(&format!("BEGIN; SET LOCAL billing.allow_drop = on; DROP OWNED BY {owner} CASCADE; COMMIT;"))
        .unwrap();
    assert!(!extension_exists(&mut c));
    c.batch_execute(&format!("DROP ROLE {owner}")).unwrap();
}

#[test]
fn the_charging_triggers_of_application_tables_are_not_dropped_silently() {
    let db = fresh_database("drop_triggers");
    let mut c = connect(&db);
    c.batch_execute(
        "CREATE TABLE tasks (task_no text PRIMARY KEY, user_id text NOT NULL, cost numeric NOT NULL);
         CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON tasks FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC',
                                         'source_type=CHAT', 'source=tasks', 'association_column=task_no');
         SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
         INSERT INTO tasks VALUES ('t1', 'u', 2);",
    )
    .unwrap();
    assert_eq!(power(&mut c, "u"), "8");
    // without CASCADE PostgreSQL itself names the triggers; with CASCADE the guard refuses
    assert_eq!(sqlstate(connect(&db).batch_execute("DROP EXTENSION billing")), "2BP01");
    refused(&mut connect(&db), "DROP EXTENSION billing CASCADE");
    refused(&mut c, "DROP EXTENSION billing CASCADE");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM pg_trigger WHERE tgrelid = 'tasks'::regclass AND tgname = 'charge'"), "1");
    c.batch_execute("INSERT INTO tasks VALUES ('t2', 'u', 3)").unwrap();
    assert_eq!(power(&mut c, "u"), "5", "the table is still charged");
    assert_eq!(ledger_disagreements(&mut c), 0);
}
