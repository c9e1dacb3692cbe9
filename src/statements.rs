//! The SQL the functions run, prepared once per backend and kept.
//!
//! Each statement lives in its own file, sql/statements/NAME.sql, headed by its
//! parameters with their names and types; build.rs assembles them (pieces that
//! several statements share, such as the one-statement deduct's rule, live once
//! in sql/statements/shared/) into `Statement` constants, and `make lint` runs
//! pgspot over the assembled text.
//!
//! The account row holds the live remaining of one grant, the head (the one
//! spent next): `grant_store.remaining` of that grant is written back only when
//! the head moves. The rule that a grant's live remaining is the account row's
//! for the head and grant_store's for the others lives in one place, the view
//! `billing.grants`: statements that read live remainings read that view, and
//! writes that move the head elsewhere write the old head's back.
//!
//! Every statement names its tables, functions and operators with their schema,
//! so the plans mean the same thing whatever search_path the caller has. Writes
//! and the reads that follow the account lock are prepared as mutating
//! (`-- kind: write`), so each runs with a fresh snapshot and sees what a
//! transaction we waited for wrote.

use std::cell::Cell;

use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

use crate::errors::BillingResult;

/// One statement of sql/statements/, as build.rs assembled it.
pub struct Statement {
    pub name: &'static str,
    /// Prepared as mutating (a fresh snapshot per execution), or read-only.
    pub write: bool,
    pub args: &'static [PgOid],
    pub sql: &'static str,
}

/// Every prepared statement, kept for the life of the backend.
pub struct Plans {
    pub lock_account: OwnedPreparedStatement,
    pub create_account: OwnedPreparedStatement,
    pub live_grants: OwnedPreparedStatement,
    pub types: OwnedPreparedStatement,
    pub idempotent_entry: OwnedPreparedStatement,
    pub write_entry: OwnedPreparedStatement,
    pub store_grant: OwnedPreparedStatement,
    pub store_grants: OwnedPreparedStatement,
    pub write_grant: OwnedPreparedStatement,
    pub fast_debit: OwnedPreparedStatement,
    pub write_back_head: OwnedPreparedStatement,
    pub return_due_holds: OwnedPreparedStatement,
    pub move_grants: OwnedPreparedStatement,
    pub grant_expiries: OwnedPreparedStatement,
    pub refresh_account: OwnedPreparedStatement,
    pub insert_entry: OwnedPreparedStatement,
    pub insert_grant: OwnedPreparedStatement,
    pub entry_owner: OwnedPreparedStatement,
    pub entry: OwnedPreparedStatement,
    pub refunded: OwnedPreparedStatement,
    pub hold_owner: OwnedPreparedStatement,
    pub hold: OwnedPreparedStatement,
    pub hold_by_key: OwnedPreparedStatement,
    pub insert_hold: OwnedPreparedStatement,
    pub close_hold: OwnedPreparedStatement,
    pub entry_row: OwnedPreparedStatement,
    pub fast_hold: OwnedPreparedStatement,
    pub fast_settle: OwnedPreparedStatement,
    pub notify_low_balance: OwnedPreparedStatement,
    pub count_limits: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Cell<Option<&'static Plans>> = const { Cell::new(None) };
}

const TEXT: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID);
const INT8: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID);
const BOOL: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::BOOLOID);
const INT2: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT2OID);
const NUMERIC: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::NUMERICOID);
const TIMESTAMPTZ: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TIMESTAMPTZOID);
const INT8_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT8ARRAYOID);
const NUMERIC_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::NUMERICARRAYOID);
const TEXT_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTARRAYOID);
const INTERVAL: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INTERVALOID);

/// The backend's plans, prepared on first use.
pub fn get(client: &SpiClient<'_>) -> BillingResult<&'static Plans> {
    if let Some(plans) = PLANS.get() {
        return Ok(plans);
    }
    let prepare = |statement: &Statement| -> BillingResult<OwnedPreparedStatement> {
        let prepared = if statement.write {
            client.prepare_mut(statement.sql, statement.args)
        } else {
            client.prepare(statement.sql, statement.args)
        };
        prepared
            .map(|p| p.keep())
            .map_err(|e| crate::errors::BillingError::internal(format!("preparing sql/statements/{}.sql: {e}", statement.name)))
    };
    let plans = Plans {
        lock_account: prepare(&LOCK_ACCOUNT)?,
        create_account: prepare(&CREATE_ACCOUNT)?,
        live_grants: prepare(&LIVE_GRANTS)?,
        types: prepare(&TYPES)?,
        idempotent_entry: prepare(&IDEMPOTENT_ENTRY)?,
        write_entry: prepare(&WRITE_ENTRY)?,
        store_grant: prepare(&STORE_GRANT)?,
        store_grants: prepare(&STORE_GRANTS)?,
        write_grant: prepare(&WRITE_GRANT)?,
        fast_debit: prepare(&FAST_DEBIT)?,
        write_back_head: prepare(&WRITE_BACK_HEAD)?,
        return_due_holds: prepare(&RETURN_DUE_HOLDS)?,
        move_grants: prepare(&MOVE_GRANTS)?,
        grant_expiries: prepare(&GRANT_EXPIRIES)?,
        refresh_account: prepare(&REFRESH_ACCOUNT)?,
        insert_entry: prepare(&INSERT_ENTRY)?,
        insert_grant: prepare(&INSERT_GRANT)?,
        entry_owner: prepare(&ENTRY_OWNER)?,
        entry: prepare(&ENTRY)?,
        refunded: prepare(&REFUNDED)?,
        hold_owner: prepare(&HOLD_OWNER)?,
        hold: prepare(&HOLD)?,
        hold_by_key: prepare(&HOLD_BY_KEY)?,
        insert_hold: prepare(&INSERT_HOLD)?,
        close_hold: prepare(&CLOSE_HOLD)?,
        entry_row: prepare(&ENTRY_ROW)?,
        fast_hold: prepare(&FAST_HOLD)?,
        fast_settle: prepare(&FAST_SETTLE)?,
        notify_low_balance: prepare(&NOTIFY_LOW_BALANCE)?,
        count_limits: prepare(&COUNT_LIMITS)?,
    };
    let plans: &'static Plans = Box::leak(Box::new(plans));
    PLANS.set(Some(plans));
    Ok(plans)
}

include!(concat!(env!("OUT_DIR"), "/statements.rs"));
