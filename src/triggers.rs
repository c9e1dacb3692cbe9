//! Reading one column of a trigger's row by name, for the charging triggers
//! (sql/triggers.sql).
//!
//! The trigger functions are SECURITY DEFINER, so they must not run code that
//! the table's owner wrote. Converting the whole row (`to_jsonb(NEW)`) would:
//! it calls any cast to json defined for a column's type, and the owner of a
//! type may define one. This function reads only the column asked for and
//! turns it into text with the type's output function, which is always built
//! into PostgreSQL or written in C by a superuser (only a superuser can create
//! a base type).

use std::ffi::CStr;

use pgrx::{pg_sys, IntoDatum};

use crate::errors::{BillingError, SqlState};
use crate::fmgr::{sql_function, Args, Returned};

/// billing.trigger_column(tuple record, argument text, column_name text) RETURNS text:
/// the column's value as text, NULL if it is NULL; 42703 naming `argument` if
/// the row has no such column.
fn trigger_column(args: &Args) -> Returned {
    let argument = args.key(1, "argument")?;
    let column = args.key(2, "column_name")?;
    let Some(datum) = args.datum(0) else {
        return Err(BillingError::null_argument("tuple"));
    };
    // SAFETY: argument 0 is declared `record`, so the datum is a composite
    // (a HeapTupleHeader, possibly toasted). Its row type's descriptor is
    // reference-counted and released before anything can raise an error.
    let (header, found, type_name) = unsafe {
        let header = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let fields = (*header).t_choice.t_datum;
        let desc = pg_sys::lookup_rowtype_tupdesc(fields.datum_typeid, fields.datum_typmod);
        let mut found = None;
        for i in 0..(*desc).natts as usize {
            let attr = &*(*desc).attrs.as_ptr().add(i);
            if !attr.attisdropped && CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes() == column.as_bytes() {
                found = Some((attr.attnum, attr.atttypid));
                break;
            }
        }
        if (*desc).tdrefcount >= 0 {
            pg_sys::DecrTupleDescRefCount(desc);
        }
        let type_name = CStr::from_ptr(pg_sys::format_type_be(fields.datum_typeid)).to_string_lossy().into_owned();
        (header, found, type_name)
    };
    let Some((attnum, type_oid)) = found else {
        return Err(BillingError::new(
            SqlState::UndefinedColumn,
            format!("{argument} names column \"{column}\", which {type_name} does not have"),
        )
        .with_hint("Name a column of the table the trigger is on; names are case-sensitive."));
    };
    // SAFETY: attnum is a live attribute of the row's type; the output
    // function of its type takes that type's datum.
    let text = unsafe {
        let mut isnull = false;
        let value = pg_sys::GetAttributeByNum(header, attnum, &mut isnull);
        if isnull {
            None
        } else {
            let mut output = pg_sys::InvalidOid;
            let mut varlena = false;
            pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut varlena);
            Some(CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, value)).to_string_lossy().into_owned())
        }
    };
    Ok(text.and_then(IntoDatum::into_datum))
}
sql_function!(pg_finfo_billing_trigger_column, billing_trigger_column => trigger_column);
