//! The C entry points of our SQL functions, and reading their arguments.
//!
//! The SQL signatures are written by hand in `sql/` (names, defaults,
//! SECURITY DEFINER, pinned search_path); each points at one symbol declared
//! here with [`sql_function!`]. The body runs inside pgrx's guard, so a
//! PostgreSQL error or a Rust panic is reported as pgrx always does; a
//! [`BillingError`] comes back as a value and is raised with its own SQLSTATE
//! once the guarded code has returned and dropped everything it owned.

use pgrx::datum::{AnyNumeric, FromDatum, Interval, IntoDatum, TimestampWithTimeZone};
use pgrx::pg_sys;
use rust_decimal::Decimal;

use crate::amounts;
use crate::metrics;
use crate::errors::{BillingError, BillingResult};

/// What a function body returns: a value, or SQL NULL.
pub type Returned = BillingResult<Option<pg_sys::Datum>>;

/// Declares `pg_finfo_<symbol>` and the `<symbol>` entry point that runs `body`.
macro_rules! sql_function {
    ($finfo:ident, $symbol:ident => $body:path) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[doc(hidden)]
        pub unsafe extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            // its counters' index, fixed at compile time (a symbol that
            // metrics::ENTRY_POINTS does not list fails the build)
            const ENTRY: usize = $crate::metrics::entry_point(stringify!($symbol));
            unsafe { $crate::fmgr::call(fcinfo, $body, ENTRY) }
        }
    };
}
pub(crate) use sql_function;

/// Runs `body` under pgrx's guard and turns its result into what fmgr expects.
/// With the counters on (the library preloaded, see [`crate::metrics`]), counts
/// the call as entry point `entry`, and an error that leaves it by its SQLSTATE.
///
/// # Safety
/// `fcinfo` must be the call's own; only for use by [`sql_function!`].
pub unsafe fn call(fcinfo: pg_sys::FunctionCallInfo, body: fn(&Args) -> Returned, entry: usize) -> pg_sys::Datum {
    let counters = metrics::counters();
    let outcome = match counters {
        None => unsafe { pg_sys::panic::pgrx_extern_c_guard(|| body(&Args { fcinfo })) },
        Some(counters) => {
            counters.called(entry);
            unsafe { pg_sys::panic::pgrx_extern_c_guard(|| counters.watch(entry, || body(&Args { fcinfo }))) }
        }
    };
    match outcome {
        Ok(Some(datum)) => datum,
        Ok(None) => unsafe {
            (*fcinfo).isnull = true;
            pg_sys::Datum::from(0usize)
        },
        // Nothing of the body is alive any more: raising (a longjmp) is safe here,
        // once the detail is what the calling role may read.
        Err(error) => unsafe {
            if let Some(counters) = counters {
                counters.failed(entry, error.state.packed());
            }
            let error = pg_sys::panic::pgrx_extern_c_guard(|| error.for_caller());
            error.raise()
        },
    }
}

/// The arguments of one call, read by position and named in errors.
pub struct Args {
    fcinfo: pg_sys::FunctionCallInfo,
}

/// Longest text accepted for identifiers such as user_id, source and keys.
pub const MAX_KEY_CHARS: usize = 255;
/// Longest remark accepted.
pub const MAX_REMARK_CHARS: usize = 4000;

/// A text that may be absent, limited to `max_chars`.
pub fn limited_text(name: &str, value: Option<String>, max_chars: usize) -> BillingResult<Option<String>> {
    match value {
        Some(value) if value.chars().count() > max_chars => {
            Err(BillingError::invalid_argument(name, format!("is longer than {max_chars} characters")))
        }
        other => Ok(other),
    }
}

/// A required identifier-like text: present, not empty or only white space, at most MAX_KEY_CHARS.
pub fn required_key(name: &str, value: Option<String>) -> BillingResult<String> {
    let value = limited_text(name, value, MAX_KEY_CHARS)?.ok_or_else(|| BillingError::null_argument(name))?;
    if value.trim().is_empty() {
        return Err(BillingError::invalid_argument(name, "must not be empty"));
    }
    Ok(value)
}

/// An optional identifier-like text: absent is fine, but an empty one is a mistake.
pub fn optional_key(name: &str, value: Option<String>) -> BillingResult<Option<String>> {
    match limited_text(name, value, MAX_KEY_CHARS)? {
        Some(value) if value.trim().is_empty() => Err(BillingError::invalid_argument(name, "must not be empty when given")),
        other => Ok(other),
    }
}

impl Args {
    fn get<T: FromDatum>(&self, position: usize) -> Option<T> {
        unsafe { pgrx::fcinfo::pg_getarg::<T>(self.fcinfo, position) }
    }

    /// A text argument that may be NULL, limited to `max_chars`.
    pub fn text(&self, position: usize, name: &str, max_chars: usize) -> BillingResult<Option<String>> {
        limited_text(name, self.get::<String>(position), max_chars)
    }

    /// A required text argument: not NULL, not empty or only white space.
    pub fn key(&self, position: usize, name: &str) -> BillingResult<String> {
        required_key(name, self.get::<String>(position))
    }

    /// An optional identifier-like text: NULL is absent, but an empty one is a mistake.
    pub fn optional_key(&self, position: usize, name: &str) -> BillingResult<Option<String>> {
        optional_key(name, self.get::<String>(position))
    }

    /// A required amount: positive, at most 8 decimal places, within the bound.
    pub fn amount(&self, position: usize, name: &str) -> BillingResult<Decimal> {
        let numeric = self.get::<AnyNumeric>(position).ok_or_else(|| BillingError::null_argument(name))?;
        amounts::parse_amount(name, &numeric.to_string())
    }

    /// An optional amount: NULL is absent.
    pub fn optional_amount(&self, position: usize, name: &str) -> BillingResult<Option<Decimal>> {
        match self.get::<AnyNumeric>(position) {
            None => Ok(None),
            Some(numeric) => amounts::parse_amount(name, &numeric.to_string()).map(Some),
        }
    }

    /// A required cost: like an amount, but zero is allowed.
    pub fn cost(&self, position: usize, name: &str) -> BillingResult<Decimal> {
        let numeric = self.get::<AnyNumeric>(position).ok_or_else(|| BillingError::null_argument(name))?;
        amounts::parse_cost(name, &numeric.to_string())
    }

    /// A required id (bigint).
    pub fn id(&self, position: usize, name: &str) -> BillingResult<i64> {
        self.get::<i64>(position).ok_or_else(|| BillingError::null_argument(name))
    }

    /// A required boolean.
    pub fn flag(&self, position: usize, name: &str) -> BillingResult<bool> {
        self.get::<bool>(position).ok_or_else(|| BillingError::null_argument(name))
    }

    /// A required interval, longer than zero and at most `max_days` days (a month counts 30).
    pub fn duration(&self, position: usize, name: &str, max_days: i64) -> BillingResult<Interval> {
        let interval = self.get::<Interval>(position).ok_or_else(|| BillingError::null_argument(name))?;
        const DAY: i128 = 86_400_000_000;
        let micros = interval.months() as i128 * 30 * DAY + interval.days() as i128 * DAY + interval.micros() as i128;
        let parts_negative = interval.months() < 0 || interval.days() < 0 || interval.micros() < 0;
        if parts_negative || micros <= 0 {
            return Err(BillingError::invalid_argument(name, "must be longer than zero"));
        }
        if micros > max_days as i128 * DAY {
            return Err(BillingError::invalid_argument(name, format!("must be at most {max_days} days")));
        }
        Ok(interval)
    }

    /// A jsonb argument, as a serde_json value (numbers keep their exact text).
    pub fn json(&self, position: usize, name: &str) -> BillingResult<serde_json::Value> {
        self.get::<pgrx::JsonB>(position).map(|j| j.0).ok_or_else(|| BillingError::null_argument(name))
    }

    /// The raw datum of an argument, NULL as None (for composite arguments).
    pub fn datum(&self, position: usize) -> Option<pg_sys::Datum> {
        unsafe { pgrx::fcinfo::pg_getarg_datum(self.fcinfo, position) }
    }

    /// The oid of the table a trigger fired on; None when not called as a trigger.
    pub fn trigger_relation(&self) -> Option<pg_sys::Oid> {
        // SAFETY: fcinfo is the call's own; a non-NULL context is a Node, and a
        // TriggerData when its tag says so (CALLED_AS_TRIGGER).
        unsafe {
            let context = (*self.fcinfo).context;
            if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_TriggerData {
                return None;
            }
            let data = context as *const pg_sys::TriggerData;
            Some((*(*data).tg_relation).rd_id)
        }
    }

    /// A required numeric of any sign (a delta, not an amount), exact.
    pub fn number(&self, position: usize, name: &str) -> BillingResult<Decimal> {
        let numeric = self.get::<AnyNumeric>(position).ok_or_else(|| BillingError::null_argument(name))?;
        amounts::parse_stored(name, &numeric.to_string())
    }

    /// A bigint that may be NULL.
    pub fn optional_id(&self, position: usize) -> Option<i64> {
        self.get::<i64>(position)
    }

    /// A text[] argument (NULL, or an argument the SQL signature does not have: None).
    pub fn text_array(&self, position: usize) -> Option<Vec<Option<String>>> {
        // SAFETY: fcinfo is the call's own.
        let nargs = unsafe { (*self.fcinfo).nargs } as usize;
        if position >= nargs {
            return None;
        }
        self.get::<Vec<Option<String>>>(position)
    }

    pub fn timestamptz(&self, position: usize) -> Option<TimestampWithTimeZone> {
        self.get::<TimestampWithTimeZone>(position)
    }
}

/// billing.check_key(argument text, value text) RETURNS void: the rule of
/// [`required_key`] for the PL/pgSQL functions, so a required text argument is
/// checked the same way whichever language a function is written in.
fn check_key(args: &Args) -> Returned {
    let argument = args.text(0, "argument", MAX_KEY_CHARS)?.unwrap_or_else(|| "argument".to_owned());
    required_key(&argument, args.text(1, &argument, usize::MAX)?)?;
    Ok(None)
}
sql_function!(pg_finfo_billing_check_key, billing_check_key => check_key);

/// billing.check_amount(argument text, value text, zero_allowed boolean) RETURNS numeric:
/// the amount rule of [`amounts`] for the PL/pgSQL functions and the charging
/// triggers (which read amounts from trigger arguments and row columns as text):
/// 22004 for NULL, 22023 naming `argument` for anything the Rust functions refuse.
fn check_amount(args: &Args) -> Returned {
    let argument = args.text(0, "argument", MAX_KEY_CHARS)?.unwrap_or_else(|| "argument".to_owned());
    let value = args.text(1, &argument, usize::MAX)?.ok_or_else(|| BillingError::null_argument(&argument))?;
    let amount = if args.flag(2, "zero_allowed")? {
        amounts::parse_cost(&argument, &value)?
    } else {
        amounts::parse_amount(&argument, &value)?
    };
    Ok(crate::ledger::numeric(amount).into_datum())
}
sql_function!(pg_finfo_billing_check_amount, billing_check_amount => check_amount);
