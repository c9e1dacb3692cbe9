//! The basic calls through pgbouncer in transaction pooling mode (run under
//! scripts/with-pgbouncer.sh: PGHOST/PGPORT are pgbouncer, BILLING_DIRECT_PG*
//! the server). Consecutive statements of one client may run on different
//! server connections, so nothing may depend on session state.

mod common;

use std::time::Duration;

use common::*;
use pgbilling::tokio_postgres::SimpleQueryMessage;
use pgbilling::{
    Billing, BillingError, DeductOptions, HoldOptions, HoldRequest, HoldStatus, RefundOptions, RetryOptions,
    SettleOptions, holding, retry_transaction,
};

fn through_pgbouncer() {
    assert!(
        std::env::var("BILLING_DIRECT_PGHOST").is_ok(),
        "run this test under scripts/with-pgbouncer.sh (clients/rust/test.sh does)"
    );
}

#[tokio::test]
#[ignore = "runs under scripts/with-pgbouncer.sh: clients/rust/test.sh runs it with --ignored"]
async fn basic_calls_through_pgbouncer() {
    through_pgbouncer();
    let db = fresh_database("bouncer").await;
    let mut client = connect(&db).await;
    let b = Billing::new(&client);

    assert_eq!(b.power("alice").await.unwrap(), dec("0"));
    b.add("alice", dec("100"), "RECHARGE_INC", "RECHARGE", "o-1", &Default::default()).await.unwrap();
    let entry = b.deduct("alice", dec("12.5"), "CHAT_DEC", "CHAT", "chat-7", &DeductOptions::default()).await.unwrap();
    assert_eq!(entry.balance_after, dec("87.5"));
    let ttl = HoldOptions { ttl: Some(Duration::from_secs(60)), ..Default::default() };
    let hold = b.hold("alice", dec("50"), "AGENT_CHAT_DEC", "AGENT_CHAT", "gpt-4", &ttl).await.unwrap();
    let settled = b.settle(hold.hold_id, dec("20"), &SettleOptions::default()).await.unwrap().unwrap();
    assert_eq!(settled.balance_after, dec("67.5"));
    let other = b.hold("alice", dec("5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    assert_eq!(b.release(other.hold_id, Some("not needed")).await.unwrap().status, HoldStatus::Released);
    let refund = b.refund(entry.id, &RefundOptions::default()).await.unwrap();
    assert_eq!(refund.balance_after, dec("80"));
    let err = b.deduct("alice", dec("1000"), "CHAT_DEC", "CHAT", "c", &DeductOptions::default()).await.unwrap_err();
    assert!(
        matches!(err, BillingError::InsufficientPower { requested: Some(r), available: Some(a), .. }
                 if r == dec("1000") && a == dec("80")),
        "{err:?}"
    );

    // inside the caller's transaction (pgbouncer keeps one server connection for it)
    let tx = client.transaction().await.unwrap();
    Billing::new(&tx).deduct("alice", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await.unwrap();
    assert_eq!(Billing::new(&tx).power("alice").await.unwrap(), dec("79"));
    tx.rollback().await.unwrap();

    let power = retry_transaction(&mut client, &RetryOptions::default(), |tx| {
        Box::pin(async move {
            tx.billing().deduct("alice", dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await?;
            tx.billing().power("alice").await
        })
    })
    .await
    .unwrap();
    assert_eq!(power, dec("79"));

    let request = HoldRequest::new("alice", dec("10"), "CHAT_DEC", "CHAT", "c");
    let held = holding(&mut client, &request, |h| {
        Box::pin(async move {
            h.set_actual(dec("4"));
            Ok::<_, BillingError>(())
        })
    })
    .await
    .unwrap();
    assert_eq!(held.entry.unwrap().balance_after, dec("75"));
    assert!(Billing::new(&client).verify(None).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "runs under scripts/with-pgbouncer.sh: clients/rust/test.sh runs it with --ignored"]
async fn many_clients_share_four_server_connections() {
    through_pgbouncer();
    let db = fresh_database("bouncer_many").await;
    let setup = connect(&db).await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let user = format!("user-{n}");
        Billing::new(&setup)
            .add(&user, dec("100"), "RECHARGE_INC", "RECHARGE", "o", &Default::default())
            .await
            .unwrap();
        let client = connect(&db).await;
        // the clients' calls interleave: consecutive calls of one client land
        // on whichever of pgbouncer's four server connections is free
        tasks.push(tokio::spawn(async move {
            let b = Billing::new(&client);
            for _ in 0..10 {
                b.deduct(&user, dec("0.5"), "CHAT_DEC", "CHAT", "c", &Default::default()).await?;
                let hold = b.hold(&user, dec("1"), "CHAT_DEC", "CHAT", "c", &Default::default()).await?;
                b.settle(hold.hold_id, dec("0.25"), &SettleOptions::default()).await?;
                b.power(&user).await?;
            }
            let power = b.power(&user).await?;
            Ok::<_, BillingError>((power, client))
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        let (power, client) = task.await.unwrap().unwrap();
        assert_eq!(power, dec("92.5"));
        clients.push(client);
    }
    // pgbouncer served them: its console lists the pool, with at most 4 server connections
    let console = connect("pgbouncer").await;
    let mut pool = None;
    for message in console.simple_query("SHOW POOLS").await.unwrap() {
        if let SimpleQueryMessage::Row(row) = message {
            if row.get("database") == Some(db.as_str()) {
                // (the columns vary between pgbouncer versions: count those there are)
                let sum = |columns: &[&str]| -> u32 {
                    columns
                        .iter()
                        .filter_map(|c| row.try_get(*c).ok().flatten())
                        .map(|v| v.parse::<u32>().unwrap())
                        .sum()
                };
                pool = Some((
                    sum(&["cl_active", "cl_idle", "cl_waiting"]),
                    sum(&[
                        "sv_active",
                        "sv_idle",
                        "sv_used",
                        "sv_tested",
                        "sv_login",
                        "sv_active_cancel",
                        "sv_being_canceled",
                    ]),
                ));
            }
        }
    }
    let (clients_seen, servers) = pool.expect("pgbouncer has a pool for the database");
    assert!(clients_seen >= 9 && servers <= 4, "clients {clients_seen}, server connections {servers}");
    drop(clients);
}
