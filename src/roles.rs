//! Who is calling: the role the ledger records for each entry.
//!
//! The write functions are SECURITY DEFINER, so inside them `current_user` is
//! the extension's owner. The role that called them is PostgreSQL's "outer"
//! user: the session user, or the role chosen with SET ROLE, which a security
//! definer function does not change. Every ledger entry records it (column
//! `calling_role`, whose default calls `billing.calling_role()`), beside the
//! session user (`session_role`).

use pgrx::datum::IntoDatum;
use pgrx::pg_sys;

use crate::fmgr::{sql_function, Args, Returned};

/// The name of the role in effect outside any security definer function.
pub fn calling_role_name() -> String {
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
        if name.is_null() {
            // a role dropped while this session still runs under it
            return format!("oid {}", pg_sys::GetOuterUserId().to_u32());
        }
        std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
    }
}

/// billing.calling_role() RETURNS text
fn calling_role(_args: &Args) -> Returned {
    Ok(calling_role_name().into_datum())
}
sql_function!(pg_finfo_billing_calling_role, billing_calling_role => calling_role);
