//! Spending limits: the scopes a charge names, and counting a charge against
//! the user's limits (sql/limits.sql, billing.count_limits) with PB008 when it
//! would take one above its cap.
//!
//! A charge (billing_deduct, billing_hold, and the settle of a hold) counts
//! against the user's limit of each scope it names and the user's '*' limit.
//! The count runs under the account lock, before power is checked, so a charge
//! that is capped reports PB008 even when power is short too. One UPDATE
//! changes the counters (sql/statements/shared/count_limits.sql): the
//! one-statement deduct and hold run it as a CTE, and count_limits.sql runs it
//! alone, for [`count`] (the Rust paths) and billing.count_limits, its C entry
//! point (the PL/pgSQL sweep of lapsed holds). Each returns the first limit the
//! call takes above its cap as shared/first_over.sql gives it, which
//! [`over_cap`] turns into PB008.

use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};
use rust_decimal::Decimal;

use crate::accounts::Account;
use crate::errors::{BillingError, BillingResult, Reveals, SqlState};
use crate::fmgr::{sql_function, Args, Returned, MAX_KEY_CHARS};
use crate::ledger::Movement;
use crate::statements::{self, Plans};

/// The most scopes one charge may name.
pub const MAX_SCOPES: usize = 16;

/// The scope of the limit every charge counts against; a charge never names it.
pub const EVERY_CHARGE: &str = "*";

/// A charge's scopes as the caller gave them (NULL: none): each present and a
/// key (not empty, at most 255 characters), never '*', at most [`MAX_SCOPES`]
/// once duplicates count once. Returns them sorted, without duplicates.
pub fn scopes(argument: &str, given: Option<Vec<Option<String>>>) -> BillingResult<Vec<String>> {
    let Some(given) = given else {
        return Ok(Vec::new());
    };
    let mut scopes = Vec::with_capacity(given.len());
    for scope in given {
        let Some(scope) = scope else {
            return Err(BillingError::new(SqlState::NullValueNotAllowed, format!("{argument} must not contain NULL")));
        };
        if scope.trim().is_empty() {
            return Err(BillingError::invalid_argument(argument, "must not contain an empty scope"));
        }
        if scope.chars().count() > MAX_KEY_CHARS {
            return Err(BillingError::invalid_argument(argument, format!("has a scope longer than {MAX_KEY_CHARS} characters")));
        }
        if scope == EVERY_CHARGE {
            return Err(BillingError::invalid_argument(argument, "must not name '*': the '*' limit counts every charge")
                .with_hint("Leave '*' out; name only the charge's own scopes, such as key:sk-123."));
        }
        scopes.push(scope);
    }
    scopes.sort();
    scopes.dedup();
    if scopes.len() > MAX_SCOPES {
        return Err(BillingError::invalid_argument(argument, format!("names {} scopes; at most {MAX_SCOPES} are allowed", scopes.len())));
    }
    Ok(scopes)
}

/// What a call counts against the user's limits (see billing.count_limits).
pub struct Count<'s> {
    pub scopes: &'s [String],
    /// Added to spent: > 0 a charge now, < 0 a refund of a charge counted at `counted_at`.
    pub spent: Decimal,
    /// Added to held: > 0 a hold now, < 0 a closed hold made at `counted_at`.
    pub held: Decimal,
    /// When what a negative part gives back was counted.
    pub counted_at: Option<pgrx::pg_sys::TimestampTz>,
    /// For a refund: the seq of the charge entry it gives back.
    pub counted_seq: Option<i64>,
}

/// Counts a charge (or gives one back) against the user's limits, with the account
/// locked; PB008 for the first limit it takes above its cap (the error undoes it).
pub fn count(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, count: Count<'_>) -> BillingResult<()> {
    let table = run(client, plans, user_id, &count)?;
    match over_cap(&table, 1, user_id)? {
        Some(over) => Err(over),
        None => Ok(()),
    }
}

/// Runs sql/statements/count_limits.sql: one row, the first limit (in scope order,
/// bytewise) the call takes above its cap as shared/first_over.sql gives it, or NULL.
fn run<'c>(client: &mut SpiClient<'c>, plans: &Plans, user_id: &str, count: &Count<'_>) -> BillingResult<SpiTupleTable<'c>> {
    let table = client.update(
        &plans.count_limits,
        None,
        &[
            user_id.into(),
            count.scopes.to_vec().into(),
            crate::ledger::numeric(count.spent).into(),
            crate::ledger::numeric(count.held).into(),
            crate::ledger::timestamptz(count.counted_at),
            count.counted_seq.into(),
            crate::ledger::now(),
        ],
    )?;
    Ok(table.first())
}

/// billing.count_limits(user_id, scopes, spent_delta, held_delta, counted_at, counted_seq)
/// RETURNS text[]: count_limits.sql for billing.return_due_holds, with the account
/// locked. Returns the first limit the call takes above its cap as ARRAY[scope, cap,
/// spent, held, requested, period_end] (what [`over_cap`] reads), or NULL.
fn count_limits(args: &Args) -> Returned {
    let user_id = args.key(0, "user_id")?;
    let scopes: Vec<String> = args.text_array(1).unwrap_or_default().into_iter().flatten().collect();
    let count = Count {
        scopes: &scopes,
        spent: args.number(2, "spent_delta")?,
        held: args.number(3, "held_delta")?,
        counted_at: args.timestamptz(4).map(Into::into),
        counted_seq: args.optional_id(5),
    };
    let over = Spi::connect_mut(|client| -> BillingResult<Option<Vec<Option<String>>>> {
        let plans = statements::get(client)?;
        Ok(run(client, plans, &user_id, &count)?.get::<Vec<Option<String>>>(1)?)
    })?;
    // made here, after SPI is done: a datum made inside would be freed with SPI's memory
    Ok(over.into_datum())
}
sql_function!(pg_finfo_billing_count_limits, billing_count_limits => count_limits);

/// A new charge of `movement` (`spent` now, or `held` while a hold is open), counted
/// when the user has limits and the movement is a charge. Call with the account locked.
pub fn count_new(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    account: &Account,
    movement: &Movement,
    spent: Decimal,
    held: Decimal,
) -> BillingResult<()> {
    match (account.limited, &movement.scopes) {
        (true, Some(scopes)) => {
            count(client, plans, &movement.user_id, Count { scopes, spent, held, counted_at: None, counted_seq: None })
        }
        _ => Ok(()),
    }
}

/// PB008 from column `column` of the row: the limit a charge takes above its cap, as
/// shared/first_over.sql gives it (ARRAY[scope, cap, spent, held, requested,
/// period_end]); None when it is NULL (no such limit).
pub fn over_cap(row: &SpiTupleTable<'_>, column: usize, user_id: &str) -> BillingResult<Option<BillingError>> {
    let Some(parts) = row.get::<Vec<Option<String>>>(column)? else {
        return Ok(None);
    };
    let [Some(scope), Some(cap), Some(spent), Some(held), Some(requested), Some(period_end)] = <[Option<String>; 6]>::try_from(parts)
        .map_err(|_| BillingError::internal("the first limit over its cap came as an array of another length"))?
    else {
        return Err(BillingError::internal("the first limit over its cap has a NULL part"));
    };
    let number = |what: &str, text: &str| crate::amounts::parse_stored(what, text);
    let over = OverCap {
        scope,
        cap: number("cap", &cap)?,
        spent: number("spent", &spent)?,
        held: number("held", &held)?,
        requested: number("requested", &requested)?,
        period_end,
    };
    Ok(Some(over.error(user_id)))
}

/// A limit a charge would take above its cap.
#[derive(Debug, PartialEq, Eq)]
pub struct OverCap {
    pub scope: String,
    pub cap: Decimal,
    /// Spent in the period before this charge.
    pub spent: Decimal,
    /// Held by open holds in the period (without the hold a settle closes).
    pub held: Decimal,
    /// What this charge adds.
    pub requested: Decimal,
    /// When the period ends (RFC 3339, UTC), or `never`.
    pub period_end: String,
}

impl OverCap {
    /// PB008. The DETAIL is `key=value` pairs in this order, separated by one
    /// space: cap, spent, held, requested, period_end (docs/errors.md). A
    /// caller that may not execute billing_limits sees only requested.
    pub fn error(&self, user_id: &str) -> BillingError {
        BillingError::new(
            SqlState::LimitExceeded,
            format!("charge exceeds the spending limit of scope {:?} for user {:?}", self.scope, user_id),
        )
        .with_private_detail(
            Reveals::Limits,
            format!(
                "cap={} spent={} held={} requested={} period_end={}",
                self.cap.normalize(),
                self.spent.normalize(),
                self.held.normalize(),
                self.requested.normalize(),
                self.period_end
            ),
            format!("requested={}", self.requested.normalize()),
        )
        .with_hint("Charge less, wait for the next period, or raise the cap with billing_set_limit.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(scopes: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(scopes.iter().map(|s| s.map(str::to_owned)).collect())
    }

    #[test]
    fn scopes_are_sorted_and_counted_once() {
        let s = scopes("scopes", given(&[Some("model:b"), Some("key:a"), Some("model:b")])).unwrap();
        assert_eq!(s, vec!["key:a".to_owned(), "model:b".to_owned()]);
        assert!(scopes("scopes", None).unwrap().is_empty());
        assert!(scopes("scopes", given(&[])).unwrap().is_empty());
    }

    #[test]
    fn bad_scopes_are_refused() {
        let null = scopes("scopes", given(&[Some("a"), None])).unwrap_err();
        assert_eq!(null.state, SqlState::NullValueNotAllowed);
        let star = scopes("scopes", given(&[Some("*")])).unwrap_err();
        assert_eq!(star.state, SqlState::InvalidParameterValue);
        assert!(star.message.starts_with("scopes "));
        let empty = scopes("scopes", given(&[Some(" ")])).unwrap_err();
        assert_eq!(empty.state, SqlState::InvalidParameterValue);
        let long = "x".repeat(256);
        assert_eq!(scopes("scopes", given(&[Some(&long)])).unwrap_err().state, SqlState::InvalidParameterValue);
        let many: Vec<String> = (0..17).map(|n| format!("s{n}")).collect();
        let many: Vec<Option<&str>> = many.iter().map(|s| Some(s.as_str())).collect();
        let error = scopes("scopes", given(&many)).unwrap_err();
        assert_eq!(error.state, SqlState::InvalidParameterValue);
        assert!(error.message.contains("at most 16"), "{}", error.message);
        // 17 names that are 16 scopes once duplicates count once are fine
        let mut sixteen: Vec<Option<&str>> = many[..16].to_vec();
        sixteen.push(Some("s0"));
        assert_eq!(scopes("scopes", given(&sixteen)).unwrap().len(), 16);
    }

    #[test]
    fn the_detail_has_a_stable_format() {
        let over = OverCap {
            scope: "key:sk-1".to_owned(),
            cap: "100.00".parse().unwrap(),
            spent: "80".parse().unwrap(),
            held: "10.5".parse().unwrap(),
            requested: "30".parse().unwrap(),
            period_end: "2026-12-03T00:00:00.000000Z".to_owned(),
        };
        let error = over.error("u1");
        assert_eq!(error.state, SqlState::LimitExceeded);
        assert_eq!(error.message, r#"charge exceeds the spending limit of scope "key:sk-1" for user "u1""#);
        assert_eq!(
            error.detail.as_deref(),
            Some("cap=100 spent=80 held=10.5 requested=30 period_end=2026-12-03T00:00:00.000000Z")
        );
        assert_eq!(error.private.as_ref().map(|(r, d)| (*r, d.as_str())), Some((Reveals::Limits, "requested=30")));
    }
}
