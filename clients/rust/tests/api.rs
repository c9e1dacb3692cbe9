//! Every method of `Billing`, called on a real server, its result checked.

mod common;

use std::time::Duration;

use common::*;
use pgbilling::serde_json::json;
use pgbilling::{AddOptions, Billing, DeductOptions, HoldOptions, HoldStatus, RefundOptions, SettleOptions};

#[tokio::test]
async fn power_add_deduct_and_their_options() {
    let db = fresh_database("add_deduct").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);

    assert_eq!(b.power("alice").await.unwrap(), dec("0"), "an unknown user has 0");
    let first = b
        .add(
            "alice",
            dec("100"),
            "RECHARGE_INC",
            "RECHARGE",
            "order-1001",
            &AddOptions { idempotency_key: Some("order-1001"), remark: Some("first"), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!((first.seq, first.direction, first.amount, first.balance_after), (1, 1, dec("100"), dec("100")));
    let funding = first.funding();
    assert_eq!((funding.permanent, funding.grants.len(), funding.hold), (Some(dec("100")), 0, None));
    assert_eq!((first.remark.as_deref(), first.idempotency_key.as_deref()), (Some("first"), Some("order-1001")));
    assert_eq!(first.user_id, "alice");

    let expire_at = pgbilling::chrono::Utc::now() + pgbilling::chrono::Duration::days(30);
    let gift = b
        .add(
            "alice",
            dec("30"),
            "MEMBERSHIP_GIFT_INC",
            "MEMBERSHIP_GIFT",
            "vip-monthly",
            &AddOptions {
                expire_at: Some(expire_at),
                subscription_id: Some("sub-42"),
                association_no: Some("plan-1"),
                association_user_id: Some("bob"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(gift.balance_after, dec("130"));
    assert_eq!(gift.subscription_id.as_deref(), Some("sub-42"));
    assert_eq!(gift.association_user_id.as_deref(), Some("bob"));
    let expire_micros = gift.expire_at.unwrap().timestamp_micros();
    assert_eq!(expire_micros, expire_at.timestamp_micros(), "the expiry round-trips exactly");
    let grants = gift.funding().grants;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].1, dec("30"));

    assert!(b.has_power("alice", dec("130")).await.unwrap());
    assert!(!b.has_power("alice", dec("130.00000001")).await.unwrap());

    let opts = DeductOptions {
        idempotency_key: Some("chat-7-msg-1"),
        association_no: Some("task-7"),
        scopes: Some(&["model:gpt-4o", "key:sk-123"]),
        ..Default::default()
    };
    let spent = b.deduct("alice", dec("40"), "CHAT_DEC", "CHAT", "chat-7", &opts).await.unwrap();
    assert_eq!((spent.direction, spent.amount, spent.balance_after), (-1, dec("40"), dec("90")));
    let funding = spent.funding();
    assert_eq!((funding.grants[0].1, funding.permanent), (dec("30"), Some(dec("10"))), "the grant is spent first");
    assert_eq!(spent.scopes, Some(vec!["key:sk-123".to_string(), "model:gpt-4o".to_string()]), "sorted");
    let again = b.deduct("alice", dec("40"), "CHAT_DEC", "CHAT", "chat-7", &opts).await.unwrap();
    assert_eq!(again, spent, "a keyed repeat returns the same entry");
    assert_eq!(b.power("alice").await.unwrap(), dec("90"));

    // exact amounts, at the edge of the precision the extension takes
    let big = dec("999999999999.99999999");
    let credit = b.add("alice", big, "RECHARGE_INC", "RECHARGE", "big", &Default::default()).await.unwrap();
    assert_eq!(credit.balance_after, dec("1000000000089.99999999"));
    let debit = b.deduct("alice", big, "CHAT_DEC", "CHAT", "big", &Default::default()).await.unwrap();
    assert_eq!(debit.balance_after, dec("90"));

    // the options-object forms
    let added = b
        .add_with_options(&json!({"userId": "carol", "amount": "12.5", "accountType": "RECHARGE_INC",
                                  "source": {"type": "RECHARGE", "source": "order-9"}, "idempotencyKey": "o-9"}))
        .await
        .unwrap();
    assert_eq!((added.user_id.as_str(), added.amount, added.balance_after), ("carol", dec("12.5"), dec("12.5")));
    let number: pgbilling::serde_json::Value = pgbilling::serde_json::from_str(
        r#"{"userId": "carol", "amount": 2.00000001, "accountType": "CHAT_DEC",
            "source": {"type": "CHAT", "source": "chat-1"}, "scopes": ["key:a"]}"#,
    )
    .unwrap();
    let deducted = b.deduct_with_options(&number).await.unwrap();
    assert_eq!((deducted.amount, deducted.balance_after), (dec("2.00000001"), dec("10.49999999")));
    assert_eq!(deducted.scopes, Some(vec!["key:a".to_string()]));
}

#[tokio::test]
async fn hold_settle_release_refund() {
    let db = fresh_database("holds").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "order-1", &Default::default()).await.unwrap();

    let hold = b
        .hold(
            "alice",
            dec("50"),
            "AGENT_CHAT_DEC",
            "AGENT_CHAT",
            "gpt-4",
            &HoldOptions {
                ttl: Some(Duration::from_secs(300)),
                idempotency_key: Some("task-7"),
                association_no: Some("task-7"),
                remark: Some("agent run"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((hold.status.clone(), hold.amount), (HoldStatus::Held, dec("50")));
    assert_eq!((hold.expires_at - hold.created_at).num_seconds(), 300, "ttl arrives as an exact interval");
    assert_eq!(hold.funding().permanent, Some(dec("50")));
    assert_eq!(b.power("alice").await.unwrap(), dec("50"));

    let entry = b.settle(hold.hold_id, dec("12.5"), &SettleOptions::default()).await.unwrap().unwrap();
    assert_eq!((entry.amount, entry.balance_after), (dec("12.5"), dec("87.5")));
    assert_eq!(entry.funding().hold, Some(hold.hold_id));
    assert_eq!(entry.remark.as_deref(), Some("agent run"), "the hold's remark");
    let repeat = b.settle(hold.hold_id, dec("12.5"), &SettleOptions::default()).await.unwrap().unwrap();
    assert_eq!(repeat.id, entry.id, "the same settle again returns the same entry");

    let zero = b.hold("alice", dec("5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    assert_eq!(b.settle(zero.hold_id, dec("0"), &SettleOptions::default()).await.unwrap(), None, "0 releases");

    let released = b.hold("alice", dec("20"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let after = b.release(released.hold_id, Some("upstream timeout")).await.unwrap();
    assert_eq!((after.status, after.reason.as_deref()), (HoldStatus::Released, Some("upstream timeout")));
    assert_eq!(b.power("alice").await.unwrap(), dec("87.5"));
    let after = b.release(released.hold_id, None).await.unwrap();
    assert_eq!(after.status, HoldStatus::Released, "a repeated release returns the hold");

    // settling above the hold with allow_debt and a remark
    let small = b.hold("alice", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let debt = b
        .settle(small.hold_id, dec("90"), &SettleOptions { remark: Some("overrun"), allow_debt: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((debt.amount, debt.balance_after, debt.remark.as_deref()), (dec("90"), dec("-2.5"), Some("overrun")));
    assert_eq!(b.power("alice").await.unwrap(), dec("-2.5"));

    // refunds: part, then the rest, of the 12.5 settle
    let part = b
        .refund(
            entry.id,
            &RefundOptions { amount: Some(dec("2.5")), remark: Some("partial"), idempotency_key: Some("rf-1") },
        )
        .await
        .unwrap();
    assert_eq!((part.amount, part.refund_of, part.account_type.as_str()), (dec("2.5"), Some(entry.id), "REFUND_INC"));
    let rest = b.refund(entry.id, &RefundOptions::default()).await.unwrap();
    assert_eq!((rest.amount, rest.balance_after), (dec("10"), dec("10")));
}

#[tokio::test]
async fn user_forms_of_settle_release_refund() {
    let db = fresh_database("user_forms").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "order-1", &Default::default()).await.unwrap();

    // each user form returns exactly what the id-only form returns for the same call
    let remark = HoldOptions { remark: Some("agent run"), ..Default::default() };
    let hold = b.hold("alice", dec("50"), "AGENT_CHAT_DEC", "AGENT_CHAT", "gpt-4", &remark).await.unwrap();
    assert_eq!(b.power("alice").await.unwrap(), dec("50"));
    let entry = b.user_settle("alice", hold.hold_id, dec("12.5"), &SettleOptions::default()).await.unwrap().unwrap();
    assert_eq!((entry.user_id.as_str(), entry.amount, entry.balance_after), ("alice", dec("12.5"), dec("87.5")));
    assert_eq!((entry.funding().hold, entry.remark.as_deref()), (Some(hold.hold_id), Some("agent run")));
    let by_id = b.settle(hold.hold_id, dec("12.5"), &SettleOptions::default()).await.unwrap().unwrap();
    assert_eq!(by_id, entry, "settle of the same hold returns the same entry");
    assert_eq!(b.power("alice").await.unwrap(), dec("87.5"));

    let zero = b.hold("alice", dec("5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    assert_eq!(b.power("alice").await.unwrap(), dec("82.5"));
    assert_eq!(b.user_settle("alice", zero.hold_id, dec("0"), &SettleOptions::default()).await.unwrap(), None);
    assert_eq!(b.settle(zero.hold_id, dec("0"), &SettleOptions::default()).await.unwrap(), None, "0 releases");
    assert_eq!(b.power("alice").await.unwrap(), dec("87.5"));

    let held = b.hold("alice", dec("20"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    assert_eq!(b.power("alice").await.unwrap(), dec("67.5"));
    let released = b.user_release("alice", held.hold_id, Some("upstream timeout")).await.unwrap();
    assert_eq!((released.status.clone(), released.reason.as_deref()), (HoldStatus::Released, Some("upstream timeout")));
    assert_eq!((released.hold_id, released.user_id.as_str()), (held.hold_id, "alice"));
    assert_eq!(b.release(held.hold_id, Some("upstream timeout")).await.unwrap(), released, "the same hold");
    assert_eq!(b.user_release("alice", held.hold_id, None).await.unwrap(), released, "a repeat returns the hold");
    assert_eq!(b.power("alice").await.unwrap(), dec("87.5"));

    let part = RefundOptions { amount: Some(dec("2.5")), remark: Some("partial"), idempotency_key: Some("rf-1") };
    let refunded = b.user_refund("alice", entry.id, &part).await.unwrap();
    assert_eq!(
        (refunded.amount, refunded.refund_of, refunded.account_type.as_str()),
        (dec("2.5"), Some(entry.id), "REFUND_INC")
    );
    assert_eq!((refunded.balance_after, refunded.remark.as_deref()), (dec("90"), Some("partial")));
    assert_eq!(b.refund(entry.id, &part).await.unwrap(), refunded, "the keyed refund by id returns the same entry");
    let rest = b.user_refund("alice", entry.id, &RefundOptions::default()).await.unwrap();
    assert_eq!((rest.amount, rest.balance_after), (dec("10"), dec("100")));
    assert_eq!(b.power("alice").await.unwrap(), dec("100"));

    // settling above the hold with allow_debt and a remark
    let small = b.hold("alice", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let debt_options = SettleOptions { remark: Some("overrun"), allow_debt: true };
    let debt = b.user_settle("alice", small.hold_id, dec("101"), &debt_options).await.unwrap().unwrap();
    assert_eq!((debt.amount, debt.balance_after, debt.remark.as_deref()), (dec("101"), dec("-1"), Some("overrun")));
    assert_eq!(b.settle(small.hold_id, dec("101"), &debt_options).await.unwrap().unwrap(), debt);
    assert_eq!(b.power("alice").await.unwrap(), dec("-1"));
    assert!(b.verify(Some("alice")).await.unwrap().is_empty());
}

#[tokio::test]
async fn reports_verify_price_and_adjust() {
    let db = fresh_database("reports").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    client
        .batch_execute("INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('gpt', 1000, 3)")
        .await
        .unwrap();
    let first = b.add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o-1", &Default::default()).await.unwrap();
    let opts = DeductOptions { association_no: Some("task-7"), ..Default::default() };
    b.deduct("alice", dec("30"), "CHAT_DEC", "CHAT", "chat-7", &opts).await.unwrap();
    b.deduct("alice", dec("5.25"), "PLUGIN_DEC", "PLUGIN", "plugin-1", &opts).await.unwrap();
    b.deduct("alice", dec("1"), "CHAT_DEC", "CHAT", "chat-8", &Default::default()).await.unwrap();

    let page = b.history("alice", Some(2), None).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 3], "newest first");
    let next = b.history("alice", Some(2), Some(page[1].seq)).await.unwrap();
    assert_eq!(next.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(b.history("alice", None, None).await.unwrap().len(), 4);
    assert!(b.history("nobody", None, None).await.unwrap().is_empty());

    let task = b.by_association("alice", "task-7").await.unwrap();
    assert_eq!(task.iter().map(|e| e.account_type.as_str()).collect::<Vec<_>>(), ["CHAT_DEC", "PLUGIN_DEC"]);

    let from = first.created_at - pgbilling::chrono::Duration::hours(1);
    let to = first.created_at + pgbilling::chrono::Duration::hours(1);
    let statement = b.statement("alice", from, to).await.unwrap();
    let total = statement.last().unwrap();
    assert_eq!(total.account_type, None, "the total row comes last");
    assert_eq!((total.entries, total.credited, total.debited, total.net), (4, dec("100"), dec("36.25"), dec("63.75")));
    assert_eq!((total.opening_balance, total.closing_balance), (dec("0"), dec("63.75")));
    let chat = statement.iter().find(|r| r.account_type.as_deref() == Some("CHAT_DEC")).unwrap();
    assert_eq!((chat.entries, chat.debited), (2, dec("31")));

    assert_eq!(b.price("gpt", 12000).await.unwrap(), dec("36"));
    assert_eq!(b.price("gpt", 1001).await.unwrap(), dec("4"));

    let up = b.adjust("alice", dec("12"), "ticket 4411", None).await.unwrap();
    assert_eq!((up.account_type.as_str(), up.balance_after), ("SYSTEM_MANUAL_INC", dec("75.75")));
    assert_eq!(up.association_user_id, Some(superuser()), "the operator defaults to the calling role");
    let down = b.adjust("alice", dec("-0.75"), "ticket 4412", Some("support-7")).await.unwrap();
    assert_eq!((down.account_type.as_str(), down.balance_after), ("SYSTEM_MANUAL_DEC", dec("75")));
    assert_eq!(down.association_user_id.as_deref(), Some("support-7"));

    assert!(b.verify(None).await.unwrap().is_empty());
    assert!(b.verify(Some("alice")).await.unwrap().is_empty());
    // a broken cache is a finding
    client
        .batch_execute("UPDATE billing.accounts SET permanent = permanent + 1 WHERE user_id = 'alice'")
        .await
        .unwrap();
    let findings = b.verify(Some("alice")).await.unwrap();
    assert!(!findings.is_empty());
    assert!(findings.iter().all(|v| v.user_id.as_deref() == Some("alice")), "{findings:?}");
    assert!(findings.iter().any(|v| v.check.is_some() && v.expected != v.actual), "{findings:?}");
}

#[tokio::test]
async fn expiry_revocation_thresholds_and_debt() {
    let db = fresh_database("operations").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    let soon = pgbilling::chrono::Utc::now() + pgbilling::chrono::Duration::seconds(2);
    let gift = AddOptions { expire_at: Some(soon), subscription_id: Some("trial"), ..Default::default() };
    b.add("alice", dec("5"), "MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "trial", &gift).await.unwrap();
    b.add("alice", dec("10"), "RECHARGE_INC", "RECHARGE", "o-1", &Default::default()).await.unwrap();
    let later = pgbilling::chrono::Utc::now() + pgbilling::chrono::Duration::days(30);
    let monthly = AddOptions { expire_at: Some(later), subscription_id: Some("sub-42"), ..Default::default() };
    b.add("alice", dec("30"), "MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "vip", &monthly).await.unwrap();
    let lapsing = HoldOptions { ttl: Some(Duration::from_secs(2)), ..Default::default() };
    b.hold("alice", dec("2"), "CHAT_DEC", "CHAT", "c", &lapsing).await.unwrap();
    assert_eq!(b.power("alice").await.unwrap(), dec("43"));

    // The trial grant and the hold lapse; the sweep ends both.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(b.power("alice").await.unwrap(), dec("40"));
    assert_eq!(b.expire(None, Some(100)).await.unwrap(), 2);
    assert_eq!(b.expire(None, None).await.unwrap(), 0, "nothing left to do");
    let swept = b.history("alice", Some(1), None).await.unwrap();
    assert_eq!(swept[0].account_type, "MEMBERSHIP_GIFT_EXPIRED");
    let as_of = pgbilling::chrono::Utc::now() - pgbilling::chrono::Duration::seconds(5);
    assert_eq!(b.expire(Some(as_of), None).await.unwrap(), 0);

    let revoked = b.revoke_subscription("sub-42", Some("cancelled")).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!((revoked[0].account_type.as_str(), revoked[0].amount), ("MEMBERSHIP_GIFT_DEC", dec("30")));
    assert_eq!(revoked[0].remark.as_deref(), Some("cancelled"));
    assert!(b.revoke_subscription("sub-42", None).await.unwrap().is_empty());
    assert_eq!(b.power("alice").await.unwrap(), dec("10"));

    // low balance: crossing the threshold records an event
    assert_eq!(b.set_low_balance("alice", Some(dec("8"))).await.unwrap(), Some(dec("8")));
    let before = b.low_balance_events(None).await.unwrap();
    b.deduct("alice", dec("3"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let events = b.low_balance_events(Some(before.last().map_or(0, |e| e.event_id))).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].user_id.as_str(), events[0].threshold, events[0].available), ("alice", dec("8"), dec("7")));
    assert!(b.low_balance_events(Some(events[0].event_id)).await.unwrap().is_empty());
    assert_eq!(b.set_low_balance("alice", None).await.unwrap(), None);

    // the debt floor
    assert_eq!(b.set_debt_limit("alice", Some(dec("5"))).await.unwrap(), Some(dec("5")));
    let h = b.hold("alice", dec("7"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    let deep = b.settle(h.hold_id, dec("100"), &SettleOptions { allow_debt: true, ..Default::default() }).await;
    assert_eq!(state(&deep.unwrap_err()), "PB001", "below the floor");
    let ok = b.settle(h.hold_id, dec("12"), &SettleOptions { allow_debt: true, ..Default::default() }).await;
    assert_eq!(ok.unwrap().unwrap().balance_after, dec("-5"));
    assert_eq!(b.set_debt_limit("alice", None).await.unwrap(), None);
}

#[tokio::test]
async fn limits_and_metrics() {
    let db = fresh_database("limits").await;
    let client = connect(&db).await;
    let b = Billing::new(&client);
    b.add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o-1", &Default::default()).await.unwrap();
    let set = b.set_limit("alice", "key:sk-123", Some(dec("10")), None, None).await.unwrap().unwrap();
    assert_eq!(
        (set.scope.as_str(), set.cap, set.period.clone(), set.period_end),
        ("key:sk-123", dec("10"), None, None)
    );
    let month =
        b.set_limit("alice", "*", Some(dec("500")), Some("month"), Some("Europe/Berlin")).await.unwrap().unwrap();
    assert_eq!((month.period.as_deref(), month.time_zone.as_deref()), (Some("month"), Some("Europe/Berlin")));
    assert!(month.period_end.is_some());

    let scoped = DeductOptions { scopes: Some(&["key:sk-123"]), ..Default::default() };
    b.deduct("alice", dec("3"), "CHAT_DEC", "CHAT", "c", &scoped).await.unwrap();
    let limits = b.limits("alice").await.unwrap();
    assert_eq!(limits.iter().map(|l| l.scope.as_str()).collect::<Vec<_>>(), ["*", "key:sk-123"]);
    assert_eq!((limits[1].spent, limits[1].held, limits[1].remaining), (dec("3"), dec("0"), dec("7")));
    assert_eq!(limits[0].spent, dec("3"), "the * limit counts every charge");

    assert_eq!(b.set_limit("alice", "key:sk-123", None, None, None).await.unwrap(), None, "a NULL cap removes it");
    assert_eq!(b.limits("alice").await.unwrap().len(), 1);

    let metrics = b.metrics().await.unwrap();
    let open = metrics.iter().find(|m| m.metric == "billing_holds_open").expect("billing_holds_open");
    assert_eq!((open.kind.as_str(), open.value), ("gauge", dec("0")));
    assert!(metrics.iter().any(|m| m.metric == "billing_counters_active"));
    b.metrics_reset().await.unwrap();
}

#[tokio::test]
async fn calls_join_the_callers_transaction() {
    let db = fresh_database("transaction").await;
    let mut client = connect(&db).await;
    Billing::new(&client).add("u", dec("10"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();

    let tx = client.transaction().await.unwrap();
    let b = Billing::new(&tx);
    b.deduct("u", dec("4"), "CHAT_DEC", "CHAT", "x", &Default::default()).await.unwrap();
    assert_eq!(b.power("u").await.unwrap(), dec("6"));
    tx.rollback().await.unwrap();
    assert_eq!(Billing::new(&client).power("u").await.unwrap(), dec("10"), "rolled back with the caller");

    let tx = client.transaction().await.unwrap();
    Billing::new(&tx).deduct("u", dec("4"), "CHAT_DEC", "CHAT", "x", &Default::default()).await.unwrap();
    let other = connect(&db).await;
    assert_eq!(Billing::new(&other).power("u").await.unwrap(), dec("10"), "nothing is committed by the call");
    tx.commit().await.unwrap();
    assert_eq!(Billing::new(&other).power("u").await.unwrap(), dec("6"));
}
