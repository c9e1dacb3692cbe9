//! Rust client of `billing`, the PostgreSQL extension that keeps users'
//! credits ("power") with an append-only ledger.
//!
//! - [`Billing`]: one method per SQL function (`power`, `add`, `deduct`,
//!   `hold`, `settle`, `release`, `refund`, ...), on a
//!   [`tokio_postgres::Client`] or inside the caller's
//!   [`tokio_postgres::Transaction`]. Amounts are [`rust_decimal::Decimal`],
//!   times [`chrono::DateTime<Utc>`](chrono::DateTime), JSON
//!   [`serde_json::Value`] with exact numbers. No method commits.
//! - [`BillingError`]: one variant per SQLSTATE of the extension's error
//!   table, with message, DETAIL and HINT, and the parsed fields of
//!   PB001 ([`BillingError::InsufficientPower`]) and PB008
//!   ([`BillingError::LimitExceeded`]); any other error unchanged in
//!   [`BillingError::Db`].
//! - [`retry_transaction`]: reruns a whole transaction on 40001 / 40P01.
//! - [`holding`]: hold, run metered work with the hold committed, settle or release.
//!
//! Every call is one unnamed statement (`query_typed`), so the client works
//! through pgbouncer in transaction pooling mode.

mod billing;
mod call;
mod error;
mod hold;
mod retry;
mod types;

pub use billing::{AddOptions, Billing, DeductOptions, HoldOptions, RefundOptions, Result, SettleOptions};
pub use error::{BillingError, PeriodEnd, ServerError};
pub use hold::{Held, HoldHandle, HoldRequest, HoldingError, holding};
pub use retry::{BoxFuture, RetryOptions, Retryable, Tx, retry_transaction};
pub use types::{
    AccountLog, DistributedObject, Funding, Hold, HoldStatus, LowBalanceEvent, Metric, SpendingLimit, StatementRow,
    Violation, json_decimal,
};

/// For [`RetryOptions::isolation_level`].
pub use tokio_postgres::IsolationLevel;
/// The crates of the public API, re-exported so callers use the same versions.
pub use {chrono, rust_decimal, serde_json, tokio_postgres};

// The README's Rust blocks are compiled and run as doctests (`cargo test --doc`):
// its quick start cannot drift from the crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
