//! The ledger: one immutable `billing.account_log` entry for every change.
//!
//! This module checks what an entry may say (known account and source types
//! of the right direction), answers idempotent repeats with the original
//! entry, and writes an entry together with the account's new totals.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use pgrx::datum::{AnyNumeric, DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiTupleTable};
use rust_decimal::Decimal;

use crate::amounts;
use crate::errors::{BillingError, BillingResult, Reveals, SqlState};
use crate::statements::Plans;

/// Which way an entry moves power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Credit,
    Debit,
}

impl Direction {
    pub fn sign(self) -> i16 {
        match self {
            Direction::Credit => 1,
            Direction::Debit => -1,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Direction::Credit => "credit",
            Direction::Debit => "debit",
        }
    }
}

/// What a caller asked to record: the arguments every entry carries.
#[derive(Clone, Debug)]
pub struct Movement {
    pub direction: Direction,
    pub user_id: String,
    pub amount: Decimal,
    pub account_type: String,
    pub source_type: String,
    pub source: String,
    pub remark: Option<String>,
    pub association_no: Option<String>,
    pub association_user_id: Option<String>,
    pub subscription_id: Option<String>,
    pub expire_at: Option<pg_sys::TimestampTz>,
    pub idempotency_key: Option<String>,
    /// For a charge (a deduct, a hold, a settle): its scopes (checked, sorted), which
    /// with '*' it counts against (src/limits.rs). None: not a charge.
    pub scopes: Option<Vec<String>>,
}

/// The account's cached totals as they will be after the entry.
pub struct Totals {
    pub permanent: Decimal,
    pub grants_total: Decimal,
    pub next_expiry: Option<pg_sys::TimestampTz>,
    /// The live grant spent next and its remaining.
    pub head: Option<(i64, Decimal)>,
}

/// Type codes already found valid in this backend: account_type -> direction, and source types.
///
/// PostgreSQL's invalidation keeps it true. Every statement that changes a type
/// table fires billing.forget_type_codes (a statement trigger, [`forget_type_codes`]),
/// which invalidates that table's relcache entry; PostgreSQL then runs the
/// callback below in this backend at the end of the command and again at
/// ROLLBACK (or ROLLBACK TO SAVEPOINT), and in every other backend once the
/// change commits. The callback empties the cache when the entry of either
/// type table, or every entry, is invalidated. A cache hit costs what it always
/// did: nothing here runs on that path.
#[derive(Default)]
struct KnownTypes {
    account: HashMap<String, i16>,
    source: HashSet<String>,
    /// The oids of billing.account_types and billing.source_types, looked up
    /// before the first code is remembered and forgotten with the codes.
    tables: Option<[pg_sys::Oid; 2]>,
}

thread_local! {
    static KNOWN_TYPES: RefCell<KnownTypes> = RefCell::new(KnownTypes::default());
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// How many times the cache was emptied: a lookup during which it was is not remembered
    /// (its answer may predate the change that emptied it).
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

unsafe extern "C-unwind" fn forget_known_types(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // No catalog access here: PostgreSQL may call this while it processes invalidations.
    KNOWN_TYPES.with_borrow_mut(|known| {
        let ours = match known.tables {
            Some(tables) => relid == pg_sys::InvalidOid || tables.contains(&relid),
            None => false,
        };
        if ours {
            *known = KnownTypes::default();
            GENERATION.set(GENERATION.get().wrapping_add(1));
        }
    });
}

/// Rejects an unknown account_type or source_type, or a type of the wrong direction (PB002).
pub fn check_types(client: &SpiClient<'_>, plans: &Plans, movement: &Movement) -> BillingResult<()> {
    let cached = KNOWN_TYPES.with_borrow(|known| {
        (known.account.get(&movement.account_type).copied(), known.source.contains(&movement.source_type))
    });
    let (direction, source_known, remember) = match cached {
        (Some(direction), true) => (Some(direction), true, false),
        _ => {
            let generation = watch_type_tables();
            let row = client
                .select(&plans.types, None, &[movement.account_type.as_str().into(), movement.source_type.as_str().into()])?
                .first();
            // remembered below only if nothing emptied the cache meanwhile
            let unchanged = generation.is_some() && generation == Some(GENERATION.get());
            (row.get::<i16>(1)?, row.get::<bool>(2)?.unwrap_or(false), unchanged)
        }
    };
    match direction {
        None => {
            return Err(BillingError::new(
                SqlState::InvalidType,
                format!("unknown account_type {:?}", movement.account_type),
            )
            .with_hint("Known types are listed in billing.account_types; a DBA adds new ones with INSERT."))
        }
        Some(sign) if sign != movement.direction.sign() => {
            let actual = if sign > 0 { Direction::Credit } else { Direction::Debit };
            return Err(BillingError::new(
                SqlState::InvalidType,
                format!(
                    "account_type {:?} is a {} type, but this call records a {}",
                    movement.account_type,
                    actual.describe(),
                    movement.direction.describe()
                ),
            )
            .with_hint("Credits use *_INC types, debits *_DEC types (see billing.account_types)."));
        }
        Some(_) => {}
    }
    if !source_known {
        return Err(BillingError::new(
            SqlState::InvalidType,
            format!("unknown source_type {:?}", movement.source_type),
        )
        .with_hint("Known types are listed in billing.source_types; a DBA adds new ones with INSERT."));
    }
    if remember {
        remember_types(&movement.account_type, movement.direction.sign(), &movement.source_type);
    }
    Ok(())
}

/// Before a lookup that may be remembered: registers the callback and notes the
/// oids of the type tables (None if they cannot be found, and nothing is remembered).
/// Returns the generation to compare with after the lookup.
fn watch_type_tables() -> Option<u64> {
    if !CALLBACK_REGISTERED.get() {
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_known_types), pg_sys::Datum::from(0usize)) };
        CALLBACK_REGISTERED.set(true);
    }
    if KNOWN_TYPES.with_borrow(|known| known.tables.is_none()) {
        // SAFETY: plain catalog lookups by name in schema billing, outside any borrow
        // (a lookup may process invalidations, which run the callback).
        let tables = unsafe {
            let schema = pg_sys::get_namespace_oid(c"billing".as_ptr(), true);
            [
                pg_sys::get_relname_relid(c"account_types".as_ptr(), schema),
                pg_sys::get_relname_relid(c"source_types".as_ptr(), schema),
            ]
        };
        if tables.contains(&pg_sys::InvalidOid) {
            return None;
        }
        KNOWN_TYPES.with_borrow_mut(|known| known.tables = Some(tables));
    }
    Some(GENERATION.get())
}

fn remember_types(account_type: &str, direction: i16, source_type: &str) {
    KNOWN_TYPES.with_borrow_mut(|known| {
        if known.tables.is_some() {
            known.account.insert(account_type.to_owned(), direction);
            known.source.insert(source_type.to_owned());
        }
    });
}

/// billing.forget_type_codes(), AFTER ... FOR EACH STATEMENT on both type tables:
/// invalidates the relcache entry of the table it fired on, which empties the
/// cache of valid codes in this backend (at command end and at rollback) and in
/// the others (at commit). It reads nothing of the table, its name included.
fn forget_type_codes(args: &crate::fmgr::Args) -> crate::fmgr::Returned {
    let relation = args.trigger_relation().ok_or_else(|| {
        BillingError::new(SqlState::TriggerProtocolViolated, "billing.forget_type_codes() must be called as a trigger")
    })?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relation) };
    // a trigger returns a NULL pointer, never SQL NULL
    Ok(Some(pg_sys::Datum::from(0usize)))
}
crate::fmgr::sql_function!(pg_finfo_billing_forget_type_codes, billing_forget_type_codes => forget_type_codes);

/// With an idempotency key: the entry an earlier identical call wrote, or PB003 if
/// the key was used for something else. Call with the account row locked.
pub fn replay(client: &mut SpiClient<'_>, plans: &Plans, movement: &Movement) -> BillingResult<Option<pg_sys::Datum>> {
    let Some(key) = movement.idempotency_key.as_deref() else {
        return Ok(None);
    };
    let table = client.update(&plans.idempotent_entry, None, &[movement.user_id.as_str().into(), key.into()])?;
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    let direction = row.get::<i16>(2)?.unwrap_or(0);
    let amount = decimal(&row, 3, "amount")?;
    let account_type = row.get::<String>(4)?.unwrap_or_default();
    if direction != movement.direction.sign() || amount != movement.amount || account_type != movement.account_type {
        return Err(BillingError::new(
            SqlState::IdempotencyConflict,
            format!("idempotency_key {key:?} was already used for a different operation"),
        )
        .with_private_detail(
            Reveals::OtherOperation,
            format!(
                "The earlier entry is a {} of {} as {}; this call asks for a {} of {} as {}.",
                if direction > 0 { "credit" } else { "debit" },
                amount,
                account_type,
                movement.direction.describe(),
                movement.amount,
                movement.account_type
            ),
            format!(
                "This call asks for a {} of {} as {}; the earlier entry is shown to roles that may execute billing_history.",
                movement.direction.describe(),
                movement.amount,
                movement.account_type
            ),
        )
        .with_hint("Use a new idempotency key for a new operation."));
    }
    whole_row(&row, 1).map(Some)
}

/// The ledger detail of an entry that moves the permanent balance and/or grants:
/// `{"permanent": 1.5, "grants": [{"id": 7, "amount": 2}]}` (absent parts left out).
pub fn detail_json(from_permanent: Decimal, from_grants: &[(i64, Decimal)]) -> String {
    let mut parts = Vec::new();
    if !from_permanent.is_zero() {
        parts.push(format!("\"permanent\": {}", from_permanent.normalize()));
    }
    if !from_grants.is_empty() {
        let grants: Vec<String> = from_grants
            .iter()
            .map(|(id, amount)| format!("{{\"id\": {id}, \"amount\": {}}}", amount.normalize()))
            .collect();
        parts.push(format!("\"grants\": [{}]", grants.join(", ")));
    }
    format!("{{{}}}", parts.join(", "))
}

/// The detail of a settle's entry: its funding, and the hold it settles.
pub fn detail_json_for_hold(from_permanent: Decimal, from_grants: &[(i64, Decimal)], hold_id: i64) -> String {
    let funding = detail_json(from_permanent, from_grants);
    let parts = funding.trim_start_matches('{').trim_end_matches('}');
    if parts.is_empty() {
        format!("{{\"hold\": {hold_id}}}")
    } else {
        format!("{{{parts}, \"hold\": {hold_id}}}")
    }
}

/// Writes an entry that moves the permanent balance and/or spends grants; returns the entry row.
/// `grant_writes` are (grant id, remaining to store): the grants spent from, and the old
/// head grant when the head moves off it.
#[allow(clippy::too_many_arguments)]
pub fn write_entry(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    movement: &Movement,
    seq: i64,
    balance_after: Decimal,
    detail: &str,
    totals: &Totals,
    grant_writes: &[(i64, Decimal)],
) -> BillingResult<pg_sys::Datum> {
    store_grants(client, plans, &movement.user_id, grant_writes)?;
    let mut args = common_args(movement, seq, balance_after);
    args.extend([
        detail.into(),
        movement.idempotency_key.as_deref().into(),
        numeric(totals.permanent).into(),
        numeric(totals.grants_total).into(),
        timestamptz(totals.next_expiry),
        totals.head.map(|(id, _)| id).into(),
        totals.head.map(|(_, remaining)| numeric(remaining)).into(),
        movement.scopes.clone().into(),
    ]);
    let table = client.update(&plans.write_entry, None, &args)?;
    whole_row(&table.first(), 1)
}

/// Up to this many grants, a write stores each with its own statement
/// (store_grant.sql, planned once per backend); beyond it, with one statement that
/// PostgreSQL plans at every call (store_grants.sql). Measured on deducts
/// spanning 3, 20 and 60 grants (BENCHMARKS.md, row 15): one by one is faster
/// at 3 and 20, one planned statement at 60.
const STORE_ONE_BY_ONE: usize = 16;

/// Stores the remaining computed for each of these grants (id, remaining).
fn store_grants(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, grant_writes: &[(i64, Decimal)]) -> BillingResult<()> {
    if grant_writes.len() <= STORE_ONE_BY_ONE {
        for (grant_id, remaining) in grant_writes {
            client.update(&plans.store_grant, None, &[user_id.into(), (*grant_id).into(), numeric(*remaining).into()])?;
        }
    } else {
        let ids: Vec<i64> = grant_writes.iter().map(|(id, _)| *id).collect();
        let remainings: Vec<AnyNumeric> = grant_writes.iter().map(|(_, remaining)| numeric(*remaining)).collect();
        client.update(&plans.store_grants, None, &[user_id.into(), ids.into(), remainings.into()])?;
    }
    Ok(())
}

/// Writes an entry that creates a grant of `movement.amount` expiring at `movement.expire_at`.
/// `totals.head` is None when the new grant is the one spent next; `write_back` is the
/// old head grant and its live remaining when the head moves off it.
pub fn write_grant(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    movement: &Movement,
    seq: i64,
    balance_after: Decimal,
    totals: &Totals,
    write_back: Option<(i64, Decimal)>,
) -> BillingResult<pg_sys::Datum> {
    let mut args = common_args(movement, seq, balance_after);
    args.extend([
        timestamptz(movement.expire_at),
        movement.idempotency_key.as_deref().into(),
        numeric(totals.grants_total).into(),
        timestamptz(totals.next_expiry),
        totals.head.is_none().into(),
        totals.head.map(|(id, _)| id).into(),
        totals.head.map(|(_, remaining)| numeric(remaining)).into(),
        write_back.map(|(id, _)| id).into(),
        write_back.map(|(_, remaining)| numeric(remaining)).into(),
    ]);
    let table = client.update(&plans.write_grant, None, &args)?;
    whole_row(&table.first(), 1)
}

/// The common debit in one statement (see statements::FAST_DEBIT); None when it does not apply,
/// and always where Citus is installed (see crate::citus).
pub fn fast_debit(client: &mut SpiClient<'_>, plans: &Plans, movement: &Movement) -> BillingResult<Option<pg_sys::Datum>> {
    if crate::citus::installed() {
        return Ok(None);
    }
    let args: [DatumWithOid<'_>; 11] = [
        movement.user_id.as_str().into(),
        numeric(movement.amount).into(),
        movement.account_type.as_str().into(),
        movement.source_type.as_str().into(),
        movement.source.as_str().into(),
        movement.remark.as_deref().into(),
        movement.association_no.as_deref().into(),
        movement.association_user_id.as_deref().into(),
        movement.idempotency_key.as_deref().into(),
        movement.scopes.clone().into(),
        now(),
    ];
    let table = client.update(&plans.fast_debit, None, &args)?;
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    if let Some(error) = crate::limits::over_cap(&row, 4, &movement.user_id)? {
        return Err(error);
    }
    notify_after_one_statement_debit(client, &row, movement)?;
    whole_row(&row, 1).map(Some)
}

/// $1..$12 of both write statements.
fn common_args(movement: &Movement, seq: i64, balance_after: Decimal) -> Vec<DatumWithOid<'static>> {
    vec![
        movement.user_id.clone().into(),
        seq.into(),
        movement.direction.sign().into(),
        numeric(movement.amount).into(),
        numeric(balance_after).into(),
        movement.account_type.clone().into(),
        movement.source_type.clone().into(),
        movement.source.clone().into(),
        movement.remark.clone().into(),
        movement.association_no.clone().into(),
        movement.association_user_id.clone().into(),
        movement.subscription_id.clone().into(),
    ]
}

pub fn numeric(value: Decimal) -> AnyNumeric {
    AnyNumeric::try_from(value.normalize().to_string().as_str()).expect("a Decimal always prints as a valid numeric")
}

pub fn timestamptz(value: Option<pg_sys::TimestampTz>) -> DatumWithOid<'static> {
    value
        .map(|t| TimestampWithTimeZone::try_from(t).expect("a stored timestamptz is valid"))
        .into()
}

/// now(), the transaction's start, for a statement that takes it as a parameter
/// (`$N now timestamptz`): Citus refuses a non-immutable function inside a CASE
/// of an UPDATE, so such a statement cannot call now() itself.
pub fn now() -> DatumWithOid<'static> {
    timestamptz(Some(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }))
}

/// After a one-statement debit or hold (FAST_DEBIT, FAST_HOLD), whose row has the
/// user's low-balance threshold in column 2 and the power left in column 3: the
/// notification, if `movement` took the power below the threshold.
pub fn notify_after_one_statement_debit(
    client: &mut SpiClient<'_>,
    row: &SpiTupleTable<'_>,
    movement: &Movement,
) -> BillingResult<()> {
    if let Some(threshold) = optional_decimal(row, 2, "low_balance_at")? {
        let after = decimal(row, 3, "power after")?;
        crate::notify::if_crossed(client, &movement.user_id, Some(threshold), after + movement.amount, after)?;
    }
    Ok(())
}

/// A numeric column of the current row, as a Decimal.
pub fn decimal(row: &SpiTupleTable<'_>, ordinal: usize, column: &str) -> BillingResult<Decimal> {
    optional_decimal(row, ordinal, column)?.ok_or_else(|| BillingError::internal(format!("{column} is NULL")))
}

/// A numeric column of the current row that may be NULL, as a Decimal.
pub fn optional_decimal(row: &SpiTupleTable<'_>, ordinal: usize, column: &str) -> BillingResult<Option<Decimal>> {
    match row.get::<AnyNumeric>(ordinal)? {
        Some(value) => amounts::parse_stored(column, &value.to_string()).map(Some),
        None => Ok(None),
    }
}

/// A column of the current row, copied out of SPI's memory so it can be returned.
pub fn whole_row(row: &SpiTupleTable<'_>, ordinal: usize) -> BillingResult<pg_sys::Datum> {
    let datum = row
        .get_datum_by_ordinal(ordinal)?
        .ok_or_else(|| BillingError::internal("the ledger row is NULL"))?;
    Ok(unsafe { pg_sys::SPI_datumTransfer(datum, false, -1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_names_every_funding_source() {
        let d: Decimal = "1.50".parse().unwrap();
        assert_eq!(
            detail_json(d, &[(7, Decimal::TWO), (9, "0.25".parse().unwrap())]),
            r#"{"permanent": 1.5, "grants": [{"id": 7, "amount": 2}, {"id": 9, "amount": 0.25}]}"#
        );
        assert_eq!(detail_json(Decimal::ZERO, &[(3, Decimal::ONE)]), r#"{"grants": [{"id": 3, "amount": 1}]}"#);
        assert_eq!(detail_json(Decimal::TEN, &[]), r#"{"permanent": 10}"#);
        assert_eq!(
            detail_json_for_hold(Decimal::ONE, &[(3, Decimal::TWO)], 12),
            r#"{"permanent": 1, "grants": [{"id": 3, "amount": 2}], "hold": 12}"#
        );
    }
}
