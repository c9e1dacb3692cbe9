//! Every failure the extension reports, with its stable SQLSTATE.
//!
//! Our own codes live in class PB. pgrx's error type only knows PostgreSQL's
//! built-in codes (an unknown one becomes XX000), so a [`BillingError`] is
//! carried out of the guarded Rust code as a value and raised with
//! PostgreSQL's own `errstart`/`errcode`/`errfinish` from the C entry point,
//! after every Rust value has been dropped. Errors that PostgreSQL raises
//! while we run SQL (a lock timeout, a cancel, a serialization failure) pass
//! through pgrx untouched.

use std::ffi::{c_char, c_int, CString};
use std::fmt;
use std::panic::Location;

use pgrx::pg_sys;

/// One of the extension's SQLSTATEs. docs/errors.md lists them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlState {
    /// PB001: the user does not have enough available power.
    InsufficientPower,
    /// PB002: unknown account_type or source_type, or a type of the wrong direction.
    InvalidType,
    /// PB003: an idempotency key was reused for a different operation.
    IdempotencyConflict,
    /// PB004: the hold is no longer open (settled, released or past its ttl).
    HoldClosed,
    /// PB005: a refund would give back more than the entry took.
    RefundExceeded,
    /// PB008: a charge would take a spending limit above its cap.
    LimitExceeded,
    /// 22023: an argument has a value the function does not accept.
    InvalidParameterValue,
    /// 22004: a required argument is NULL.
    NullValueNotAllowed,
    /// 22003: a balance would leave the range the extension computes in.
    NumericValueOutOfRange,
    /// 42703: a trigger argument names a column the table does not have.
    UndefinedColumn,
    /// 39P01: a trigger function called other than as its trigger.
    TriggerProtocolViolated,
    /// 2BP01: dropping the extension would delete a ledger that holds entries.
    DependentObjectsStillExist,
    /// 42501: the calling role may not do this (billing_metrics_reset: superusers only).
    InsufficientPrivilege,
    /// 40001: under REPEATABLE READ or SERIALIZABLE, the transaction's snapshot
    /// misses a row that a concurrent transaction committed (retry the transaction).
    SerializationFailure,
    /// XX000: a bug; the message says what.
    Internal,
}

impl SqlState {
    pub fn code(self) -> &'static str {
        match self {
            SqlState::InsufficientPower => "PB001",
            SqlState::InvalidType => "PB002",
            SqlState::IdempotencyConflict => "PB003",
            SqlState::HoldClosed => "PB004",
            SqlState::RefundExceeded => "PB005",
            SqlState::LimitExceeded => "PB008",
            SqlState::InvalidParameterValue => "22023",
            SqlState::NullValueNotAllowed => "22004",
            SqlState::NumericValueOutOfRange => "22003",
            SqlState::UndefinedColumn => "42703",
            SqlState::TriggerProtocolViolated => "39P01",
            SqlState::DependentObjectsStillExist => "2BP01",
            SqlState::InsufficientPrivilege => "42501",
            SqlState::SerializationFailure => "40001",
            SqlState::Internal => "XX000",
        }
    }

    /// PostgreSQL's packed form of a five-character SQLSTATE (MAKE_SQLSTATE).
    pub fn packed(self) -> c_int {
        self.code()
            .bytes()
            .enumerate()
            .map(|(i, ch)| ((ch as c_int - '0' as c_int) & 0x3F) << (6 * i))
            .sum()
    }
}

/// Facts a DETAIL may hold beyond what the caller passed, and who may see them.
///
/// A DETAIL is read by the role that called, which may not be the role the
/// function runs as: a charging trigger calls billing_deduct for the table's
/// owner, who may not be allowed to read balances. So the facts are shown
/// only to a role that could read them through the functions it was granted:
/// the role in effect at top level (GetOuterUserId: who called, never the
/// definer) must be allowed to execute `billing_power` for a balance,
/// `billing_history` for another operation's amount and type, `billing_limits`
/// for a spending limit's cap and counters (the rule of
/// billing.may_execute). Everyone else gets the DETAIL without them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reveals {
    /// A user's available power.
    Balance,
    /// Another operation made under the same idempotency key: its amount and type.
    OtherOperation,
    /// A spending limit's cap and what was spent and held in its period.
    Limits,
}

impl Reveals {
    /// The function whose EXECUTE lets a role read these facts anyway.
    pub fn function(self) -> &'static str {
        match self {
            Reveals::Balance => "billing_power",
            Reveals::OtherOperation => "billing_history",
            Reveals::Limits => "billing_limits",
        }
    }
}

/// An error on its way to the client: SQLSTATE, message, and optional DETAIL and HINT.
#[derive(Debug, PartialEq, Eq)]
pub struct BillingError {
    pub state: SqlState,
    pub message: String,
    pub detail: Option<String>,
    /// When the detail reveals facts (see [`Reveals`]): which, and the detail without them.
    pub private: Option<(Reveals, String)>,
    pub hint: Option<String>,
    /// Where in our source the error was made: reported as the error's LOCATION.
    pub location: &'static Location<'static>,
}

pub type BillingResult<T> = Result<T, BillingError>;

impl BillingError {
    #[track_caller]
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        BillingError { state, message: message.into(), detail: None, private: None, hint: None, location: Location::caller() }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A detail that reveals `reveals`; `without` is the detail shown to a caller
    /// who may not read them ([`BillingError::for_caller`] decides).
    pub fn with_private_detail(mut self, reveals: Reveals, detail: impl Into<String>, without: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self.private = Some((reveals, without.into()));
        self
    }

    /// The error as the calling role may see it: a detail with facts it may not
    /// read is replaced by the detail without them. The one place that applies
    /// the rule of [`Reveals`]; runs SQL, so call it before [`BillingError::raise`],
    /// inside pgrx's guard.
    pub fn for_caller(mut self) -> Self {
        if let Some((reveals, without)) = self.private.take() {
            // SAFETY: reads this backend's outer user id.
            let caller = unsafe { pg_sys::GetOuterUserId() };
            if !may_execute(caller, reveals.function()) {
                self.detail = Some(without);
            }
        }
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[track_caller]
    pub fn invalid_argument(argument: &str, problem: impl fmt::Display) -> Self {
        BillingError::new(SqlState::InvalidParameterValue, format!("{argument} {problem}"))
    }

    #[track_caller]
    pub fn null_argument(argument: &str) -> Self {
        BillingError::new(SqlState::NullValueNotAllowed, format!("{argument} must not be NULL"))
    }

    #[track_caller]
    pub fn internal(what: impl fmt::Display) -> Self {
        BillingError::new(SqlState::Internal, format!("billing internal error: {what}"))
    }

    /// Reports the error to PostgreSQL, which aborts the current (sub)transaction.
    ///
    /// # Safety
    /// Call only from a C entry point, with no Rust value that needs dropping
    /// still alive in any frame between here and PostgreSQL: `errfinish`
    /// longjmps straight back into PostgreSQL.
    pub unsafe fn raise(self) -> ! {
        // Copy the texts into palloc'd memory (freed by the abort) and drop the Rust strings.
        let message = palloc_cstring(&self.message);
        let detail = self.detail.as_deref().map(palloc_cstring);
        let hint = self.hint.as_deref().map(palloc_cstring);
        let file = palloc_cstring(self.location.file());
        let line = self.location.line() as c_int;
        let state = self.state;
        drop(self);

        unsafe extern "C-unwind" {
            fn errstart(elevel: c_int, domain: *const c_char) -> bool;
            fn errcode(sqlerrcode: c_int) -> c_int;
            fn errmsg(fmt: *const c_char, ...) -> c_int;
            fn errdetail(fmt: *const c_char, ...) -> c_int;
            fn errhint(fmt: *const c_char, ...) -> c_int;
            fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
        }
        const PERCENT_S: *const c_char = c"%s".as_ptr();
        unsafe {
            if errstart(pgrx::PgLogLevel::ERROR as c_int, std::ptr::null()) {
                errcode(state.packed());
                errmsg(PERCENT_S, message);
                if let Some(detail) = detail {
                    errdetail(PERCENT_S, detail);
                }
                if let Some(hint) = hint {
                    errhint(PERCENT_S, hint);
                }
                errfinish(file, line, c"billing".as_ptr());
            }
        }
        unreachable!("errfinish returned from an ERROR")
    }
}

impl fmt::Display for BillingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.state.code(), self.message)
    }
}

impl From<pgrx::spi::SpiError> for BillingError {
    #[track_caller]
    fn from(e: pgrx::spi::SpiError) -> Self {
        BillingError::internal(format!("SPI: {e}"))
    }
}

/// billing.may_execute(role, function_name), through sql/statements/may_execute.sql.
fn may_execute(role: pg_sys::Oid, function: &str) -> bool {
    let role = i64::from(role.to_u32());
    pgrx::spi::Spi::get_one_with_args::<bool>(crate::statements::MAY_EXECUTE.sql, &[role.into(), function.into()])
        == Ok(Some(true))
}

fn palloc_cstring(text: &str) -> *const c_char {
    let c = CString::new(text.replace('\0', " ")).expect("NUL bytes were replaced");
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_sqlstates_like_postgres() {
        // MAKE_SQLSTATE('2','2','0','2','3') from PostgreSQL's errcodes.h
        assert_eq!(
            SqlState::InvalidParameterValue.packed(),
            pgrx::pg_sys::errcodes::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as c_int
        );
        assert_eq!(
            SqlState::DependentObjectsStillExist.packed(),
            pgrx::pg_sys::errcodes::PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST as c_int
        );
        assert_eq!(
            SqlState::Internal.packed(),
            pgrx::pg_sys::errcodes::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR as c_int
        );
    }
}
