//! Shared by the integration tests: a fresh database with the extension, per test.
//!
//! The cluster comes from scripts/with-cluster.sh (PGHOST, PGPORT, PGUSER).
//! Every test makes its own database, so no test sees another's rows.
#![allow(dead_code)]

use std::env;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use postgres::{Client, NoTls};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn cluster_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through scripts/with-cluster.sh (make integration)")
    })
}

pub fn dsn(database: &str, user: &str) -> String {
    format!(
        "host={} port={} user={} dbname={} application_name=billing-tests{}",
        cluster_var("PGHOST"),
        cluster_var("PGPORT"),
        user,
        database,
        password()
    )
}

/// ` password=...` when the cluster wants one (PGPASSWORD, as scripts/with-citus.sh
/// sets it for its superuser on 127.0.0.1); the postgres crate reads no PGPASSFILE.
pub fn password() -> String {
    std::env::var("PGPASSWORD").map(|p| format!(" password={p}")).unwrap_or_default()
}

pub fn superuser() -> String {
    cluster_var("PGUSER")
}

pub fn connect_as(database: &str, user: &str) -> Client {
    Client::connect(&dsn(database, user), NoTls).unwrap_or_else(|e| panic!("connect to {database} as {user}: {e}"))
}

pub fn connect(database: &str) -> Client {
    connect_as(database, &superuser())
}

/// A new, empty database named after the test, with `CREATE EXTENSION billing` done.
pub fn fresh_database(test: &str) -> String {
    let name = format!("t_{}_{}_{}", test, std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    connect(&name).batch_execute("CREATE EXTENSION billing").unwrap();
    name
}

/// The SQLSTATE of a failed statement ("00000" if it worked).
pub fn sqlstate(result: Result<impl Sized, postgres::Error>) -> String {
    match result {
        Ok(_) => "00000".to_string(),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}")),
    }
}

/// One value of a one-row query, as text.
pub fn text(client: &mut Client, query: &str) -> String {
    let row = client.query_one(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}"));
    row.get::<_, Option<String>>(0).unwrap_or_else(|| "NULL".into())
}

pub fn power(client: &mut Client, user: &str) -> String {
    let row = client.query_one("SELECT billing_power($1)::text", &[&user]).unwrap();
    row.get(0)
}

/// billing_verify's findings: what disagrees with a replay of the ledger.
pub fn ledger_disagreements(client: &mut Client) -> i64 {
    client.query_one("SELECT count(*) FROM billing_verify()", &[]).unwrap().get(0)
}

/// Runs `work(client, n)` on `connections` connections to `database`, released
/// together once all are connected; returns each connection's result in order.
pub fn on_connections<T, F>(database: &str, connections: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&mut Client, usize) -> T + Send + Sync + 'static,
{
    let start = std::sync::Arc::new(std::sync::Barrier::new(connections));
    let work = std::sync::Arc::new(work);
    let workers: Vec<_> = (0..connections)
        .map(|n| {
            let (database, start, work) = (database.to_owned(), start.clone(), work.clone());
            std::thread::spawn(move || {
                let mut client = connect(&database);
                start.wait();
                work(&mut client, n)
            })
        })
        .collect();
    workers.into_iter().map(|w| w.join().expect("a connection's work panicked")).collect()
}
