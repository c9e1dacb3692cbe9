//! The in-database tests (#[pg_test]), one module per topic. `cargo pgrx test`
//! runs each in its own transaction, rolled back after, in a cluster pgrx starts.
//! Races, real SAVEPOINTs, commits and clients are in tests/ over real connections;
//! SQL-level regression and isolation specs are in regress/.
//! - `core`: billing_add, billing_deduct, billing_power, types, amounts, idempotency,
//!   the order grants are spent in, the ledger's rules and billing_verify;
//! - `holds`: billing_hold, billing_settle (and its funding rule), billing_release;
//! - `refunds`: billing_refund;
//! - `limits`: spending limits (billing_set_limit, billing_limits, PB008);
//! - `operations`: expiry, revoking, adjusting, balances, JSON calls, low balance;
//! - `reports`: billing_history, billing_by_association, billing_statement, billing_price;
//! - `triggers`: the charging triggers billing_charge and billing_hold_charge;
//! - `security`: the trust boundary (protected names in schema billing, recorded roles);
//! - `metrics`: billing_metrics' gauges, its row for counters that are off, and
//!   who may reset them;
//! - `schema`: comments, privileges, function security, the bad-input table in the docs;
//! - `support`: what they share.

mod core;
mod holds;
mod limits;
mod metrics;
mod operations;
mod refunds;
mod reports;
mod schema;
mod security;
mod support;
mod triggers;
