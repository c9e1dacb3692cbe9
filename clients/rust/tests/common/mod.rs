//! Shared by the tests: connections to the cluster from the environment
//! (PGHOST, PGPORT, PGUSER: scripts/with-cluster.sh sets them) and a fresh
//! database with the extension per test.
#![allow(dead_code)]

use std::env;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use pgbilling::BillingError;
use pgbilling::rust_decimal::Decimal;
use tokio_postgres::{Client, NoTls};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests through clients/rust/test.sh"))
}

/// The server itself: under scripts/with-pgbouncer.sh, BILLING_DIRECT_PG*; otherwise PG*.
fn direct_dsn(database: &str, user: &str) -> String {
    let host = env::var("BILLING_DIRECT_PGHOST").unwrap_or_else(|_| var("PGHOST"));
    let port = env::var("BILLING_DIRECT_PGPORT").unwrap_or_else(|_| var("PGPORT"));
    format!("host={host} port={port} user={user} dbname={database} application_name=pgbilling-tests")
}

/// PGHOST/PGPORT: pgbouncer under scripts/with-pgbouncer.sh, the server otherwise.
fn dsn(database: &str, user: &str) -> String {
    format!(
        "host={} port={} user={user} dbname={database} application_name=pgbilling-tests",
        var("PGHOST"),
        var("PGPORT")
    )
}

pub fn superuser() -> String {
    var("PGUSER")
}

async fn open(dsn: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(dsn, NoTls).await.unwrap_or_else(|e| panic!("connect {dsn}: {e}"));
    tokio::spawn(async move {
        // Errors of the connection itself reach the calls, which fail with them.
        let _ = connection.await;
    });
    client
}

/// A connection through PGHOST/PGPORT as the superuser.
pub async fn connect(database: &str) -> Client {
    open(&dsn(database, &superuser())).await
}

/// A connection through PGHOST/PGPORT as `user`.
pub async fn connect_as(database: &str, user: &str) -> Client {
    open(&dsn(database, user)).await
}

/// A connection to the server itself (not through pgbouncer).
pub async fn connect_direct(database: &str) -> Client {
    open(&direct_dsn(database, &superuser())).await
}

/// A new, empty database with `CREATE EXTENSION billing`, made on the server itself.
pub async fn fresh_database(test: &str) -> String {
    let name = format!("rs_{test}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let admin = connect_direct("postgres").await;
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    connect_direct(&name).await.batch_execute("CREATE EXTENSION billing").await.unwrap();
    name
}

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// The SQLSTATE of a billing error.
pub fn state(e: &BillingError) -> String {
    e.sqlstate().unwrap_or("none").to_string()
}

/// One text value of a one-row query (superuser SQL for checks and setup).
pub async fn text(client: &Client, query: &str) -> String {
    let row = client.query_one(query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    row.get::<_, Option<String>>(0).unwrap_or_else(|| "NULL".into())
}

/// Runs SQL that must fail, and maps its error as the client does.
pub async fn failing(client: &Client, sql: &str) -> BillingError {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("{sql}: succeeded, expected an error"),
        Err(e) => BillingError::from(e),
    }
}
