//! The general path: changing grants and holds outside billing_deduct's fast path.
//!
//! Holds, settles, releases and refunds move power back into grants, or out of
//! them into a hold, which can change which grant is spent next. Rather than
//! keep the account row's caches right step by step, these calls, once the
//! account row is locked:
//! 1. [`open`]: write the head grant's live remaining back to grant_store (so
//!    grant_store is exact) and give back what lapsed holds reserved (which
//!    rebuilds the caches when it gives anything back);
//! 2. change grant_store and billing.holds with plain statements;
//! 3. [`refresh`]: rebuild every cache on the account row from grant_store and
//!    the open holds, and learn the power available now for balance_after,
//!    through `billing.refresh_accounts` (sql/power.sql), the one rebuild that
//!    the PL/pgSQL operations call too.

use pgrx::datum::{AnyNumeric, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiTupleTable};
use rust_decimal::Decimal;

use crate::amounts;
use crate::drawdown::{Drawdown, LiveGrant};
use crate::errors::{BillingError, BillingResult};
use crate::ledger::{self, Movement};
use crate::statements::Plans;

/// Makes grant_store exact and, with `holds_due`, gives back what the user's lapsed
/// holds reserved (to their grants and the permanent balance). Call right after
/// locking the account row, before reading grant_store.
pub fn open(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, holds_due: bool) -> BillingResult<()> {
    client.update(&plans.write_back_head, None, &[user_id.into()])?;
    if holds_due {
        client.update(&plans.return_due_holds, None, &[user_id.into()])?;
    }
    Ok(())
}

/// The user's live grants in spending order, exactly as grant_store holds them (after [`open`]):
/// all of them, through the same statement the deduct reads its first few with.
pub fn exact_live_grants(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str) -> BillingResult<Vec<LiveGrant>> {
    let table = client.update(&plans.live_grants, None, &[user_id.into(), Option::<i64>::None.into()])?;
    let mut grants = Vec::with_capacity(table.len());
    for row in table {
        let id = row.get::<i64>(1)?.ok_or_else(|| BillingError::internal("grant id is NULL"))?;
        let remaining = row.get::<AnyNumeric>(2)?.ok_or_else(|| BillingError::internal("remaining is NULL"))?;
        let remaining = amounts::parse_stored("remaining", &remaining.to_string())?;
        grants.push(LiveGrant { id, remaining });
    }
    Ok(grants)
}

/// Adds each delta (negative to take) to its grant's remaining; deltas of one grant are summed.
pub fn move_grants(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, deltas: &[(i64, Decimal)]) -> BillingResult<()> {
    let merged = merge(deltas);
    if merged.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = merged.iter().map(|(id, _)| *id).collect();
    let amounts: Vec<AnyNumeric> = merged.iter().map(|(_, d)| ledger::numeric(*d)).collect();
    client.update(&plans.move_grants, None, &[user_id.into(), ids.into(), amounts.into()])?;
    Ok(())
}

/// Sums the amounts of each id, keeping the order ids first appear in; drops zeros.
pub fn merge(parts: &[(i64, Decimal)]) -> Vec<(i64, Decimal)> {
    let mut merged: Vec<(i64, Decimal)> = Vec::new();
    for (id, amount) in parts {
        match merged.iter_mut().find(|(m, _)| m == id) {
            Some((_, total)) => *total += *amount,
            None => merged.push((*id, *amount)),
        }
    }
    merged.retain(|(_, amount)| !amount.is_zero());
    merged
}

/// Which of these grants have expired (at or before now).
pub fn expired_grants(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, ids: &[i64]) -> BillingResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let table = client.update(&plans.grant_expiries, None, &[user_id.into(), ids.to_vec().into()])?;
    let mut expired = Vec::new();
    for row in table {
        if row.get::<bool>(3)?.unwrap_or(false) {
            expired.push(row.get::<i64>(1)?.ok_or_else(|| BillingError::internal("grant id is NULL"))?);
        }
    }
    Ok(expired)
}

/// The account after [`refresh`]: its last seq and the power available now.
pub struct Refreshed {
    pub last_seq: i64,
    pub available: Decimal,
}

/// Adds `permanent_delta` to the permanent balance and `entries` to last_seq, and
/// rebuilds the cached totals, next expiry, head grant and next hold ttl.
pub fn refresh(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    user_id: &str,
    permanent_delta: Decimal,
    entries: i64,
) -> BillingResult<Refreshed> {
    let table = client.update(
        &plans.refresh_account,
        None,
        &[user_id.into(), ledger::numeric(permanent_delta).into(), entries.into()],
    )?;
    let row = table.first();
    Ok(Refreshed {
        last_seq: row.get::<i64>(1)?.ok_or_else(|| BillingError::internal("last_seq is NULL"))?,
        available: ledger::decimal(&row, 2, "available")?,
    })
}

/// One ledger entry, written on its own; returns the row.
pub struct Entry<'m> {
    pub movement: &'m Movement,
    pub seq: i64,
    pub balance_after: Decimal,
    pub detail: String,
    pub refund_of: Option<i64>,
    /// The id reserved for it (a new grant names its entry), or None for the next one.
    pub id: Option<i64>,
}

/// Returns the entry as a row, and its id.
pub fn insert_entry(client: &mut SpiClient<'_>, plans: &Plans, entry: &Entry<'_>) -> BillingResult<(pg_sys::Datum, i64)> {
    let m = entry.movement;
    let args = [
        m.user_id.as_str().into(),
        entry.seq.into(),
        m.direction.sign().into(),
        ledger::numeric(m.amount).into(),
        ledger::numeric(entry.balance_after).into(),
        m.account_type.as_str().into(),
        m.source_type.as_str().into(),
        m.source.as_str().into(),
        m.remark.as_deref().into(),
        m.association_no.as_deref().into(),
        m.association_user_id.as_deref().into(),
        m.subscription_id.as_deref().into(),
        entry.detail.as_str().into(),
        m.idempotency_key.as_deref().into(),
        entry.refund_of.into(),
        ledger::timestamptz(m.expire_at),
        entry.id.into(),
        m.scopes.clone().into(),
    ];
    let table = client.update(&plans.insert_entry, None, &args)?;
    let row = table.first();
    let id = row.get::<i64>(2)?.ok_or_else(|| BillingError::internal("entry id is NULL"))?;
    Ok((ledger::whole_row(&row, 1)?, id))
}

/// Creates a grant of `amount` with `remaining` left (less when it first pays a debt);
/// returns (grant id, id reserved for its ledger entry).
pub fn insert_grant(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    movement: &Movement,
    remaining: Decimal,
) -> BillingResult<(i64, i64)> {
    let expire_at = movement.expire_at.map(|t| TimestampWithTimeZone::try_from(t).expect("a checked expire_at is valid"));
    let table = client.update(
        &plans.insert_grant,
        None,
        &[
            movement.user_id.as_str().into(),
            ledger::numeric(movement.amount).into(),
            ledger::numeric(remaining).into(),
            expire_at.into(),
            movement.subscription_id.as_deref().into(),
        ],
    )?;
    let row = table.first();
    let grant_id = row.get::<i64>(1)?.ok_or_else(|| BillingError::internal("grant id is NULL"))?;
    let log_id = row.get::<i64>(2)?.ok_or_else(|| BillingError::internal("log id is NULL"))?;
    Ok((grant_id, log_id))
}

/// Reads columns `first`, `first + 1`, `first + 2` of a row laid out by statements::funding:
/// where an entry's or a hold's power came from.
pub fn funding(row: &SpiTupleTable<'_>, first: usize) -> BillingResult<Drawdown> {
    let from_permanent = ledger::decimal(row, first, "funding permanent")?;
    let ids = row.get::<Vec<i64>>(first + 1)?.unwrap_or_default();
    let amounts = row.get::<Vec<AnyNumeric>>(first + 2)?.unwrap_or_default();
    if ids.len() != amounts.len() {
        return Err(BillingError::internal("funding has ids and amounts of different lengths"));
    }
    let mut from_grants = Vec::with_capacity(ids.len());
    for (id, amount) in ids.into_iter().zip(amounts) {
        from_grants.push((id, amounts::parse_stored("funding amount", &amount.to_string())?));
    }
    Ok(Drawdown { from_grants, from_permanent })
}
