//! In-database tests (#[pg_test]) of the reports and pricing (sql/reports.sql):
//! billing_history, billing_by_association, billing_statement, billing_price.
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    fn chat(user: &str, amount: &str) {
        Spi::run(&format!("SELECT billing_deduct('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'report')")).unwrap();
    }

    /// Sets created_at of one ledger entry, as if it had been written then. The
    /// ledger is append-only (a trigger), so the trigger is skipped for this
    /// one UPDATE; the test's transaction is rolled back afterwards.
    fn written_at(user: &str, seq: i64, when: &str) {
        Spi::run(&format!(
            "SET LOCAL session_replication_role = replica;
             UPDATE billing.account_log SET created_at = '{when}' WHERE user_id = '{user}' AND seq = {seq};
             SET LOCAL session_replication_role = origin"
        ))
        .unwrap();
    }

    /// The seqs of one page of billing_history, as returned.
    fn history_page(user: &str, page_size: i32, before_seq: Option<i64>) -> Vec<i64> {
        let before = before_seq.map_or("NULL".to_string(), |s| s.to_string());
        Spi::connect(|client| {
            client
                .select(&format!("SELECT seq FROM billing_history('{user}', {page_size}, {before})"), None, &[])
                .unwrap()
                .map(|row| row.get::<i64>(1).unwrap().unwrap())
                .collect()
        })
    }

    /// The lines of EXPLAIN (COSTS OFF) of a query, joined by newlines.
    fn explain(query: &str) -> String {
        Spi::connect(|client| {
            client
                .select(&format!("EXPLAIN (COSTS OFF) {query}"), None, &[])
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[pg_test]
    fn history_pages_cover_every_entry_once_newest_first() {
        for i in 1..=23 {
            if i % 4 == 0 {
                chat("h", "1");
            } else {
                recharge("h", &format!("{i}"));
            }
        }
        recharge("someone-else", "5");
        // page by page, each page's last seq is the next page's before_seq
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut before = None;
        loop {
            let page = history_page("h", 5, before);
            if page.is_empty() {
                break;
            }
            sizes.push(page.len());
            before = page.last().copied();
            seen.extend(page);
        }
        assert_eq!(sizes, [5, 5, 5, 5, 3]);
        assert_eq!(seen, (1..=23).rev().collect::<Vec<i64>>(), "every seq once, newest first");
        // defaults: 50 newest; whole rows of the ledger, not just seqs
        assert_eq!(history_page("h", 50, None).len(), 23);
        assert_eq!(text("SELECT count(*)::text FROM billing_history('h')"), "23");
        assert_eq!(
            text("SELECT string_agg(format('%s:%s:%s:%s', seq, account_type, amount, balance_after), ',')
                    FROM billing_history('h', 3)"),
            "23:RECHARGE_INC:23:211,22:RECHARGE_INC:22:188,21:RECHARGE_INC:21:166"
        );
        assert_eq!(
            text("SELECT ((SELECT array_agg(h ORDER BY h.seq) FROM billing_history('h', 1000) AS h)::text
                      = (SELECT array_agg(l ORDER BY l.seq) FROM billing.account_log AS l WHERE l.user_id = 'h')::text)::text"),
            "true"
        );
        assert_eq!(history_page("h", 1, None), [23]);
        assert_eq!(history_page("h", 1000, Some(3)), [2, 1]);
        assert_eq!(history_page("h", 10, Some(1)), Vec::<i64>::new());
        assert_eq!(history_page("nobody", 10, None), Vec::<i64>::new());
    }

    #[pg_test]
    fn history_pages_stay_put_while_entries_are_added() {
        for _ in 0..6 {
            recharge("k", "1");
        }
        let first = history_page("k", 4, None);
        assert_eq!(first, [6, 5, 4, 3]);
        // new entries arrive between two page reads: the next page neither
        // repeats nor skips anything (an OFFSET page would repeat 3 and 4)
        recharge("k", "1");
        recharge("k", "1");
        assert_eq!(history_page("k", 4, first.last().copied()), [2, 1]);
        assert_eq!(history_page("k", 4, None), [8, 7, 6, 5]);
    }

    #[pg_test]
    fn history_rejects_bad_arguments_naming_them() {
        recharge("u", "1");
        for size in ["0", "-1", "1001", "2147483647"] {
            let (state, message) = failure(&format!("SELECT * FROM billing_history('u', {size})"));
            assert_eq!(state, "22023", "page_size {size}");
            assert_eq!(message, format!("page_size must be between 1 and 1000, not {size}"));
        }
        assert_eq!(failure("SELECT * FROM billing_history(NULL)"), ("22004".into(), "user_id must not be NULL".into()));
        assert_eq!(failure("SELECT * FROM billing_history('u', NULL)"), ("22004".into(), "page_size must not be NULL".into()));
        assert_eq!(failure("SELECT * FROM billing_history('')"), ("22023".into(), "user_id must not be empty".into()));
        assert_eq!(failure("SELECT * FROM billing_history('  ')"), ("22023".into(), "user_id must not be empty".into()));
        assert_eq!(
            failure("SELECT * FROM billing_history(repeat('u', 256))"),
            ("22023".into(), "user_id is longer than 255 characters".into())
        );
        // the bounds themselves are fine; NULL before_seq is the first page
        assert_eq!(failure("SELECT * FROM billing_history('u', 1)").0, "00000");
        assert_eq!(failure("SELECT * FROM billing_history('u', 1000, NULL)").0, "00000");
    }

    #[pg_test]
    fn by_association_returns_the_users_entries_with_that_number_in_order() {
        recharge("a", "100");
        let task = |user: &str, amount: &str, no: &str| {
            Spi::run(&format!(
                "SELECT billing_deduct('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'chat', association_no => '{no}')"
            ))
            .unwrap();
        };
        task("a", "1", "task-7");
        task("a", "2", "task-8");
        chat("a", "3");
        task("a", "4", "task-7");
        recharge("b", "10");
        task("b", "5", "task-7");
        assert_eq!(
            text("SELECT string_agg(format('%s:%s:%s', user_id, seq, amount), ',') FROM billing_by_association('a', 'task-7')"),
            "a:2:1,a:5:4"
        );
        assert_eq!(text("SELECT string_agg(seq::text, ',') FROM billing_by_association('b', 'task-7')"), "2");
        assert_eq!(text("SELECT count(*)::text FROM billing_by_association('a', 'task-9')"), "0");
        assert_eq!(text("SELECT count(*)::text FROM billing_by_association('a', 'TASK-7')"), "0");
        assert_eq!(failure("SELECT * FROM billing_by_association(NULL, 'x')"), ("22004".into(), "user_id must not be NULL".into()));
        assert_eq!(
            failure("SELECT * FROM billing_by_association('a', NULL)"),
            ("22004".into(), "association_no must not be NULL".into())
        );
        assert_eq!(failure("SELECT * FROM billing_by_association('a', '')"), ("22023".into(), "association_no must not be empty".into()));
    }

    #[pg_test]
    fn by_association_reads_through_its_index() {
        // enough users and entries that the index is worth reading
        Spi::run(
            "SELECT billing_add('user-' || i, 100, 'RECHARGE_INC', 'RECHARGE', 'shop', association_no => 'order-' || i)
               FROM generate_series(1, 300) AS i",
        )
        .unwrap();
        for i in 0..20 {
            Spi::run(&format!(
                "SELECT billing_deduct('user-1', 1, 'CHAT_DEC', 'CHAT', 'chat', association_no => 'task-{}')",
                i % 4
            ))
            .unwrap();
        }
        Spi::run("ANALYZE billing.account_log; SET LOCAL enable_seqscan = off").unwrap();
        // the query the function runs
        let plan = explain(
            "SELECT l.* FROM billing.account_log AS l
              WHERE l.user_id = 'user-1' AND l.association_no = 'task-2' ORDER BY l.seq",
        );
        assert!(plan.contains("using account_log_by_association on account_log"), "{plan}");
        assert!(plan.contains("association_no = 'task-2'::text"), "the index condition: {plan}");
        // and the function itself scans that index, with the plan for its
        // actual arguments and with the generic plan it later caches (which,
        // were seq not in the index, would read the primary key instead)
        let scans = "SELECT pg_stat_get_xact_numscans('billing.account_log_by_association'::regclass)";
        for mode in ["force_custom_plan", "force_generic_plan"] {
            Spi::run(&format!("SET LOCAL plan_cache_mode = {mode}")).unwrap();
            let before = Spi::get_one::<i64>(scans).unwrap().unwrap();
            assert_eq!(text("SELECT string_agg(seq::text, ',') FROM billing_by_association('user-1', 'task-2')"), "4,8,12,16,20");
            let after = Spi::get_one::<i64>(scans).unwrap().unwrap();
            assert_eq!(after - before, 1, "index scans by billing_by_association with {mode}");
        }
        // entries without an association_no are not in the index at all
        assert_eq!(
            text("SELECT (pg_get_indexdef('billing.account_log_by_association'::regclass)
                          LIKE '%(user_id, association_no, seq) WHERE (association_no IS NOT NULL)')::text"),
            "true"
        );
    }

    /// A user with six entries over three months (all amounts in power):
    /// seq 1 recharge 100 on 1 Jan (balance 100), 2 chat 10 on 15 Jan (90),
    /// 3 gift 50 on 1 Feb at midnight (140), 4 chat 30 on 10 Feb (110),
    /// 5 plugin 5.25 on 20 Feb (104.75), 6 recharge 20 on 1 Mar at midnight (124.75).
    fn three_months(user: &str) {
        recharge(user, "100");
        chat(user, "10");
        Spi::run(&format!(
            "SELECT billing_add('{user}', 50, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '10 years')"
        ))
        .unwrap();
        chat(user, "30");
        Spi::run(&format!("SELECT billing_deduct('{user}', 5.25, 'PLUGIN_DEC', 'PLUGIN', 'search')")).unwrap();
        recharge(user, "20");
        for (seq, when) in [
            (1, "2024-01-01 09:00+00"),
            (2, "2024-01-15 12:00+00"),
            (3, "2024-02-01 00:00+00"),
            (4, "2024-02-10 08:30+00"),
            (5, "2024-02-20 23:59:59.999999+00"),
            (6, "2024-03-01 00:00+00"),
        ] {
            written_at(user, seq, when);
        }
    }

    /// billing_statement as one line per row: type|entries|credited|debited|net|opening|closing.
    fn statement(user: &str, from: &str, to: &str) -> String {
        text(&format!(
            "SELECT string_agg(concat_ws('|', coalesce(account_type, 'TOTAL'), entries, credited, debited, net,
                                         opening_balance, closing_balance), '; ')
               FROM billing_statement('{user}', '{from}', '{to}')"
        ))
    }

    #[pg_test]
    fn statement_totals_each_account_type_between_opening_and_closing_balance() {
        three_months("s");
        recharge("other", "1000");
        assert_eq!(
            text("SELECT string_agg(seq || ':' || balance_after, ',' ORDER BY seq) FROM billing.account_log WHERE user_id = 's'"),
            "1:100,2:90,3:140,4:110,5:104.75,6:124.75"
        );
        // February: the gift at exactly 1 Feb is in, the recharge at exactly 1 Mar is not
        assert_eq!(
            statement("s", "2024-02-01 00:00+00", "2024-03-01 00:00+00"),
            "CHAT_DEC|1|0|30|-30|90|104.75; MEMBERSHIP_GIFT_INC|1|50|0|50|90|104.75; \
             PLUGIN_DEC|1|0|5.25|-5.25|90|104.75; TOTAL|3|50|35.25|14.75|90|104.75"
        );
        // January, and the whole history (opening 0 before the first entry)
        assert_eq!(
            statement("s", "2024-01-01 00:00+00", "2024-02-01 00:00+00"),
            "CHAT_DEC|1|0|10|-10|0|90; RECHARGE_INC|1|100|0|100|0|90; TOTAL|2|100|10|90|0|90"
        );
        assert_eq!(
            statement("s", "-infinity", "infinity"),
            "CHAT_DEC|2|0|40|-40|0|124.75; MEMBERSHIP_GIFT_INC|1|50|0|50|0|124.75; \
             PLUGIN_DEC|1|0|5.25|-5.25|0|124.75; RECHARGE_INC|2|120|0|120|0|124.75; TOTAL|6|170|45.25|124.75|0|124.75"
        );
        // one microsecond later the 20 Feb entry is out of the opening window
        assert_eq!(
            statement("s", "2024-02-20 23:59:59.999999+00", "2024-02-21 00:00+00"),
            "PLUGIN_DEC|1|0|5.25|-5.25|110|104.75; TOTAL|1|0|5.25|-5.25|110|104.75"
        );
        // no entries in the period: only the total row, opening = closing
        assert_eq!(statement("s", "2024-01-20 00:00+00", "2024-01-31 00:00+00"), "TOTAL|0|0|0|0|90|90");
        assert_eq!(statement("s", "2023-01-01 00:00+00", "2023-12-31 00:00+00"), "TOTAL|0|0|0|0|0|0");
        assert_eq!(statement("nobody", "-infinity", "infinity"), "TOTAL|0|0|0|0|0|0");
        // with no expired grants in between, opening + net = closing for every period
        assert_eq!(
            text("SELECT bool_and(opening_balance + net = closing_balance)::text
                    FROM generate_series('2023-12-01'::timestamptz, '2024-03-10', '1 day') AS day,
                         LATERAL billing_statement('s', day, day + interval '9 days') AS st
                   WHERE st.account_type IS NULL"),
            "true"
        );
        // the output columns and their types
        assert_eq!(
            text("SELECT array_to_string(proargnames[4:], ', ') || ' / ' || pg_get_function_result(oid)
                    FROM pg_proc WHERE proname = 'billing_statement'"),
            "account_type, entries, credited, debited, net, opening_balance, closing_balance / \
             TABLE(account_type text, entries bigint, credited numeric, debited numeric, net numeric, \
             opening_balance numeric, closing_balance numeric)"
        );
    }

    #[pg_test]
    fn statement_rejects_bad_arguments_naming_them() {
        let (state, message) = failure("SELECT * FROM billing_statement('u', '2024-02-01', '2024-02-01')");
        assert_eq!(state, "22023");
        assert!(message.starts_with("from_ts must be before to_ts"), "{message}");
        assert_eq!(failure("SELECT * FROM billing_statement('u', '2024-03-01', '2024-02-01')").0, "22023");
        assert_eq!(failure("SELECT * FROM billing_statement('u', 'infinity', 'infinity')").0, "22023");
        assert_eq!(failure("SELECT * FROM billing_statement(NULL, now(), now() + interval '1 day')"), ("22004".into(), "user_id must not be NULL".into()));
        assert_eq!(failure("SELECT * FROM billing_statement('u', NULL, now())"), ("22004".into(), "from_ts must not be NULL".into()));
        assert_eq!(failure("SELECT * FROM billing_statement('u', now(), NULL)"), ("22004".into(), "to_ts must not be NULL".into()));
        assert_eq!(failure("SELECT * FROM billing_statement(' ', now(), now() + interval '1 day')").0, "22023");
    }

    fn price(rule: &str, tokens: &str) -> String {
        text(&format!("SELECT billing_price('{rule}', {tokens})::text"))
    }

    #[pg_test]
    fn price_is_the_exact_ceiling_of_tokens_over_the_rule() {
        Spi::run(
            "INSERT INTO billing.pricing_rules (code, tokens, power, description) VALUES
                 ('gpt', 1000, 3, 'Chat: 3 power per 1000 tokens'),
                 ('cheap', 1000, 0.5, ''),
                 ('image', 1, 2.5, ''),
                 ('free', 1000, 0, ''),
                 ('odd', 99999999999999999, 1, '')",
        )
        .unwrap();
        assert_eq!(price("gpt", "12000"), "36");
        assert_eq!(price("gpt", "1000"), "3");
        assert_eq!(price("gpt", "1001"), "4"); // 3.003
        assert_eq!(price("gpt", "999"), "3"); // 2.997
        assert_eq!(price("gpt", "1"), "1"); // 0.003
        assert_eq!(price("gpt", "0"), "0");
        assert_eq!(price("cheap", "1"), "1"); // 0.0005
        assert_eq!(price("cheap", "2000"), "1");
        assert_eq!(price("cheap", "2001"), "2");
        assert_eq!(price("image", "3"), "8"); // 7.5
        assert_eq!(price("free", "1000000"), "0");
        assert_eq!(price("gpt", "9223372036854775807"), "27670116110564328");
        // 100000000000000000 / 99999999999999999 = 1.00000000000000001...: a
        // rounded numeric division says 1.0000000000000000, whose ceiling is 1
        assert_eq!(text("SELECT ceil(100000000000000000::numeric * 1 / 99999999999999999)::text"), "1");
        assert_eq!(price("odd", "100000000000000000"), "2");
        assert_eq!(price("odd", "99999999999999999"), "1");
        assert_eq!(price("odd", "199999999999999999"), "3");
        // the check an application makes before work starts
        recharge("p", "36");
        assert_eq!(text("SELECT billing_has_power('p', billing_price('gpt', 12000))::text"), "true");
        assert_eq!(text("SELECT billing_has_power('p', billing_price('gpt', 12001))::text"), "false");
        // a DBA's change of a rule applies to the next call
        Spi::run("UPDATE billing.pricing_rules SET power = 4 WHERE code = 'gpt'").unwrap();
        assert_eq!(price("gpt", "12000"), "48");
    }

    #[pg_test]
    fn price_rejects_unknown_rules_and_bad_tokens() {
        Spi::run("INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('gpt', 1000, 3)").unwrap();
        let (state, message, _, hint) = outcome("SELECT billing_price('claude', 10)");
        assert_eq!(state, "PB002");
        assert_eq!(message, r#"unknown rule_code "claude""#);
        assert!(hint.contains("billing.pricing_rules"), "{hint}");
        assert_eq!(failure("SELECT billing_price('GPT', 10)").0, "PB002", "codes are case-sensitive");
        assert_eq!(failure("SELECT billing_price('gpt', -1)"), ("22023".into(), "tokens must not be negative, not -1".into()));
        assert_eq!(failure("SELECT billing_price('gpt', NULL)"), ("22004".into(), "tokens must not be NULL".into()));
        assert_eq!(failure("SELECT billing_price(NULL, 1)"), ("22004".into(), "rule_code must not be NULL".into()));
        assert_eq!(failure("SELECT billing_price('', 1)"), ("22023".into(), "rule_code must not be empty".into()));
        // the table refuses rules that would price nonsense
        for values in ["('z', 0, 1)", "('z', -5, 1)", "('z', 1, -1)", "('z', 1, 'NaN')", "('z', 1, 'Infinity')"] {
            assert_eq!(
                failure(&format!("INSERT INTO billing.pricing_rules (code, tokens, power) VALUES {values}")).0,
                "23514",
                "{values}"
            );
        }
    }

    #[pg_test]
    fn reports_are_stable_definer_functions_with_comments() {
        assert_eq!(
            text("SELECT string_agg(format('%s:%s:%s:%s', proname, provolatile, prosecdef, array_to_string(proconfig, ';')), ',' ORDER BY proname)
                    FROM pg_proc WHERE proname IN ('billing_history', 'billing_by_association', 'billing_statement', 'billing_price')
                     AND pronamespace = 'public'::regnamespace"),
            "billing_by_association:s:t:search_path=pg_catalog, pg_temp,\
             billing_history:s:t:search_path=pg_catalog, pg_temp,\
             billing_price:s:t:search_path=pg_catalog, pg_temp,\
             billing_statement:s:t:search_path=pg_catalog, pg_temp"
        );
        assert_eq!(
            text("SELECT (has_function_privilege('public', 'billing.check_key(text, text)', 'EXECUTE'))::text"),
            "false"
        );
        // every column of the new table, the index and the helper explain themselves
        assert_eq!(
            text("SELECT coalesce(string_agg(a.attname, ','), '') FROM pg_attribute AS a
                   WHERE a.attrelid = 'billing.pricing_rules'::regclass AND a.attnum > 0
                     AND col_description(a.attrelid, a.attnum) IS NULL"),
            ""
        );
        assert_eq!(
            text("SELECT (obj_description('billing.pricing_rules'::regclass, 'pg_class') IS NOT NULL
                      AND obj_description('billing.account_log_by_association'::regclass, 'pg_class') IS NOT NULL
                      AND obj_description('billing.check_key(text, text)'::regprocedure, 'pg_proc') IS NOT NULL)::text"),
            "true"
        );
        // the rules are dumped with the extension
        assert_eq!(
            text("SELECT (extconfig @> ARRAY['billing.pricing_rules'::regclass::oid])::text FROM pg_extension WHERE extname = 'billing'"),
            "true"
        );
    }
}
