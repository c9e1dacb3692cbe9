//! billing_metrics()'s counters over real connections. They exist only when the
//! server preloads the library, so `make integration` runs this file twice: with
//! the rest of the suites on a cluster that does not preload it (`without_preload`),
//! and alone on one started with shared_preload_libraries including billing
//! (`with_preload`, one test at a time: the counters are the server's, so nothing
//! else may call while a test compares them).

mod common;

use std::collections::BTreeMap;

use common::*;

/// Every counter row, keyed "metric function sqlstate".
fn counters(c: &mut Client) -> BTreeMap<String, i64> {
    c.query(
        "SELECT concat_ws(' ', metric, labels->>'function', labels->>'sqlstate'), value::bigint
           FROM billing_metrics() WHERE kind = 'counter'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// What moved between two readings, leaving out the readings' own calls.
fn moved(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> Vec<String> {
    after
        .iter()
        .filter(|(key, _)| *key != "billing_calls_total billing.metric_counters")
        .filter_map(|(key, n)| {
            let delta = n - before.get(key).copied().unwrap_or(0);
            (delta != 0).then(|| format!("{key} +{delta}"))
        })
        .collect()
}

fn preloaded(c: &mut Client) -> bool {
    text(c, "SHOW shared_preload_libraries").split(',').any(|l| l.trim() == "billing")
}

fn counters_active(c: &mut Client) -> String {
    text(c, "SELECT value::text FROM billing_metrics() WHERE metric = 'billing_counters_active'")
}

mod with_preload {
    use super::*;

    fn database(test: &str) -> (String, Client) {
        let db = fresh_database(test);
        let mut c = connect(&db);
        assert!(preloaded(&mut c), "run through `make integration`: this cluster must preload billing");
        assert_eq!(counters_active(&mut c), "1");
        (db, c)
    }

    #[test]
    fn counters_count_calls_and_errors_by_sqlstate() {
        let (db, mut c) = database("metrics_counting");
        let before = counters(&mut c);
        c.batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
        c.batch_execute("SELECT billing_deduct('u', 4, 'CHAT_DEC', 'CHAT', 'c', idempotency_key => 'k')").unwrap();
        let deduct = |c: &mut Client, sql: &str| sqlstate(c.batch_execute(sql));
        assert_eq!(deduct(&mut c, "SELECT billing_deduct('u', 100, 'CHAT_DEC', 'CHAT', 'c')"), "PB001");
        assert_eq!(deduct(&mut c, "SELECT billing_deduct('u', 100, 'CHAT_DEC', 'CHAT', 'c')"), "PB001");
        assert_eq!(deduct(&mut c, "SELECT billing_deduct('u', -1, 'CHAT_DEC', 'CHAT', 'c')"), "22023");
        assert_eq!(deduct(&mut c, "SELECT billing_deduct('u', 5, 'CHAT_DEC', 'CHAT', 'c', idempotency_key => 'k')"), "PB003");
        assert_eq!(deduct(&mut c, "SELECT billing_deduct('{\"userId\": \"u\"}'::jsonb)"), "22023");
        // a PL/pgSQL function is counted through the C function it calls
        assert_eq!(deduct(&mut c, "SELECT billing_adjust('u', -1000, 'too much')"), "PB001");
        // an error PostgreSQL raises inside the call: a lock it may not wait for
        let mut holder = connect(&db);
        holder.batch_execute("BEGIN; SELECT billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 'c')").unwrap();
        assert_eq!(
            deduct(&mut c, "SET lock_timeout = '100ms'; SELECT billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 'c')"),
            "55P03"
        );
        holder.batch_execute("ROLLBACK").unwrap();
        c.batch_execute("RESET lock_timeout").unwrap();

        let after = counters(&mut c);
        assert_eq!(
            moved(&before, &after),
            [
                // the column default of every ledger row written (rolled back or not)
                "billing_calls_total billing.calling_role +3",
                // billing_adjust's checks of its arguments
                "billing_calls_total billing.check_amount +1",
                "billing_calls_total billing.check_key +2",
                // billing_adjust's debit, which counts against no spending limit
                "billing_calls_total billing.deduct_uncounted +1",
                "billing_calls_total billing_add +1",
                "billing_calls_total billing_deduct +7",
                "billing_calls_total billing_deduct(jsonb) +1",
                "billing_errors_total billing.deduct_uncounted PB001 +1",
                "billing_errors_total billing_deduct 22023 +1",
                "billing_errors_total billing_deduct 55P03 +1",
                "billing_errors_total billing_deduct PB001 +2",
                "billing_errors_total billing_deduct PB003 +1",
                "billing_errors_total billing_deduct(jsonb) 22023 +1",
            ]
        );
        // the counters are the server's: another database sees the same
        let other = fresh_database("metrics_counting_other");
        let mut o = connect(&other);
        let seen = counters(&mut o);
        assert_eq!(seen.get("billing_errors_total billing_deduct PB001"), after.get("billing_errors_total billing_deduct PB001"));
    }

    #[test]
    fn reset_is_for_superusers_and_zeroes_every_counter() {
        let (db, mut c) = database("metrics_reset");
        c.batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
        assert_eq!(sqlstate(c.batch_execute("SELECT billing_deduct('u', 100, 'CHAT_DEC', 'CHAT', 'c')")), "PB001");
        let role = format!("{db}_monitor");
        c.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT EXECUTE ON FUNCTION billing_metrics(), billing_metrics_reset() TO {role}"
        ))
        .unwrap();
        let mut monitor = connect_as(&db, &role);
        let before = counters(&mut monitor);
        assert!(before["billing_errors_total billing_deduct PB001"] >= 1);
        assert_eq!(sqlstate(monitor.batch_execute("SELECT billing_metrics_reset()")), "42501");
        let after = counters(&mut monitor);
        assert_eq!(moved(&before, &after), ["billing_calls_total billing_metrics_reset +1", "billing_errors_total billing_metrics_reset 42501 +1"]);

        c.batch_execute("SELECT billing_metrics_reset()").unwrap();
        let zeroed = counters(&mut monitor);
        let left: Vec<_> = zeroed.iter().filter(|(_, n)| **n != 0).collect();
        // the reading's own call is all there is
        assert_eq!(left, [(&"billing_calls_total billing.metric_counters".to_owned(), &1)]);
        assert!(zeroed.keys().any(|k| k == "billing_calls_total billing_deduct"), "calls of every entry point, zero included");
        assert!(!zeroed.keys().any(|k| k.starts_with("billing_errors_total")), "no error rows once zeroed");
    }
}

mod without_preload {
    use super::*;

    #[test]
    fn a_row_says_the_counters_are_off_and_calls_work() {
        let db = fresh_database("metrics_off");
        let mut c = connect(&db);
        assert!(!preloaded(&mut c), "this test runs on `make integration`'s main cluster, which does not preload billing");
        c.batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
        assert_eq!(sqlstate(c.batch_execute("SELECT billing_deduct('u', 100, 'CHAT_DEC', 'CHAT', 'c')")), "PB001");
        assert_eq!(power(&mut c, "u"), "10");
        assert_eq!(counters_active(&mut c), "0");
        assert!(counters(&mut c).is_empty(), "no counter rows when the counters are off");
        c.batch_execute("SELECT billing_metrics_reset()").unwrap();
    }
}
