//! Dropping the extension refuses while the ledger holds entries.
//!
//! `DROP EXTENSION billing` would delete the ledger and every balance without a
//! word, and `... CASCADE` (or `DROP SCHEMA <the extension's schema> CASCADE`,
//! or `DROP OWNED BY <its owner>`) would also drop the charging triggers of
//! application tables. Every one of these paths deletes the relation
//! billing.account_log, and PostgreSQL calls the object access hook for it
//! (OAT_DROP) before anything is deleted for good: the hook refuses (2BP01)
//! while the ledger holds a row, unless `billing.allow_drop` was turned on in
//! the same transaction.
//!
//! The hook exists only in a backend that has loaded this library. An event
//! trigger on ddl_command_start of DROP EXTENSION, DROP SCHEMA and DROP OWNED
//! (billing.guard_drop, sql/schema.sql) calls [`guard_drop`], which loads it
//! first. It cannot be a sql_drop trigger: that fires after the drop, and the
//! extension's own event trigger is among what the drop removes.

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pgrx::pg_sys;

use crate::errors::{BillingError, SqlState};
use crate::fmgr::{sql_function, Args, Returned};

/// The setting that allows the drop (`billing.allow_drop`), as PostgreSQL stores it.
static mut ALLOW_DROP: bool = false;
/// The local transaction in which `billing.allow_drop` was last turned on (0: none):
/// a value left on from an earlier transaction, a configuration file or ALTER ROLE allows nothing.
static ALLOWED_IN: AtomicU32 = AtomicU32::new(0);
/// True while _PG_init defines the setting from a value set before the library was
/// loaded in an earlier transaction (it was not set in this one).
static DEFINING_FROM_EARLIER: AtomicBool = AtomicBool::new(false);
static mut PREVIOUS_HOOK: pg_sys::object_access_hook_type = None;

/// Called once per backend when the library is loaded: defines the setting and installs the hook.
pub fn init() {
    unsafe {
        DEFINING_FROM_EARLIER.store(placeholder_set_before_this_transaction(), Ordering::Relaxed);
        pg_sys::DefineCustomBoolVariable(
            c"billing.allow_drop".as_ptr(),
            c"Allows DROP EXTENSION billing (and DROP SCHEMA ... CASCADE, DROP OWNED) to delete a ledger that holds entries.".as_ptr(),
            c"Counts only when turned on in the transaction that drops: SET LOCAL billing.allow_drop = on.".as_ptr(),
            &raw mut ALLOW_DROP,
            false,
            pg_sys::GucContext::PGC_SUSET,
            0,
            None,
            Some(allow_drop_assigned),
            None,
        );
        DEFINING_FROM_EARLIER.store(false, Ordering::Relaxed);
        PREVIOUS_HOOK = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(on_object_access);
    }
}

/// The current local transaction id of this backend.
fn local_transaction() -> u32 {
    unsafe {
        if pg_sys::MyProc.is_null() {
            0
        } else {
            // PostgreSQL 17 moved the local transaction id into PGPROC.vxid.
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            let lxid = (*pg_sys::MyProc).lxid;
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            let lxid = (*pg_sys::MyProc).vxid.lxid;
            lxid
        }
    }
}

unsafe extern "C-unwind" fn allow_drop_assigned(newval: bool, _extra: *mut c_void) {
    let armed = newval && !DEFINING_FROM_EARLIER.load(Ordering::Relaxed);
    ALLOWED_IN.store(if armed { local_transaction() } else { 0 }, Ordering::Relaxed);
}

/// Whether `billing.allow_drop` is on, and was turned on in this transaction.
fn drop_allowed() -> bool {
    let now = local_transaction();
    unsafe { ALLOW_DROP && now != 0 && ALLOWED_IN.load(Ordering::Relaxed) == now }
}

/// Whether a value of billing.allow_drop was set in this session before the library
/// was loaded, and not in the current transaction (its placeholder has no stacked
/// value, which every SET of this transaction leaves until it ends).
unsafe fn placeholder_set_before_this_transaction() -> bool {
    unsafe {
        // PostgreSQL 16 dropped GetNumConfigOptions: get_guc_variables returns the count.
        #[cfg(feature = "pg15")]
        let (count, variables) = (pg_sys::GetNumConfigOptions() as usize, pg_sys::get_guc_variables());
        #[cfg(not(feature = "pg15"))]
        let (count, variables) = {
            let mut count: std::ffi::c_int = 0;
            let variables = pg_sys::get_guc_variables(&mut count);
            (count as usize, variables)
        };
        if variables.is_null() {
            return false;
        }
        for i in 0..count {
            let variable = *variables.add(i);
            if variable.is_null() || (*variable).name.is_null() {
                continue;
            }
            if CStr::from_ptr((*variable).name).to_bytes() == b"billing.allow_drop" {
                return (*variable).stack.is_null();
            }
        }
        false
    }
}

unsafe extern "C-unwind" fn on_object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: c_int,
    arg: *mut c_void,
) {
    unsafe {
        if let Some(previous) = PREVIOUS_HOOK {
            previous(access, class_id, object_id, sub_id, arg);
        }
    }
    if access != pg_sys::ObjectAccessType::OAT_DROP || class_id != pg_sys::RelationRelationId || sub_id != 0 {
        return;
    }
    let refusal = unsafe { pg_sys::panic::pgrx_extern_c_guard(|| refusal(object_id)) };
    if let Some(error) = refusal {
        // Nothing of the check is alive any more: raising (a longjmp) is safe here.
        unsafe { error.raise() }
    }
}

/// The error that stops the drop of `relation`, if it is a ledger with entries.
fn refusal(relation: pg_sys::Oid) -> Option<BillingError> {
    if !is_the_ledger(relation) || drop_allowed() || !has_rows(relation) {
        return None;
    }
    Some(
        BillingError::new(
            SqlState::DependentObjectsStillExist,
            "cannot drop the billing ledger: billing.account_log holds entries",
        )
        .with_detail(
            "Dropping the extension billing (DROP EXTENSION, DROP SCHEMA ... CASCADE or DROP OWNED) \
             deletes the ledger, every balance and grant, and with CASCADE the charging triggers of \
             application tables.",
        )
        .with_hint(
            "Keep the data first: pg_dump the database (or pg_dump --schema=billing). \
             To drop it anyway, run SET LOCAL billing.allow_drop = on in the same transaction, \
             as a superuser.",
        ),
    )
}

/// Whether `relation` is billing.account_log: named account_log and a member of the extension billing.
fn is_the_ledger(relation: pg_sys::Oid) -> bool {
    unsafe {
        let name = pg_sys::get_rel_name(relation);
        if name.is_null() || CStr::from_ptr(name).to_bytes() != b"account_log" {
            return false;
        }
        let extension = pg_sys::get_extension_oid(c"billing".as_ptr(), true);
        extension != pg_sys::InvalidOid && pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, relation) == extension
    }
}

/// Whether the table has a row that is visible now: committed by anyone, or
/// written by this transaction. It reads through the table's access method.
fn has_rows(relation: pg_sys::Oid) -> bool {
    unsafe {
        let rel = pg_sys::table_open(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let am = &*(*rel).rd_tableam;
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let flags = pg_sys::ScanOptions::SO_TYPE_SEQSCAN | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE;
        let scan = am.scan_begin.expect("a table access method can scan")(
            rel,
            snapshot,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        );
        let found = am.scan_getnextslot.expect("a table access method can scan")(
            scan,
            pg_sys::ScanDirection::ForwardScanDirection,
            slot,
        );
        am.scan_end.expect("a table access method can scan")(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        found
    }
}

/// billing.guard_drop(), the event trigger on ddl_command_start of DROP EXTENSION,
/// DROP SCHEMA and DROP OWNED: calling it loads this library, whose hook does the rest.
fn guard_drop(_args: &Args) -> Returned {
    Ok(Some(pg_sys::Datum::from(0usize)))
}
sql_function!(pg_finfo_billing_guard_drop, billing_guard_drop => guard_drop);
