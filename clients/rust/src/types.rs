//! The rows the SQL functions return, as structs. Columns are read by name,
//! so a column the extension adds later does not break them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_postgres::Row;

/// A ledger entry, `billing.account_log`: what `billing_add`, `billing_deduct`,
/// `billing_settle`, `billing_refund`, `billing_adjust` return and the reports list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AccountLog {
    pub id: i64,
    pub user_id: String,
    pub seq: i64,
    /// +1 credit, -1 debit.
    pub direction: i16,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub account_type: String,
    pub source_type: String,
    pub source: String,
    pub remark: Option<String>,
    pub association_no: Option<String>,
    pub association_user_id: Option<String>,
    pub subscription_id: Option<String>,
    pub expire_at: Option<DateTime<Utc>>,
    /// Where the power came from or went: `{"permanent": x, "grants": [{"id": g, "amount": y}], "hold": h}`.
    /// Numbers are exact (serde_json's `arbitrary_precision`); [`AccountLog::funding`] reads them.
    pub detail: Value,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub refund_of: Option<i64>,
    pub session_role: Option<String>,
    pub calling_role: Option<String>,
    pub scopes: Option<Vec<String>>,
}

/// A hold, `billing.holds`: what `billing_hold` and `billing_release` return.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Hold {
    pub user_id: String,
    pub hold_id: i64,
    pub status: HoldStatus,
    pub amount: Decimal,
    pub expires_at: DateTime<Utc>,
    pub account_type: String,
    pub source_type: String,
    pub source: String,
    pub remark: Option<String>,
    pub association_no: Option<String>,
    pub association_user_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Where the held power came from, in the ledger's `detail` format.
    pub funding: Value,
    pub reserved_after_seq: i64,
    pub settled_amount: Option<Decimal>,
    pub log_id: Option<i64>,
    pub reason: Option<String>,
    pub closed_after_seq: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub scopes: Option<Vec<String>>,
}

/// A hold's `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldStatus {
    Held,
    Settled,
    Released,
    Expired,
    /// A status this client does not know (a newer extension).
    Other(String),
}

impl HoldStatus {
    fn parse(text: String) -> Self {
        match text.as_str() {
            "held" => HoldStatus::Held,
            "settled" => HoldStatus::Settled,
            "released" => HoldStatus::Released,
            "expired" => HoldStatus::Expired,
            _ => HoldStatus::Other(text),
        }
    }
}

/// One finding of `billing_verify` (`billing.violation`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Violation {
    pub user_id: Option<String>,
    pub check: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// A row of `billing_statement`: one per account type, then the total
/// (`account_type` `None`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StatementRow {
    pub account_type: Option<String>,
    pub entries: i64,
    pub credited: Decimal,
    pub debited: Decimal,
    pub net: Decimal,
    pub opening_balance: Decimal,
    pub closing_balance: Decimal,
}

/// A low-balance event (`billing_low_balance_events`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LowBalanceEvent {
    pub event_id: i64,
    pub user_id: String,
    pub threshold: Decimal,
    pub available: Decimal,
    pub at: DateTime<Utc>,
}

/// A spending limit as it stands now (`billing.spending_limit`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SpendingLimit {
    pub scope: String,
    pub cap: Decimal,
    /// `None`: a lifetime cap; `day`, `week`, `month` or an interval's text.
    pub period: Option<String>,
    pub time_zone: Option<String>,
    pub period_start: Option<DateTime<Utc>>,
    /// `None`: the period never ends (a lifetime cap).
    pub period_end: Option<DateTime<Utc>>,
    pub spent: Decimal,
    pub held: Decimal,
    pub remaining: Decimal,
}

/// A row of `billing_metrics`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Metric {
    pub metric: String,
    /// `counter` or `gauge`.
    pub kind: String,
    pub labels: Option<Value>,
    pub value: Decimal,
}

/// A row of `billing_distribute`: an object of the extension and what Citus
/// made of it (`distributed by user_id`, `reference table`, `delegated by
/// user_id`, ... with ` (already)` when an earlier run did it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DistributedObject {
    /// A table, `id sequences`, or a function's signature.
    pub object: String,
    pub distribution: String,
}

/// A ledger `detail` (or a hold's `funding`) read into exact amounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Funding {
    pub permanent: Option<Decimal>,
    /// `(grant id, amount)`.
    pub grants: Vec<(i64, Decimal)>,
    /// The hold a settle's entry names.
    pub hold: Option<i64>,
}

/// An exact decimal from a JSON number or string (never through a float).
pub fn json_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => {
            Decimal::from_str(&n.to_string()).or_else(|_| Decimal::from_scientific(&n.to_string())).ok()
        }
        Value::String(s) => Decimal::from_str(s).ok(),
        _ => None,
    }
}

impl Funding {
    /// Reads `{"permanent": x, "grants": [{"id": g, "amount": y}], "hold": h}`.
    pub fn from_json(value: &Value) -> Funding {
        Funding {
            permanent: value.get("permanent").and_then(json_decimal),
            grants: value
                .get("grants")
                .and_then(Value::as_array)
                .map(|grants| {
                    grants
                        .iter()
                        .filter_map(|g| Some((g.get("id")?.as_i64()?, json_decimal(g.get("amount")?)?)))
                        .collect()
                })
                .unwrap_or_default(),
            hold: value.get("hold").and_then(Value::as_i64),
        }
    }
}

impl AccountLog {
    /// The entry's `detail` as exact amounts.
    pub fn funding(&self) -> Funding {
        Funding::from_json(&self.detail)
    }
}

impl Hold {
    /// The hold's `funding` as exact amounts.
    pub fn funding(&self) -> Funding {
        Funding::from_json(&self.funding)
    }
}

type Decoded<T> = Result<T, tokio_postgres::Error>;

/// Built from a row that has the named columns.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &Row) -> Decoded<Self>;
}

impl FromRow for AccountLog {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(AccountLog {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            seq: r.try_get("seq")?,
            direction: r.try_get("direction")?,
            amount: r.try_get("amount")?,
            balance_after: r.try_get("balance_after")?,
            account_type: r.try_get("account_type")?,
            source_type: r.try_get("source_type")?,
            source: r.try_get("source")?,
            remark: r.try_get("remark")?,
            association_no: r.try_get("association_no")?,
            association_user_id: r.try_get("association_user_id")?,
            subscription_id: r.try_get("subscription_id")?,
            expire_at: r.try_get("expire_at")?,
            detail: r.try_get("detail")?,
            idempotency_key: r.try_get("idempotency_key")?,
            created_at: r.try_get("created_at")?,
            refund_of: r.try_get("refund_of")?,
            session_role: r.try_get("session_role")?,
            calling_role: r.try_get("calling_role")?,
            scopes: r.try_get("scopes")?,
        })
    }
}

impl FromRow for Hold {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(Hold {
            user_id: r.try_get("user_id")?,
            hold_id: r.try_get("hold_id")?,
            status: HoldStatus::parse(r.try_get("status")?),
            amount: r.try_get("amount")?,
            expires_at: r.try_get("expires_at")?,
            account_type: r.try_get("account_type")?,
            source_type: r.try_get("source_type")?,
            source: r.try_get("source")?,
            remark: r.try_get("remark")?,
            association_no: r.try_get("association_no")?,
            association_user_id: r.try_get("association_user_id")?,
            idempotency_key: r.try_get("idempotency_key")?,
            funding: r.try_get("funding")?,
            reserved_after_seq: r.try_get("reserved_after_seq")?,
            settled_amount: r.try_get("settled_amount")?,
            log_id: r.try_get("log_id")?,
            reason: r.try_get("reason")?,
            closed_after_seq: r.try_get("closed_after_seq")?,
            created_at: r.try_get("created_at")?,
            closed_at: r.try_get("closed_at")?,
            scopes: r.try_get("scopes")?,
        })
    }
}

impl FromRow for Violation {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(Violation {
            user_id: r.try_get("user_id")?,
            check: r.try_get("check")?,
            expected: r.try_get("expected")?,
            actual: r.try_get("actual")?,
        })
    }
}

impl FromRow for StatementRow {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(StatementRow {
            account_type: r.try_get("account_type")?,
            entries: r.try_get("entries")?,
            credited: r.try_get("credited")?,
            debited: r.try_get("debited")?,
            net: r.try_get("net")?,
            opening_balance: r.try_get("opening_balance")?,
            closing_balance: r.try_get("closing_balance")?,
        })
    }
}

impl FromRow for LowBalanceEvent {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(LowBalanceEvent {
            event_id: r.try_get("event_id")?,
            user_id: r.try_get("user_id")?,
            threshold: r.try_get("threshold")?,
            available: r.try_get("available")?,
            at: r.try_get("at")?,
        })
    }
}

impl FromRow for SpendingLimit {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(SpendingLimit {
            scope: r.try_get("scope")?,
            cap: r.try_get("cap")?,
            period: r.try_get("period")?,
            time_zone: r.try_get("time_zone")?,
            period_start: r.try_get("period_start")?,
            period_end: r.try_get("period_end")?,
            spent: r.try_get("spent")?,
            held: r.try_get("held")?,
            remaining: r.try_get("remaining")?,
        })
    }
}

impl FromRow for Metric {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(Metric {
            metric: r.try_get("metric")?,
            kind: r.try_get("kind")?,
            labels: r.try_get("labels")?,
            value: r.try_get("value")?,
        })
    }
}

impl FromRow for DistributedObject {
    fn from_row(r: &Row) -> Decoded<Self> {
        Ok(DistributedObject { object: r.try_get("object")?, distribution: r.try_get("distribution")? })
    }
}
