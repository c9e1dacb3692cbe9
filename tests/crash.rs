//! kill -9 the postmaster while connections charge and credit, start it again,
//! and check that every call a client saw commit is in the ledger, that
//! nothing else is, and that billing_verify finds nothing.
//!
//! Every call carries its own idempotency key, which names it in the ledger.
//! A call that failed because the server died may or may not have committed;
//! only those may appear without having been acknowledged.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const CONNECTIONS: usize = 8;

#[derive(Default)]
struct Seen {
    committed: BTreeSet<String>,
    in_doubt: BTreeSet<String>,
}

#[test]
fn a_crash_loses_no_committed_call_and_invents_none() {
    let db = fresh_database("crash");
    connect(&db)
        .batch_execute("SELECT count(billing_add('c' || n, 1000000, 'RECHARGE_INC', 'RECHARGE', 'seed')) FROM generate_series(0, 19) n")
        .unwrap();
    let seen = on_connections(&db, CONNECTIONS + 1, |c, n| {
        let mut seen = Seen::default();
        if n == CONNECTIONS {
            // the killer: let the load run, then kill -9 the postmaster
            std::thread::sleep(Duration::from_millis(1500));
            kill_postmaster();
            return seen;
        }
        for i in 0.. {
            let key = format!("t{n}-{i}");
            let user = format!("c{}", (n * 7 + i) % 20);
            let result = if i % 3 == 0 {
                c.execute("SELECT billing_add($1, 2, 'RECHARGE_INC', 'RECHARGE', 'load', idempotency_key => $2)", &[&user, &key])
            } else {
                c.execute("SELECT billing_deduct($1, 1, 'CHAT_DEC', 'CHAT', 'load', idempotency_key => $2)", &[&user, &key])
            };
            match result {
                Ok(_) => {
                    seen.committed.insert(key);
                }
                Err(e) => {
                    assert!(e.as_db_error().is_none_or(|d| d.code().code().starts_with("57")), "unexpected error: {e}");
                    seen.in_doubt.insert(key);
                    break;
                }
            }
        }
        seen
    });
    start_server_again();

    let committed: BTreeSet<String> = seen.iter().flat_map(|s| s.committed.iter().cloned()).collect();
    let in_doubt: BTreeSet<String> = seen.iter().flat_map(|s| s.in_doubt.iter().cloned()).collect();
    assert!(committed.len() > 100, "the load ran before the crash ({} calls)", committed.len());
    assert_eq!(in_doubt.len(), CONNECTIONS, "every connection was cut by the crash");
    let mut c = connect(&db);
    let in_ledger: BTreeSet<String> = c
        .query("SELECT idempotency_key FROM billing.account_log WHERE source = 'load'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let lost: Vec<_> = committed.difference(&in_ledger).collect();
    assert!(lost.is_empty(), "acknowledged but not in the ledger: {lost:?}");
    let invented: Vec<_> = in_ledger.difference(&committed).filter(|k| !in_doubt.contains(*k)).collect();
    assert!(invented.is_empty(), "in the ledger but never sent or already failed: {invented:?}");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_verify()"), "0");
}

fn kill_postmaster() {
    let pid_file = format!("{}/postmaster.pid", std::env::var("BILLING_PGDATA").expect("run through scripts/with-cluster.sh"));
    let pid = std::fs::read_to_string(pid_file).unwrap().lines().next().unwrap().trim().to_owned();
    let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(status.success(), "kill -9 {pid} failed");
}

/// Starts the server again once the orphaned backends have gone (crash recovery runs then).
fn start_server_again() {
    let start = std::env::var("BILLING_START_SERVER").expect("run through scripts/with-cluster.sh");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = Command::new(&start).output().unwrap();
        if output.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "server did not start again: {}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
}
