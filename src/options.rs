//! billing_add(options jsonb) and billing_deduct(options jsonb): the options
//! object application services already pass, for example
//! `{"userId": "u1", "amount": 5, "accountType": "CHAT_DEC",
//!   "source": {"type": "CHAT", "source": "report"}, "remark": "...",
//!   "associationNo": "task-9", "idempotencyKey": "req-1"}`; billing_deduct also
//!   takes `"scopes": ["key:sk-1"]` (src/limits.rs).
//!
//! The object is read with serde_json (numbers keep their exact text, so an
//! amount is never a float) into the same `Movement` the positional form
//! builds, and recorded by the same code. Unknown keys, values of the wrong
//! type and missing required keys are 22023, naming the key.

use serde_json::{Map, Value};

use crate::accounts;
use crate::amounts;
use crate::errors::{BillingError, BillingResult};
use crate::fmgr::{limited_text, optional_key, required_key, sql_function, Args, Returned, MAX_REMARK_CHARS};
use crate::ledger::{Direction, Movement};

/// Keys both calls accept.
const COMMON_KEYS: [&str; 8] =
    ["userId", "amount", "accountType", "source", "remark", "associationNo", "associationUserId", "idempotencyKey"];
/// Keys only billing_add accepts: a grant's expiry and subscription.
const CREDIT_KEYS: [&str; 2] = ["expireAt", "subscriptionId"];
/// Keys only billing_deduct accepts: the scopes of spending limits it counts against.
const DEBIT_KEYS: [&str; 1] = ["scopes"];

/// The movement an options object describes, and its expireAt as given (parsed by PostgreSQL).
pub fn parse(options: &Value, direction: Direction) -> BillingResult<(Movement, Option<String>)> {
    let object = options
        .as_object()
        .ok_or_else(|| BillingError::invalid_argument("options", "must be a JSON object"))?;
    let accepted: Vec<&str> = match direction {
        Direction::Credit => COMMON_KEYS.iter().chain(CREDIT_KEYS.iter()).copied().collect(),
        Direction::Debit => COMMON_KEYS.iter().chain(DEBIT_KEYS.iter()).copied().collect(),
    };
    if let Some(unknown) = object.keys().find(|k| !accepted.contains(&k.as_str())) {
        return Err(BillingError::invalid_argument("options", format!("has an unknown key {unknown:?}"))
            .with_hint(format!("Accepted keys: {}.", accepted.join(", "))));
    }
    let source = object.get("source").filter(|v| !v.is_null()).ok_or_else(|| missing("source"))?;
    let source = source.as_object().ok_or_else(|| wrong_type("source", "an object with \"type\" and \"source\""))?;
    if let Some(unknown) = source.keys().find(|k| !["type", "source"].contains(&k.as_str())) {
        return Err(BillingError::invalid_argument("source", format!("has an unknown key {unknown:?}"))
            .with_hint("source is {\"type\": <source_type>, \"source\": <source>}."));
    }
    let movement = Movement {
        direction,
        user_id: required_key("userId", Some(id_text(object, "userId")?.ok_or_else(|| missing("userId"))?))?,
        amount: amount(object)?,
        account_type: required_key("accountType", Some(string(object, "accountType")?.ok_or_else(|| missing("accountType"))?))?,
        source_type: required_key("source.type", Some(string(source, "type")?.ok_or_else(|| missing("source.type"))?))?,
        source: required_key("source.source", Some(string(source, "source")?.ok_or_else(|| missing("source.source"))?))?,
        remark: limited_text("remark", string(object, "remark")?, MAX_REMARK_CHARS)?,
        association_no: optional_key("associationNo", id_text(object, "associationNo")?)?,
        association_user_id: optional_key("associationUserId", id_text(object, "associationUserId")?)?,
        subscription_id: optional_key("subscriptionId", id_text(object, "subscriptionId")?)?,
        expire_at: None,
        idempotency_key: optional_key("idempotencyKey", string(object, "idempotencyKey")?)?,
        scopes: match direction {
            Direction::Credit => None,
            Direction::Debit => Some(crate::limits::scopes("scopes", scopes(object)?)?),
        },
    };
    Ok((movement, string(object, "expireAt")?))
}

fn missing(key: &str) -> BillingError {
    BillingError::invalid_argument(key, "is missing from options")
}

fn wrong_type(key: &str, expected: &str) -> BillingError {
    BillingError::invalid_argument(key, format!("must be {expected}"))
}

/// A string value; null and absent are None.
fn string(object: &Map<String, Value>, key: &str) -> BillingResult<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(key, "a string")),
    }
}

/// An identifier: a string, or an integer (applications often number their users and orders).
fn id_text(object: &Map<String, Value>, key: &str) -> BillingResult<Option<String>> {
    match object.get(key) {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(Value::Number(_)) => Err(wrong_type(key, "a string or an integer")),
        _ => string(object, key).map_err(|_| wrong_type(key, "a string or an integer")),
    }
}

/// scopes: an array of strings (a null element is kept, for limits::scopes to refuse); null and absent are None.
fn scopes(object: &Map<String, Value>) -> BillingResult<Option<Vec<Option<String>>>> {
    match object.get("scopes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s.clone())),
                _ => Err(wrong_type("scopes", "an array of strings")),
            })
            .collect::<BillingResult<Vec<_>>>()
            .map(Some),
        Some(_) => Err(wrong_type("scopes", "an array of strings")),
    }
}

/// The amount: a JSON number, or a string holding one (for callers that keep decimals as strings).
fn amount(object: &Map<String, Value>) -> BillingResult<rust_decimal::Decimal> {
    match object.get("amount") {
        None | Some(Value::Null) => Err(missing("amount")),
        Some(Value::Number(n)) => amounts::parse_amount("amount", &n.to_string()),
        Some(Value::String(s)) => amounts::parse_amount("amount", s),
        Some(_) => Err(wrong_type("amount", "a number")),
    }
}

/// billing_add(options jsonb)
fn add(args: &Args) -> Returned {
    let (mut movement, expire_at) = parse(&args.json(0, "options")?, Direction::Credit)?;
    movement.expire_at = match expire_at {
        None => None,
        Some(text) => Some(parse_timestamptz(&text)?),
    };
    accounts::add_movement(movement)
}
sql_function!(pg_finfo_billing_add_options, billing_add_options => add);

/// billing_deduct(options jsonb)
fn deduct(args: &Args) -> Returned {
    let (movement, _) = parse(&args.json(0, "options")?, Direction::Debit)?;
    accounts::deduct_movement(movement)
}
sql_function!(pg_finfo_billing_deduct_options, billing_deduct_options => deduct);

/// expireAt as PostgreSQL reads a timestamptz (ISO 8601 with a zone is the safe form).
fn parse_timestamptz(text: &str) -> BillingResult<pgrx::pg_sys::TimestampTz> {
    let parsed: Result<pgrx::datum::TimestampWithTimeZone, _> = text.parse();
    parsed.map(Into::into).map_err(|_| {
        BillingError::invalid_argument("expireAt", format!("is not a timestamp: {text:?}"))
            .with_hint("Use ISO 8601 with a time zone, for example \"2026-12-31T23:59:59Z\".")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(value: Value, direction: Direction) -> (String, String) {
        let error = parse(&value, direction).unwrap_err();
        (error.state.code().to_owned(), error.message)
    }

    #[test]
    fn reads_the_shape_services_pass() {
        let (m, expire_at) = parse(
            &json!({"userId": 42, "amount": 12.50, "accountType": "MEMBERSHIP_GIFT_INC",
                    "source": {"type": "MEMBERSHIP_GIFT", "source": "vip"}, "remark": "monthly",
                    "associationNo": "order-1", "associationUserId": null, "expireAt": "2030-01-01T00:00:00Z",
                    "subscriptionId": "sub-9", "idempotencyKey": "k1"}),
            Direction::Credit,
        )
        .unwrap();
        assert_eq!((m.user_id.as_str(), m.amount.to_string().as_str()), ("42", "12.5"));
        assert_eq!((m.account_type.as_str(), m.source_type.as_str(), m.source.as_str()), ("MEMBERSHIP_GIFT_INC", "MEMBERSHIP_GIFT", "vip"));
        assert_eq!(m.association_user_id, None);
        assert_eq!(m.subscription_id.as_deref(), Some("sub-9"));
        assert_eq!(expire_at.as_deref(), Some("2030-01-01T00:00:00Z"));
    }

    #[test]
    fn amounts_stay_exact() {
        let (m, _) = parse(
            &serde_json::from_str(r#"{"userId": "u", "amount": 0.30000000, "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}}"#).unwrap(),
            Direction::Debit,
        )
        .unwrap();
        assert_eq!(m.amount.to_string(), "0.3");
        let (m, _) = parse(&json!({"userId": "u", "amount": "999999999999.99999999", "accountType": "A", "source": {"type": "B", "source": "x"}}), Direction::Debit).unwrap();
        assert_eq!(m.amount.to_string(), "999999999999.99999999");
    }

    #[test]
    fn names_the_key_that_is_wrong() {
        let base = json!({"userId": "u", "amount": 1, "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}});
        let with = |key: &str, value: Value| {
            let mut v = base.clone();
            v[key] = value;
            v
        };
        let without = |key: &str| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(key);
            v
        };
        let cases = [
            (with("colour", json!("red")), "options has an unknown key \"colour\""),
            (with("expireAt", json!("2030-01-01")), "options has an unknown key \"expireAt\""),
            (without("userId"), "userId is missing from options"),
            (without("amount"), "amount is missing from options"),
            (without("source"), "source is missing from options"),
            (with("amount", json!(true)), "amount must be a number"),
            (with("amount", json!(-1)), "amount must be greater than zero, got -1"),
            (with("userId", json!(1.5)), "userId must be a string or an integer"),
            (with("userId", json!("  ")), "userId must not be empty"),
            (with("accountType", json!(7)), "accountType must be a string"),
            (with("remark", json!({"a": 1})), "remark must be a string"),
            (with("source", json!("CHAT")), "source must be an object with \"type\" and \"source\""),
            (with("source", json!({"type": "CHAT"})), "source.source is missing from options"),
            (with("source", json!({"type": "CHAT", "source": "x", "id": 1})), "source has an unknown key \"id\""),
            (with("idempotencyKey", json!("")), "idempotencyKey must not be empty when given"),
        ];
        for (value, message) in cases {
            assert_eq!(code(value, Direction::Debit), ("22023".to_owned(), message.to_owned()));
        }
        assert_eq!(code(json!([1]), Direction::Debit).1, "options must be a JSON object");
    }
}
