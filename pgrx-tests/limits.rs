//! In-database tests (#[pg_test]) of spending limits: billing_set_limit,
//! billing_limits, and how every charge counts against them (PB008). Each test
//! runs in one transaction, where now() stands still: crossing a period's end
//! is tested over real connections (tests/limits.rs) and by the model test.

#[pgrx::pg_schema]
mod tests {
    use crate::pgrx_tests::support::*;
    use pgrx::prelude::*;

    /// spent/held/remaining of the user's limit of `scope`, as billing_limits shows it.
    fn counters(user: &str, scope: &str) -> String {
        text(&format!(
            "SELECT concat_ws('/', spent, held, remaining) FROM billing_limits('{user}') WHERE scope = '{scope}'"
        ))
    }

    fn limit(user: &str, scope: &str, cap: &str, period: &str) {
        Spi::run(&format!("SELECT * FROM billing_set_limit('{user}', '{scope}', {cap}, {period})")).unwrap();
    }

    fn deduct(user: &str, amount: &str, scopes: &str) -> String {
        sqlstate(&format!("SELECT billing_deduct('{user}', {amount}, 'CHAT_DEC', 'CHAT', 'gpt', scopes => {scopes})"))
    }

    #[pg_test]
    fn set_limit_returns_the_limit_and_spend_before_it_does_not_count() {
        recharge("u", "100");
        assert_eq!(deduct("u", "7", "ARRAY['key:a']"), "00000");
        let row = text(
            "SELECT concat_ws('|', scope, cap, period, time_zone, (period_start = date_trunc('day', now(), 'UTC'))::text,
                              (period_end = date_trunc('day', now(), 'UTC') + interval '1 day')::text, spent, held, remaining)
               FROM billing_set_limit('u', 'key:a', 10, 'day')",
        );
        assert_eq!(row, "key:a|10|day|UTC|true|true|0|0|10");
        // a lifetime cap has no end
        assert_eq!(text("SELECT (period_end IS NULL)::text FROM billing_set_limit('u', '*', 50)"), "true");
        assert_eq!(text("SELECT string_agg(scope, ',' ORDER BY scope) FROM billing_limits('u')"), "*,key:a");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_charge_counts_against_its_scopes_and_star_and_a_capped_one_writes_nothing() {
        recharge("u", "100");
        limit("u", "key:a", "10", "'day'");
        limit("u", "key:b", "100", "'month'");
        limit("u", "*", "15", "NULL");
        assert_eq!(deduct("u", "6", "ARRAY['key:a', 'key:b', 'key:a']"), "00000");
        assert_eq!(text("SELECT scopes::text FROM billing.account_log WHERE user_id = 'u' AND seq = 2"), "{key:a,key:b}");
        assert_eq!(counters("u", "key:a"), "6/0/4");
        assert_eq!(counters("u", "key:b"), "6/0/94");
        assert_eq!(counters("u", "*"), "6/0/9");
        // a charge without scopes counts against * only
        assert_eq!(deduct("u", "2", "NULL"), "00000");
        assert_eq!(counters("u", "*"), "8/0/7");
        assert_eq!(counters("u", "key:a"), "6/0/4");
        // 5 more would take key:a to 11: PB008, and nothing is written anywhere
        let before = entries("u");
        let (state, message, detail, _) =
            outcome("SELECT billing_deduct('u', 5, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:b', 'key:a'])");
        assert_eq!(state, "PB008");
        assert_eq!(message, r#"charge exceeds the spending limit of scope "key:a" for user "u""#);
        let end = text("SELECT to_char(date_trunc('day', now(), 'UTC') + interval '1 day', 'YYYY-MM-DD')");
        assert_eq!(detail, format!("cap=10 spent=6 held=0 requested=5 period_end={end}T00:00:00.000000Z"));
        assert_eq!(entries("u"), before);
        assert_eq!(power("u"), "92");
        assert_eq!(counters("u", "key:b"), "6/0/94");
        assert_eq!(counters("u", "*"), "8/0/7");
        // the '*' limit stops a charge of any scope
        let (state, _, detail, _) = outcome("SELECT billing_deduct('u', 8, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:c'])");
        assert_eq!(state, "PB008");
        assert_eq!(detail, "cap=15 spent=8 held=0 requested=8 period_end=never");
        // exactly up to the cap is fine
        assert_eq!(deduct("u", "4", "ARRAY['key:a']"), "00000");
        assert_eq!(counters("u", "key:a"), "10/0/0");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_capped_charge_reports_pb008_even_when_power_is_short_too() {
        recharge("u", "3");
        limit("u", "key:a", "5", "NULL");
        assert_eq!(deduct("u", "6", "ARRAY['key:a']"), "PB008");
        assert_eq!(sqlstate("SELECT billing_hold('u', 6, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])"), "PB008");
        // within the cap, the power rule speaks
        assert_eq!(deduct("u", "4", "ARRAY['key:a']"), "PB001");
        assert_eq!(counters("u", "key:a"), "0/0/5");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn the_general_path_and_a_keyed_deduct_count_too_and_a_replay_is_not_checked_again() {
        recharge("u", "10");
        gift("u", "3", "1 day");
        gift("u", "3", "2 days");
        limit("u", "key:a", "8", "'week'");
        // spans two grants and the permanent balance: the general path
        assert_eq!(deduct("u", "7", "ARRAY['key:a']"), "00000");
        assert_eq!(counters("u", "key:a"), "7/0/1");
        assert_eq!(deduct("u", "2", "ARRAY['key:a']"), "PB008");
        let keyed = "SELECT id::text FROM billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'k1', scopes => ARRAY['key:a'])";
        let first = text(keyed);
        assert_eq!(counters("u", "key:a"), "8/0/0");
        // the cap is reached, but a replay returns the first result without counting again
        assert_eq!(text(keyed), first);
        assert_eq!(counters("u", "key:a"), "8/0/0");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn holds_count_while_held_settles_count_the_actual_amount_and_releases_give_back() {
        recharge("u", "100");
        limit("u", "model:x", "20", "'day'");
        let hold = |amount: &str| {
            Spi::get_one::<i64>(&format!(
                "SELECT hold_id FROM billing_hold('u', {amount}, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['model:x'])"
            ))
            .unwrap()
            .unwrap()
        };
        let h1 = hold("8");
        assert_eq!(text(&format!("SELECT scopes::text FROM billing.holds WHERE hold_id = {h1}")), "{model:x}");
        assert_eq!(counters("u", "model:x"), "0/8/12");
        let h2 = hold("10");
        assert_eq!(counters("u", "model:x"), "0/18/2");
        assert_eq!(sqlstate("SELECT billing_hold('u', 3, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['model:x'])"), "PB008");
        // settle below the hold: the actual amount is spent, the hold no longer held
        Spi::run(&format!("SELECT billing_settle({h1}, 5)")).unwrap();
        assert_eq!(text("SELECT scopes::text FROM billing.account_log WHERE user_id = 'u' ORDER BY seq DESC LIMIT 1"), "{model:x}");
        assert_eq!(counters("u", "model:x"), "5/10/5");
        // a settle above the cap fails, with allow_debt too, and leaves the hold open
        let (state, _, detail, _) = outcome(&format!("SELECT billing_settle({h2}, 16, allow_debt => true)"));
        assert_eq!(state, "PB008");
        assert!(detail.starts_with("cap=20 spent=5 held=0 requested=16 "), "{detail}");
        assert_eq!(text(&format!("SELECT status FROM billing.holds WHERE hold_id = {h2}")), "held");
        // a release gives back everything it held
        Spi::run(&format!("SELECT billing_release({h2})")).unwrap();
        assert_eq!(counters("u", "model:x"), "5/0/15");
        // a settle for 0 is a release
        let h3 = hold("4");
        Spi::run(&format!("SELECT billing_settle({h3}, 0)")).unwrap();
        assert_eq!(counters("u", "model:x"), "5/0/15");
        // a lapsed hold is given back by the next write
        let h4 = hold("6");
        lapse(h4);
        recharge("u", "1");
        assert_eq!(counters("u", "model:x"), "5/0/15");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn a_refund_gives_back_to_the_limits_the_charge_counted_against() {
        recharge("u", "100");
        limit("u", "key:a", "10", "'month'");
        limit("u", "*", "10", "NULL");
        let id = text("SELECT id::text FROM billing_deduct('u', 9, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])");
        Spi::run(&format!("SELECT billing_refund({id}, 4)")).unwrap();
        assert_eq!(counters("u", "key:a"), "5/0/5");
        assert_eq!(counters("u", "*"), "5/0/5");
        Spi::run(&format!("SELECT billing_refund({id})")).unwrap();
        assert_eq!(counters("u", "key:a"), "0/0/10");
        // a charge made before the limit was set gave nothing, and gets nothing back
        recharge("v", "10");
        let early = text("SELECT id::text FROM billing_deduct('v', 3, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])");
        limit("v", "key:a", "10", "NULL");
        Spi::run(&format!("SELECT billing_refund({early})")).unwrap();
        assert_eq!(counters("v", "key:a"), "0/0/10");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn adjustments_count_against_nothing() {
        recharge("u", "100");
        limit("u", "*", "5", "NULL");
        Spi::run("SELECT billing_adjust('u', -50, 'correction')").unwrap();
        assert_eq!(counters("u", "*"), "0/0/5");
        assert_eq!(text("SELECT (scopes IS NULL)::text FROM billing.account_log WHERE user_id = 'u' AND seq = 2"), "true");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn setting_a_limit_again_keeps_the_counters_for_the_same_period_and_restarts_them_for_another() {
        recharge("u", "100");
        limit("u", "key:a", "10", "'day'");
        assert_eq!(deduct("u", "4", "ARRAY['key:a']"), "00000");
        limit("u", "key:a", "20", "'day'");
        assert_eq!(counters("u", "key:a"), "4/0/16");
        // the same period in another time zone is another period
        limit("u", "key:a", "20", "'day', 'Asia/Tokyo'");
        assert_eq!(counters("u", "key:a"), "0/0/20");
        assert_eq!(deduct("u", "3", "ARRAY['key:a']"), "00000");
        limit("u", "key:a", "20", "'1 hour'");
        assert_eq!(counters("u", "key:a"), "0/0/20");
        // an open hold made in the new period counts when the period restarts
        let hold = Spi::get_one::<i64>(
            "SELECT hold_id FROM billing_hold('u', 2, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])",
        )
        .unwrap()
        .unwrap();
        limit("u", "key:a", "20", "'week'");
        assert_eq!(counters("u", "key:a"), "0/2/18");
        Spi::run(&format!("SELECT billing_release({hold})")).unwrap();
        assert_eq!(counters("u", "key:a"), "0/0/20");
        // a lifetime cap set again keeps what was spent
        limit("u", "*", "100", "NULL");
        assert_eq!(deduct("u", "5", "NULL"), "00000");
        limit("u", "*", "50", "NULL");
        assert_eq!(counters("u", "*"), "5/0/45");
        assert_eq!(text("SELECT count(*)::text FROM billing_set_limit('u', '*', NULL)"), "0");
        // a NULL cap removes the limit; then nothing counts against it
        assert_eq!(text("SELECT count(*)::text FROM billing_set_limit('u', 'key:a', NULL)"), "0");
        assert_eq!(text("SELECT count(*)::text FROM billing_limits('u')"), "0");
        assert_eq!(text("SELECT limited::text FROM billing.accounts WHERE user_id = 'u'"), "false");
        assert_eq!(deduct("u", "50", "ARRAY['key:a']"), "00000");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn the_json_deduct_and_the_triggers_take_scopes() {
        recharge("u", "100");
        limit("u", "key:j", "5", "NULL");
        let call = |amount: &str, scopes: &str| {
            sqlstate(&format!(
                r#"SELECT billing_deduct('{{"userId": "u", "amount": {amount}, "accountType": "CHAT_DEC",
                     "source": {{"type": "CHAT", "source": "j"}}, "scopes": {scopes}}}'::jsonb)"#
            ))
        };
        assert_eq!(call("3", r#"["key:j"]"#), "00000");
        assert_eq!(call("3", r#"["key:j"]"#), "PB008");
        assert_eq!(call("1", r#"["key:j", null]"#), "22004");
        assert_eq!(call("1", r#""key:j""#), "22023");
        assert_eq!(call("1", r#"["*"]"#), "22023");
        assert_eq!(counters("u", "key:j"), "3/0/2");
        // a charging trigger reads the scopes from a text or text[] column
        Spi::run(
            "CREATE TABLE tasks (id bigint PRIMARY KEY, user_id text, cost numeric, key text);
             CREATE TRIGGER charge AFTER INSERT OR DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION
               billing_charge('user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC',
                              'source_type=CHAT', 'source=task', 'key_column=id', 'scope_column=key');
             CREATE TABLE jobs (id bigint PRIMARY KEY, user_id text, cost numeric, scopes text[], actual numeric);
             CREATE TRIGGER hold AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION
               billing_hold_charge('user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC',
                                   'source_type=CHAT', 'source=job', 'key_column=id', 'actual_column=actual',
                                   'scope_column=scopes')",
        )
        .unwrap();
        assert_eq!(sqlstate("INSERT INTO tasks VALUES (1, 'u', 2, 'key:j')"), "00000");
        assert_eq!(counters("u", "key:j"), "5/0/0");
        assert_eq!(sqlstate("INSERT INTO tasks VALUES (2, 'u', 1, 'key:j')"), "PB008");
        assert_eq!(sqlstate("DELETE FROM tasks WHERE id = 1"), "00000");
        assert_eq!(counters("u", "key:j"), "3/0/2");
        assert_eq!(sqlstate("INSERT INTO jobs VALUES (1, 'u', 2, ARRAY['key:j', 'model:m'], NULL)"), "00000");
        assert_eq!(counters("u", "key:j"), "3/2/0");
        assert_eq!(sqlstate("UPDATE jobs SET actual = 1 WHERE id = 1"), "00000");
        assert_eq!(counters("u", "key:j"), "4/0/1");
        assert_eq!(sqlstate("INSERT INTO jobs VALUES (2, 'u', 2, ARRAY['key:j'], NULL)"), "PB008");
        // a column of another type is refused, naming the argument
        Spi::run(
            "CREATE TABLE bad (id bigint PRIMARY KEY, user_id text, n int);
             CREATE TRIGGER charge AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION
               billing_charge('user_column=user_id', 'amount=1', 'account_type=CHAT_DEC',
                              'source_type=CHAT', 'source=bad', 'key_column=id', 'scope_column=n')",
        )
        .unwrap();
        let (state, message) = failure("INSERT INTO bad VALUES (1, 'u', 7)");
        assert_eq!((state.as_str(), message.starts_with("scope_column ")), ("22023", true), "{message}");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn bad_scopes_and_bad_limits_are_refused_and_change_nothing() {
        recharge("u", "100");
        let many: Vec<String> = (0..17).map(|n| format!("'s{n}'")).collect();
        for (scopes, state) in [
            ("ARRAY['*']".to_owned(), "22023"),
            ("ARRAY['a', NULL]".to_owned(), "22004"),
            ("ARRAY['']".to_owned(), "22023"),
            (format!("ARRAY['{}']", "x".repeat(256)), "22023"),
            (format!("ARRAY[{}]", many.join(", ")), "22023"),
        ] {
            assert_eq!(deduct("u", "1", &scopes), state, "{scopes}");
            assert_eq!(
                sqlstate(&format!("SELECT billing_hold('u', 1, 'CHAT_DEC', 'CHAT', 'gpt', scopes => {scopes})")),
                state,
                "{scopes}"
            );
        }
        // 17 names that are 16 scopes once duplicates count once are fine
        assert_eq!(deduct("u", "1", &format!("ARRAY[{}, 's0']", many[..16].join(", "))), "00000");
        for (call, state, starts) in [
            ("'u', 'k', 1, 'fortnight'", "22023", "period "),
            ("'u', 'k', 1, '1 mon'", "22023", "period "),
            ("'u', 'k', 1, '0 seconds'", "22023", "period "),
            ("'u', 'k', 1, '-1 hour'", "22023", "period "),
            ("'u', 'k', 1, 'day', 'Mars/Olympus'", "22023", "time_zone "),
            ("'u', 'k', 1, 'day', NULL", "22004", "time_zone "),
            ("'u', '', 1", "22023", "scope "),
            ("'u', NULL, 1", "22004", "scope "),
            ("NULL, 'k', 1", "22004", "user_id "),
            ("'u', 'k', -1", "22023", "cap "),
            ("'u', 'k', 0.123456789", "22023", "cap "),
        ] {
            let (got, message) = failure(&format!("SELECT * FROM billing_set_limit({call})"));
            assert_eq!(got, state, "{call}: {message}");
            assert!(message.starts_with(starts), "{call}: {message}");
        }
        assert_eq!(text("SELECT count(*)::text FROM billing.limits"), "0");
        assert_eq!(text("SELECT limited::text FROM billing.accounts WHERE user_id = 'u'"), "false");
        assert_eq!(failure("SELECT * FROM billing_limits(NULL)").0, "22004");
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn verify_checks_every_limit_counter() {
        recharge("u", "100");
        limit("u", "key:a", "10", "'day'");
        assert_eq!(deduct("u", "4", "ARRAY['key:a']"), "00000");
        Spi::run("SELECT billing_hold('u', 2, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])").unwrap();
        assert_eq!(ledger_disagreements(), 0);
        Spi::run("UPDATE billing.limits SET spent = 3, held = 1").unwrap();
        assert_eq!(
            text("SELECT string_agg(concat_ws(' ', \"check\", expected, actual), '; ' ORDER BY \"check\") FROM billing_verify()"),
            "limit key:a held 2 1; limit key:a spent 4 3"
        );
        Spi::run("UPDATE billing.limits SET spent = 4, held = 2; UPDATE billing.accounts SET limited = false").unwrap();
        assert_eq!(text("SELECT \"check\" FROM billing_verify()"), "limited");
    }

    #[pg_test]
    fn the_pb008_detail_shows_the_counters_only_to_roles_that_may_read_limits() {
        recharge("u", "100");
        limit("u", "key:a", "1", "NULL");
        Spi::run(
            "CREATE ROLE limits_app; CREATE ROLE limits_reader;
             GRANT EXECUTE ON FUNCTION billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])
                TO limits_app, limits_reader;
             GRANT EXECUTE ON FUNCTION billing_limits(text) TO limits_reader",
        )
        .unwrap();
        Spi::run(
            "CREATE FUNCTION pg_temp.capped() RETURNS text LANGUAGE plpgsql AS $$
             DECLARE state text; detail text;
             BEGIN
                 PERFORM billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a']);
                 RETURN 'charged';
             EXCEPTION WHEN OTHERS THEN
                 GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
                 RETURN state || ': ' || detail;
             END $$",
        )
        .unwrap();
        let as_role = |role: &str| {
            Spi::run(&format!("SET LOCAL ROLE {role}")).unwrap();
            let seen = text("SELECT pg_temp.capped()");
            Spi::run("RESET ROLE").unwrap();
            seen
        };
        assert_eq!(as_role("limits_app"), "PB008: requested=2");
        assert_eq!(as_role("limits_reader"), "PB008: cap=1 spent=0 held=0 requested=2 period_end=never");
    }
}
