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
        "host={} port={} user={} dbname={} application_name=billing-tests",
        cluster_var("PGHOST"),
        cluster_var("PGPORT"),
        user,
        database
    )
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

/// Replays the ledger and counts what disagrees with the stored balances:
/// each account's permanent balance, each grant's remaining, the cached
/// grants_total and the per-user sequence (1..n without gaps).
pub fn ledger_disagreements(client: &mut Client) -> i64 {
    let row = client
        .query_one(
            "WITH perm AS (
                 SELECT user_id, sum(direction * coalesce((detail->>'permanent')::numeric, 0)) AS permanent,
                        count(*) AS entries, max(seq) AS last_seq, min(seq) AS first_seq
                   FROM billing.account_log GROUP BY user_id),
             grant_moves AS (
                 SELECT l.user_id, (g->>'id')::bigint AS id, sum(l.direction * (g->>'amount')::numeric) AS remaining
                   FROM billing.account_log l, jsonb_array_elements(coalesce(l.detail->'grants', '[]')) g
                  GROUP BY 1, 2)
             SELECT (SELECT count(*) FROM billing.accounts a FULL JOIN perm p USING (user_id)
                      WHERE a.permanent IS DISTINCT FROM p.permanent
                         OR a.last_seq IS DISTINCT FROM p.entries
                         OR p.last_seq IS DISTINCT FROM p.entries
                         OR p.first_seq <> 1
                         OR a.grants_total <> (SELECT coalesce(sum(remaining), 0) FROM billing.grants g WHERE g.user_id = a.user_id))
                  + (SELECT count(*) FROM billing.grants g FULL JOIN grant_moves m USING (user_id, id)
                      WHERE g.remaining IS DISTINCT FROM m.remaining)
                  + (SELECT count(*) FROM billing.account_log
                      WHERE direction NOT IN (1, -1) OR amount <= 0 OR seq <= 0 OR balance_after < 0)
                  + (SELECT count(*) FROM billing.accounts WHERE permanent < 0 OR grants_total < 0)
                  + (SELECT count(*) FROM billing.accounts a
                      LEFT JOIN LATERAL (SELECT g.id, g.remaining FROM billing.grants g
                                          WHERE g.user_id = a.user_id AND g.remaining > 0 AND g.expire_at > now()
                                          ORDER BY g.expire_at, g.id LIMIT 1) head ON true
                      WHERE (a.next_expiry IS NULL OR a.next_expiry > now())
                        AND (a.head_grant_id IS DISTINCT FROM head.id OR a.head_remaining IS DISTINCT FROM head.remaining
                             OR a.next_expiry IS DISTINCT FROM (SELECT min(expire_at) FROM billing.grants g
                                                                 WHERE g.user_id = a.user_id AND g.remaining > 0)))",
            &[],
        )
        .unwrap();
    row.get(0)
}
