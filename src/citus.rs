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
//! them: the check is one catalog cache lookup.

use pgrx::pg_sys;

/// Whether the citus extension is installed in this database (its catalog
/// table pg_dist_partition exists).
pub fn installed() -> bool {
    unsafe {
        pg_sys::get_relname_relid(c"pg_dist_partition".as_ptr(), pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)) != pg_sys::Oid::INVALID
    }
}
