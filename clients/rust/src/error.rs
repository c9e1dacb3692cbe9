//! [`BillingError`]: one variant per SQLSTATE of the extension's error table
//! (docs/errors.md), with the server's message, DETAIL and HINT, and the
//! parsed fields of PB001 and PB008. Any other error passes through unchanged
//! as [`BillingError::Db`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// What the server said: SQLSTATE, message, DETAIL and HINT, and the driver's
/// error it came in (its [`std::error::Error::source`]).
#[derive(Debug)]
pub struct ServerError {
    /// The SQLSTATE, such as `PB001`.
    pub sqlstate: String,
    /// The primary message.
    pub message: String,
    /// The DETAIL, if any (what it shows can depend on the calling role's grants).
    pub detail: Option<String>,
    /// The HINT, if any.
    pub hint: Option<String>,
    cause: tokio_postgres::Error,
}

impl ServerError {
    /// The driver's error this was made from.
    pub fn cause(&self) -> &tokio_postgres::Error {
        &self.cause
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// The end of a spending limit's current period, as PB008's DETAIL gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodEnd {
    /// A lifetime cap: the period never ends (`period_end=never`).
    Never,
    /// The period ends at this time.
    At(DateTime<Utc>),
}

/// An error of a billing call.
///
/// Every variant but [`BillingError::Db`] is a SQLSTATE of the extension's
/// error table and carries the server's message, DETAIL and HINT in a
/// [`ServerError`] (also reachable through [`BillingError::server_error`],
/// [`BillingError::sqlstate`], [`BillingError::message`], ...). Anything else
/// (another SQLSTATE, a closed connection, a row that does not decode) is
/// `Db` with the driver's error unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BillingError {
    /// PB001: not enough power for a deduct, hold or settle. `requested` and
    /// `available` come from the DETAIL: `Requested X, available Y.` (deduct,
    /// hold); for a settle above its hold, `requested` is the part above the
    /// hold and `available` the power (or, with a debt floor, the room) left
    /// for it. `available` is `None` when the calling role may not see it
    /// (it lacks EXECUTE on `billing_power`).
    #[error("{error}")]
    InsufficientPower { error: ServerError, requested: Option<Decimal>, available: Option<Decimal> },
    /// PB002: unknown or wrong-direction account type, unknown source type or pricing rule.
    #[error("{0}")]
    UnknownType(ServerError),
    /// PB003: the idempotency key was used for a different operation.
    #[error("{0}")]
    IdempotencyConflict(ServerError),
    /// PB004: the hold was already settled or released differently, or is past its ttl.
    #[error("{0}")]
    HoldStateError(ServerError),
    /// PB005: a refund would give back more than is left of the entry.
    #[error("{0}")]
    OverRefund(ServerError),
    /// PB006: UPDATE, DELETE or TRUNCATE on the ledger.
    #[error("{0}")]
    LedgerAppendOnly(ServerError),
    /// PB007: renaming or deleting an account or source type code.
    #[error("{0}")]
    TypeCodeFixed(ServerError),
    /// PB008: a charge would take a spending limit above its cap. `scope`
    /// comes from the message; the rest from the DETAIL
    /// (`cap=X spent=X held=X requested=X period_end=T`), where a role that
    /// may not execute `billing_limits` sees only `requested`.
    #[error("{error}")]
    LimitExceeded {
        error: ServerError,
        scope: Option<String>,
        cap: Option<Decimal>,
        spent: Option<Decimal>,
        held: Option<Decimal>,
        requested: Option<Decimal>,
        period_end: Option<PeriodEnd>,
    },
    /// PB009: `billing_distribute` without Citus (no `citus` extension in the
    /// database), on a Citus worker, or when a worker could not be given its
    /// range of ids (the DETAIL names it). Nothing is distributed.
    #[error("{0}")]
    CitusUnavailable(ServerError),
    /// 22023: an argument has a value the function does not accept.
    #[error("{0}")]
    InvalidArgument(ServerError),
    /// 22004: a required argument is NULL.
    #[error("{0}")]
    NullArgument(ServerError),
    /// 22003: a balance would leave the range the extension computes in.
    #[error("{0}")]
    OutOfRange(ServerError),
    /// 42703: a charging trigger names a column its table does not have.
    #[error("{0}")]
    UndefinedColumn(ServerError),
    /// 40001: serialization failure; roll back and retry the whole transaction
    /// ([`crate::retry_transaction`] does).
    #[error("{0}")]
    SerializationFailure(ServerError),
    /// 40P01: deadlock detected; retryable like 40001.
    #[error("{0}")]
    Deadlock(ServerError),
    /// 42501: the role may not execute the function (or a trigger's owner may not).
    #[error("{0}")]
    InsufficientPrivilege(ServerError),
    /// 39P01: a charging trigger fired other than `AFTER ... FOR EACH ROW`.
    #[error("{0}")]
    TriggerProtocolViolated(ServerError),
    /// 2BP01: dropping the extension while the ledger holds entries.
    #[error("{0}")]
    DependentObjects(ServerError),
    /// Any other error, unchanged: another SQLSTATE, an I/O or protocol error,
    /// a value that does not decode.
    #[error(transparent)]
    Db(tokio_postgres::Error),
}

impl BillingError {
    /// The server's error, for every variant but `Db`.
    pub fn server_error(&self) -> Option<&ServerError> {
        use BillingError::*;
        match self {
            InsufficientPower { error, .. } | LimitExceeded { error, .. } => Some(error),
            UnknownType(e)
            | IdempotencyConflict(e)
            | HoldStateError(e)
            | OverRefund(e)
            | LedgerAppendOnly(e)
            | TypeCodeFixed(e)
            | CitusUnavailable(e)
            | InvalidArgument(e)
            | NullArgument(e)
            | OutOfRange(e)
            | UndefinedColumn(e)
            | SerializationFailure(e)
            | Deadlock(e)
            | InsufficientPrivilege(e)
            | TriggerProtocolViolated(e)
            | DependentObjects(e) => Some(e),
            Db(_) => None,
        }
    }

    /// The SQLSTATE, for every server error (`Db` included when it came from the server).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            BillingError::Db(e) => e.code().map(|c| c.code()),
            other => other.server_error().map(|e| e.sqlstate.as_str()),
        }
    }

    /// The server's message (`Db`: when it came from the server).
    pub fn message(&self) -> Option<&str> {
        match self {
            BillingError::Db(e) => e.as_db_error().map(|d| d.message()),
            other => other.server_error().map(|e| e.message.as_str()),
        }
    }

    /// The server's DETAIL, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            BillingError::Db(e) => e.as_db_error().and_then(|d| d.detail()),
            other => other.server_error().and_then(|e| e.detail.as_deref()),
        }
    }

    /// The server's HINT, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            BillingError::Db(e) => e.as_db_error().and_then(|d| d.hint()),
            other => other.server_error().and_then(|e| e.hint.as_deref()),
        }
    }

    /// True for 40001 and 40P01: rolling back and running the whole
    /// transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BillingError::SerializationFailure(_) | BillingError::Deadlock(_))
    }

    /// The driver's error this was made from.
    pub fn cause(&self) -> &tokio_postgres::Error {
        match self {
            BillingError::Db(e) => e,
            other => other.server_error().map(ServerError::cause).expect("every other variant has a server error"),
        }
    }
}

impl From<tokio_postgres::Error> for BillingError {
    fn from(cause: tokio_postgres::Error) -> Self {
        let Some(db) = cause.as_db_error() else {
            return BillingError::Db(cause);
        };
        let sqlstate = db.code().code().to_owned();
        let wrap: fn(ServerError) -> BillingError = match sqlstate.as_str() {
            "PB001" => |e| {
                let (requested, available) = parse_insufficient(e.detail.as_deref());
                BillingError::InsufficientPower { error: e, requested, available }
            },
            "PB002" => BillingError::UnknownType,
            "PB003" => BillingError::IdempotencyConflict,
            "PB004" => BillingError::HoldStateError,
            "PB005" => BillingError::OverRefund,
            "PB006" => BillingError::LedgerAppendOnly,
            "PB007" => BillingError::TypeCodeFixed,
            "PB008" => |e| {
                let d = parse_limit_detail(e.detail.as_deref());
                BillingError::LimitExceeded {
                    scope: parse_scope(&e.message),
                    cap: d.cap,
                    spent: d.spent,
                    held: d.held,
                    requested: d.requested,
                    period_end: d.period_end,
                    error: e,
                }
            },
            "PB009" => BillingError::CitusUnavailable,
            "22023" => BillingError::InvalidArgument,
            "22004" => BillingError::NullArgument,
            "22003" => BillingError::OutOfRange,
            "42703" => BillingError::UndefinedColumn,
            "40001" => BillingError::SerializationFailure,
            "40P01" => BillingError::Deadlock,
            "42501" => BillingError::InsufficientPrivilege,
            "39P01" => BillingError::TriggerProtocolViolated,
            "2BP01" => BillingError::DependentObjects,
            _ => return BillingError::Db(cause),
        };
        let error = ServerError {
            sqlstate,
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            hint: db.hint().map(str::to_owned),
            cause,
        };
        wrap(error)
    }
}

fn decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str(text.trim()).ok()
}

/// PB001's DETAIL, in the forms the extension writes:
/// - `Requested X, available Y.` / `Requested X; the available power is shown to ...`
/// - a settle: `The hold reserved H; the other D must come from available power, which is A.`
///   (or `... which is shown to ...`), and with a debt floor `..., which leave R.`
fn parse_insufficient(detail: Option<&str>) -> (Option<Decimal>, Option<Decimal>) {
    let Some(detail) = detail else { return (None, None) };
    if let Some(rest) = detail.strip_prefix("Requested ") {
        let end = rest.find([',', ';']).unwrap_or(rest.len());
        let requested = decimal(&rest[..end]);
        let available = rest
            .strip_prefix(&rest[..end])
            .and_then(|r| r.strip_prefix(", available "))
            .and_then(|r| decimal(r.trim_end_matches('.')));
        return (requested, available);
    }
    if let Some(rest) = detail.split_once("; the other ").map(|(_, r)| r) {
        let requested = rest.split_once(' ').and_then(|(d, _)| decimal(d));
        let available = [", which is ", ", which leave "]
            .iter()
            .find_map(|m| rest.rsplit_once(m).map(|(_, a)| a))
            .and_then(|a| decimal(a.trim_end_matches('.')));
        return (requested, available);
    }
    (None, None)
}

#[derive(Default)]
struct LimitDetail {
    cap: Option<Decimal>,
    spent: Option<Decimal>,
    held: Option<Decimal>,
    requested: Option<Decimal>,
    period_end: Option<PeriodEnd>,
}

/// PB008's DETAIL: `cap=X spent=X held=X requested=X period_end=T`, or only `requested=X`.
fn parse_limit_detail(detail: Option<&str>) -> LimitDetail {
    let mut d = LimitDetail::default();
    for pair in detail.unwrap_or("").split_whitespace() {
        let Some((key, value)) = pair.split_once('=') else { continue };
        match key {
            "cap" => d.cap = decimal(value),
            "spent" => d.spent = decimal(value),
            "held" => d.held = decimal(value),
            "requested" => d.requested = decimal(value),
            "period_end" if value == "never" => d.period_end = Some(PeriodEnd::Never),
            "period_end" => {
                d.period_end = DateTime::parse_from_rfc3339(value).ok().map(|t| PeriodEnd::At(t.with_timezone(&Utc)))
            }
            _ => {}
        }
    }
    d
}

/// The scope in PB008's message: `... spending limit of scope "key:sk-123" for user "alice"`
/// (both quoted with Rust's `{:?}` escapes).
fn parse_scope(message: &str) -> Option<String> {
    let rest = message.split_once("of scope \"")?.1;
    let mut scope = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(scope),
            '\\' => match chars.next()? {
                'n' => scope.push('\n'),
                'r' => scope.push('\r'),
                't' => scope.push('\t'),
                '0' => scope.push('\0'),
                'u' => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    scope.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => scope.push(other),
            },
            c => scope.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<Decimal> {
        Some(Decimal::from_str(s).unwrap())
    }

    #[test]
    fn insufficient_power_details() {
        assert_eq!(parse_insufficient(Some("Requested 1000, available 90.")), (d("1000"), d("90")));
        assert_eq!(parse_insufficient(Some("Requested 3, available -2.5.")), (d("3"), d("-2.5")));
        assert_eq!(
            parse_insufficient(Some(
                "Requested 12.5; the available power is shown to roles that may execute billing_power."
            )),
            (d("12.5"), None)
        );
        assert_eq!(
            parse_insufficient(Some("The hold reserved 5; the other 7 must come from available power, which is 2.")),
            (d("7"), d("2"))
        );
        assert_eq!(
            parse_insufficient(Some(
                "The hold reserved 5; the other 7 must come from available power, which is shown to roles that may execute billing_power."
            )),
            (d("7"), None)
        );
        assert_eq!(
            parse_insufficient(Some(
                "The hold reserved 5; the other 7 must come from available power and the debt the user's limit allows, which leave 3."
            )),
            (d("7"), d("3"))
        );
        assert_eq!(parse_insufficient(None), (None, None));
    }

    #[test]
    fn limit_details_and_scope() {
        let l =
            parse_limit_detail(Some("cap=100 spent=96.5 held=0 requested=5 period_end=2026-12-01T00:00:00.000000Z"));
        assert_eq!((l.cap, l.spent, l.held, l.requested), (d("100"), d("96.5"), d("0"), d("5")));
        assert_eq!(
            l.period_end,
            Some(PeriodEnd::At(DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().with_timezone(&Utc)))
        );
        let l = parse_limit_detail(Some("cap=1 spent=0 held=0 requested=2 period_end=never"));
        assert_eq!(l.period_end, Some(PeriodEnd::Never));
        let l = parse_limit_detail(Some("requested=5"));
        assert_eq!((l.cap, l.requested, l.period_end), (None, d("5"), None));
        assert_eq!(
            parse_scope("charge exceeds the spending limit of scope \"key:sk-123\" for user \"alice\"").as_deref(),
            Some("key:sk-123")
        );
        assert_eq!(
            parse_scope(r#"charge exceeds the spending limit of scope "a\"b\\c\u{e9}" for user "x""#).as_deref(),
            Some("a\"b\\cé")
        );
    }
}
