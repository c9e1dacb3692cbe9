//! In-database tests (#[pg_test]) of the core: billing_add, billing_deduct, billing_power,
//! the account and source types, amounts and texts, idempotency keys, the order grants
//! are spent in, and the ledger's own rules (append-only, gapless, replayed by billing_verify).
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    fn chat_like(user: &str, account_type: &str, source_type: &str) -> String {
        text(&format!("SELECT balance_after::text FROM billing_deduct('{user}', 1, '{account_type}', '{source_type}', 's')"))
    }

    #[pg_test]
    fn the_replay_check_catches_tampering() {
        recharge("t", "10");
        let first = gift("t", "5", "1 day");
        gift("t", "5", "2 days");
        chat("t", "2");
        assert_eq!(ledger_disagreements(), 0);
        let second_remaining = format!("SELECT remaining FROM billing.grant_store WHERE user_id = 't' AND id <> {first}");
        let tampering = [
            ("UPDATE billing.accounts SET permanent = permanent + 1", "UPDATE billing.accounts SET permanent = permanent - 1"),
            ("UPDATE billing.accounts SET head_remaining = head_remaining - 1", "UPDATE billing.accounts SET head_remaining = head_remaining + 1"),
            ("UPDATE billing.accounts SET last_seq = last_seq + 1", "UPDATE billing.accounts SET last_seq = last_seq - 1"),
            ("UPDATE billing.accounts SET grants_total = grants_total + 1", "UPDATE billing.accounts SET grants_total = grants_total - 1"),
            ("UPDATE billing.grant_store SET remaining = remaining - 1 WHERE remaining = 5", "UPDATE billing.grant_store SET remaining = remaining + 1 WHERE remaining = 4"),
        ];
        assert_eq!(text(&format!("SELECT ({second_remaining})::text")), "5");
        for (tamper, undo) in tampering {
            Spi::run(tamper).unwrap();
            assert!(ledger_disagreements() > 0, "not caught: {tamper}");
            Spi::run(undo).unwrap();
            assert_eq!(ledger_disagreements(), 0, "not undone: {undo}");
        }
        // what a finding says, and that one user's check sees only that user
        recharge("other", "1");
        Spi::run("UPDATE billing.accounts SET permanent = permanent + 1 WHERE user_id = 't'").unwrap();
        assert_eq!(
            text("SELECT string_agg(concat_ws('|', user_id, \"check\", expected, actual), ';') FROM billing_verify('t')"),
            "t|permanent balance|10|11;t|balance_after of entry 4|18|19"
        );
        assert_eq!(text("SELECT count(*)::text FROM billing_verify('other')"), "0");
        assert_eq!(text("SELECT count(*)::text FROM billing_verify()"), "2");
    }

    #[pg_test]
    fn unknown_user_has_no_power() {
        assert_eq!(power("nobody"), "0");
        assert_eq!(text("SELECT billing_has_power('nobody', 0.01)::text"), "false");
    }

    #[pg_test]
    fn recharge_raises_permanent_balance_and_writes_one_entry() {
        let row = text(
            "SELECT format('%s|%s|%s|%s|%s|%s', seq, direction, amount, balance_after, detail, remark)
               FROM billing_add('u1', 100, 'RECHARGE_INC', 'RECHARGE', 'order-9', remark => 'first buy')",
        );
        assert_eq!(row, r#"1|1|100|100|{"permanent": 100}|first buy"#);
        recharge("u1", "0.5");
        assert_eq!(power("u1"), "100.5");
        assert_eq!(text("SELECT billing_has_power('u1', 100.5)::text"), "true");
        assert_eq!(text("SELECT billing_has_power('u1', 100.50000001)::text"), "false");
        assert_eq!(text("SELECT string_agg(seq || ':' || balance_after, ',' ORDER BY seq) FROM billing.account_log WHERE user_id = 'u1'"), "1:100,2:100.5");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn deduct_returns_its_ledger_row() {
        recharge("u1", "10");
        let row = text("SELECT format('%s|%s|%s', seq, balance_after, direction) FROM billing_deduct('u1', 3, 'CHAT_DEC', 'CHAT', 'report')");
        assert_eq!(row, "2|7|-1");
        let named = text(
            "SELECT account_type || '|' || association_no || '|' || association_user_id FROM billing_deduct(
                 user_id => 'u1', amount => 1, account_type => 'PLUGIN_DEC', source_type => 'PLUGIN',
                 source => 'search', association_no => 'task-7', association_user_id => 'guest-2')",
        );
        assert_eq!(named, "PLUGIN_DEC|task-7|guest-2");
        assert_eq!(power("u1"), "6");
    }

    #[pg_test]
    fn grants_are_spent_soonest_expiry_first_then_permanent() {
        recharge("u1", "100");
        let late = gift("u1", "10", "30 days");
        let soon = gift("u1", "5", "1 day");
        let middle = gift("u1", "7", "7 days");
        assert_eq!(power("u1"), "122");
        let detail = chat("u1", "20");
        assert_eq!(detail, format!(r#"{{"grants": [{{"id": {soon}, "amount": 5}}, {{"id": {middle}, "amount": 7}}, {{"id": {late}, "amount": 8}}]}}"#));
        let detail = chat("u1", "3.5");
        // jsonb orders keys by length: "grants" prints before "permanent"
        assert_eq!(detail, format!(r#"{{"grants": [{{"id": {late}, "amount": 2}}], "permanent": 1.5}}"#));
        assert_eq!(power("u1"), "98.5");
        assert_eq!(text("SELECT string_agg(remaining::text, ',' ORDER BY expire_at) FROM billing.grants WHERE user_id = 'u1'"), "0,0,0");
        assert_eq!(text("SELECT permanent::text FROM billing.accounts WHERE user_id = 'u1'"), "98.5");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn the_cached_next_grant_follows_every_change() {
        // deducts that the next grant covers, that empty it exactly, that span grants;
        // gifts that expire sooner or later than the next one, or at the same time
        recharge("h", "10");
        assert_eq!(ledger_disagreements(), 0);
        chat("h", "1");
        let a = gift("h", "5", "10 days");
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(chat("h", "2"), format!(r#"{{"grants": [{{"id": {a}, "amount": 2}}]}}"#));
        let b = gift("h", "4", "5 days");
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(chat("h", "1"), format!(r#"{{"grants": [{{"id": {b}, "amount": 1}}]}}"#));
        assert_eq!(chat("h", "3"), format!(r#"{{"grants": [{{"id": {b}, "amount": 3}}]}}"#));
        assert_eq!(ledger_disagreements(), 0);
        let c = gift("h", "2", "10 days");
        assert_eq!(chat("h", "3"), format!(r#"{{"grants": [{{"id": {a}, "amount": 3}}]}}"#));
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(chat("h", "1"), format!(r#"{{"grants": [{{"id": {c}, "amount": 1}}]}}"#));
        assert_eq!(chat("h", "2"), format!(r#"{{"grants": [{{"id": {c}, "amount": 1}}], "permanent": 1}}"#));
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(power("h"), "8");
        // the next grant expires: nothing is taken from it, the later one goes next
        let d = gift("h", "3", "1 hour");
        let e = gift("h", "3", "2 days");
        travel("h", "90 minutes");
        Spi::run(&format!(
            "UPDATE billing.grant_store SET expire_at = expire_at + interval '90 minutes' WHERE user_id = 'h' AND id <> {d}"
        ))
        .unwrap();
        assert_eq!(chat("h", "1"), format!(r#"{{"grants": [{{"id": {e}, "amount": 1}}]}}"#));
        assert_eq!(chat("h", "1"), format!(r#"{{"grants": [{{"id": {e}, "amount": 1}}]}}"#));
        assert_eq!(power("h"), "9");
    }

    #[pg_test]
    fn an_expired_head_grant_keeps_what_was_left_of_it() {
        let g = gift("x", "10", "1 hour");
        // one-statement deduct: what is left of g lives on the account row
        assert_eq!(chat("x", "4"), format!(r#"{{"grants": [{{"id": {g}, "amount": 4}}]}}"#));
        assert_eq!(text(&format!("SELECT remaining::text FROM billing.grants WHERE id = {g}")), "6");
        travel("x", "2 hours");
        assert_eq!(power("x"), "0");
        // the next write moves the head off the expired grant and writes its remaining back
        recharge("x", "5");
        assert_eq!(text(&format!("SELECT remaining::text FROM billing.grant_store WHERE id = {g}")), "6");
        assert_eq!(text("SELECT coalesce(head_grant_id::text, 'none') FROM billing.accounts WHERE user_id = 'x'"), "none");
        assert_eq!(power("x"), "5");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_deduct_can_span_more_grants_than_it_reads_at_first() {
        recharge("m", "5");
        let ids: Vec<i64> = (1..=20).map(|k| gift("m", "1", &format!("{k} days"))).collect();
        // 16 grants exactly: the next head is the 17th, beyond the first read
        let detail = chat("m", "16");
        let expected: Vec<String> = ids[..16].iter().map(|id| format!(r#"{{"id": {id}, "amount": 1}}"#)).collect();
        assert_eq!(detail, format!(r#"{{"grants": [{}]}}"#, expected.join(", ")));
        assert_eq!(text("SELECT head_grant_id::text FROM billing.accounts WHERE user_id = 'm'"), ids[16].to_string());
        assert_eq!(ledger_disagreements(), 0);
        // the rest of the grants and part of the permanent balance
        let detail = chat("m", "5.5");
        let expected: Vec<String> = ids[16..].iter().map(|id| format!(r#"{{"id": {id}, "amount": 1}}"#)).collect();
        assert_eq!(detail, format!(r#"{{"grants": [{}], "permanent": 1.5}}"#, expected.join(", ")));
        assert_eq!(power("m"), "3.5");
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(sqlstate("SELECT billing_deduct('m', 3.6, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
    }

    #[pg_test]
    fn a_deduct_that_changes_more_grants_than_it_stores_one_by_one_stores_them_all() {
        // 20 grants changed: above ledger.rs's STORE_ONE_BY_ONE (16), so one statement stores them
        let ids: Vec<i64> = (1..=21).map(|k| gift("w", "1", &format!("{k} days"))).collect();
        let detail = chat("w", "19.5");
        let mut expected: Vec<String> = ids[..19].iter().map(|id| format!(r#"{{"id": {id}, "amount": 1}}"#)).collect();
        expected.push(format!(r#"{{"id": {}, "amount": 0.5}}"#, ids[19]));
        assert_eq!(detail, format!(r#"{{"grants": [{}]}}"#, expected.join(", ")));
        let stored = text(&format!(
            "SELECT string_agg(remaining::text, ',' ORDER BY id) FROM billing.grant_store WHERE user_id = 'w' AND id <= {}",
            ids[19]
        ));
        assert_eq!(stored, format!("{},0.5", vec!["0"; 19].join(",")));
        assert_eq!(power("w"), "1.5");
        assert_eq!(ledger_disagreements(), 0);
        // and the next deduct, one by one again, spends what is left in order
        assert_eq!(chat("w", "1"), format!(r#"{{"grants": [{{"id": {}, "amount": 0.5}}, {{"id": {}, "amount": 0.5}}]}}"#, ids[19], ids[20]));
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn grants_with_the_same_expiry_are_spent_oldest_first() {
        Spi::run("SELECT billing_add('u1', 2, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'a', expire_at => '2999-01-01')").unwrap();
        Spi::run("SELECT billing_add('u1', 2, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'b', expire_at => '2999-01-01')").unwrap();
        chat("u1", "3");
        assert_eq!(text("SELECT string_agg(remaining::text, ',' ORDER BY id) FROM billing.grants WHERE user_id = 'u1'"), "0,1");
    }

    #[pg_test]
    fn expired_grant_is_never_spent() {
        recharge("u1", "1");
        gift("u1", "50", "1 hour");
        travel("u1", "2 hours");
        assert_eq!(power("u1"), "1");
        let (state, message, detail, _) = outcome("SELECT billing_deduct('u1', 2, 'CHAT_DEC', 'CHAT', 'x')");
        assert_eq!(state, "PB001");
        assert!(message.contains("insufficient power"), "{message}");
        assert_eq!(detail, "Requested 2, available 1.");
        assert_eq!(chat("u1", "1"), r#"{"permanent": 1}"#);
        assert_eq!(text("SELECT remaining::text FROM billing.grants WHERE user_id = 'u1'"), "50");
        // a new gift is still spendable while the old one waits for a sweep
        let fresh = gift("u1", "4", "1 day");
        assert_eq!(power("u1"), "4");
        assert_eq!(chat("u1", "4"), format!(r#"{{"grants": [{{"id": {fresh}, "amount": 4}}]}}"#));
        assert_eq!(text("SELECT balance_after::text FROM billing.account_log WHERE user_id = 'u1' ORDER BY seq DESC LIMIT 1"), "0");
    }

    #[pg_test]
    fn balance_after_counts_live_grants_only() {
        gift("u1", "5", "1 hour");
        travel("u1", "2 hours");
        let after = text("SELECT balance_after::text FROM billing_add('u1', 3, 'RECHARGE_INC', 'RECHARGE', 'shop')");
        assert_eq!(after, "3");
    }

    #[pg_test]
    fn insufficient_power_changes_nothing() {
        recharge("u1", "5");
        gift("u1", "2", "1 day");
        let (state, _, detail, hint) = outcome("SELECT billing_deduct('u1', 7.01, 'CHAT_DEC', 'CHAT', 'x')");
        assert_eq!((state.as_str(), detail.as_str()), ("PB001", "Requested 7.01, available 7."));
        assert!(!hint.is_empty());
        assert_eq!(sqlstate("SELECT billing_deduct('ghost', 1, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
        assert_eq!(power("u1"), "7");
        assert_eq!(text("SELECT count(*)::text FROM billing.account_log WHERE user_id = 'u1'"), "2");
        assert_eq!(text("SELECT count(*)::text FROM billing.accounts WHERE user_id = 'ghost'"), "0");
    }

    #[pg_test]
    fn exact_balance_can_be_spent_to_zero() {
        recharge("u1", "1.25");
        gift("u1", "0.75", "1 day");
        chat("u1", "2");
        assert_eq!(power("u1"), "0");
        assert_eq!(sqlstate("SELECT billing_deduct('u1', 0.00000001, 'CHAT_DEC', 'CHAT', 'x')"), "PB001");
    }

    #[pg_test]
    fn idempotent_repeat_returns_the_original_entry() {
        recharge("u1", "10");
        let first = text("SELECT id || '/' || seq FROM billing_deduct('u1', 4, 'CHAT_DEC', 'CHAT', 'r', idempotency_key => 'k1')");
        let again = text("SELECT id || '/' || seq FROM billing_deduct('u1', 4, 'CHAT_DEC', 'CHAT', 'r', idempotency_key => 'k1')");
        assert_eq!(first, again);
        assert_eq!(power("u1"), "6");
        let add1 = text("SELECT id::text FROM billing_add('u2', 5, 'RECHARGE_INC', 'RECHARGE', 'o', idempotency_key => 'pay-1')");
        let add2 = text("SELECT id::text FROM billing_add('u2', 5, 'RECHARGE_INC', 'RECHARGE', 'o', idempotency_key => 'pay-1')");
        assert_eq!(add1, add2);
        assert_eq!(power("u2"), "5");
        // same key for something else
        assert_eq!(sqlstate("SELECT billing_deduct('u1', 5, 'CHAT_DEC', 'CHAT', 'r', idempotency_key => 'k1')"), "PB003");
        assert_eq!(sqlstate("SELECT billing_deduct('u1', 4, 'PLUGIN_DEC', 'PLUGIN', 'r', idempotency_key => 'k1')"), "PB003");
        assert_eq!(sqlstate("SELECT billing_deduct('u2', 5, 'CHAT_DEC', 'CHAT', 'r', idempotency_key => 'pay-1')"), "PB003");
        // a repeated gift returns its entry even once its expiry has passed
        let gift_entry = "SELECT id::text FROM billing_add('u3', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                              expire_at => '2030-01-01', idempotency_key => 'gift-1')";
        let original = text(gift_entry);
        travel("u3", "100 years");
        assert_eq!(text(gift_entry), original);
        // keys belong to one user
        assert_eq!(sqlstate("SELECT billing_deduct('u2', 1, 'CHAT_DEC', 'CHAT', 'r', idempotency_key => 'k1')"), "00000");
        assert_eq!(text("SELECT count(*)::text FROM billing.account_log"), "5");
    }

    #[pg_test]
    fn null_arguments_are_22004() {
        let calls = [
            "billing_add(NULL, 1, 'RECHARGE_INC', 'RECHARGE', 's')",
            "billing_add('u', NULL, 'RECHARGE_INC', 'RECHARGE', 's')",
            "billing_add('u', 1, NULL, 'RECHARGE', 's')",
            "billing_add('u', 1, 'RECHARGE_INC', NULL, 's')",
            "billing_add('u', 1, 'RECHARGE_INC', 'RECHARGE', NULL)",
            "billing_deduct(NULL, 1, 'CHAT_DEC', 'CHAT', 's')",
            "billing_deduct('u', NULL, 'CHAT_DEC', 'CHAT', 's')",
            "billing_deduct('u', 1, NULL, 'CHAT', 's')",
            "billing_deduct('u', 1, 'CHAT_DEC', NULL, 's')",
            "billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', NULL)",
            "billing_power(NULL)",
            "billing_has_power(NULL, 1)",
            "billing_has_power('u', NULL)",
        ];
        for call in calls {
            let (state, message, _, _) = outcome(&format!("SELECT {call}"));
            assert_eq!(state, "22004", "{call}: {message}");
            assert!(message.ends_with("must not be NULL"), "{call}: {message}");
        }
    }

    #[pg_test]
    fn bad_amounts_are_22023_naming_the_argument() {
        for amount in ["0", "-1", "'NaN'", "'Infinity'", "'-Infinity'", "0.000000001", "1000000000000.5", "1e30"] {
            for call in [
                format!("billing_add('u', {amount}, 'RECHARGE_INC', 'RECHARGE', 's')"),
                format!("billing_deduct('u', {amount}, 'CHAT_DEC', 'CHAT', 's')"),
                format!("billing_has_power('u', {amount})"),
            ] {
                let (state, message, _, _) = outcome(&format!("SELECT {call}"));
                assert_eq!(state, "22023", "{call}: {message}");
                assert!(message.starts_with("amount "), "{call}: {message}");
            }
        }
        // the bound itself and eight decimal places are fine
        recharge("u", "1000000000000");
        recharge("u", "0.00000001");
        assert_eq!(power("u"), "1000000000000.00000001");
    }

    #[pg_test]
    fn bad_texts_are_22023() {
        let long = "x".repeat(256);
        let cases = [
            format!("billing_add('', 1, 'RECHARGE_INC', 'RECHARGE', 's')"),
            format!("billing_add('   ', 1, 'RECHARGE_INC', 'RECHARGE', 's')"),
            format!("billing_add('{long}', 1, 'RECHARGE_INC', 'RECHARGE', 's')"),
            format!("billing_add('u', 1, 'RECHARGE_INC', 'RECHARGE', '')"),
            format!("billing_add('u', 1, 'RECHARGE_INC', 'RECHARGE', 's', idempotency_key => '')"),
            format!("billing_add('u', 1, 'RECHARGE_INC', 'RECHARGE', 's', remark => repeat('r', 4001))"),
            format!("billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 's', association_no => ' ')"),
            format!("billing_power('')"),
            format!("billing_deduct('u', 1, 'CHAT_DEC', '', 's')"),
        ];
        for call in cases {
            assert_eq!(sqlstate(&format!("SELECT {call}")), "22023", "{call}");
        }
    }

    #[pg_test]
    fn expiry_must_be_in_the_future_and_finite() {
        for when in ["now()", "now() - interval '1 second'", "'infinity'", "'-infinity'"] {
            let (state, message, _, _) = outcome(&format!(
                "SELECT billing_add('u', 1, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 's', expire_at => {when})"
            ));
            assert_eq!(state, "22023", "{when}");
            assert!(message.starts_with("expire_at "), "{message}");
        }
    }

    #[pg_test]
    fn unknown_or_wrong_direction_types_are_pb002() {
        recharge("u", "10");
        for call in [
            "billing_add('u', 1, 'NOPE_INC', 'RECHARGE', 's')",
            "billing_add('u', 1, 'CHAT_DEC', 'RECHARGE', 's')",
            "billing_add('u', 1, 'RECHARGE_INC', 'NOPE', 's')",
            "billing_deduct('u', 1, 'RECHARGE_INC', 'CHAT', 's')",
            "billing_deduct('u', 1, 'chat_dec', 'CHAT', 's')",
        ] {
            assert_eq!(sqlstate(&format!("SELECT {call}")), "PB002", "{call}");
        }
        // a DBA adds a type with INSERT and it works at once
        Spi::run("INSERT INTO billing.account_types (code, direction, description) VALUES ('IMAGE_DEC', -1, 'Images')").unwrap();
        Spi::run("INSERT INTO billing.source_types (code, description) VALUES ('IMAGE', 'Image generation')").unwrap();
        assert_eq!(chat_like("u", "IMAGE_DEC", "IMAGE"), "9");
    }

    #[pg_test]
    fn type_codes_are_never_renamed_deleted_or_turned_around() {
        for statement in [
            "UPDATE billing.account_types SET direction = 1 WHERE code = 'CHAT_DEC'",
            "UPDATE billing.account_types SET code = 'TALK_DEC' WHERE code = 'CHAT_DEC'",
            "DELETE FROM billing.account_types WHERE code = 'CHAT_DEC'",
            "UPDATE billing.source_types SET code = 'TALK' WHERE code = 'CHAT'",
            "DELETE FROM billing.source_types WHERE code = 'CHAT'",
        ] {
            assert_eq!(sqlstate(statement), "PB007", "{statement}");
        }
        assert_eq!(sqlstate("UPDATE billing.account_types SET description = 'Chats' WHERE code = 'CHAT_DEC'"), "00000");
        assert_eq!(sqlstate("UPDATE billing.source_types SET description = 'Chats' WHERE code = 'CHAT'"), "00000");
    }

    #[pg_test]
    fn the_type_code_guard_does_not_depend_on_the_table_name() {
        // Citus names a shard of a table after it with a suffix: the guard still holds
        Spi::run(
            "ALTER TABLE billing.account_types RENAME TO account_types_102008;
             ALTER TABLE billing.source_types RENAME TO source_types_102009",
        )
        .unwrap();
        for statement in [
            "UPDATE billing.account_types_102008 SET direction = 1 WHERE code = 'CHAT_DEC'",
            "UPDATE billing.account_types_102008 SET code = 'TALK_DEC' WHERE code = 'CHAT_DEC'",
            "DELETE FROM billing.account_types_102008 WHERE code = 'CHAT_DEC'",
            "UPDATE billing.source_types_102009 SET code = 'TALK' WHERE code = 'CHAT'",
            "DELETE FROM billing.source_types_102009 WHERE code = 'CHAT'",
        ] {
            assert_eq!(sqlstate(statement), "PB007", "{statement}");
        }
        assert_eq!(sqlstate("UPDATE billing.source_types_102009 SET description = 'Chats' WHERE code = 'CHAT'"), "00000");
    }

    #[pg_test]
    fn the_replay_check_reports_unknown_codes_and_turned_around_types() {
        Spi::run(
            "INSERT INTO billing.account_types (code, direction) VALUES ('TEMP_INC', 1);
             INSERT INTO billing.source_types (code) VALUES ('TEMP')",
        )
        .unwrap();
        Spi::run("SELECT billing_add('t', 5, 'TEMP_INC', 'TEMP', 'x')").unwrap();
        recharge("t", "1");
        recharge("other", "1");
        assert_eq!(ledger_disagreements(), 0);
        let findings = || {
            text("SELECT string_agg(concat_ws('|', user_id, \"check\", expected, actual), ';' ORDER BY \"check\") FROM billing_verify()")
        };
        // the guard stops these changes; past it (a superuser, a replication worker),
        // billing_verify sees what they did to the ledger's meaning
        Spi::run(
            "ALTER TABLE billing.account_types DISABLE TRIGGER account_types_guard;
             ALTER TABLE billing.source_types DISABLE TRIGGER source_types_guard;
             UPDATE billing.account_types SET direction = -1 WHERE code = 'TEMP_INC'",
        )
        .unwrap();
        assert_eq!(findings(), "t|entry 1 account_type|a type of direction 1 in billing.account_types|TEMP_INC (direction -1)");
        Spi::run(
            "DELETE FROM billing.account_types WHERE code = 'TEMP_INC';
             DELETE FROM billing.source_types WHERE code = 'TEMP'",
        )
        .unwrap();
        assert_eq!(
            findings(),
            "t|entry 1 account_type|a type of direction 1 in billing.account_types|TEMP_INC (unknown);\
             t|entry 1 source_type|a type in billing.source_types|TEMP (unknown)"
        );
        assert_eq!(text("SELECT count(*)::text FROM billing_verify('other')"), "0");
        assert_eq!(text("SELECT count(*)::text FROM billing_verify('t')"), "2");
    }

    #[pg_test]
    fn ledger_is_append_only() {
        recharge("u", "1");
        for statement in [
            "UPDATE billing.account_log SET amount = 1000",
            "DELETE FROM billing.account_log",
            "TRUNCATE billing.account_log",
        ] {
            assert_eq!(sqlstate(statement), "PB006", "{statement}");
        }
        assert_eq!(text("SELECT amount::text FROM billing.account_log"), "1");
    }

    #[pg_test]
    fn an_error_later_in_a_subtransaction_undoes_the_charge() {
        recharge("u", "10");
        assert_eq!(
            sqlstate("DO $$ BEGIN PERFORM billing_deduct('u', 4, 'CHAT_DEC', 'CHAT', 's'); RAISE EXCEPTION 'task failed'; END $$"),
            "P0001"
        );
        assert_eq!(power("u"), "10");
        assert_eq!(text("SELECT count(*)::text FROM billing.account_log WHERE user_id = 'u'"), "1");
        chat("u", "4");
        assert_eq!(text("SELECT max(seq)::text FROM billing.account_log WHERE user_id = 'u'"), "2");
    }

    #[pg_test]
    fn sequence_numbers_have_no_gaps_and_balances_replay() {
        for i in 1..=20 {
            recharge("a", &format!("{i}.5"));
            if i % 3 == 0 {
                gift("a", "2", &format!("{i} days"));
            }
            if i % 2 == 0 {
                chat("a", "3.25");
            }
        }
        assert_eq!(
            text("SELECT (count(*) = max(seq) AND min(seq) = 1)::text FROM billing.account_log WHERE user_id = 'a'"),
            "true"
        );
        assert_eq!(ledger_disagreements(), 0);
        assert_eq!(
            text("SELECT (balance_after = billing_power('a'))::text FROM billing.account_log WHERE user_id = 'a' ORDER BY seq DESC LIMIT 1"),
            "true"
        );
    }
}
