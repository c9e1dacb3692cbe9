//! billing: credit billing inside PostgreSQL.
//!
//! The SQL schema comes first (sql/, in the order below), then the C entry
//! points of the SQL functions, one module per concept:
//! - `errors`: SQLSTATEs and raising them;
//! - `amounts`: parsing and bounding amounts (pure);
//! - `drawdown`: which credits a debit spends (pure);
//! - `citus`: whether Citus is installed (the one-statement paths then step aside), kept until an invalidation;
//! - `fmgr`: entry points and argument reading;
//! - `statements`: the SQL each function runs (sql/statements/), prepared once per backend;
//! - `ledger`: types, idempotency and writing ledger entries;
//! - `power`: billing_power and billing_has_power, read without SQL while the
//!   account row's cached total holds (otherwise through billing.balances);
//! - `accounts`: billing_add and billing_deduct;
//! - `general_path`: the general path that moves power into and out of grants;
//! - `holds`: billing_hold, billing_settle and billing_release;
//! - `refunds`: billing_refund;
//! - `limits`: the scopes a charge names, and counting it against the user's
//!   spending limits (PB008; sql/limits.sql);
//! - `options`: billing_add and billing_deduct called with a JSON options object;
//! - `notify`: the low-balance notification;
//! - `roles`: the calling role that every ledger entry records;
//! - `triggers`: reading a trigger's row by column name, for billing_charge
//!   and billing_hold_charge (sql/triggers.sql);
//! - `drop_guard`: dropping the extension refuses while the ledger holds entries;
//! - `metrics`: counters of calls and errors per C entry point, in shared memory
//!   when the library is preloaded (billing_metrics, sql/metrics.sql).

pgrx::pg_module_magic!();

/// Runs once per backend, when the library is loaded.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    drop_guard::init();
    metrics::init();
}

mod accounts;
mod amounts;
mod citus;
mod drawdown;
mod drop_guard;
mod errors;
mod fmgr;
mod general_path;
mod holds;
mod ledger;
mod limits;
mod metrics;
mod notify;
mod options;
mod power;
mod refunds;
mod roles;
mod statements;
mod triggers;

// The in-database tests (#[pg_test]), by topic: pgrx-tests/mod.rs.
#[cfg(any(test, feature = "pg_test"))]
#[path = "../pgrx-tests/mod.rs"]
mod pgrx_tests;

// The extension script, in order: tables and seed data, holds, the SQL signatures
// of the functions implemented in Rust, billing_verify, the reports and pricing,
// power (the balances view and the account-row cache helpers), low-balance
// events, spending limits, the operations (expiry, revoking, adjusting), the
// charging triggers, the metrics, billing_distribute (Citus), then privileges and dump registration once
// everything exists.
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/holds.sql", name = "holds", requires = ["schema"]);
pgrx::extension_sql_file!("../sql/signatures.sql", name = "signatures", requires = ["holds"]);
pgrx::extension_sql_file!("../sql/verify.sql", name = "verify", requires = ["signatures"]);
pgrx::extension_sql_file!("../sql/reports.sql", name = "reports", requires = ["verify"]);
pgrx::extension_sql_file!("../sql/power.sql", name = "power", requires = ["reports"]);
pgrx::extension_sql_file!("../sql/low_balance.sql", name = "low_balance", requires = ["power"]);
pgrx::extension_sql_file!("../sql/limits.sql", name = "limits", requires = ["low_balance"]);
pgrx::extension_sql_file!("../sql/operations.sql", name = "operations", requires = ["limits"]);
pgrx::extension_sql_file!("../sql/triggers.sql", name = "triggers", requires = ["operations"]);
pgrx::extension_sql_file!("../sql/metrics.sql", name = "metrics", requires = ["triggers"]);
pgrx::extension_sql_file!("../sql/distribute.sql", name = "distribute", requires = ["metrics"]);
pgrx::extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
