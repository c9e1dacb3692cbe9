//! Low-balance notifications.
//!
//! A user's account row may carry a threshold (billing_set_low_balance). When
//! a change takes the user's available power from at or above it to below it,
//! the change records an event in `billing.low_balance_events` and sends
//! `NOTIFY billing_low_balance` with no payload (LISTEN is open to every role),
//! both through `billing.notify_low_balance` (sql/low_balance.sql), the one home
//! of that rule. PostgreSQL delivers the notification only if the transaction
//! commits, and the event rolls back with it.

use pgrx::spi::SpiClient;
use rust_decimal::Decimal;

use crate::errors::BillingResult;
use crate::ledger::numeric;

/// Whether going from `before` to `after` crosses `threshold` downwards.
pub fn crosses(threshold: Option<Decimal>, before: Decimal, after: Decimal) -> bool {
    threshold.is_some_and(|t| before >= t && after < t)
}

/// Records the event and notifies if the change crossed the user's threshold.
pub fn if_crossed(
    client: &mut SpiClient<'_>,
    user_id: &str,
    threshold: Option<Decimal>,
    before: Decimal,
    after: Decimal,
) -> BillingResult<()> {
    let Some(threshold) = threshold.filter(|_| crosses(threshold, before, after)) else {
        return Ok(());
    };
    let plans = crate::statements::get(client)?;
    client.update(
        &plans.notify_low_balance,
        None,
        &[user_id.into(), numeric(threshold).into(), numeric(after).into()],
    )?;
    Ok(())
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
}
