//! Low-balance notifications.
//!
//! A user's account row may carry a threshold (billing_set_low_balance). When
//! a change takes the user's available power from at or above it to below it,
//! the change sends `NOTIFY billing_low_balance` with a JSON payload
//! `{"user_id": ..., "threshold": ..., "available": ...}`. PostgreSQL delivers
//! it only if the transaction commits, so a rolled-back charge never notifies.

use std::ffi::{c_char, CString};

use rust_decimal::Decimal;

/// The channel listeners LISTEN on.
pub const CHANNEL: &str = "billing_low_balance";

/// Whether going from `before` to `after` crosses `threshold` downwards.
pub fn crosses(threshold: Option<Decimal>, before: Decimal, after: Decimal) -> bool {
    threshold.is_some_and(|t| before >= t && after < t)
}

/// The notification's payload (user ids are JSON-escaped; amounts are exact numbers).
pub fn payload(user_id: &str, threshold: Decimal, available: Decimal) -> String {
    format!(
        "{{\"user_id\": {}, \"threshold\": {}, \"available\": {}}}",
        serde_json::Value::String(user_id.to_owned()),
        threshold.normalize(),
        available.normalize()
    )
}

/// Sends the notification if the change crossed the user's threshold.
pub fn if_crossed(user_id: &str, threshold: Option<Decimal>, before: Decimal, after: Decimal) {
    let Some(threshold) = threshold.filter(|_| crosses(threshold, before, after)) else {
        return;
    };
    unsafe extern "C-unwind" {
        fn Async_Notify(channel: *const c_char, payload: *const c_char);
    }
    let channel = CString::new(CHANNEL).expect("no NUL in the channel name");
    let payload = CString::new(payload(user_id, threshold, after)).expect("JSON escapes NUL");
    // Async_Notify copies both strings into its own memory. pgrx has no binding for it,
    // so the call goes through pgrx's FFI guard: an ERROR it raises becomes a Rust
    // panic that unwinds our frames (dropping the strings) before PostgreSQL aborts.
    unsafe { pgrx::pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(channel.as_ptr(), payload.as_ptr())) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_downward_crossing_counts() {
        let t = Some(dec("10"));
        assert!(crosses(t, dec("10"), dec("9.99")));
        assert!(crosses(t, dec("50"), dec("-3")));
        assert!(!crosses(t, dec("9"), dec("5")), "already below");
        assert!(!crosses(t, dec("20"), dec("10")), "still at the threshold");
        assert!(!crosses(t, dec("5"), dec("20")), "upwards");
        assert!(!crosses(None, dec("20"), dec("1")));
    }

    #[test]
    fn payload_is_json() {
        let p = payload("a\"b", dec("10.00"), dec("9.5"));
        assert_eq!(p, r#"{"user_id": "a\"b", "threshold": 10, "available": 9.5}"#);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["user_id"], "a\"b");
    }
}
