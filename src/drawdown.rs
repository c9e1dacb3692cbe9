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
    Ok(in_deduct_order(amount, live))
}

/// Plans a debit that may leave the permanent balance negative (a debt): the
/// same order as any debit, live grants as far as they go, and only what they
/// do not cover from the permanent balance, below zero if need be. A user
/// already in debt keeps the debt where it is: live grants that cover the
/// amount pay all of it, and the permanent balance is not touched.
pub fn plan_allowing_debt(amount: Decimal, live: &[LiveGrant]) -> Drawdown {
    in_deduct_order(amount, live)
}

/// The debt floor: a debit that takes `from_permanent` out of a permanent balance
/// of `permanent` may not leave it below `-max_debt`. A debit that does not touch
/// the permanent balance always passes (a floor set below an existing debt does
/// not stop spending grants). `Err(room)`: the most such a debit could take in all,
/// given what the live grants hold.
pub fn within_debt_floor(
    permanent: Decimal,
    live: &[LiveGrant],
    plan: &Drawdown,
    max_debt: Option<Decimal>,
) -> Result<(), Decimal> {
    let Some(max_debt) = max_debt else { return Ok(()) };
    if plan.from_permanent.is_zero() || permanent - plan.from_permanent >= -max_debt {
        return Ok(());
    }
    let from_grants: Decimal = live.iter().map(|g| g.remaining).sum();
    Err(from_grants + (permanent + max_debt).max(Decimal::ZERO))
}

/// Takes `amount` from the live grants in the given order, each as far as it
/// goes, and the rest from the permanent balance.
fn in_deduct_order(amount: Decimal, live: &[LiveGrant]) -> Drawdown {
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
    Drawdown { from_grants, from_permanent: left }
}

/// Splits what a hold reserved into the part charged (`amount`, taken in the
/// order the hold took it: grants as listed, then the permanent balance) and the
/// rest, given back. `amount` must not exceed the funding's total.
pub fn split(funding: &Drawdown, amount: Decimal) -> (Drawdown, Drawdown) {
    let mut left = amount;
    let mut charged = Drawdown::default();
    let mut rest = Drawdown::default();
    for (id, reserved) in &funding.from_grants {
        let take = left.min(*reserved);
        left -= take;
        if take > Decimal::ZERO {
            charged.from_grants.push((*id, take));
        }
        if *reserved - take > Decimal::ZERO {
            rest.from_grants.push((*id, *reserved - take));
        }
    }
    let take = left.min(funding.from_permanent);
    charged.from_permanent = take;
    rest.from_permanent = funding.from_permanent - take;
    (charged, rest)
}

/// Total power a funding names.
pub fn total(funding: &Drawdown) -> Decimal {
    funding.from_permanent + funding.grants_total()
}

/// Plans a refund of `amount` (None: all that is left) of a debit funded by
/// `taken`, of which `refunded` has already been given back. Goes back in the
/// reverse of the order it was spent: the permanent balance first, then the
/// grants from the latest-expiring to the soonest. `Err(refundable)` when
/// `amount` is more than is left to refund (or nothing is left).
pub fn plan_refund(taken: &Drawdown, refunded: &Drawdown, amount: Option<Decimal>) -> Result<Drawdown, Decimal> {
    let refunded_from = |id: i64| refunded.from_grants.iter().filter(|(g, _)| *g == id).map(|(_, a)| *a).sum::<Decimal>();
    let left_permanent = (taken.from_permanent - refunded.from_permanent).max(Decimal::ZERO);
    let left_grants: Vec<(i64, Decimal)> = taken
        .from_grants
        .iter()
        .map(|(id, took)| (*id, (*took - refunded_from(*id)).max(Decimal::ZERO)))
        .collect();
    let refundable = left_permanent + left_grants.iter().map(|(_, a)| *a).sum::<Decimal>();
    let amount = amount.unwrap_or(refundable);
    if refundable.is_zero() || amount > refundable {
        return Err(refundable);
    }
    let mut left = amount;
    let mut plan = Drawdown { from_permanent: left.min(left_permanent), from_grants: Vec::new() };
    left -= plan.from_permanent;
    for (id, can) in left_grants.iter().rev() {
        if left.is_zero() {
            break;
        }
        let give = left.min(*can);
        if give > Decimal::ZERO {
            plan.from_grants.push((*id, give));
            left -= give;
        }
    }
    Ok(plan)
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
    fn a_debt_takes_every_grant_then_the_permanent_balance_below_zero() {
        let live = grants(&[(1, "2"), (2, "3")]);
        let d = plan_allowing_debt(dec("10"), &live);
        assert_eq!(d.from_grants, vec![(1, dec("2")), (2, dec("3"))]);
        assert_eq!(d.from_permanent, dec("5"));
        // when the power is there, it is the ordinary plan
        assert_eq!(plan_allowing_debt(dec("1"), &live), plan(dec("1"), dec("1"), &live).unwrap());
    }

    #[test]
    fn in_debt_live_grants_that_cover_the_amount_pay_all_of_it() {
        // issue 18: permanent -10, a live grant of 6, a settle 4 above its hold
        let live = grants(&[(1, "6")]);
        assert_eq!(plan(dec("4"), dec("-10"), &live), Err(dec("-4")));
        let d = plan_allowing_debt(dec("4"), &live);
        assert_eq!(d.from_grants, vec![(1, dec("4"))]);
        assert_eq!(d.from_permanent, Decimal::ZERO);
        // and what they do not cover goes on the debt
        let d = plan_allowing_debt(dec("9"), &live);
        assert_eq!(d.from_grants, vec![(1, dec("6"))]);
        assert_eq!(d.from_permanent, dec("3"));
    }

    #[test]
    fn a_settle_charges_in_the_order_the_hold_reserved_and_gives_back_the_rest() {
        let funding = Drawdown { from_grants: vec![(4, dec("2")), (5, dec("3"))], from_permanent: dec("5") };
        let (charged, rest) = split(&funding, dec("3.5"));
        assert_eq!(charged.from_grants, vec![(4, dec("2")), (5, dec("1.5"))]);
        assert_eq!(charged.from_permanent, Decimal::ZERO);
        assert_eq!(rest.from_grants, vec![(5, dec("1.5"))]);
        assert_eq!(rest.from_permanent, dec("5"));
        assert_eq!(total(&charged) + total(&rest), total(&funding));
        let (all, nothing) = split(&funding, dec("10"));
        assert_eq!(all, funding);
        assert_eq!(total(&nothing), Decimal::ZERO);
    }

    #[test]
    fn a_refund_goes_back_permanent_first_then_latest_grant_first() {
        let taken = Drawdown { from_grants: vec![(1, dec("2")), (2, dec("3"))], from_permanent: dec("4") };
        let none = Drawdown::default();
        let part = plan_refund(&taken, &none, Some(dec("6"))).unwrap();
        assert_eq!(part.from_permanent, dec("4"));
        assert_eq!(part.from_grants, vec![(2, dec("2"))]);
        // what is left after that refund: grant 2 has 1, grant 1 has 2
        let rest = plan_refund(&taken, &part, None).unwrap();
        assert_eq!(rest.from_permanent, Decimal::ZERO);
        assert_eq!(rest.from_grants, vec![(2, dec("1")), (1, dec("2"))]);
        assert_eq!(plan_refund(&taken, &part, Some(dec("3.00000001"))), Err(dec("3")));
        let everything = Drawdown { from_grants: vec![(1, dec("2")), (2, dec("3"))], from_permanent: dec("4") };
        assert_eq!(plan_refund(&taken, &everything, None), Err(Decimal::ZERO));
    }

    #[test]
    fn no_power_at_all() {
        assert_eq!(plan(dec("1"), Decimal::ZERO, &[]), Err(Decimal::ZERO));
    }

    #[test]
    fn the_debt_floor_stops_a_debit_that_would_go_below_it() {
        let live = grants(&[(1, "3")]);
        // 3 from the grant, 7 from a permanent balance of 5: -2, within a floor of 2
        let d = plan_allowing_debt(dec("10"), &live);
        assert_eq!(within_debt_floor(dec("5"), &live, &d, Some(dec("2"))), Ok(()));
        // one more would be -3: the most is 3 + 5 + 2
        let d = plan_allowing_debt(dec("11"), &live);
        assert_eq!(within_debt_floor(dec("5"), &live, &d, Some(dec("2"))), Err(dec("10")));
        // no floor: anything goes
        assert_eq!(within_debt_floor(dec("5"), &live, &d, None), Ok(()));
        // a floor of 0: no debt at all
        let d = plan_allowing_debt(dec("9"), &live);
        assert_eq!(within_debt_floor(dec("5"), &live, &d, Some(dec("0"))), Err(dec("8")));
    }

    #[test]
    fn a_floor_below_an_existing_debt_still_lets_grants_pay() {
        let live = grants(&[(1, "3")]);
        // already 4 in debt, floor 1: the grant pays 2, the debt stays where it is
        let d = plan_allowing_debt(dec("2"), &live);
        assert_eq!(within_debt_floor(dec("-4"), &live, &d, Some(dec("1"))), Ok(()));
        // but nothing more may come from the permanent balance
        let d = plan_allowing_debt(dec("4"), &live);
        assert_eq!(within_debt_floor(dec("-4"), &live, &d, Some(dec("1"))), Err(dec("3")));
    }
}
