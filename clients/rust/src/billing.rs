//! [`Billing`]: one method per SQL function, named without the `billing_` prefix.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::call::{Call, Interval};
use crate::error::BillingError;
use crate::types::{
    AccountLog, DistributedObject, Hold, LowBalanceEvent, Metric, SpendingLimit, StatementRow, Violation,
};

/// The result of every method.
pub type Result<T, E = BillingError> = std::result::Result<T, E>;

/// The optional arguments of [`Billing::add`] (`None`: the SQL default, NULL).
#[derive(Debug, Clone, Default)]
pub struct AddOptions<'a> {
    pub remark: Option<&'a str>,
    pub association_no: Option<&'a str>,
    pub association_user_id: Option<&'a str>,
    /// With it, the credit is a grant that expires then; without, permanent.
    pub expire_at: Option<DateTime<Utc>>,
    pub subscription_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// The optional arguments of [`Billing::deduct`].
#[derive(Debug, Clone, Default)]
pub struct DeductOptions<'a> {
    pub remark: Option<&'a str>,
    pub association_no: Option<&'a str>,
    pub association_user_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// The spending-limit scopes the charge counts against (besides `*`).
    pub scopes: Option<&'a [&'a str]>,
}

/// The optional arguments of [`Billing::hold`].
#[derive(Debug, Clone, Default)]
pub struct HoldOptions<'a> {
    pub remark: Option<&'a str>,
    pub association_no: Option<&'a str>,
    pub association_user_id: Option<&'a str>,
    /// How long the hold reserves the power (SQL default: 15 minutes; at most 30 days).
    pub ttl: Option<Duration>,
    pub idempotency_key: Option<&'a str>,
    pub scopes: Option<&'a [&'a str]>,
}

/// The optional arguments of [`Billing::settle`].
#[derive(Debug, Clone, Default)]
pub struct SettleOptions<'a> {
    /// The entry's remark (default: the hold's).
    pub remark: Option<&'a str>,
    /// Let the permanent balance go negative for what the hold and the
    /// available power do not cover (down to the debt floor).
    pub allow_debt: bool,
}

/// The optional arguments of [`Billing::refund`].
#[derive(Debug, Clone, Default)]
pub struct RefundOptions<'a> {
    /// How much to give back (`None`: everything left).
    pub amount: Option<Decimal>,
    pub remark: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
}

/// The billing functions, called on `client`: a [`tokio_postgres::Client`]
/// (each call its own transaction) or a [`tokio_postgres::Transaction`] of
/// the caller (the calls join it; the caller commits). No method commits.
///
/// ```no_run
/// # async fn f(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use pgbilling::{Billing, DeductOptions};
/// use rust_decimal::Decimal;
///
/// let tx = client.transaction().await?;
/// let entry = Billing::new(&tx)
///     .deduct("alice", Decimal::new(125, 1), "CHAT_DEC", "CHAT", "chat-7", &DeductOptions::default())
///     .await?;
/// // ... the caller's own writes, in the same transaction ...
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct Billing<'a, C: GenericClient> {
    client: &'a C,
}

impl<C: GenericClient> Clone for Billing<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: GenericClient> Copy for Billing<'_, C> {}

impl<'a, C: GenericClient + Sync> Billing<'a, C> {
    /// The billing functions on a client or transaction.
    pub fn new(client: &'a C) -> Self {
        Billing { client }
    }

    /// The client or transaction the calls run on.
    pub fn client(&self) -> &'a C {
        self.client
    }

    /// `billing_power(user_id)`: the user's available power (0 for an unknown user).
    pub async fn power(&self, user_id: &str) -> Result<Decimal> {
        Call::new("billing_power").arg("user_id", &user_id, Type::TEXT).value(self.client).await
    }

    /// `billing_has_power(user_id, amount)`: an advisory check; deduct is the real one.
    pub async fn has_power(&self, user_id: &str, amount: Decimal) -> Result<bool> {
        Call::new("billing_has_power")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("amount", &amount, Type::NUMERIC)
            .value(self.client)
            .await
    }

    /// `billing_add(...)`: credits power, permanent or (with `expire_at`) as a grant.
    pub async fn add(
        &self,
        user_id: &str,
        amount: Decimal,
        account_type: &str,
        source_type: &str,
        source: &str,
        options: &AddOptions<'_>,
    ) -> Result<AccountLog> {
        Call::new("billing_add")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("amount", &amount, Type::NUMERIC)
            .arg("account_type", &account_type, Type::TEXT)
            .arg("source_type", &source_type, Type::TEXT)
            .arg("source", &source, Type::TEXT)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("association_no", &options.association_no, Type::TEXT)
            .opt("association_user_id", &options.association_user_id, Type::TEXT)
            .opt("expire_at", &options.expire_at, Type::TIMESTAMPTZ)
            .opt("subscription_id", &options.subscription_id, Type::TEXT)
            .opt("idempotency_key", &options.idempotency_key, Type::TEXT)
            .one(self.client)
            .await
    }

    /// `billing_deduct(...)`: spends power (PB001 if short, PB008 over a limit).
    pub async fn deduct(
        &self,
        user_id: &str,
        amount: Decimal,
        account_type: &str,
        source_type: &str,
        source: &str,
        options: &DeductOptions<'_>,
    ) -> Result<AccountLog> {
        Call::new("billing_deduct")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("amount", &amount, Type::NUMERIC)
            .arg("account_type", &account_type, Type::TEXT)
            .arg("source_type", &source_type, Type::TEXT)
            .arg("source", &source, Type::TEXT)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("association_no", &options.association_no, Type::TEXT)
            .opt("association_user_id", &options.association_user_id, Type::TEXT)
            .opt("idempotency_key", &options.idempotency_key, Type::TEXT)
            .opt("scopes", &options.scopes, Type::TEXT_ARRAY)
            .one(self.client)
            .await
    }

    /// `billing_add(options jsonb)`: the options-object form,
    /// `{"userId", "amount", "accountType", "source": {"type", "source"}, ...}`.
    /// Give `amount` as a string (`"12.5"`) or an exact JSON number, never a float.
    pub async fn add_with_options(&self, options: &Value) -> Result<AccountLog> {
        Call::new("billing_add").arg("options", options, Type::JSONB).one(self.client).await
    }

    /// `billing_deduct(options jsonb)`: the options-object form of [`Billing::deduct`].
    pub async fn deduct_with_options(&self, options: &Value) -> Result<AccountLog> {
        Call::new("billing_deduct").arg("options", options, Type::JSONB).one(self.client).await
    }

    /// `billing_hold(...)`: reserves power until settle, release or the ttl.
    pub async fn hold(
        &self,
        user_id: &str,
        amount: Decimal,
        account_type: &str,
        source_type: &str,
        source: &str,
        options: &HoldOptions<'_>,
    ) -> Result<Hold> {
        let ttl = options.ttl.map(Interval);
        Call::new("billing_hold")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("amount", &amount, Type::NUMERIC)
            .arg("account_type", &account_type, Type::TEXT)
            .arg("source_type", &source_type, Type::TEXT)
            .arg("source", &source, Type::TEXT)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("association_no", &options.association_no, Type::TEXT)
            .opt("association_user_id", &options.association_user_id, Type::TEXT)
            .opt("ttl", &ttl, Type::INTERVAL)
            .opt("idempotency_key", &options.idempotency_key, Type::TEXT)
            .opt("scopes", &options.scopes, Type::TEXT_ARRAY)
            .one(self.client)
            .await
    }

    /// `billing_settle(hold_id, actual_amount, ...)`: charges the actual cost in
    /// one entry and gives the rest back. `None` when `actual_amount` is 0 (a release).
    pub async fn settle(
        &self,
        hold_id: i64,
        actual_amount: Decimal,
        options: &SettleOptions<'_>,
    ) -> Result<Option<AccountLog>> {
        let allow_debt = options.allow_debt.then_some(true);
        Call::new("billing_settle")
            .arg("hold_id", &hold_id, Type::INT8)
            .arg("actual_amount", &actual_amount, Type::NUMERIC)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("allow_debt", &allow_debt, Type::BOOL)
            .opt_row(self.client, "id")
            .await
    }

    /// `billing_release(hold_id, reason)`: gives the whole hold back.
    pub async fn release(&self, hold_id: i64, reason: Option<&str>) -> Result<Hold> {
        Call::new("billing_release")
            .arg("hold_id", &hold_id, Type::INT8)
            .opt("reason", &reason, Type::TEXT)
            .one(self.client)
            .await
    }

    /// `billing_refund(log_id, ...)`: gives back all or part of a debit entry.
    pub async fn refund(&self, log_id: i64, options: &RefundOptions<'_>) -> Result<AccountLog> {
        Call::new("billing_refund")
            .arg("log_id", &log_id, Type::INT8)
            .opt("amount", &options.amount, Type::NUMERIC)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("idempotency_key", &options.idempotency_key, Type::TEXT)
            .one(self.client)
            .await
    }

    /// `billing_user_settle(user_id, hold_id, actual_amount, ...)`: [`Billing::settle`]
    /// of a hold of `user_id` (22023, [`BillingError::InvalidArgument`], if it is
    /// not the user's). On Citus the call runs on the node that holds the user;
    /// on one node it is the same as `settle`. `None` when `actual_amount` is 0.
    pub async fn user_settle(
        &self,
        user_id: &str,
        hold_id: i64,
        actual_amount: Decimal,
        options: &SettleOptions<'_>,
    ) -> Result<Option<AccountLog>> {
        let allow_debt = options.allow_debt.then_some(true);
        Call::new("billing_user_settle")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("hold_id", &hold_id, Type::INT8)
            .arg("actual_amount", &actual_amount, Type::NUMERIC)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("allow_debt", &allow_debt, Type::BOOL)
            .opt_row(self.client, "id")
            .await
    }

    /// `billing_user_release(user_id, hold_id, reason)`: [`Billing::release`] of a
    /// hold of `user_id` (22023 if it is not the user's); on Citus it runs on the
    /// node that holds the user.
    pub async fn user_release(&self, user_id: &str, hold_id: i64, reason: Option<&str>) -> Result<Hold> {
        Call::new("billing_user_release")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("hold_id", &hold_id, Type::INT8)
            .opt("reason", &reason, Type::TEXT)
            .one(self.client)
            .await
    }

    /// `billing_user_refund(user_id, log_id, ...)`: [`Billing::refund`] of an entry
    /// of `user_id` (22023 if it is not the user's); on Citus it runs on the node
    /// that holds the user.
    pub async fn user_refund(&self, user_id: &str, log_id: i64, options: &RefundOptions<'_>) -> Result<AccountLog> {
        Call::new("billing_user_refund")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("log_id", &log_id, Type::INT8)
            .opt("amount", &options.amount, Type::NUMERIC)
            .opt("remark", &options.remark, Type::TEXT)
            .opt("idempotency_key", &options.idempotency_key, Type::TEXT)
            .one(self.client)
            .await
    }

    /// `billing_verify(user_id)`: disagreements between the stored state and a
    /// replay of the ledger (empty: healthy). `None`: every user.
    pub async fn verify(&self, user_id: Option<&str>) -> Result<Vec<Violation>> {
        Call::new("billing_verify").opt("user_id", &user_id, Type::TEXT).all(self.client).await
    }

    /// `billing_history(user_id, page_size, before_seq)`: one page of entries, newest first.
    pub async fn history(
        &self,
        user_id: &str,
        page_size: Option<i32>,
        before_seq: Option<i64>,
    ) -> Result<Vec<AccountLog>> {
        Call::new("billing_history")
            .arg("user_id", &user_id, Type::TEXT)
            .opt("page_size", &page_size, Type::INT4)
            .opt("before_seq", &before_seq, Type::INT8)
            .all(self.client)
            .await
    }

    /// `billing_by_association(user_id, association_no)`: the entries of one association, oldest first.
    pub async fn by_association(&self, user_id: &str, association_no: &str) -> Result<Vec<AccountLog>> {
        Call::new("billing_by_association")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("association_no", &association_no, Type::TEXT)
            .all(self.client)
            .await
    }

    /// `billing_statement(user_id, from_ts, to_ts)`: one row per account type, then the total.
    pub async fn statement(
        &self,
        user_id: &str,
        from_ts: DateTime<Utc>,
        to_ts: DateTime<Utc>,
    ) -> Result<Vec<StatementRow>> {
        Call::new("billing_statement")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("from_ts", &from_ts, Type::TIMESTAMPTZ)
            .arg("to_ts", &to_ts, Type::TIMESTAMPTZ)
            .all(self.client)
            .await
    }

    /// `billing_price(rule_code, tokens)`: what `tokens` cost under a pricing rule.
    pub async fn price(&self, rule_code: &str, tokens: i64) -> Result<Decimal> {
        Call::new("billing_price")
            .arg("rule_code", &rule_code, Type::TEXT)
            .arg("tokens", &tokens, Type::INT8)
            .value(self.client)
            .await
    }

    /// `billing_expire(as_of, batch_size)`: the sweep; how many grants and lapsed holds it ended.
    pub async fn expire(&self, as_of: Option<DateTime<Utc>>, batch_size: Option<i32>) -> Result<i64> {
        Call::new("billing_expire")
            .opt("as_of", &as_of, Type::TIMESTAMPTZ)
            .opt("batch_size", &batch_size, Type::INT4)
            .value(self.client)
            .await
    }

    /// `billing_revoke_subscription(subscription_id, remark)`: ends the subscription's grants now.
    pub async fn revoke_subscription(&self, subscription_id: &str, remark: Option<&str>) -> Result<Vec<AccountLog>> {
        Call::new("billing_revoke_subscription")
            .arg("subscription_id", &subscription_id, Type::TEXT)
            .opt("remark", &remark, Type::TEXT)
            .all(self.client)
            .await
    }

    /// `billing_adjust(user_id, delta, remark, operator)`: a manual correction, up or down.
    pub async fn adjust(
        &self,
        user_id: &str,
        delta: Decimal,
        remark: &str,
        operator: Option<&str>,
    ) -> Result<AccountLog> {
        Call::new("billing_adjust")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("delta", &delta, Type::NUMERIC)
            .arg("remark", &remark, Type::TEXT)
            .opt("operator", &operator, Type::TEXT)
            .one(self.client)
            .await
    }

    /// `billing_set_low_balance(user_id, threshold)`: sets (or with `None` removes)
    /// the low-balance threshold; returns it.
    pub async fn set_low_balance(&self, user_id: &str, threshold: Option<Decimal>) -> Result<Option<Decimal>> {
        Call::new("billing_set_low_balance")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("threshold", &threshold, Type::NUMERIC)
            .value(self.client)
            .await
    }

    /// `billing_low_balance_events(after_id)`: the events after an id, oldest first.
    pub async fn low_balance_events(&self, after_id: Option<i64>) -> Result<Vec<LowBalanceEvent>> {
        Call::new("billing_low_balance_events").opt("after_id", &after_id, Type::INT8).all(self.client).await
    }

    /// `billing_set_debt_limit(user_id, max_debt)`: sets (or with `None` removes) the debt floor.
    pub async fn set_debt_limit(&self, user_id: &str, max_debt: Option<Decimal>) -> Result<Option<Decimal>> {
        Call::new("billing_set_debt_limit")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("max_debt", &max_debt, Type::NUMERIC)
            .value(self.client)
            .await
    }

    /// `billing_set_limit(user_id, scope, cap, period, time_zone)`: sets (or with a
    /// `None` cap removes) a spending limit; returns it as [`Billing::limits`] shows it.
    pub async fn set_limit(
        &self,
        user_id: &str,
        scope: &str,
        cap: Option<Decimal>,
        period: Option<&str>,
        time_zone: Option<&str>,
    ) -> Result<Option<SpendingLimit>> {
        Call::new("billing_set_limit")
            .arg("user_id", &user_id, Type::TEXT)
            .arg("scope", &scope, Type::TEXT)
            .arg("cap", &cap, Type::NUMERIC)
            .opt("period", &period, Type::TEXT)
            .opt("time_zone", &time_zone, Type::TEXT)
            .opt_row(self.client, "scope")
            .await
    }

    /// `billing_limits(user_id)`: the user's spending limits as they stand now.
    pub async fn limits(&self, user_id: &str) -> Result<Vec<SpendingLimit>> {
        Call::new("billing_limits").arg("user_id", &user_id, Type::TEXT).all(self.client).await
    }

    /// `billing_distribute()`: on a Citus coordinator, as the extension's owner,
    /// distributes the tables by user_id, gives each node its range of ids and
    /// delegates the per-user functions; one row per object it handled. Harmless
    /// to run again. Without Citus: PB009, [`BillingError::CitusUnavailable`]
    /// (nothing is changed); 42501 for roles not granted EXECUTE.
    pub async fn distribute(&self) -> Result<Vec<DistributedObject>> {
        Call::new("billing_distribute").all(self.client).await
    }

    /// `billing_distribute(delegate => true)`: [`Billing::distribute`], and Citus then sends each
    /// per-user call to the user's node (docs/citus.md, "Delegation": read it first; it stays on).
    pub async fn distribute_delegated(&self) -> Result<Vec<DistributedObject>> {
        Call::new("billing_distribute").arg("delegate", &true, Type::BOOL).all(self.client).await
    }

    /// `billing_metrics()`: counters and gauges for monitoring.
    pub async fn metrics(&self) -> Result<Vec<Metric>> {
        Call::new("billing_metrics").all(self.client).await
    }

    /// `billing_metrics_reset()`: zeroes the server's counters (superusers only: 42501 otherwise).
    pub async fn metrics_reset(&self) -> Result<()> {
        Call::new("billing_metrics_reset").run(self.client).await
    }
}
