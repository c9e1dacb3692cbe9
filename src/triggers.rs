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
//!
//! A column's text is part of the key that finds the row's charge again, so
//! it must not depend on the session: the output of a date, time, interval,
//! bytea, float or money value changes with DateStyle, TimeZone,
//! IntervalStyle, bytea_output, extra_float_digits and lc_monetary. Values
//! of such types are written with those settings fixed ([`FIXED_SETTINGS`]);
//! text, integers, numeric, uuid and boolean, whose output no setting
//! changes, are written as they always were, so their keys are those of 0.2.0.

use std::ffi::CStr;

use pgrx::{pg_sys, FromDatum, IntoDatum};

use crate::errors::{BillingError, BillingResult, SqlState};
use crate::fmgr::{sql_function, Args, Returned};

/// The settings a column's value is written with when its type's output may
/// depend on them (the defaults of a fresh cluster, and UTC).
const FIXED_SETTINGS: [(&CStr, &CStr); 6] = [
    (c"DateStyle", c"ISO, MDY"),
    (c"TimeZone", c"UTC"),
    (c"IntervalStyle", c"postgres"),
    (c"bytea_output", c"hex"),
    (c"extra_float_digits", c"1"),
    (c"lc_monetary", c"C"),
];

/// Types whose output no setting changes: written as the session writes them.
fn output_is_fixed(type_oid: pg_sys::Oid) -> bool {
    [
        pg_sys::TEXTOID,
        pg_sys::VARCHAROID,
        pg_sys::BPCHAROID,
        pg_sys::NAMEOID,
        pg_sys::INT2OID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
        pg_sys::NUMERICOID,
        pg_sys::UUIDOID,
        pg_sys::BOOLOID,
        pg_sys::OIDOID,
    ]
    .contains(&type_oid)
}

/// How a column's value is turned into text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rendering {
    /// The same under any session settings (the keys of 0.3.0).
    Canonical,
    /// With the session's settings, as 0.2.0 did: only to find rows charged before the upgrade.
    Session,
}

/// billing.trigger_column(tuple record, argument text, column_name text) RETURNS text:
/// the column's value as text, the same under any session settings; NULL if
/// it is NULL; 42703 naming `argument` if the row has no such column.
fn trigger_column(args: &Args) -> Returned {
    column_text(args, Rendering::Canonical)
}
sql_function!(pg_finfo_billing_trigger_column, billing_trigger_column => trigger_column);

/// billing.trigger_session_column(tuple record, argument text, column_name text) RETURNS text:
/// the column's value as text as the session's settings write it (how 0.2.0
/// derived keys), to find a row charged before the upgrade.
fn trigger_session_column(args: &Args) -> Returned {
    column_text(args, Rendering::Session)
}
sql_function!(pg_finfo_billing_trigger_session_column, billing_trigger_session_column => trigger_session_column);

/// The row (argument 0) and the attribute number and type of the column it names
/// (argument 2); 42703 naming the trigger argument (argument 1) when it has none.
fn find_column(args: &Args) -> BillingResult<(pg_sys::HeapTupleHeader, pg_sys::AttrNumber, pg_sys::Oid)> {
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
            // PostgreSQL 18 moved the attribute array behind `compact_attrs`; TupleDescAttr finds it.
            #[cfg(feature = "pg18")]
            let attr = &*pg_sys::TupleDescAttr(desc, i as std::ffi::c_int);
            #[cfg(not(feature = "pg18"))]
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
    Ok((header, attnum, type_oid))
}

fn column_text(args: &Args, rendering: Rendering) -> Returned {
    let (header, attnum, type_oid) = find_column(args)?;
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
            let fixed = rendering == Rendering::Canonical && !output_is_fixed(type_oid);
            // As a function's SET clause does: a new GUC nest level, undone
            // right after (and by the abort if the output function fails).
            let nest_level = if fixed { Some(pg_sys::NewGUCNestLevel()) } else { None };
            if fixed {
                for (name, setting) in FIXED_SETTINGS {
                    pg_sys::set_config_option(
                        name.as_ptr(),
                        setting.as_ptr(),
                        pg_sys::GucContext::PGC_USERSET,
                        pg_sys::GucSource::PGC_S_SESSION,
                        pg_sys::GucAction::GUC_ACTION_SAVE,
                        true,
                        0,
                        false,
                    );
                }
            }
            let text = CStr::from_ptr(pg_sys::OidOutputFunctionCall(output, value)).to_string_lossy().into_owned();
            if let Some(level) = nest_level {
                pg_sys::AtEOXact_GUC(true, level);
            }
            Some(text)
        }
    };
    Ok(text.and_then(IntoDatum::into_datum))
}

/// billing.trigger_scopes(tuple record, argument text, column_name text) RETURNS text[]:
/// the scopes a charging trigger's row names in its scope_column, a text[]
/// column (as it is) or a text one (one scope); NULL when the value is NULL;
/// 42703 without such a column, 22023 for a column of another type.
fn trigger_scopes(args: &Args) -> Returned {
    let (header, attnum, type_oid) = find_column(args)?;
    let text_like = [pg_sys::TEXTOID, pg_sys::VARCHAROID, pg_sys::BPCHAROID].contains(&type_oid);
    if type_oid != pg_sys::TEXTARRAYOID && !text_like {
        // SAFETY: names a type by oid
        let type_name = unsafe { CStr::from_ptr(pg_sys::format_type_be(type_oid)).to_string_lossy().into_owned() };
        return Err(BillingError::invalid_argument(
            &args.key(1, "argument")?,
            format!("names a column of type {type_name}; scopes come from a text or text[] column"),
        ));
    }
    // SAFETY: attnum is a live attribute of the row's type, of type text[] or text-like.
    unsafe {
        let mut isnull = false;
        let value = pg_sys::GetAttributeByNum(header, attnum, &mut isnull);
        if isnull {
            return Ok(None);
        }
        let scopes = if type_oid == pg_sys::TEXTARRAYOID {
            Vec::<Option<String>>::from_datum(value, false)
        } else {
            Some(vec![String::from_datum(value, false)])
        };
        Ok(scopes.and_then(IntoDatum::into_datum))
    }
}
sql_function!(pg_finfo_billing_trigger_scopes, billing_trigger_scopes => trigger_scopes);

/// billing.written_in_this_transaction(row_xmin xid) RETURNS boolean: whether
/// a row version was written by the current transaction (or one of its
/// subtransactions). The charging triggers use it to tell a charge they just
/// made from an earlier one that billing_deduct or billing_hold replayed.
fn written_in_this_transaction(args: &Args) -> Returned {
    let Some(datum) = args.datum(0) else {
        return Err(BillingError::null_argument("row_xmin"));
    };
    let xid = pg_sys::TransactionId::from(datum.value() as u32);
    // SAFETY: a plain lookup in this backend's transaction state.
    let mine = unsafe { pg_sys::TransactionIdIsCurrentTransactionId(xid) };
    Ok(mine.into_datum())
}
sql_function!(pg_finfo_billing_written_in_this_transaction, billing_written_in_this_transaction => written_in_this_transaction);
