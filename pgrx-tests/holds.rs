//! In-database tests (#[pg_test]) of holds: billing_hold, billing_settle and
//! billing_release, lapsed holds, and the caches the one-statement paths keep.
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    #[pg_test]
    fn a_hold_reserves_at_once_in_deduct_order_and_writes_no_entry() {
        recharge("h", "10");
        let soon = gift("h", "3", "1 day");
        let later = gift("h", "4", "2 days");
        let row = text("SELECT format('%s|%s|%s|%s', status, amount, funding, (expires_at = now() + interval '15 minutes')::text)
                          FROM billing_hold('h', 8, 'CHAT_DEC', 'CHAT', 'gpt-4')");
        assert_eq!(row, format!(r#"held|8|{{"grants": [{{"id": {soon}, "amount": 3}}, {{"id": {later}, "amount": 4}}], "permanent": 1}}|true"#));
        assert_eq!(power("h"), "9");
        assert_eq!(remaining(soon), "0");
        assert_eq!(remaining(later), "0");
        assert_eq!(entries("h"), "3");
        // every other debit sees the reservation
        assert_eq!(sqlstate("SELECT billing_deduct('h', 9.01, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
        assert_eq!(sqlstate("SELECT billing_hold('h', 9.01, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
        assert_eq!(text("SELECT billing_has_power('h', 9)::text"), "true");
        // not enough power: PB001 and nothing reserved
        let (state, _, detail, _) = outcome("SELECT billing_hold('h', 100, 'CHAT_DEC', 'CHAT', 'x')");
        assert_eq!((state.as_str(), detail.as_str()), ("PB001", "Requested 100, available 9."));
        assert_eq!(sqlstate("SELECT billing_hold('nobody', 1, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
        assert_eq!(text("SELECT count(*)::text FROM billing.holds"), "1");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn settle_charges_exactly_actual_in_one_entry_and_frees_the_rest() {
        recharge("s", "10");
        let grant = gift("s", "5", "1 day");
        let id = hold("s", "8");
        assert_eq!(power("s"), "7");
        let entry = text(&format!(
            "SELECT format('%s|%s|%s|%s|%s|%s|%s', seq, direction, amount, balance_after, account_type, source, detail)
               FROM billing_settle({id}, 6.5, remark => 'tokens: 6500')"
        ));
        assert_eq!(entry, format!(r#"3|-1|6.5|8.5|CHAT_DEC|gpt-4|{{"hold": {id}, "grants": [{{"id": {grant}, "amount": 5}}], "permanent": 1.5}}"#));
        assert_eq!(power("s"), "8.5");
        assert_eq!(text("SELECT remark FROM billing.account_log WHERE user_id = 's' AND seq = 3"), "tokens: 6500");
        assert_eq!(text(&format!("SELECT status || ' ' || settled_amount FROM billing.holds WHERE hold_id = {id}")), "settled 6.5");
        // settle never charges more than actual: the one entry is the whole charge
        assert_eq!(text("SELECT sum(amount)::text FROM billing.account_log WHERE user_id = 's' AND direction = -1"), "6.5");
        assert_eq!(entries("s"), "3");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn settling_above_the_hold_takes_the_difference_or_fails_leaving_the_hold() {
        recharge("s", "10");
        let id = hold("s", "4");
        // 4 held, 6 available: 11 needs 7 more
        let (state, message, detail, _) = outcome(&format!("SELECT billing_settle({id}, 11)"));
        assert_eq!(state, "PB001", "{message}");
        assert_eq!(detail, "The hold reserved 4; the other 7 must come from available power, which is 6.");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {id}")), "held");
        assert_eq!(power("s"), "6");
        assert_eq!(text(&format!("SELECT amount || ' ' || balance_after FROM billing_settle({id}, 9)")), "9 1");
        assert_eq!(power("s"), "1");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn allow_debt_lets_the_balance_go_negative_and_later_credits_pay_it_first() {
        recharge("d", "2");
        let grant = gift("d", "1", "1 day");
        let id = hold("d", "1");
        let entry = text(&format!("SELECT amount || ' ' || balance_after || ' ' || detail FROM billing_settle({id}, 10, allow_debt => true)"));
        assert_eq!(entry, format!(r#"10 -7 {{"hold": {id}, "grants": [{{"id": {grant}, "amount": 1}}], "permanent": 9}}"#));
        assert_eq!(power("d"), "-7");
        assert_eq!(text("SELECT billing_has_power('d', 0.01)::text"), "false");
        assert_eq!(sqlstate("SELECT billing_deduct('d', 1, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
        // a gift pays the debt first; only the rest stays a grant
        let row = text("SELECT balance_after || ' ' || detail FROM billing_add('d', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                                                                  expire_at => now() + interval '1 day')");
        assert!(row.starts_with("-2 "), "{row}");
        assert!(row.contains(r#""permanent": 5"#) && row.contains(r#""amount": 0"#), "{row}");
        assert_eq!(power("d"), "-2");
        recharge("d", "3");
        assert_eq!(power("d"), "1");
        let row = text("SELECT balance_after || ' ' || detail FROM billing_add('d', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                                                                  expire_at => now() + interval '1 day')");
        assert!(row.starts_with("6 ") && row.contains(r#""amount": 5"#) && !row.contains("permanent"), "{row}");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn the_debt_limit_bounds_a_settle_with_allow_debt() {
        recharge("f", "5");
        let grant = gift("f", "3", "1 day");
        assert_eq!(text("SELECT billing_set_debt_limit('f', 2.50)::text"), "2.5");
        // 8 of power; a hold of 4 (3 from the grant, 1 from the balance), settled for 13:
        // the other 9 would take the balance to -5, below -2.5
        let id = hold("f", "4");
        let (state, message, detail, _) = outcome(&format!("SELECT billing_settle({id}, 13, allow_debt => true)"));
        assert_eq!(state, "PB001", "{message}");
        assert!(message.contains("debt limit"), "{message}");
        assert_eq!(detail, "The hold reserved 4; the other 9 must come from available power and the debt the user's limit allows, which leave 6.5.");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {id}")), "held");
        assert_eq!(power("f"), "4");
        // 6.5 more is exactly the floor: -2.5
        let entry = text(&format!("SELECT amount || ' ' || balance_after FROM billing_settle({id}, 10.5, allow_debt => true)"));
        assert_eq!(entry, "10.5 -2.5");
        assert_eq!(remaining(grant), "0");
        // a floor of 0 after the debt is there: no further debt, and NULL removes the floor
        recharge("f", "3");
        assert_eq!(power("f"), "0.5");
        assert_eq!(text("SELECT billing_set_debt_limit('f', 0)::text"), "0");
        let id = hold("f", "0.5");
        assert_eq!(sqlstate(&format!("SELECT billing_settle({id}, 0.6, allow_debt => true)")), "PB001");
        assert_eq!(text("SELECT coalesce(billing_set_debt_limit('f', NULL)::text, 'none')"), "none");
        assert_eq!(text(&format!("SELECT balance_after::text FROM billing_settle({id}, 100, allow_debt => true)")), "-99.5");
        // a user the function has not seen gets an account row with the floor
        assert_eq!(text("SELECT billing_set_debt_limit('new', 1)::text"), "1");
        assert_eq!(text("SELECT max_debt::text || ' ' || permanent FROM billing.accounts WHERE user_id = 'new'"), "1 0");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_hold_is_closed_once_and_identical_repeats_return_the_same_result() {
        recharge("o", "10");
        let a = hold("o", "3");
        let first = text(&format!("SELECT id || '/' || seq FROM billing_settle({a}, 2)"));
        assert_eq!(text(&format!("SELECT id || '/' || seq FROM billing_settle({a}, 2)")), first);
        assert_eq!(sqlstate(&format!("SELECT billing_settle({a}, 2.5)")), "PB004");
        assert_eq!(sqlstate(&format!("SELECT billing_release({a})")), "PB004");
        assert_eq!(sqlstate(&format!("SELECT billing_settle({a}, 0)")), "PB004");
        let b = hold("o", "3");
        assert_eq!(text(&format!("SELECT status || ' ' || reason FROM billing_release({b}, 'model timed out')")), "released model timed out");
        assert_eq!(text(&format!("SELECT status FROM billing_release({b})")), "released");
        assert_eq!(sqlstate(&format!("SELECT billing_settle({b}, 1)")), "PB004");
        // settling for 0 is a release
        let c = hold("o", "3");
        assert_eq!(text(&format!("SELECT coalesce(id::text, 'no entry') FROM billing_settle({c}, 0)")), "no entry");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {c}")), "released");
        assert_eq!(text(&format!("SELECT coalesce(id::text, 'no entry') FROM billing_settle({c}, 0)")), "no entry");
        assert_eq!(power("o"), "8");
        assert_eq!(entries("o"), "2");
        assert_eq!(sqlstate("SELECT billing_settle(987654, 1)"), "22023");
        assert_eq!(sqlstate("SELECT billing_release(987654)"), "22023");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_hold_past_its_ttl_reserves_nothing_and_cannot_be_settled() {
        recharge("t", "10");
        let grant = gift("t", "5", "1 day");
        let id = hold("t", "12");
        assert_eq!(power("t"), "3");
        lapse(id);
        // billing_power sees it given back before anything writes
        assert_eq!(power("t"), "15");
        assert_eq!(text("SELECT billing_has_power('t', 15)::text"), "true");
        let (state, message, _, _) = outcome(&format!("SELECT billing_settle({id}, 1)"));
        assert_eq!(state, "PB004", "{message}");
        assert_eq!(text(&format!("SELECT status FROM billing_release({id})")), "expired");
        assert_eq!(remaining(grant), "5");
        assert_eq!(text("SELECT permanent::text FROM billing.accounts WHERE user_id = 't'"), "10");
        // and a deduct can spend all of it
        assert_eq!(sqlstate("SELECT billing_deduct('t', 15, 'CHAT_DEC', 'CHAT', 'x')"), "00000");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_lapsed_hold_is_given_back_by_the_next_write_of_any_kind() {
        recharge("w", "10");
        let id = hold("w", "10");
        lapse(id);
        // the fast path must not run past it: this deduct needs the lapsed power
        assert_eq!(sqlstate("SELECT billing_deduct('w', 10, 'CHAT_DEC', 'CHAT', 'x')"), "00000");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {id}")), "expired");
        let id = {
            recharge("w", "4");
            hold("w", "4")
        };
        lapse(id);
        recharge("w", "1");
        assert_eq!(power("w"), "5");
        assert_eq!(text("SELECT (holds_due_at IS NULL)::text FROM billing.accounts WHERE user_id = 'w'"), "true");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn an_error_after_the_hold_in_the_same_transaction_leaves_nothing_reserved() {
        recharge("x", "10");
        Spi::run(
            "DO $$ BEGIN
                 BEGIN
                     PERFORM billing_hold('x', 6, 'CHAT_DEC', 'CHAT', 'gpt-4');
                     PERFORM 1 / 0;
                 EXCEPTION WHEN division_by_zero THEN NULL;
                 END;
             END $$",
        )
        .unwrap();
        assert_eq!(power("x"), "10");
        assert_eq!(text("SELECT count(*)::text FROM billing.holds"), "0");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn hold_repeats_with_a_key_return_the_same_hold() {
        recharge("k", "10");
        let first = text("SELECT hold_id::text FROM billing_hold('k', 3, 'CHAT_DEC', 'CHAT', 'x', idempotency_key => 'req-1')");
        let again = text("SELECT hold_id::text FROM billing_hold('k', 3, 'CHAT_DEC', 'CHAT', 'x', idempotency_key => 'req-1')");
        assert_eq!(first, again);
        assert_eq!(power("k"), "7");
        assert_eq!(sqlstate("SELECT billing_hold('k', 4, 'CHAT_DEC', 'CHAT', 'x', idempotency_key => 'req-1')"), "PB003");
        // after it is settled, a repeat still returns it (now settled) and reserves nothing
        Spi::run(&format!("SELECT billing_settle({first}, 1)")).unwrap();
        assert_eq!(text("SELECT status FROM billing_hold('k', 3, 'CHAT_DEC', 'CHAT', 'x', idempotency_key => 'req-1')"), "settled");
        assert_eq!(power("k"), "9");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn hold_arguments_are_checked() {
        recharge("a", "10");
        let cases = [
            ("SELECT billing_hold('a', 1, 'CHAT_DEC', 'CHAT', 'x', ttl => '0 seconds')", "22023"),
            ("SELECT billing_hold('a', 1, 'CHAT_DEC', 'CHAT', 'x', ttl => '-1 minute')", "22023"),
            ("SELECT billing_hold('a', 1, 'CHAT_DEC', 'CHAT', 'x', ttl => '31 days')", "22023"),
            ("SELECT billing_hold('a', 1, 'CHAT_DEC', 'CHAT', 'x', ttl => NULL)", "22004"),
            ("SELECT billing_hold('a', 1, 'RECHARGE_INC', 'CHAT', 'x')", "PB002"),
            ("SELECT billing_hold('a', 0, 'CHAT_DEC', 'CHAT', 'x')", "22023"),
            ("SELECT billing_settle(NULL, 1)", "22004"),
            ("SELECT billing_settle(1, -1)", "22023"),
            ("SELECT billing_settle(1, NULL)", "22004"),
            ("SELECT billing_settle(1, 1, allow_debt => NULL)", "22004"),
            ("SELECT billing_refund(NULL)", "22004"),
            ("SELECT billing_refund(1, 0)", "22023"),
        ];
        for (statement, expected) in cases {
            assert_eq!(sqlstate(statement), expected, "{statement}");
        }
        assert_eq!(text("SELECT count(*)::text FROM billing.holds"), "0");
    }

    #[pg_test]
    fn the_replay_check_covers_holds() {
        recharge("v", "10");
        gift("v", "5", "1 day");
        let open = hold("v", "7");
        let settled = hold("v", "2");
        Spi::run(&format!("SELECT billing_settle({settled}, 1)")).unwrap();
        assert_eq!(ledger_disagreements(), 0);
        let tampering = [
            format!("UPDATE billing.holds SET funding = jsonb_set(funding, '{{permanent}}', '3') WHERE hold_id = {open}"),
            format!("UPDATE billing.holds SET amount = amount + 1 WHERE hold_id = {open}"),
            format!("UPDATE billing.holds SET status = 'released' WHERE hold_id = {open}"),
            format!("UPDATE billing.holds SET settled_amount = 2 WHERE hold_id = {settled}"),
            "UPDATE billing.accounts SET holds_due_at = NULL".to_owned(),
        ];
        // each change runs in a subtransaction that is rolled back once billing_verify has looked
        Spi::run(
            "CREATE FUNCTION pg_temp.findings_after(statement text) RETURNS bigint LANGUAGE plpgsql AS $$
             DECLARE n bigint;
             BEGIN
                 BEGIN
                     EXECUTE statement;
                     SELECT count(*) INTO n FROM billing_verify();
                     RAISE SQLSTATE 'P0099';
                 EXCEPTION WHEN SQLSTATE 'P0099' THEN RETURN n;
                 END;
             END $$",
        )
        .unwrap();
        for tamper in tampering {
            let findings = Spi::get_one_with_args::<i64>("SELECT pg_temp.findings_after($1)", &[tamper.as_str().into()])
                .unwrap()
                .unwrap();
            assert!(findings > 0, "not caught: {tamper}");
        }
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn common_holds_and_settles_keep_every_cache_right() {
        // the one-statement paths: a hold the head grant covers, a hold from the permanent
        // balance of a user without grants, settles that give back to those
        recharge("f", "10");
        let grant = gift("f", "5", "1 day");
        let a = hold("f", "2");
        assert_eq!(text(&format!("SELECT funding::text FROM billing.holds WHERE hold_id = {a}")), format!(r#"{{"grants": [{{"id": {grant}, "amount": 2}}]}}"#));
        assert_eq!((power("f"), remaining(grant)), ("13".into(), "3".into()));
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(text(&format!("SELECT balance_after || ' ' || detail FROM billing_settle({a}, 0.5)")), format!(r#"14.5 {{"hold": {a}, "grants": [{{"id": {grant}, "amount": 0.5}}]}}"#));
        assert_eq!(remaining(grant), "4.5");
        assert_eq!(ledger_disagreements(), 0);
        recharge("q", "10");
        let b = hold("q", "3");
        assert_eq!(power("q"), "7");
        assert_eq!(text(&format!("SELECT balance_after || ' ' || detail FROM billing_settle({b}, 1)")), format!(r#"9 {{"hold": {b}, "permanent": 1}}"#));
        assert_eq!(text("SELECT (holds_due_at IS NULL)::text FROM billing.accounts WHERE user_id = 'q'"), "true");
        // two open holds: settling one keeps the other's ttl on the account row
        let c = hold("q", "1");
        let d = Spi::get_one::<i64>("SELECT hold_id FROM billing_hold('q', 1, 'CHAT_DEC', 'CHAT', 'x', ttl => '1 hour')").unwrap().unwrap();
        Spi::run(&format!("SELECT billing_settle({c}, 1)")).unwrap();
        assert_eq!(text(&format!("SELECT (a.holds_due_at = h.expires_at)::text FROM billing.accounts a, billing.holds h WHERE a.user_id = 'q' AND h.hold_id = {d}")), "true");
        // a hold the head grant cannot cover takes the general path, and so does its settle
        let e = hold("f", "6");
        Spi::run(&format!("SELECT billing_settle({e}, 1)")).unwrap();
        assert_eq!(power("f"), "13.5");
        assert_eq!(ledger_disagreements(), 0);
    }

    // ---- billing_settle's funding rule, found by the model-based test (tests/model.rs):
    // a settle is funded from what its hold reserved, and only the difference is taken
    // in deduct order, even when the user is in debt.

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
