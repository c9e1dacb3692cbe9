//! Amounts of power: parsing and validating what callers pass in.
//!
//! Amounts are exact decimals (rust_decimal in Rust, numeric in SQL). A
//! single amount is greater than zero, has at most [`MAX_SCALE`] decimal
//! places and is at most [`MAX_AMOUNT`].

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::errors::{BillingError, BillingResult, SqlState};

/// Decimal places an amount may carry.
pub const MAX_SCALE: u32 = 8;

/// The largest amount one call accepts: 1,000,000,000,000 (10^12).
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// Parses numeric's text form (as numeric_out prints it) into a validated amount.
/// `argument` names the SQL argument in the error message.
pub fn parse_amount(argument: &str, text: &str) -> BillingResult<Decimal> {
    parse(argument, text, false)
}

fn not_a_number(argument: &str, text: &str) -> BillingError {
    BillingError::invalid_argument(argument, format!("is not a number: {text}"))
        .with_hint("Amounts are plain decimal numbers such as 5 or 0.25.")
}

/// Like [`parse_amount`], but zero is accepted too (an actual cost of nothing).
pub fn parse_cost(argument: &str, text: &str) -> BillingResult<Decimal> {
    parse(argument, text, true)
}

fn parse(argument: &str, text: &str, zero_allowed: bool) -> BillingResult<Decimal> {
    let text = text.trim();
    match text {
        "NaN" => return Err(not_a_number(argument, text)),
        "Infinity" | "-Infinity" => {
            return Err(BillingError::invalid_argument(argument, "must be finite"))
        }
        _ => {}
    }
    let (negative, digits) = match (text.strip_prefix('-'), text.strip_prefix('+')) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(not_a_number(argument, text));
    }
    let significant_fraction = fraction.trim_end_matches('0');
    let is_zero = whole.bytes().all(|b| b == b'0') && significant_fraction.is_empty();
    if is_zero {
        if zero_allowed {
            return Ok(Decimal::ZERO);
        }
        return Err(BillingError::invalid_argument(argument, "must be greater than zero"));
    }
    if negative {
        let bound = if zero_allowed { "must not be negative" } else { "must be greater than zero" };
        return Err(BillingError::invalid_argument(argument, format!("{bound}, got {text}")));
    }
    if significant_fraction.len() > MAX_SCALE as usize {
        return Err(BillingError::invalid_argument(
            argument,
            format!("has more than {MAX_SCALE} decimal places: {text}"),
        ));
    }
    let whole = whole.trim_start_matches('0');
    let max_whole_digits = MAX_AMOUNT.trunc().to_string().len();
    let amount = if whole.len() > max_whole_digits {
        None
    } else {
        let canonical = format!("{}.{}", if whole.is_empty() { "0" } else { whole }, significant_fraction);
        Decimal::from_str(canonical.trim_end_matches('.')).ok()
    };
    match amount {
        Some(amount) if amount <= MAX_AMOUNT => Ok(amount.normalize()),
        _ => Err(BillingError::invalid_argument(argument, format!("must be at most {MAX_AMOUNT}, got {text}"))),
    }
}

/// Adds two balances, failing rather than losing precision.
pub fn checked_add(a: Decimal, b: Decimal) -> BillingResult<Decimal> {
    a.checked_add(b).ok_or_else(out_of_range)
}

/// Subtracts two balances, failing rather than losing precision.
pub fn checked_sub(a: Decimal, b: Decimal) -> BillingResult<Decimal> {
    a.checked_sub(b).ok_or_else(out_of_range)
}

fn out_of_range() -> BillingError {
    BillingError::new(SqlState::NumericValueOutOfRange, "balance out of the range billing can compute")
}

/// Parses a stored balance (numeric's text form) into a Decimal.
pub fn parse_stored(column: &str, text: &str) -> BillingResult<Decimal> {
    Decimal::from_str(text).map_err(|e| BillingError::internal(format!("stored {column} {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: BillingResult<Decimal>) -> &'static str {
        result.unwrap_err().state.code()
    }

    #[test]
    fn accepts_positive_amounts_up_to_eight_places() {
        assert_eq!(parse_amount("amount", "1").unwrap(), Decimal::ONE);
        assert_eq!(parse_amount("amount", "0.00000001").unwrap().to_string(), "0.00000001");
        assert_eq!(parse_amount("amount", "12.50000000000").unwrap().to_string(), "12.5");
        assert_eq!(parse_amount("amount", "000012").unwrap().to_string(), "12");
        assert_eq!(parse_amount("amount", "1000000000000").unwrap(), MAX_AMOUNT);
    }

    #[test]
    fn rejects_what_is_not_a_positive_bounded_amount() {
        for bad in ["0", "0.000", "-1", "-0.5", "NaN", "Infinity", "-Infinity", "0.000000001", "1000000000000.01", "1e5", "", "abc", "99999999999999999999999999999999999"] {
            assert_eq!(code(parse_amount("amount", bad)), "22023", "{bad:?}");
        }
    }

    #[test]
    fn names_the_argument() {
        let err = parse_amount("actual_amount", "-3").unwrap_err();
        assert!(err.message.starts_with("actual_amount "), "{}", err.message);
    }

    #[test]
    fn a_cost_may_be_zero_but_nothing_else_changes() {
        assert_eq!(parse_cost("actual_amount", "0.000").unwrap(), Decimal::ZERO);
        assert_eq!(parse_cost("actual_amount", "2.5").unwrap().to_string(), "2.5");
        for bad in ["-1", "-0.5", "NaN", "0.000000001", "1000000000000.01"] {
            assert_eq!(code(parse_cost("actual_amount", bad)), "22023", "{bad:?}");
        }
        assert!(parse_cost("actual_amount", "-1").unwrap_err().message.contains("must not be negative"));
    }

    #[test]
    fn max_amount_is_ten_to_the_twelfth() {
        assert_eq!(MAX_AMOUNT.to_string(), "1000000000000");
    }

    #[test]
    fn arithmetic_overflow_is_22003() {
        assert_eq!(checked_add(Decimal::MAX, Decimal::ONE).unwrap_err().state.code(), "22003");
    }
}
