//! In-database tests (#[pg_test]) of billing_metrics() and billing_metrics_reset().
//! pgrx's cluster does not preload the library, so here the counters are off: the
//! gauges move, the row that says the counters are off is there, and the reset is
//! refused to whoever is not a superuser. The counters themselves are proved with
//! the library preloaded, over real connections, in tests/metrics.rs.
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    /// The value of one metric without labels, as text.
    fn gauge(metric: &str) -> String {
        text(&format!(
            "SELECT value::text FROM billing_metrics() WHERE metric = '{metric}' AND labels = '{{}}' AND kind = 'gauge'"
        ))
    }

    #[pg_test]
    fn the_gauges_move_with_the_tables() {
        let gauges = [
            "billing_holds_open",
            "billing_holds_overdue",
            "billing_holds_overdue_oldest_seconds",
            "billing_grants_unswept",
            "billing_grants_unswept_oldest_seconds",
            "billing_accounts_in_debt",
        ];
        for metric in gauges {
            assert_eq!(gauge(metric), "0", "{metric} on an empty database");
        }

        // open holds, one of them past its ttl
        recharge("h", "100");
        hold("h", "5");
        let lapsed = hold("h", "7");
        assert_eq!(gauge("billing_holds_open"), "2");
        assert_eq!(gauge("billing_holds_overdue"), "0");
        // its ttl passed 90 seconds ago, as time passing would have it
        Spi::run(&format!(
            "UPDATE billing.holds SET expires_at = now() - interval '90 seconds' WHERE hold_id = {lapsed};
             UPDATE billing.accounts SET holds_due_at = now() - interval '90 seconds' WHERE user_id = 'h'"
        ))
        .unwrap();
        assert_eq!(gauge("billing_holds_open"), "2");
        assert_eq!(gauge("billing_holds_overdue"), "1");
        assert_eq!(gauge("billing_holds_overdue_oldest_seconds"), "90");

        // expired grants with power left, until the sweep takes them
        recharge("g", "10");
        gift("g", "3", "1 day");
        gift("g", "4", "2 days");
        gift("g", "5", "30 days");
        travel("g", "3 days");
        assert_eq!(gauge("billing_grants_unswept"), "2");
        assert_eq!(gauge("billing_grants_unswept_oldest_seconds"), (2 * 86_400).to_string());
        // a spent grant is not waiting for the sweep (the head grant's live remaining counts)
        chat("g", "3");
        assert_eq!(gauge("billing_grants_unswept"), "2", "power of an expired grant is never spent");
        assert_eq!(text("SELECT billing_expire()::text"), "3", "two grants and the lapsed hold");
        for metric in gauges.iter().filter(|m| !m.starts_with("billing_accounts")) {
            let want = if *metric == "billing_holds_open" { "1" } else { "0" };
            assert_eq!(gauge(metric), want, "{metric} after the sweep");
        }

        // a debt left by a settle above the hold
        recharge("d", "5");
        let id = hold("d", "5");
        Spi::run(&format!("SELECT billing_settle({id}, 8, allow_debt => true)")).unwrap();
        assert_eq!(gauge("billing_accounts_in_debt"), "1");

        // the ledger's rows, as the planner estimates them
        Spi::run("ANALYZE billing.account_log").unwrap();
        let rows = text("SELECT count(*)::text FROM billing.account_log");
        assert_eq!(gauge("billing_ledger_rows_estimate"), rows);
        assert_eq!(ledger_disagreements(), 0);
    }

    #[pg_test]
    fn without_preloading_a_row_says_the_counters_are_off_and_calls_work() {
        recharge("u", "10");
        assert_eq!(chat("u", "1"), r#"{"permanent": 1}"#);
        assert_eq!(
            text("SELECT string_agg(format('%s %s %s %s', metric, kind, labels, value), ', ') FROM billing_metrics() WHERE kind = 'counter' OR metric = 'billing_counters_active'"),
            "billing_counters_active gauge {} 0"
        );
        // resetting counters that are off does nothing, and says nothing
        assert_eq!(sqlstate("SELECT billing_metrics_reset()"), "00000");
    }

    #[pg_test]
    fn only_a_superuser_may_reset_even_with_execute() {
        Spi::run(
            "CREATE ROLE metrics_reader;
             GRANT EXECUTE ON FUNCTION billing_metrics(), billing_metrics_reset() TO metrics_reader;
             GRANT USAGE ON SCHEMA billing TO metrics_reader;
             GRANT EXECUTE ON FUNCTION billing.billing_metrics_reset() TO metrics_reader;
             SET LOCAL ROLE metrics_reader",
        )
        .unwrap();
        let (state, message) = failure("SELECT billing_metrics_reset()");
        assert_eq!((state.as_str(), message.as_str()), ("42501", "only a superuser may reset the billing counters"));
        assert_eq!(sqlstate("SELECT billing.billing_metrics_reset()"), "42501");
        // reading the metrics needs only EXECUTE on billing_metrics(), which PUBLIC does not have
        assert_eq!(sqlstate("SELECT * FROM billing_metrics()"), "00000");
        Spi::run("RESET ROLE; REVOKE EXECUTE ON FUNCTION billing_metrics() FROM metrics_reader; SET LOCAL ROLE metrics_reader")
            .unwrap();
        assert_eq!(sqlstate("SELECT * FROM billing_metrics()"), "42501");
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn every_c_entry_point_is_counted_under_its_own_name() {
        // the symbols of the extension's C functions are exactly those ENTRY_POINTS lists
        let symbols: Vec<&str> = crate::metrics::ENTRY_POINTS.iter().map(|(symbol, _)| *symbol).collect();
        let missing = text(&format!(
            "SELECT coalesce(string_agg(DISTINCT p.prosrc, ', '), '') FROM pg_proc p
              WHERE p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
                AND p.probin LIKE '%billing%' AND p.prosrc <> ALL (ARRAY['{}'])
                AND p.pronamespace IN ('billing'::regnamespace, (SELECT extnamespace FROM pg_extension WHERE extname = 'billing'))",
            symbols.join("', '")
        ));
        assert_eq!(missing, "", "C functions whose symbol metrics::ENTRY_POINTS does not list");
        let unused = text(&format!(
            "SELECT coalesce(string_agg(s, ', '), '') FROM unnest(ARRAY['{}']) AS s
              WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.prosrc = s AND p.probin LIKE '%billing%')",
            symbols.join("', '")
        ));
        assert_eq!(unused, "", "listed symbols no SQL function binds");
        // and each label names the SQL function (the options forms by their argument)
        for (symbol, function) in crate::metrics::ENTRY_POINTS {
            let name = function.trim_end_matches("(jsonb)");
            let bound = text(&format!(
                "SELECT count(*)::text FROM pg_proc p WHERE p.prosrc = '{symbol}'
                   AND (p.oid::regprocedure::text LIKE '{name}(%' OR 'billing.' || p.oid::regprocedure::text LIKE '{name}(%')"
            ));
            assert_ne!(bound, "0", "{symbol} is labelled {function}");
        }
    }
}
