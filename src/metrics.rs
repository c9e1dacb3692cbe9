//! Counters of calls and errors per C entry point, in shared memory (`billing_metrics()`).
//!
//! Every C entry point passes through [`crate::fmgr::call`], which counts there:
//! one home, so a new function is counted without a word. The counters live in
//! one fixed block of shared memory, requested when the library is loaded by
//! `shared_preload_libraries` (PostgreSQL hands out shared memory only then):
//! - `calls[entry]`: calls of each entry point, `entry` being its index in
//!   [`ENTRY_POINTS`], fixed at compile time by [`entry_point`];
//! - `errors[slot][entry]`: errors by SQLSTATE and entry point, `slot` found
//!   in a small table of SQLSTATEs filled as codes first occur (the last slot
//!   counts whatever finds the table full, as sqlstate "other").
//!
//! A call costs one relaxed load of the block's address and one relaxed atomic
//! add; an error, a short search of the SQLSTATE table and one more add. Loaded
//! any other way (the first call in a session loads the library), the block's
//! address stays null and a call costs the load and a branch: the counters are
//! off, and `billing_metrics()` says so (`billing_counters_active` 0).
//!
//! The counters count since the server started (a crash restart starts them
//! again) or since `billing_metrics_reset()`.

use std::any::Any;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::Relaxed};

use pgrx::datum::IntoDatum;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use serde_json::{json, Value};

use crate::errors::{BillingError, SqlState};
use crate::fmgr::{sql_function, Args, Returned};

/// Every C entry point: its symbol (as [`sql_function!`] names it) and the SQL
/// function it implements (the `function` label of its counters). A symbol
/// missing here fails the build (see [`entry_point`]).
pub const ENTRY_POINTS: &[(&str, &str)] = &[
    ("billing_power", "billing_power"),
    ("billing_has_power", "billing_has_power"),
    ("billing_add", "billing_add"),
    ("billing_deduct", "billing_deduct"),
    ("billing_add_options", "billing_add(jsonb)"),
    ("billing_deduct_options", "billing_deduct(jsonb)"),
    ("billing_deduct_uncounted", "billing.deduct_uncounted"),
    ("billing_count_limits", "billing.count_limits"),
    ("billing_hold", "billing_hold"),
    ("billing_settle", "billing_settle"),
    ("billing_release", "billing_release"),
    ("billing_refund", "billing_refund"),
    ("billing_user_settle", "billing_user_settle"),
    ("billing_user_release", "billing_user_release"),
    ("billing_user_refund", "billing_user_refund"),
    ("billing_metrics_reset", "billing_metrics_reset"),
    ("billing_check_key", "billing.check_key"),
    ("billing_check_amount", "billing.check_amount"),
    ("billing_calling_role", "billing.calling_role"),
    ("billing_forget_type_codes", "billing.forget_type_codes"),
    ("billing_trigger_scopes", "billing.trigger_scopes"),
    ("billing_guard_drop", "billing.guard_drop"),
    ("billing_trigger_column", "billing.trigger_column"),
    ("billing_trigger_session_column", "billing.trigger_session_column"),
    ("billing_written_in_this_transaction", "billing.written_in_this_transaction"),
    ("billing_metric_counters", "billing.metric_counters"),
];

const FUNCTIONS: usize = ENTRY_POINTS.len();
/// SQLSTATEs counted separately; one more slot counts the rest as "other".
const SQLSTATE_SLOTS: usize = 48;

/// The index of `symbol` in [`ENTRY_POINTS`]; evaluated at compile time by
/// [`sql_function!`], where a symbol that is not listed fails the build.
pub const fn entry_point(symbol: &str) -> usize {
    let symbol = symbol.as_bytes();
    let mut i = 0;
    while i < FUNCTIONS {
        let candidate = ENTRY_POINTS[i].0.as_bytes();
        if candidate.len() == symbol.len() {
            let mut j = 0;
            while j < symbol.len() && candidate[j] == symbol[j] {
                j += 1;
            }
            if j == symbol.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("a C entry point is missing from metrics::ENTRY_POINTS")
}

/// The block in shared memory. All zeros is its initial state.
#[repr(C)]
pub struct Counters {
    calls: [AtomicU64; FUNCTIONS],
    /// The SQLSTATE of each slot, packed as PostgreSQL packs it (never 0:
    /// 00000 is success); 0 is a free slot. A slot, once taken, keeps its code.
    codes: [AtomicU32; SQLSTATE_SLOTS],
    errors: [[AtomicU64; FUNCTIONS]; SQLSTATE_SLOTS + 1],
}

/// The block, or null when the library was not preloaded. Set once, in the
/// postmaster (shmem_startup_hook), before any backend is forked; backends
/// inherit it.
static COUNTERS: AtomicPtr<Counters> = AtomicPtr::new(ptr::null_mut());

/// The counters, when active.
#[inline(always)]
pub fn counters() -> Option<&'static Counters> {
    // SAFETY: non-null only once it points at the initialised block, which lives
    // as long as the server's shared memory (longer than any backend).
    unsafe { COUNTERS.load(Relaxed).as_ref() }
}

impl Counters {
    /// A call of entry point `entry` began.
    #[inline(always)]
    pub fn called(&self, entry: usize) {
        self.calls[entry].fetch_add(1, Relaxed);
    }

    /// A call of entry point `entry` failed with the SQLSTATE `code` (packed).
    pub fn failed(&self, entry: usize, code: i32) {
        self.errors[self.slot(code as u32)][entry].fetch_add(1, Relaxed);
    }

    /// Runs `body`, counting a PostgreSQL error or a Rust panic that leaves it by
    /// the SQLSTATE it will be reported with, and lets it go on unchanged.
    #[inline(always)]
    pub fn watch<R>(&self, entry: usize, body: impl FnOnce() -> R) -> R {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(value) => value,
            Err(payload) => {
                self.failed(entry, reported_code(&*payload));
                std::panic::resume_unwind(payload)
            }
        }
    }

    /// The slot of a SQLSTATE: its own, a free one it takes, or the last ("other").
    fn slot(&self, code: u32) -> usize {
        for (slot, key) in self.codes.iter().enumerate() {
            match key.load(Relaxed) {
                taken if taken == code => return slot,
                0 => match key.compare_exchange(0, code, Relaxed, Relaxed) {
                    Ok(_) => return slot,
                    Err(taken) if taken == code => return slot,
                    Err(_) => continue,
                },
                _ => continue,
            }
        }
        SQLSTATE_SLOTS
    }

    fn reset(&self) {
        for counter in self.calls.iter().chain(self.errors.iter().flatten()) {
            counter.store(0, Relaxed);
        }
    }

    /// The rows of billing_metrics() that come from the counters.
    fn rows(&self) -> Vec<Value> {
        let mut rows = vec![active(true)];
        for (entry, (_, function)) in ENTRY_POINTS.iter().enumerate() {
            let calls = self.calls[entry].load(Relaxed);
            rows.push(json!({"metric": "billing_calls_total", "kind": "counter",
                             "labels": {"function": function}, "value": calls}));
        }
        for slot in 0..=SQLSTATE_SLOTS {
            let sqlstate = match self.codes.get(slot).map(|key| key.load(Relaxed)) {
                Some(0) => continue,
                Some(code) => unpack(code),
                None => "other".to_owned(),
            };
            for (entry, (_, function)) in ENTRY_POINTS.iter().enumerate() {
                let errors = self.errors[slot][entry].load(Relaxed);
                if errors > 0 {
                    rows.push(json!({"metric": "billing_errors_total", "kind": "counter",
                                     "labels": {"function": function, "sqlstate": sqlstate}, "value": errors}));
                }
            }
        }
        rows
    }
}

fn active(on: bool) -> Value {
    json!({"metric": "billing_counters_active", "kind": "gauge", "labels": {}, "value": u8::from(on)})
}

/// The SQLSTATE (packed) a panic payload on its way through pgrx's guard will be
/// reported with: a PostgreSQL error's own, a pgrx error's, XX000 for a Rust panic.
fn reported_code(payload: &(dyn Any + Send)) -> i32 {
    let report: Option<&ErrorReportWithLevel> = match payload.downcast_ref::<CaughtError>() {
        Some(CaughtError::PostgresError(report) | CaughtError::ErrorReport(report)) => Some(report),
        Some(CaughtError::RustPanic { ereport, .. }) => Some(ereport),
        None => payload.downcast_ref::<ErrorReportWithLevel>(),
    };
    match report {
        Some(report) => report.sql_error_code() as i32,
        None => SqlState::Internal.packed(),
    }
}

/// The five characters of a packed SQLSTATE (PGUNSIXBIT).
fn unpack(code: u32) -> String {
    (0..5).map(|i| char::from(((code >> (6 * i)) & 0x3F) as u8 + b'0')).collect()
}

static mut PREVIOUS_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREVIOUS_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// From _PG_init: asks for the block when the library is being preloaded;
/// otherwise the counters stay off.
pub fn init() {
    unsafe {
        if !pg_sys::process_shared_preload_libraries_in_progress {
            return;
        }
        PREVIOUS_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_shared_memory);
        PREVIOUS_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(attach_shared_memory);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn request_shared_memory() {
    unsafe {
        if let Some(previous) = PREVIOUS_REQUEST_HOOK {
            previous();
        }
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Counters>());
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn attach_shared_memory() {
    unsafe {
        if let Some(previous) = PREVIOUS_STARTUP_HOOK {
            previous();
        }
        // AddinShmemInitLock (lwlocknames.txt: 21), as PostgreSQL's own modules take it
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let block = pg_sys::ShmemInitStruct(c"billing counters".as_ptr(), std::mem::size_of::<Counters>(), &mut found)
            .cast::<Counters>();
        if !found {
            ptr::write_bytes(block, 0, 1);
        }
        COUNTERS.store(block, Relaxed);
        pg_sys::LWLockRelease(lock);
    }
}

/// billing.metric_counters() RETURNS jsonb: the counters' rows of billing_metrics()
/// as an array of {metric, kind, labels, value}; only `billing_counters_active`
/// 0 when the counters are off.
fn metric_counters(_args: &Args) -> Returned {
    let rows = match counters() {
        Some(counters) => counters.rows(),
        None => vec![active(false)],
    };
    Ok(pgrx::JsonB(Value::Array(rows)).into_datum())
}
sql_function!(pg_finfo_billing_metric_counters, billing_metric_counters => metric_counters);

/// billing_metrics_reset() RETURNS void: zeroes the counters. Superusers only
/// (the role that called, not the definer), whatever EXECUTE was granted.
fn metrics_reset(_args: &Args) -> Returned {
    // SAFETY: reads this backend's outer user id and the catalog cache.
    let superuser = unsafe { pg_sys::superuser_arg(pg_sys::GetOuterUserId()) };
    if !superuser {
        return Err(BillingError::new(SqlState::InsufficientPrivilege, "only a superuser may reset the billing counters")
            .with_hint("billing_metrics_reset() zeroes every session's counters; run it as a superuser."));
    }
    if let Some(counters) = counters() {
        counters.reset();
    }
    Ok(None)
}
sql_function!(pg_finfo_billing_metrics_reset, billing_metrics_reset => metrics_reset);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_are_found_and_unique() {
        for (i, (symbol, _)) in ENTRY_POINTS.iter().enumerate() {
            assert_eq!(entry_point(symbol), i, "{symbol} is listed twice");
        }
    }

    #[test]
    fn sqlstates_unpack_as_they_were_packed() {
        for state in [SqlState::InsufficientPower, SqlState::InvalidParameterValue, SqlState::Internal] {
            assert_eq!(unpack(state.packed() as u32), state.code());
        }
    }

    #[test]
    fn a_full_sqlstate_table_counts_the_rest_as_other() {
        let counters: Box<Counters> = unsafe { Box::new(std::mem::zeroed()) };
        for code in 1..=SQLSTATE_SLOTS as i32 {
            counters.failed(0, code);
        }
        counters.failed(0, 1);
        counters.failed(3, 9999);
        assert_eq!(counters.errors[0][0].load(Relaxed), 2);
        assert_eq!(counters.errors[SQLSTATE_SLOTS][3].load(Relaxed), 1);
        let rows = counters.rows();
        assert!(rows.iter().any(|r| r["labels"]["sqlstate"] == "other" && r["labels"]["function"] == "billing_deduct"));
        counters.reset();
        assert_eq!(counters.errors[0][0].load(Relaxed), 0);
    }
}
