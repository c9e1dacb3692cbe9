//! Reading a user's power, as a rule without running SQL.
//!
//! billing_power and billing_has_power sit in front of every metered request,
//! so they read the account row through its primary key with PostgreSQL's
//! index access methods instead of executing a query: no SPI, no planner, no
//! executor. Because they resolve no names from the caller's search_path (the
//! one statement they may run names everything with its schema), they are
//! SECURITY INVOKER and need no pinned search_path;
//! EXECUTE on them is the permission to read balances. Only when a grant has
//! expired, or a hold has lapsed, and no write has swept it yet is the cached
//! total stale: then they read the view billing.balances, the one statement of
//! available power in SQL, as the extension's owner. Where Citus is installed
//! they always read the view: the rows are in shards that Citus routes to.

use std::ffi::CStr;

use pgrx::datum::{AnyNumeric, FromDatum, IntoDatum};
use pgrx::pg_sys::{self, Datum, Oid};

use crate::errors::{BillingError, BillingResult};
use crate::fmgr::{sql_function, Args, Returned};

/// billing_power(user_id text) RETURNS numeric
fn power(args: &Args) -> Returned {
    let user_id = args.key(0, "user_id")?;
    Ok(available(&user_id)?.into_datum())
}
sql_function!(pg_finfo_billing_power, billing_power => power);

/// billing_has_power(user_id text, amount numeric) RETURNS boolean
fn has_power(args: &Args) -> Returned {
    let user_id = args.key(0, "user_id")?;
    let amount = args.amount(1, "amount")?;
    let power = available(&user_id)?;
    let power = crate::amounts::parse_stored("power", &power.to_string())?;
    Ok((power >= amount).into_datum())
}
sql_function!(pg_finfo_billing_has_power, billing_has_power => has_power);

/// The user's available power as of the current snapshot; 0 for an unknown user.
fn available(user_id: &str) -> BillingResult<AnyNumeric> {
    // On Citus the local billing.accounts is the distributed table's empty shell
    // (the rows live in shards, under other names): the view, which Citus routes.
    if crate::citus::installed() {
        return stated_available(user_id);
    }
    const COLUMNS: [&CStr; 4] = [c"permanent", c"grants_total", c"next_expiry", c"holds_due_at"];
    let mut account = None;
    for_each_row(c"accounts", c"accounts_pkey", user_id, &COLUMNS, None, |row| {
        account = Some([row[0], row[1], row[2], row[3]]);
    })?;
    let Some([permanent, grants_total, next_expiry, holds_due_at]) = account else {
        return Ok(AnyNumeric::from(0));
    };
    let permanent = numeric(permanent, "permanent")?;
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let passed = |t: Option<Datum>| t.is_some_and(|t| t.value() as i64 <= now);
    if !passed(next_expiry) && !passed(holds_due_at) {
        return Ok(permanent + numeric(grants_total, "grants_total")?);
    }
    // A grant expired or a hold lapsed, and no write has swept it yet: the cached
    // total is stale, and the power is what billing.balances says.
    stated_available(user_id)
}

/// The user's available power as the view billing.balances states it (the one
/// statement of the rule: live grants with the head grant's live remaining, and
/// what lapsed holds give back), read as the owner of the extension's tables, as
/// a SECURITY DEFINER function would: EXECUTE on billing_power is the permission.
/// The statement names every object with its schema; the user id switch is
/// undone here, or by the (sub)transaction's abort should the statement fail.
fn stated_available(user_id: &str) -> BillingResult<AnyNumeric> {
    let owner = tables_owner()?;
    let (mut user, mut context) = (Oid::INVALID, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
    }
    let read = pgrx::spi::Spi::get_one_with_args::<AnyNumeric>(
        crate::statements::AVAILABLE.sql,
        &[user_id.into()],
    );
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    match read {
        // an unknown user has no row (reached here only on Citus)
        Err(pgrx::spi::SpiError::InvalidPosition) => Ok(AnyNumeric::from(0)),
        read => Ok(read?.unwrap_or_else(|| AnyNumeric::from(0))),
    }
}

/// The owner of billing.accounts: the role the extension's write functions run as.
fn tables_owner() -> BillingResult<Oid> {
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"billing".as_ptr(), false);
        let table_oid = pg_sys::get_relname_relid(c"accounts".as_ptr(), schema);
        if table_oid == Oid::INVALID {
            return Err(BillingError::internal("billing.accounts is missing"));
        }
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(table_oid, lock);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::table_close(rel, lock);
        Ok(owner)
    }
}

/// Under REPEATABLE READ or SERIALIZABLE: whether the user's account row, which
/// the transaction's snapshot does not see, was committed since that snapshot was
/// taken. A write that finds no account must then fail with 40001 (a snapshot
/// conflict, which callers retry) rather than report the user as unknown.
pub fn created_after_snapshot(user_id: &str) -> BillingResult<bool> {
    if unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32 {
        return Ok(false);
    }
    let mut found = false;
    let latest = unsafe { pg_sys::GetLatestSnapshot() };
    for_each_row(c"accounts", c"accounts_pkey", user_id, &[c"user_id"], Some(latest), |_| found = true)?;
    Ok(found)
}

fn numeric(value: Option<Datum>, column: &str) -> BillingResult<AnyNumeric> {
    let datum = value.ok_or_else(|| BillingError::internal(format!("{column} is NULL")))?;
    unsafe { AnyNumeric::from_datum(datum, false) }.ok_or_else(|| BillingError::internal(format!("{column} is not numeric")))
}

/// Calls `each` with the named columns of every row of billing.`table` whose
/// user_id is `user_id`, found through `index` (whose first column is user_id),
/// as `snapshot` (by default the current one) sees them.
fn for_each_row(
    table: &CStr,
    index: &CStr,
    user_id: &str,
    columns: &[&CStr],
    snapshot: Option<pg_sys::Snapshot>,
    mut each: impl FnMut(&[Option<Datum>]),
) -> BillingResult<()> {
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"billing".as_ptr(), false);
        let table_oid = pg_sys::get_relname_relid(table.as_ptr(), schema);
        let index_oid = pg_sys::get_relname_relid(index.as_ptr(), schema);
        if table_oid == Oid::INVALID || index_oid == Oid::INVALID {
            return Err(BillingError::internal(format!("billing.{table:?} or its index is missing")));
        }
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(table_oid, lock);
        let idx = pg_sys::index_open(index_oid, lock);
        let attnums: Vec<i32> = columns.iter().map(|c| pg_sys::get_attnum(table_oid, c.as_ptr()) as i32).collect();
        if attnums.iter().any(|&a| a <= 0) {
            pg_sys::index_close(idx, lock);
            pg_sys::table_close(rel, lock);
            return Err(BillingError::internal(format!("a column of billing.{table:?} is missing")));
        }
        let key_value = user_id.into_datum().expect("text is never NULL");
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyEntryInitialize(
            &mut key,
            0,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            Oid::INVALID,
            *(*idx).rd_indcollation,
            pg_sys::Oid::from(pg_sys::F_TEXTEQ),
            key_value,
        );
        let snapshot = match snapshot {
            Some(snapshot) => snapshot,
            None if !pg_sys::GetActiveSnapshot().is_null() => pg_sys::GetActiveSnapshot(),
            None => pg_sys::GetTransactionSnapshot(),
        };
        // PostgreSQL 18 added an instrumentation argument (NULL: no EXPLAIN ANALYZE counters).
        #[cfg(feature = "pg18")]
        let scan = pg_sys::index_beginscan(rel, idx, snapshot, std::ptr::null_mut(), 1, 0);
        #[cfg(not(feature = "pg18"))]
        let scan = pg_sys::index_beginscan(rel, idx, snapshot, 1, 0);
        pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let mut values = Vec::with_capacity(attnums.len());
        while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
            values.clear();
            for &attnum in &attnums {
                let mut is_null = false;
                let datum = pg_sys::slot_getattr(slot, attnum, &mut is_null);
                values.push((!is_null).then_some(datum));
            }
            each(&values);
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::index_close(idx, lock);
        pg_sys::table_close(rel, lock);
    }
    Ok(())
}

