//! In-database tests (#[pg_test]) of billing_refund.
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    #[pg_test]
    fn a_hold_funded_by_a_grant_is_refunded_into_that_grant() {
        recharge("g", "100");
        let grant = gift("g", "5", "1 day");
        let expiry = text(&format!("SELECT expire_at::text FROM billing.grants WHERE id = {grant}"));
        let id = hold("g", "5");
        let log_id = text(&format!("SELECT id::text FROM billing_settle({id}, 5)"));
        assert_eq!(remaining(grant), "0");
        let refund = text(&format!("SELECT format('%s|%s|%s|%s', account_type, amount, refund_of, detail) FROM billing_refund({log_id})"));
        assert_eq!(refund, format!(r#"REFUND_INC|5|{log_id}|{{"grants": [{{"id": {grant}, "amount": 5}}]}}"#));
        assert_eq!(remaining(grant), "5");
        assert_eq!(text(&format!("SELECT expire_at::text FROM billing.grants WHERE id = {grant}")), expiry);
        assert_eq!(text("SELECT permanent::text FROM billing.accounts WHERE user_id = 'g'"), "100");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn refunds_take_one_path_whatever_funded_the_debit() {
        // the same funding through a deduct and through a settle: the same refund
        let mut details = Vec::new();
        for (user, via_hold) in [("p1", false), ("p2", true)] {
            recharge(user, "10");
            gift(user, "2", "1 day");
            gift(user, "3", "2 days");
            let log_id = if via_hold {
                let id = hold(user, "9");
                text(&format!("SELECT id::text FROM billing_settle({id}, 7)"))
            } else {
                text(&format!("SELECT id::text FROM billing_deduct('{user}', 7, 'CHAT_DEC', 'CHAT', 'x')"))
            };
            let partial = text(&format!("SELECT amount || ' ' || (detail - 'hold') FROM billing_refund({log_id}, 3)"));
            let rest = text(&format!("SELECT amount || ' ' || detail FROM billing_refund({log_id})"));
            assert_eq!(sqlstate(&format!("SELECT billing_refund({log_id}, 0.01)")), "PB005");
            assert_eq!(power(user), "15");
            details.push((partial, rest));
        }
        // grant ids differ between users: compare the shapes
        let shape = |s: &str| {
            let mut parts = s.split("\"id\": ");
            let first = parts.next().unwrap_or_default().to_owned();
            parts.fold(first, |acc, p| format!("{acc}\"id\": #{}", p.trim_start_matches(|c: char| c.is_ascii_digit())))
        };
        assert_eq!(shape(&details[0].0), shape(&details[1].0));
        assert_eq!(shape(&details[0].1), shape(&details[1].1));
        // permanent first, then the latest-expiring grant
        assert_eq!(shape(&details[0].0), r#"3 {"grants": [{"id": #, "amount": 1}], "permanent": 2}"#);
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn refunds_never_exceed_what_the_entry_took() {
        recharge("r", "10");
        let log_id = text("SELECT id::text FROM billing_deduct('r', 4, 'CHAT_DEC', 'CHAT', 'x')");
        let (state, _, detail, _) = outcome(&format!("SELECT billing_refund({log_id}, 4.5)"));
        assert_eq!((state.as_str(), detail.as_str()), ("PB005", &*format!("Entry {log_id} took 4; 4 can still be refunded, and this call asks for 4.5.")));
        Spi::run(&format!("SELECT billing_refund({log_id}, 1.5)")).unwrap();
        Spi::run(&format!("SELECT billing_refund({log_id}, 2)")).unwrap();
        assert_eq!(sqlstate(&format!("SELECT billing_refund({log_id}, 0.50000001)")), "PB005");
        assert_eq!(text(&format!("SELECT amount::text FROM billing_refund({log_id})")), "0.5");
        assert_eq!(sqlstate(&format!("SELECT billing_refund({log_id})")), "PB005");
        assert_eq!(power("r"), "10");
        // only debits
        let credit = text("SELECT id::text FROM billing.account_log WHERE user_id = 'r' AND seq = 1");
        assert_eq!(sqlstate(&format!("SELECT billing_refund({credit})")), "22023");
        let refund = text("SELECT id::text FROM billing.account_log WHERE user_id = 'r' AND seq = 3");
        assert_eq!(sqlstate(&format!("SELECT billing_refund({refund})")), "22023");
        assert_eq!(sqlstate("SELECT billing_refund(987654)"), "22023");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn refund_repeats_with_a_key_return_the_same_entry() {
        recharge("r", "10");
        let log_id = text("SELECT id::text FROM billing_deduct('r', 4, 'CHAT_DEC', 'CHAT', 'x')");
        let first = text(&format!("SELECT id::text FROM billing_refund({log_id}, 1, idempotency_key => 'rf-1')"));
        assert_eq!(text(&format!("SELECT id::text FROM billing_refund({log_id}, 1, idempotency_key => 'rf-1')")), first);
        assert_eq!(text(&format!("SELECT id::text FROM billing_refund({log_id}, idempotency_key => 'rf-1')")), first);
        assert_eq!(sqlstate(&format!("SELECT billing_refund({log_id}, 2, idempotency_key => 'rf-1')")), "PB003");
        assert_eq!(power("r"), "7");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_refund_into_an_expired_grant_expires_at_once_with_its_own_entry() {
        recharge("e", "10");
        let grant = gift("e", "5", "1 day");
        let log_id = text("SELECT id::text FROM billing_deduct('e', 7, 'CHAT_DEC', 'CHAT', 'x')");
        travel("e", "2 days");
        let refund = text(&format!("SELECT seq || ' ' || amount || ' ' || balance_after FROM billing_refund({log_id})"));
        assert_eq!(refund, "4 7 10");
        let expired = text("SELECT format('%s|%s|%s|%s', seq, account_type, amount, detail) FROM billing.account_log WHERE user_id = 'e' AND seq = 5");
        assert_eq!(expired, format!(r#"5|MEMBERSHIP_GIFT_EXPIRED|5|{{"grants": [{{"id": {grant}, "amount": 5}}]}}"#));
        assert_eq!(remaining(grant), "0");
        assert_eq!(power("e"), "10");
        assert_eq!(ledger_disagreements(), 0);
    }
}
