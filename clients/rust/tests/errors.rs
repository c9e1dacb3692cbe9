//! Every SQLSTATE of docs/errors.md, provoked for real on the server and
//! mapped to its `BillingError` variant; anything else passes through as `Db`.

mod common;

use common::*;
use pgbilling::tokio_postgres::IsolationLevel;
use pgbilling::{Billing, BillingError, DeductOptions, PeriodEnd, RefundOptions, SettleOptions};

#[tokio::test]
async fn pb001_insufficient_power_with_requested_and_available() {
    let db = fresh_database("pb001").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("90"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let err = b.deduct("alice", dec("1000"), "CHAT_DEC", "CHAT", "chat-8", &Default::default()).await.unwrap_err();
    match &err {
        BillingError::InsufficientPower { requested, available, error } => {
            assert_eq!((*requested, *available), (Some(dec("1000")), Some(dec("90"))));
            assert_eq!(error.detail.as_deref(), Some("Requested 1000, available 90."));
            assert_eq!(error.hint.as_deref(), Some("Add power with billing_add, or deduct less."));
        }
        other => panic!("expected InsufficientPower, got {other:?}"),
    }
    assert_eq!((err.sqlstate(), err.message()), (Some("PB001"), Some("insufficient power for user \"alice\"")));
    assert!(!err.is_retryable());

    let err = b.hold("alice", dec("90.5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::InsufficientPower { requested: Some(r), .. } if r == dec("90.5")), "{err:?}");

    // a settle above its hold: the part above it, and what is available for it
    let hold = b.hold("alice", dec("10"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let err = b.settle(hold.hold_id, dec("100.5"), &SettleOptions::default()).await.unwrap_err();
    match err {
        BillingError::InsufficientPower { requested, available, .. } => {
            assert_eq!((requested, available), (Some(dec("90.5")), Some(dec("80"))));
        }
        other => panic!("expected InsufficientPower, got {other:?}"),
    }

    // a role that may deduct but not read balances does not see `available`
    let role = format!("{db}_charger");
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT EXECUTE ON FUNCTION billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) TO {role};"
        ))
        .await
        .unwrap();
    let charger = connect_as(&db, &role).await;
    let err = Billing::new(&charger)
        .deduct("alice", dec("81"), "CHAT_DEC", "CHAT", "c", &Default::default())
        .await
        .unwrap_err();
    match err {
        BillingError::InsufficientPower { requested, available, error } => {
            assert_eq!((requested, available), (Some(dec("81")), None), "{:?}", error.detail);
        }
        other => panic!("expected InsufficientPower, got {other:?}"),
    }
}

#[tokio::test]
async fn pb002_to_pb005() {
    let db = fresh_database("pb002").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    let err = b.add("u", dec("1"), "CHAT_DEC", "RECHARGE", "o", &Default::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::UnknownType(_)), "{err:?}");
    let err = b.price("claude", 100).await.unwrap_err();
    assert!(matches!(err, BillingError::UnknownType(ref e) if e.message.contains("claude")), "{err:?}");

    b.add("u", dec("100"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let keyed = DeductOptions { idempotency_key: Some("used"), ..Default::default() };
    let entry = b.deduct("u", dec("1"), "CHAT_DEC", "CHAT", "s", &keyed).await.unwrap();
    let err = b.deduct("u", dec("2"), "CHAT_DEC", "CHAT", "s", &keyed).await.unwrap_err();
    assert!(matches!(err, BillingError::IdempotencyConflict(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("PB003"));

    let hold = b.hold("u", dec("5"), "CHAT_DEC", "CHAT", "s", &Default::default()).await.unwrap();
    b.settle(hold.hold_id, dec("3"), &SettleOptions::default()).await.unwrap();
    let err = b.settle(hold.hold_id, dec("4"), &SettleOptions::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::HoldStateError(_)), "{err:?}");
    let err = b.release(hold.hold_id, None).await.unwrap_err();
    assert!(matches!(err, BillingError::HoldStateError(_)), "{err:?}");

    let err = b.refund(entry.id, &RefundOptions { amount: Some(dec("1.5")), ..Default::default() }).await.unwrap_err();
    assert!(matches!(err, BillingError::OverRefund(_)), "{err:?}");
    assert!(err.detail().is_some(), "PB005 says how much can still be refunded");
}

#[tokio::test]
async fn pb006_pb007_the_ledger_and_type_codes_are_fixed() {
    let db = fresh_database("pb006").await;
    let client = connect(&db).await;
    Billing::new(&client).add("u", dec("1"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let err = failing(&client, "UPDATE billing.account_log SET remark = 'x'").await;
    assert!(matches!(err, BillingError::LedgerAppendOnly(_)), "{err:?}");
    let err = failing(&client, "DELETE FROM billing.account_log").await;
    assert_eq!((state(&err), matches!(err, BillingError::LedgerAppendOnly(_))), ("PB006".into(), true));
    let err = failing(&client, "UPDATE billing.account_types SET code = 'Z' WHERE code = 'CHAT_DEC'").await;
    assert!(matches!(err, BillingError::TypeCodeFixed(_)), "{err:?}");
    assert!(err.hint().is_some());
}

#[tokio::test]
async fn pb008_limit_exceeded_with_its_fields() {
    let db = fresh_database("pb008").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("1000"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    b.set_limit("alice", "key:sk-123", Some(dec("100")), Some("day"), None).await.unwrap();
    let scoped = DeductOptions { scopes: Some(&["key:sk-123"]), ..Default::default() };
    b.deduct("alice", dec("96.5"), "CHAT_DEC", "CHAT", "c", &scoped).await.unwrap();
    let err = b.deduct("alice", dec("5"), "CHAT_DEC", "CHAT", "c", &scoped).await.unwrap_err();
    let BillingError::LimitExceeded { scope, cap, spent, held, requested, period_end, error } = err else {
        panic!("expected LimitExceeded, got {err:?}")
    };
    assert_eq!(scope.as_deref(), Some("key:sk-123"));
    assert_eq!((cap, spent, held, requested), (Some(dec("100")), Some(dec("96.5")), Some(dec("0")), Some(dec("5"))));
    let limit = &b.limits("alice").await.unwrap()[0];
    assert_eq!(period_end, Some(PeriodEnd::At(limit.period_end.unwrap())), "{:?}", error.detail);

    // a lifetime cap ends never; a scope with a quote in it comes back whole
    b.set_limit("alice", "key:\"q\"", Some(dec("1")), None, None).await.unwrap();
    let quoted = DeductOptions { scopes: Some(&["key:\"q\""]), ..Default::default() };
    let err = b.deduct("alice", dec("2"), "CHAT_DEC", "CHAT", "c", &quoted).await.unwrap_err();
    let BillingError::LimitExceeded { scope, period_end, .. } = err else { panic!("{err:?}") };
    assert_eq!((scope.as_deref(), period_end), (Some("key:\"q\""), Some(PeriodEnd::Never)));

    // a role that may not execute billing_limits sees only `requested`
    let role = format!("{db}_charger");
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT EXECUTE ON FUNCTION billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) TO {role};"
        ))
        .await
        .unwrap();
    let charger = connect_as(&db, &role).await;
    let err = Billing::new(&charger).deduct("alice", dec("5"), "CHAT_DEC", "CHAT", "c", &scoped).await.unwrap_err();
    let BillingError::LimitExceeded { scope, cap, requested, period_end, .. } = err else { panic!("{err:?}") };
    assert_eq!((scope.as_deref(), cap, requested, period_end), (Some("key:sk-123"), None, Some(dec("5")), None));
}

#[tokio::test]
async fn invalid_null_and_out_of_range_arguments() {
    let db = fresh_database("args").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    let err = b.has_power("u", dec("0")).await.unwrap_err();
    assert!(matches!(err, BillingError::InvalidArgument(ref e) if e.message.starts_with("amount")), "{err:?}");
    let err = b.history("u", Some(0), None).await.unwrap_err();
    assert!(matches!(err, BillingError::InvalidArgument(_)), "{err:?}");

    // The typed methods cannot pass NULL for a required argument; SQL can.
    let err = failing(&client, "SELECT billing_power(NULL)").await;
    assert!(matches!(err, BillingError::NullArgument(ref e) if e.message == "user_id must not be NULL"), "{err:?}");

    // A balance at the edge of what the extension computes in: one more credit is 22003.
    b.add("edge", dec("1"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    client
        .batch_execute("UPDATE billing.accounts SET permanent = 79228162514264337593543950334 WHERE user_id = 'edge'")
        .await
        .unwrap();
    let err = b.add("edge", dec("5"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::OutOfRange(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("22003"));
}

/// What a refused call must leave as it was: the users' power, the ledger, the holds.
async fn billing_state(client: &pgbilling::tokio_postgres::Client) -> String {
    text(
        client,
        "SELECT (SELECT string_agg(user_id || '=' || billing_power(user_id), ' ' ORDER BY user_id) FROM billing.accounts)
             || ' | ' || (SELECT count(*) || ' entries, last ' || coalesce(max(id), 0) FROM billing.account_log)
             || ' | ' || (SELECT coalesce(string_agg(hold_id || ':' || status || ':' || amount, ' ' ORDER BY hold_id), '')
                            FROM billing.holds)",
    )
    .await
}

#[tokio::test]
async fn user_forms_refuse_another_users_hold_or_entry_22023() {
    let db = fresh_database("user_forms").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o-1", &Default::default()).await.unwrap();
    b.add("bob", dec("10"), "RECHARGE_INC", "RECHARGE", "o-2", &Default::default()).await.unwrap();
    let hold = b.hold("alice", dec("30"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let entry = b.deduct("alice", dec("5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let before = billing_state(&client).await;
    assert!(before.starts_with("alice=65 bob=10 | "), "{before}");

    let debt = SettleOptions { allow_debt: true, ..Default::default() };
    let not_bobs = format!("hold_id {} is not a hold of user \"bob\"", hold.hold_id);
    for err in [
        b.user_settle("bob", hold.hold_id, dec("10"), &SettleOptions::default()).await.unwrap_err(),
        b.user_settle("bob", hold.hold_id, dec("0"), &debt).await.unwrap_err(),
        b.user_release("bob", hold.hold_id, Some("not mine")).await.unwrap_err(),
    ] {
        assert!(matches!(err, BillingError::InvalidArgument(ref e) if e.message == not_bobs), "{err:?}");
        assert_eq!(err.sqlstate(), Some("22023"));
    }
    let err = b.user_refund("bob", entry.id, &RefundOptions::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::InvalidArgument(ref e) if e.message.starts_with("log_id")), "{err:?}");
    let err = b.user_settle("nobody", hold.hold_id, dec("1"), &SettleOptions::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::InvalidArgument(_)), "an unknown user: {err:?}");
    assert_eq!(billing_state(&client).await, before, "nothing changed");

    // the hold and the entry are still the owner's to close and refund
    let settled = b.user_settle("alice", hold.hold_id, dec("10"), &SettleOptions::default()).await.unwrap();
    assert_eq!(settled.unwrap().balance_after, dec("85"));
    assert_eq!(b.user_refund("alice", entry.id, &RefundOptions::default()).await.unwrap().balance_after, dec("90"));
}

#[tokio::test]
async fn pb009_citus_unavailable_without_citus() {
    let db = fresh_database("pb009").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("10"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    b.hold("alice", dec("4"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    // the id sequences, which billing_distribute moves on Citus
    let sequences = "SELECT string_agg(sequencename || '=' || coalesce(last_value::text, '-'), ' ')
                       FROM (SELECT * FROM pg_sequences WHERE schemaname = 'billing' ORDER BY sequencename) AS s";
    let before = (billing_state(&client).await, text(&client, sequences).await);

    let err = b.distribute().await.unwrap_err();
    let BillingError::CitusUnavailable(ref error) = err else { panic!("expected CitusUnavailable, got {err:?}") };
    assert_eq!(
        error.message,
        "billing_distribute needs Citus, and the citus extension is not installed in this database"
    );
    assert!(error.hint.as_deref().is_some_and(|h| h.contains("CREATE EXTENSION citus")), "{:?}", error.hint);
    assert_eq!(err.sqlstate(), Some("PB009"));
    assert!(!err.is_retryable());
    assert_eq!((billing_state(&client).await, text(&client, sequences).await), before, "nothing changed");
    assert_eq!(text(&client, "SELECT count(*)::text FROM pg_extension WHERE extname = 'citus'").await, "0");

    // PUBLIC may not execute it
    let role = format!("{db}_stranger");
    client.batch_execute(&format!("CREATE ROLE {role} LOGIN")).await.unwrap();
    let stranger = connect_as(&db, &role).await;
    let err = Billing::new(&stranger).distribute().await.unwrap_err();
    assert!(matches!(err, BillingError::InsufficientPrivilege(_)), "{err:?}");
}

#[tokio::test]
async fn charging_trigger_misuse_42703_and_39p01() {
    let db = fresh_database("triggers").await;
    let client = connect(&db).await;
    client
        .batch_execute(
            "CREATE TABLE tasks (task_no text PRIMARY KEY, user_id text NOT NULL);
             CREATE TRIGGER charge AFTER INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION billing_charge(
                 'user_column=usr', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT',
                 'source=report', 'association_column=task_no');
             CREATE TABLE jobs (job_no text PRIMARY KEY, user_id text NOT NULL);
             CREATE TRIGGER charge BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION billing_charge(
                 'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT',
                 'source=report', 'association_column=job_no');",
        )
        .await
        .unwrap();
    let err = failing(&client, "INSERT INTO tasks VALUES ('t-1', 'alice')").await;
    assert!(matches!(err, BillingError::UndefinedColumn(ref e) if e.message.contains("usr")), "{err:?}");
    let err = failing(&client, "INSERT INTO jobs VALUES ('j-1', 'alice')").await;
    assert!(matches!(err, BillingError::TriggerProtocolViolated(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("39P01"));
}

#[tokio::test]
async fn insufficient_privilege_42501() {
    let db = fresh_database("privilege").await;
    let client = connect(&db).await;
    let role = format!("{db}_stranger");
    client.batch_execute(&format!("CREATE ROLE {role} LOGIN")).await.unwrap();
    let stranger = connect_as(&db, &role).await;
    let err = Billing::new(&stranger).power("alice").await.unwrap_err();
    assert!(
        matches!(err, BillingError::InsufficientPrivilege(ref e) if e.message.contains("billing_power")),
        "{err:?}"
    );
    // billing_metrics_reset checks the caller is a superuser, whatever EXECUTE says
    client.batch_execute(&format!("GRANT EXECUTE ON FUNCTION billing_metrics_reset() TO {role}")).await.unwrap();
    let err = Billing::new(&stranger).metrics_reset().await.unwrap_err();
    assert!(matches!(err, BillingError::InsufficientPrivilege(_)), "{err:?}");
}

#[tokio::test]
async fn serialization_failure_40001_for_an_account_created_after_the_snapshot() {
    let db = fresh_database("s40001").await;
    let mut a = connect(&db).await;
    let other = connect(&db).await;
    let tx = a.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await.unwrap();
    assert_eq!(Billing::new(&tx).power("new").await.unwrap(), dec("0")); // the snapshot is taken
    Billing::new(&other).add("new", dec("10"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let err =
        Billing::new(&tx).deduct("new", dec("5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap_err();
    assert!(matches!(err, BillingError::SerializationFailure(_)), "{err:?}");
    assert!(err.is_retryable());
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn deadlock_40p01_between_two_connections() {
    let db = fresh_database("s40p01").await;
    let mut a = connect(&db).await;
    let mut b = connect(&db).await;
    let setup = Billing::new(&a);
    for user in ["u1", "u2"] {
        setup.add(user, dec("10"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    }
    let ta = a.transaction().await.unwrap();
    let tb = b.transaction().await.unwrap();
    let (ba, bb) = (Billing::new(&ta), Billing::new(&tb));
    ba.deduct("u1", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    bb.deduct("u2", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    // each now waits for the row the other holds: the server picks a victim
    let none = DeductOptions::default();
    let (ra, rb) = tokio::join!(
        ba.deduct("u2", dec("1"), "CHAT_DEC", "CHAT", "c", &none),
        bb.deduct("u1", dec("1"), "CHAT_DEC", "CHAT", "c", &none),
    );
    let errors: Vec<BillingError> = [ra, rb].into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(errors[0], BillingError::Deadlock(_)), "{errors:?}");
    assert!(errors[0].is_retryable());
}

#[tokio::test]
async fn dependent_objects_2bp01_when_dropping_a_ledger_with_entries() {
    let db = fresh_database("s2bp01").await;
    let client = connect(&db).await;
    Billing::new(&client).add("u", dec("1"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let err = failing(&client, "DROP EXTENSION billing").await;
    assert!(matches!(err, BillingError::DependentObjects(_)), "{err:?}");
    assert_eq!(Billing::new(&client).power("u").await.unwrap(), dec("1"), "still there");
}

#[tokio::test]
async fn any_other_error_passes_through_unchanged() {
    let db = fresh_database("other").await;
    let mut client = connect(&db).await;
    let holder = connect(&db).await;
    Billing::new(&client).add("u", dec("10"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    // another transaction holds the user's row; with a lock_timeout the deduct fails with 55P03
    let mut holder_client = holder;
    let htx = holder_client.transaction().await.unwrap();
    Billing::new(&htx).deduct("u", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL lock_timeout = '100ms'").await.unwrap();
    let err = Billing::new(&tx).deduct("u", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap_err();
    let BillingError::Db(ref cause) = err else { panic!("expected Db, got {err:?}") };
    assert_eq!(cause.code().map(|c| c.code()), Some("55P03"));
    assert_eq!(err.sqlstate(), Some("55P03"));
    assert!(err.server_error().is_none());
    drop(tx);
    htx.rollback().await.unwrap();

    let err = failing(&client, "SELECT * FROM no_such_table").await;
    assert!(matches!(err, BillingError::Db(_)), "{err:?}");
    assert_eq!(err.sqlstate(), Some("42P01"));
}
