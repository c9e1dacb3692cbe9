//! #[pg_test]s of billing_settle's funding rule, found by the model-based test
//! (tests/model.rs): a settle is funded from what its hold reserved, and only the
//! difference is taken in deduct order, even when the user is in debt.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::test_support::*;

    fn hold(user: &str, amount: &str) -> i64 {
        Spi::get_one::<i64>(&format!("SELECT hold_id FROM billing_hold('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'gpt-4')"))
            .unwrap()
            .unwrap()
    }

    fn permanent(user: &str) -> String {
        text(&format!("SELECT permanent::text FROM billing.accounts WHERE user_id = '{user}'"))
    }

    /// Issue 18, seed 1189 step 278: a user in debt (permanent -10) with a live grant
    /// of 6 and an open hold of 2 funded from the permanent balance settles the hold
    /// for 6 with allow_debt. The hold's 2 pays for 2; the other 4 come from the
    /// grant (deduct order), which keeps 2; the permanent balance stays -10.
    #[pg_test]
    fn a_settle_above_the_hold_in_debt_takes_only_the_difference_from_the_grants() {
        recharge("dee", "3");
        let a = hold("dee", "2"); // from the permanent balance
        let grant = Spi::get_one::<i64>(
            "SELECT (detail->'grants'->0->>'id')::bigint FROM billing_add('dee', 6, 'MEMBERSHIP_GIFT_INC',
                     'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '8 hours')",
        )
        .unwrap()
        .unwrap();
        // the debt: the grant out of reach under another hold, a settle far above a hold of 1
        let c = hold("dee", "6");
        let d = hold("dee", "1");
        Spi::run(&format!("SELECT billing_settle({d}, 11, allow_debt => true)")).unwrap();
        Spi::run(&format!("SELECT billing_release({c})")).unwrap();
        assert_eq!(permanent("dee"), "-10");
        assert_eq!(text(&format!("SELECT remaining::text FROM billing.grants WHERE id = {grant}")), "6");
        assert_eq!(power("dee"), "-4");

        let entry = text(&format!(
            "SELECT amount || ' ' || balance_after || ' ' || detail FROM billing_settle({a}, 6, allow_debt => true)"
        ));
        assert_eq!(entry, format!(r#"6 -8 {{"hold": {a}, "grants": [{{"id": {grant}, "amount": 4}}], "permanent": 2}}"#));
        assert_eq!(text(&format!("SELECT remaining::text FROM billing.grants WHERE id = {grant}")), "2");
        assert_eq!(permanent("dee"), "-10");
        assert_eq!(power("dee"), "-8");
        assert_eq!(ledger_disagreements(), 0);
    }
}
