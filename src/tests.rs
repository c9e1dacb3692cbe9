//! In-database tests (#[pg_test]): each runs in its own transaction, rolled back after.
//! Races, real SAVEPOINTs and commits are in tests/ over real connections.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::test_support::*;

    fn gift(user: &str, amount: &str, expires_in: &str) -> i64 {
        Spi::get_one::<i64>(&format!(
            "SELECT (detail->'grants'->0->>'id')::bigint FROM billing_add('{user}', {amount}, 'MEMBERSHIP_GIFT_INC',
                     'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '{expires_in}', subscription_id => 'sub-1')"
        ))
        .unwrap()
        .unwrap()
    }

    fn chat(user: &str, amount: &str) -> String {
        text(&format!(
            "SELECT detail::text FROM billing_deduct('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'report')"
        ))
    }

    /// Moves every grant of the user `by` into the past, as time passing would.
    fn travel(user: &str, by: &str) {
        Spi::run(&format!(
            "UPDATE billing.grant_store SET expire_at = expire_at - interval '{by}' WHERE user_id = '{user}';
             UPDATE billing.accounts SET next_expiry = next_expiry - interval '{by}' WHERE user_id = '{user}'"
        ))
        .unwrap();
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
    fn bad_input_table_in_readme() {
        let readme = include_str!("../docs/bad-input.md");
        let table = readme
            .split("<!-- bad-input:begin -->")
            .nth(1)
            .and_then(|rest| rest.split("<!-- bad-input:end -->").next())
            .expect("README has the bad-input table");
        recharge("u", "100");
        Spi::run("SELECT billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 's', idempotency_key => 'used')").unwrap();
        let mut rows = 0;
        for line in table.lines().filter(|l| l.starts_with("| ") && l.contains('`')) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let statement = cells[2].trim_matches('`');
            let expected = cells[3].trim_end_matches(" |").split(' ').next().unwrap();
            let before = text("SELECT count(*)::text FROM billing.account_log");
            assert_eq!(sqlstate(statement), expected, "README row: {line}");
            assert_eq!(text("SELECT count(*)::text FROM billing.account_log"), before, "nothing written: {line}");
            rows += 1;
        }
        assert!(rows >= 30, "only {rows} rows read from README");
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

    fn chat_like(user: &str, account_type: &str, source_type: &str) -> String {
        text(&format!("SELECT balance_after::text FROM billing_deduct('{user}', 1, '{account_type}', '{source_type}', 's')"))
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

    #[pg_test]
    fn writes_are_security_definer_with_pinned_search_path_and_nothing_is_public() {
        let unsafe_functions = text(
            "SELECT coalesce(string_agg(p.proname, ','), '') FROM pg_proc p
              WHERE p.proname LIKE 'billing\\_%'
                AND (has_function_privilege('public', p.oid, 'EXECUTE') IS NOT FALSE
                     OR p.proacl IS NULL
                     OR (p.provolatile = 'v' AND NOT p.prosecdef)
                     OR (p.prosecdef AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)))",
        );
        assert_eq!(unsafe_functions, "");
        // the two reads run no SQL: they run as the caller
        assert_eq!(
            text("SELECT string_agg(proname || ':' || prosecdef, ',' ORDER BY proname) FROM pg_proc
                   WHERE proname IN ('billing_power', 'billing_has_power') AND pronamespace = 'public'::regnamespace"),
            "billing_has_power:false,billing_power:false"
        );
        // each in the extension's schema and, as its protected copy, in schema billing
        assert_eq!(text("SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'billing\\_%' AND pronamespace = 'public'::regnamespace"), "22");
        assert_eq!(text("SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'billing\\_%' AND pronamespace = 'billing'::regnamespace"), "22");
    }

    #[pg_test]
    fn every_function_table_and_column_has_a_comment() {
        let missing = text(
            "SELECT coalesce(string_agg(name, ', '), '') FROM (
                 SELECT p.oid::regprocedure::text AS name FROM pg_proc p
                  WHERE (p.proname LIKE 'billing\\_%' OR p.pronamespace = 'billing'::regnamespace)
                    AND obj_description(p.oid, 'pg_proc') IS NULL
                 UNION ALL
                 SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace
                    AND c.relkind IN ('r', 'v', 'S') AND obj_description(c.oid, 'pg_class') IS NULL
                 UNION ALL
                 SELECT c.relname || '.' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  WHERE c.relnamespace = 'billing'::regnamespace AND c.relkind IN ('r', 'v')
                    AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL) m",
        );
        assert_eq!(missing, "");
    }

    // ---- holds, settles, releases and refunds ----

    /// Reserves `amount` for `user`; returns the hold id.
    fn hold(user: &str, amount: &str) -> i64 {
        Spi::get_one::<i64>(&format!("SELECT hold_id FROM billing_hold('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'gpt-4')"))
            .unwrap()
            .unwrap()
    }

    /// Makes the hold's ttl pass, as time passing would.
    fn lapse(hold_id: i64) {
        Spi::run(&format!(
            "UPDATE billing.holds SET expires_at = now() - interval '1 second' WHERE hold_id = {hold_id};
             UPDATE billing.accounts a SET holds_due_at = now() - interval '1 second'
               FROM billing.holds h WHERE h.hold_id = {hold_id} AND a.user_id = h.user_id"
        ))
        .unwrap();
    }

    fn remaining(grant_id: i64) -> String {
        text(&format!("SELECT remaining::text FROM billing.grants WHERE id = {grant_id}"))
    }

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

    // ---- operations: expiry, revoking, adjusting, balances, JSON calls, notifications ----

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
}
