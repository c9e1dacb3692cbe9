//! In-database tests (#[pg_test]) of the operations: billing_expire, billing_revoke,
//! billing_adjust, the balances view, the JSON-options calls and the low-balance threshold.
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    #[pg_test]
    fn expire_writes_one_entry_per_expired_grant_and_is_idempotent() {
        recharge("x", "10");
        let a = gift("x", "3", "1 day");
        let b = gift("x", "4", "2 days");
        let c = gift("x", "5", "30 days");
        chat("x", "1");
        travel("x", "3 days");
        assert_eq!(power("x"), "15");
        assert_eq!(text("SELECT billing_expire()::text"), "2");
        let entries = text(
            "SELECT string_agg(format('%s %s %s %s', seq, account_type, amount, balance_after), ', ' ORDER BY seq)
               FROM billing.account_log WHERE user_id = 'x' AND seq > 5",
        );
        assert_eq!(entries, "6 MEMBERSHIP_GIFT_EXPIRED 2 15, 7 MEMBERSHIP_GIFT_EXPIRED 4 15");
        assert_eq!((remaining(a), remaining(b), remaining(c)), ("0".into(), "0".into(), "5".into()));
        assert_eq!(text("SELECT billing_expire()::text"), "0");
        // the account row is back on the fast path, and its caches are right
        assert_eq!(text("SELECT (next_expiry > now())::text FROM billing.accounts WHERE user_id = 'x'"), "true");
        assert_eq!(power("x"), "15");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn expire_honours_as_of_and_batch_size_and_sweeps_lapsed_holds() {
        for user in ["e1", "e2", "e3"] {
            recharge(user, "10");
            gift(user, "2", "1 day");
            travel(user, "2 days");
        }
        let id = hold("e1", "5");
        lapse(id);
        // as of three days ago no grant had expired; the lapsed hold is ended whatever as_of says
        assert_eq!(text("SELECT billing_expire(now() - interval '3 days')::text"), "1");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {id}")), "expired");
        assert_eq!(text("SELECT count(*)::text FROM billing.account_log WHERE account_type = 'MEMBERSHIP_GIFT_EXPIRED'"), "0");
        // three expired grants, two accounts per call
        let first = text("SELECT billing_expire(batch_size => 2)::text");
        let second = text("SELECT billing_expire(batch_size => 2)::text");
        assert_eq!(first.parse::<i64>().unwrap() + second.parse::<i64>().unwrap(), 3, "{first} + {second}");
        assert_eq!(text("SELECT billing_expire(batch_size => 2)::text"), "0");
        assert_eq!(power("e1"), "10");
        assert_eq!(sqlstate("SELECT billing_expire(now() + interval '1 minute')"), "22023");
        assert_eq!(sqlstate("SELECT billing_expire(NULL)"), "22004");
        assert_eq!(sqlstate("SELECT billing_expire(batch_size => 0)"), "22023");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn revoking_a_subscription_ends_its_live_grants() {
        recharge("s", "10");
        let kept = Spi::get_one::<i64>(
            "SELECT (detail->'grants'->0->>'id')::bigint FROM billing_add('s', 4, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                     expire_at => now() + interval '1 day', subscription_id => 'other')",
        )
        .unwrap()
        .unwrap();
        gift("s", "5", "1 day"); // subscription 'sub-1'
        gift("s", "6", "2 days");
        chat("s", "7"); // 4 from 'other', 3 from the first sub-1 grant
        let entries = text(
            "SELECT string_agg(format('%s %s %s %s', account_type, amount, balance_after, remark), ', ' ORDER BY seq)
               FROM billing_revoke_subscription('sub-1', 'refunded order')",
        );
        assert_eq!(entries, "MEMBERSHIP_GIFT_DEC 2 16 refunded order, MEMBERSHIP_GIFT_DEC 6 10 refunded order");
        assert_eq!(power("s"), "10");
        assert_eq!(remaining(kept), "0");
        assert_eq!(text("SELECT count(*)::text FROM billing.grants WHERE subscription_id = 'sub-1' AND expire_at > now()"), "0");
        assert_eq!(text("SELECT count(*)::text FROM billing_revoke_subscription('sub-1')"), "0");
        assert_eq!(sqlstate("SELECT billing_revoke_subscription(NULL)"), "22004");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn revoking_gives_back_lapsed_holds_first() {
        recharge("l", "50");
        gift("l", "20", "1 day");
        let id = hold("l", "60"); // 20 from the gift, 40 from the permanent balance
        lapse(id);
        assert_eq!(power("l"), "70");
        let entry = text("SELECT amount || ' ' || balance_after FROM billing_revoke_subscription('sub-1')");
        assert_eq!(entry, "20 50");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {id}")), "expired");
        assert_eq!(power("l"), "50");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn power_a_hold_gives_back_to_a_revoked_grant_expires() {
        recharge("h", "1");
        gift("h", "5", "1 day");
        let id = hold("h", "4");
        Spi::run("SELECT billing_revoke_subscription('sub-1')").unwrap();
        Spi::run(&format!("SELECT billing_release({id})")).unwrap();
        assert_eq!(power("h"), "1");
        assert_eq!(text("SELECT billing_expire()::text"), "1");
        assert_eq!(power("h"), "1");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn adjust_credits_or_debits_by_sign_naming_the_operator() {
        recharge("a", "10");
        let up = text("SELECT format('%s %s %s %s', account_type, amount, association_user_id, remark) FROM billing_adjust('a', 2.5, 'ticket 7', 'alice')");
        assert_eq!(up, "SYSTEM_MANUAL_INC 2.5 alice ticket 7");
        let down = text("SELECT format('%s %s %s', account_type, amount, association_user_id) FROM billing_adjust('a', -3, 'ticket 8')");
        assert_eq!(down, format!("SYSTEM_MANUAL_DEC 3 {}", text("SELECT current_user::text")));
        assert_eq!(power("a"), "9.5");
        for (statement, state) in [
            ("SELECT billing_adjust('a', 0, 'x')", "22023"),
            ("SELECT billing_adjust('a', NULL, 'x')", "22004"),
            ("SELECT billing_adjust('a', 1, NULL)", "22004"),
            ("SELECT billing_adjust('a', 1, ' ')", "22023"),
            ("SELECT billing_adjust('a', 0.000000001, 'x')", "22023"),
            ("SELECT billing_adjust('a', -100, 'x')", "PB001"),
            ("SELECT billing_adjust('', 1, 'x')", "22023"),
        ] {
            assert_eq!(sqlstate(statement), state, "{statement}");
        }
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn balances_show_permanent_live_grants_holds_and_available() {
        recharge("b", "10");
        gift("b", "5", "1 day");
        let expired = gift("b", "1", "1 day");
        Spi::run(&format!("UPDATE billing.grant_store SET expire_at = now() - interval '1 second' WHERE id = {expired}")).unwrap();
        hold("b", "7");
        let row = text("SELECT format('%s %s %s %s', permanent, grants_live, held, available) FROM billing.balances WHERE user_id = 'b'");
        assert_eq!(row, "8 0 7 8");
        assert_eq!(text("SELECT available::text FROM billing.balances WHERE user_id = 'b'"), power("b"));
    }

    #[pg_test]
    fn json_calls_record_what_the_positional_ones_do() {
        let positional = text(
            "SELECT format('%s|%s|%s|%s|%s|%s|%s', amount, account_type, source_type, source, remark, association_no, detail)
               FROM billing_add('p', 12.5, 'RECHARGE_INC', 'RECHARGE', 'shop', remark => 'r', association_no => 'o-1')",
        );
        let json = text(
            r#"SELECT format('%s|%s|%s|%s|%s|%s|%s', amount, account_type, source_type, source, remark, association_no, detail)
               FROM billing_add('{"userId": "j", "amount": 12.50, "accountType": "RECHARGE_INC",
                                  "source": {"type": "RECHARGE", "source": "shop"}, "remark": "r", "associationNo": "o-1"}')"#,
        );
        assert_eq!(json, positional);
        let gift = text(
            r#"SELECT format('%s %s', subscription_id, expire_at = '2030-01-01T00:00:00Z')
               FROM billing_add('{"userId": "j", "amount": 3, "accountType": "MEMBERSHIP_GIFT_INC",
                                  "source": {"type": "MEMBERSHIP_GIFT", "source": "vip"},
                                  "expireAt": "2030-01-01T00:00:00Z", "subscriptionId": "s-1"}')"#,
        );
        assert_eq!(gift, "s-1 t");
        let key = r#"'{"userId": "j", "amount": 2, "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}, "idempotencyKey": "k"}'"#;
        let first = text(&format!("SELECT id::text FROM billing_deduct({key})"));
        assert_eq!(text(&format!("SELECT id::text FROM billing_deduct({key})")), first);
        assert_eq!(power("j"), "13.5");
        for (options, state) in [
            (r#"{"userId": "j", "amount": 1, "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}, "expireAt": "2030-01-01"}"#, "22023"),
            (r#"{"userId": "j", "amount": 1, "accountType": "CHAT_DEC"}"#, "22023"),
            (r#"{"userId": "j", "amount": "lots", "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}}"#, "22023"),
            (r#"{"userId": "j", "amount": 1, "accountType": "NOPE", "source": {"type": "CHAT", "source": "x"}}"#, "PB002"),
            (r#"{"userId": "j", "amount": 100, "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}}"#, "PB001"),
            ("[]", "22023"),
        ] {
            assert_eq!(sqlstate(&format!("SELECT billing_deduct('{options}'::jsonb)")), state, "{options}");
        }
        assert_eq!(sqlstate("SELECT billing_deduct(NULL::jsonb)"), "22004");
        let (state, message, _, _) = outcome(r#"SELECT billing_add('{"userId": "j", "amount": 1, "accountType": "MEMBERSHIP_GIFT_INC", "source": {"type": "MEMBERSHIP_GIFT", "source": "x"}, "expireAt": "soon"}')"#);
        assert_eq!((state.as_str(), message.as_str()), ("22023", "expireAt is not a timestamp: \"soon\""));
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn low_balance_threshold_is_validated_and_kept_on_the_account_row() {
        assert_eq!(text("SELECT billing_set_low_balance('n', 15.50)::text"), "15.5");
        assert_eq!(text("SELECT low_balance_at::text FROM billing.accounts WHERE user_id = 'n'"), "15.5");
        assert_eq!(power("n"), "0");
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(text("SELECT coalesce(billing_set_low_balance('n', NULL)::text, 'none')"), "none");
        assert_eq!(sqlstate("SELECT billing_set_low_balance('n', -1)"), "22023");
        assert_eq!(sqlstate("SELECT billing_set_low_balance('n', 0.000000001)"), "22023");
        assert_eq!(sqlstate("SELECT billing_set_low_balance(NULL, 1)"), "22004");
    }
}
