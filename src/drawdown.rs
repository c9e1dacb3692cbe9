//! Draw-down planning: which credits a debit spends, in which order.
//!
//! Pure Rust, no database: given the user's live grants (already sorted by
//! soonest expiry, then oldest first) and the permanent balance, decide how
//! much to take from each. Grants go first, the permanent balance last.

use rust_decimal::Decimal;

/// A grant that can still be spent: not expired, remaining > 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveGrant {
    pub id: i64,
    pub remaining: Decimal,
}

/// How one debit is funded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drawdown {
    /// (grant id, amount taken), in spending order; only grants actually touched.
    pub from_grants: Vec<(i64, Decimal)>,
    /// The part taken from the permanent balance.
    pub from_permanent: Decimal,
}

impl Drawdown {
    pub fn grants_total(&self) -> Decimal {
        self.from_grants.iter().map(|(_, take)| *take).sum()
    }
}

/// Power that can be spent now: the permanent balance plus every live grant.
pub fn available(permanent: Decimal, live: &[LiveGrant]) -> Decimal {
    permanent + live.iter().map(|g| g.remaining).sum::<Decimal>()
}

/// Plans a debit of `amount`. `Err(available)` when the power is not there;
/// a negative permanent balance (a debt) counts against the grants.
pub fn plan(amount: Decimal, permanent: Decimal, live: &[LiveGrant]) -> Result<Drawdown, Decimal> {
    let available = available(permanent, live);
    if amount > available {
        return Err(available);
    }
    let mut left = amount;
    let mut from_grants = Vec::new();
    for grant in live {
        if left.is_zero() {
            break;
        }
        let take = left.min(grant.remaining);
        if take > Decimal::ZERO {
            from_grants.push((grant.id, take));
            left -= take;
        }
    }
    Ok(Drawdown { from_grants, from_permanent: left })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn grants(list: &[(i64, &str)]) -> Vec<LiveGrant> {
        list.iter().map(|(id, r)| LiveGrant { id: *id, remaining: dec(r) }).collect()
    }

    #[test]
    fn spends_grants_in_the_given_order_then_permanent() {
        let live = grants(&[(7, "2"), (3, "5"), (9, "1")]);
        let plan = plan(dec("8.5"), dec("10"), &live).unwrap();
        assert_eq!(plan.from_grants, vec![(7, dec("2")), (3, dec("5")), (9, dec("1"))]);
        assert_eq!(plan.from_permanent, dec("0.5"));
    }

    #[test]
    fn stops_at_the_first_grant_that_covers_the_rest() {
        let live = grants(&[(1, "5"), (2, "5")]);
        let plan = plan(dec("3"), dec("100"), &live).unwrap();
        assert_eq!(plan.from_grants, vec![(1, dec("3"))]);
        assert_eq!(plan.from_permanent, Decimal::ZERO);
        assert_eq!(plan.grants_total(), dec("3"));
    }

    #[test]
    fn exact_balance_is_spendable_and_one_more_is_not() {
        let live = grants(&[(1, "1.5")]);
        assert!(plan(dec("4"), dec("2.5"), &live).is_ok());
        assert_eq!(plan(dec("4.00000001"), dec("2.5"), &live), Err(dec("4")));
    }

    #[test]
    fn a_debt_is_paid_before_anything_is_spendable() {
        let live = grants(&[(1, "10")]);
        assert_eq!(plan(dec("8"), dec("-5"), &live), Err(dec("5")));
        let ok = plan(dec("5"), dec("-5"), &live).unwrap();
        assert_eq!(ok.from_grants, vec![(1, dec("5"))]);
        assert_eq!(ok.from_permanent, Decimal::ZERO);
    }

    #[test]
    fn no_power_at_all() {
        assert_eq!(plan(dec("1"), Decimal::ZERO, &[]), Err(Decimal::ZERO));
    }
}
