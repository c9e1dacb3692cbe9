//! Citus: whether this database runs the extension on a Citus cluster.
//!
//! On Citus, billing_distribute() (sql/distribute.sql) distributes the tables by
//! user_id. Citus plans a statement that changes one table in one shard as a
//! router query, but a statement whose CTEs insert (the one-statement deduct,
//! hold and settle: an UPDATE of the account row, an INSERT into the ledger or
//! the holds, an UPDATE of the limits) it plans piece by piece, and it cannot
//! route the limits' UPDATE that joins the account row so. Where Citus is
//! installed, those three shortcuts step aside and every call takes the
//! general path, whose statements Citus routes. A database without Citus keeps
//! them.
//!
//! The answer is kept per backend until PostgreSQL invalidates a pg_class entry
//! looked up by name (a relation created, renamed or dropped, here or in another
//! backend: CREATE EXTENSION citus creates pg_dist_partition), so a call asks
//! the catalog only after such a change.

use std::cell::Cell;

use pgrx::pg_sys;

thread_local! {
    static KNOWN: Cell<Option<bool>> = const { Cell::new(None) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The syscache callback: a pg_class entry changed, so the answer may have.
/// No catalog access here: PostgreSQL may call this while it processes invalidations.
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, _cache: std::ffi::c_int, _hash: u32) {
    KNOWN.set(None);
}

/// Whether the citus extension is installed in this database (its catalog
/// table pg_dist_partition exists).
pub fn installed() -> bool {
    if let Some(known) = KNOWN.get() {
        return known;
    }
    if !REGISTERED.get() {
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                pg_sys::SysCacheIdentifier::RELNAMENSP as std::ffi::c_int,
                Some(forget),
                pg_sys::Datum::from(0usize),
            )
        };
        REGISTERED.set(true);
    }
    // the lookup may process invalidations (and so run `forget`) before it answers
    let found = unsafe {
        pg_sys::get_relname_relid(c"pg_dist_partition".as_ptr(), pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE))
            != pg_sys::Oid::INVALID
    };
    KNOWN.set(Some(found));
    found
}
