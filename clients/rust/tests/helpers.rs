//! retry_transaction under real serialization failures between two
//! connections, and holding on success and on failure.

mod common;

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use pgbilling::tokio_postgres::{Client, IsolationLevel};
use pgbilling::{
    Billing, BillingError, DeductOptions, HoldRequest, HoldStatus, HoldingError, RetryOptions, holding,
    retry_transaction,
};

fn repeatable_read(max_attempts: u32) -> RetryOptions {
    RetryOptions {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        isolation_level: Some(IsolationLevel::RepeatableRead),
    }
}

/// In the transaction of `tx`: read alice's power (the snapshot), let `other`
/// commit a deduct for alice on its own connection, then deduct in `tx`:
/// under REPEATABLE READ the second write of the same row is a 40001.
async fn conflicting_deduct(
    tx: &pgbilling::Tx<'_, '_>,
    other: &Client,
    conflict: bool,
) -> Result<String, BillingError> {
    let b = tx.billing();
    let seen = b.power("alice").await?;
    if conflict {
        Billing::new(other).deduct("alice", dec("10"), "CHAT_DEC", "CHAT", "other", &DeductOptions::default()).await?;
    }
    let entry = b.deduct("alice", dec("1"), "CHAT_DEC", "CHAT", "mine", &DeductOptions::default()).await?;
    Ok(format!("saw {seen}, left {}", entry.balance_after))
}

#[tokio::test]
async fn a_real_serialization_failure_is_retried_and_succeeds() {
    let db = fresh_database("retry_ok").await;
    let mut client = connect(&db).await;
    let other = connect(&db).await;
    Billing::new(&client).add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let attempts = AtomicU32::new(0);
    let (other_ref, attempts_ref) = (&other, &attempts);

    let result = retry_transaction(&mut client, &repeatable_read(5), |tx| {
        Box::pin(async move {
            attempts_ref.fetch_add(1, Ordering::SeqCst);
            // the other connection gets in the way on the first attempt only
            conflicting_deduct(tx, other_ref, tx.attempt() == 1).await
        })
    })
    .await
    .unwrap();

    assert_eq!(attempts.load(Ordering::SeqCst), 2, "one 40001, then success");
    assert_eq!(result, "saw 90, left 89", "the retry saw the other's commit");
    let b = Billing::new(&client);
    assert_eq!(b.power("alice").await.unwrap(), dec("89"));
    let sources: Vec<String> = b.history("alice", None, None).await.unwrap().into_iter().map(|e| e.source).collect();
    assert_eq!(sources, ["mine", "other", "o"], "the failed attempt left nothing");
    assert!(b.verify(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_attempt_limit_is_respected_and_the_last_error_returned() {
    let db = fresh_database("retry_limit").await;
    let mut client = connect(&db).await;
    let other = connect(&db).await;
    Billing::new(&client).add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let attempts = AtomicU32::new(0);
    let (other_ref, attempts_ref) = (&other, &attempts);

    let err = retry_transaction(&mut client, &repeatable_read(3), |tx| {
        Box::pin(async move {
            attempts_ref.fetch_add(1, Ordering::SeqCst);
            conflicting_deduct(tx, other_ref, true).await
        })
    })
    .await
    .unwrap_err();

    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert!(matches!(err, BillingError::SerializationFailure(_)), "{err:?}");
    let b = Billing::new(&client);
    assert_eq!(b.power("alice").await.unwrap(), dec("70"), "only the other connection's three deducts");
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let db = fresh_database("retry_other").await;
    let mut client = connect(&db).await;
    let attempts = AtomicU32::new(0);
    let attempts_ref = &attempts;
    let err = retry_transaction(&mut client, &RetryOptions::default(), |tx| {
        Box::pin(async move {
            attempts_ref.fetch_add(1, Ordering::SeqCst);
            tx.billing().add("bob", dec("5"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await?;
            tx.billing().deduct("bob", dec("6"), "CHAT_DEC", "CHAT", "c", &DeductOptions::default()).await
        })
    })
    .await
    .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert!(matches!(err, BillingError::InsufficientPower { .. }), "{err:?}");
    assert_eq!(Billing::new(&client).power("bob").await.unwrap(), dec("0"), "rolled back");

    // a caller's own error type works too
    let err = retry_transaction(&mut client, &RetryOptions::default(), |_tx| {
        Box::pin(async move { Err::<(), Box<dyn std::error::Error + Send + Sync>>("not billing".into()) })
    })
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "not billing");
}

#[test]
fn backoff_grows_with_jitter_and_a_cap() {
    let options = RetryOptions {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(350),
        ..Default::default()
    };
    for _ in 0..50 {
        let first = options.backoff(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let third = options.backoff(3);
        assert!(third >= Duration::from_millis(175) && third <= Duration::from_millis(350), "{third:?}");
        assert!(options.backoff(40) <= Duration::from_millis(350));
    }
    let samples: std::collections::HashSet<Duration> = (0..20).map(|_| options.backoff(2)).collect();
    assert!(samples.len() > 1, "jittered");
}

async fn hold_of(client: &Client, hold_id: i64) -> (String, Option<String>) {
    let row =
        client.query_one("SELECT status, reason FROM billing.holds WHERE hold_id = $1", &[&hold_id]).await.unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn holding_commits_the_hold_then_settles_for_the_actual_cost() {
    let db = fresh_database("holding_ok").await;
    let mut client = connect(&db).await;
    let observer = connect(&db).await;
    Billing::new(&client).add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let observer_ref = &observer;
    let mut request = HoldRequest::new("alice", dec("50"), "AGENT_CHAT_DEC", "AGENT_CHAT", "gpt-4");
    request.options.association_no = Some("task-9");
    request.settle_remark = Some("1234 tokens");

    let held = holding(&mut client, &request, |h| {
        Box::pin(async move {
            // the hold is committed: another connection sees it, and can charge the
            // same user at once (the row is not locked while the work runs)
            let seen = Billing::new(observer_ref).power("alice").await?;
            Billing::new(observer_ref)
                .deduct("alice", dec("1"), "CHAT_DEC", "CHAT", "side", &Default::default())
                .await?;
            assert_eq!(h.billing().power("alice").await?, dec("49"));
            h.set_actual(dec("12.34"));
            Ok::<_, BillingError>(seen)
        })
    })
    .await
    .unwrap();

    assert_eq!(held.value, dec("50"), "the work saw the hold from another connection");
    let entry = held.entry.expect("settled");
    assert_eq!((entry.amount, entry.remark.as_deref()), (dec("12.34"), Some("1234 tokens")));
    assert_eq!((entry.association_no.as_deref(), entry.funding().hold), (Some("task-9"), Some(held.hold.hold_id)));
    assert_eq!(hold_of(&observer, held.hold.hold_id).await.0, "settled");
    assert_eq!(Billing::new(&client).power("alice").await.unwrap(), dec("86.66"));
    assert!(Billing::new(&client).verify(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn holding_releases_when_the_work_fails_and_returns_its_error() {
    let db = fresh_database("holding_err").await;
    let mut client = connect(&db).await;
    Billing::new(&client).add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let request = HoldRequest::new("alice", dec("50"), "AGENT_CHAT_DEC", "AGENT_CHAT", "gpt-4");
    let hold_id = AtomicI64::new(0);
    let hold_id_ref = &hold_id;

    let err = holding(&mut client, &request, |h| {
        Box::pin(async move {
            hold_id_ref.store(h.hold().hold_id, Ordering::SeqCst);
            h.set_actual(dec("10")); // set, but the work fails after: release wins
            Err::<(), _>(std::io::Error::other("upstream timeout"))
        })
    })
    .await
    .unwrap_err();

    let HoldingError::Work { error, release } = err else { panic!("expected Work, got {err:?}") };
    assert_eq!(error.to_string(), "upstream timeout", "the work's own error");
    assert!(release.is_none(), "the release worked: {release:?}");
    let hold_id = hold_id.load(Ordering::SeqCst);
    let (status, reason) = hold_of(&client, hold_id).await;
    assert_eq!((status.as_str(), reason.as_deref()), ("released", Some("pgbilling: the work failed")));
    let b = Billing::new(&client);
    assert_eq!(b.power("alice").await.unwrap(), dec("100"));
    let ledger = b.history("alice", None, None).await.unwrap();
    assert_eq!(ledger.len(), 1, "the released hold charged nothing: {ledger:?}");
}

#[tokio::test]
async fn holding_without_an_actual_cost_releases_and_a_failed_hold_runs_no_work() {
    let db = fresh_database("holding_none").await;
    let mut client = connect(&db).await;
    Billing::new(&client).add("alice", dec("20"), "RECHARGE_INC", "RECHARGE", "o", &Default::default()).await.unwrap();
    let request = HoldRequest::new("alice", dec("5"), "CHAT_DEC", "CHAT", "c");
    let held = holding(&mut client, &request, |_h| Box::pin(async move { Ok::<_, BillingError>(7) })).await.unwrap();
    assert_eq!((held.value, held.entry.is_none()), (7, true));
    assert_eq!(hold_of(&client, held.hold.hold_id).await.0, "released");
    assert_eq!(held.hold.status, HoldStatus::Held, "as it was made");

    let ran = AtomicU32::new(0);
    let ran_ref = &ran;
    let too_much = HoldRequest::new("alice", dec("21"), "CHAT_DEC", "CHAT", "c");
    let err = holding(&mut client, &too_much, |_h| {
        Box::pin(async move {
            ran_ref.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BillingError>(())
        })
    })
    .await
    .unwrap_err();
    assert!(matches!(err, HoldingError::Hold(BillingError::InsufficientPower { .. })), "{err:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    // settling above the hold without the power for it: the hold stays open, by id
    let short = HoldRequest::new("alice", dec("5"), "CHAT_DEC", "CHAT", "c");
    let err = holding(&mut client, &short, |h| {
        Box::pin(async move {
            h.set_actual(dec("500"));
            Ok::<_, BillingError>(())
        })
    })
    .await
    .unwrap_err();
    let HoldingError::Close { hold_id, error } = err else { panic!("{err:?}") };
    assert!(matches!(error, BillingError::InsufficientPower { .. }), "{error:?}");
    assert_eq!(hold_of(&client, hold_id).await.0, "held");
    Billing::new(&client).release(hold_id, None).await.unwrap();
    assert_eq!(Billing::new(&client).power("alice").await.unwrap(), dec("20"));
}
