//! In-database tests (#[pg_test]) of the schema as a whole: the bad-input table the docs
//! show, function security (definer, pinned search_path, nothing public) and comments.
//! Each runs in its own transaction, rolled back after.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

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
        // the two reads resolve no names from the caller's search_path: they run as the caller
        assert_eq!(
            text("SELECT string_agg(proname || ':' || prosecdef, ',' ORDER BY proname) FROM pg_proc
                   WHERE proname IN ('billing_power', 'billing_has_power') AND pronamespace = 'public'::regnamespace"),
            "billing_has_power:false,billing_power:false"
        );
        // each in the extension's schema and, as its protected copy, in schema billing
        assert_eq!(text("SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'billing\\_%' AND pronamespace = 'public'::regnamespace"), "31");
        assert_eq!(text("SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'billing\\_%' AND pronamespace = 'billing'::regnamespace"), "31");
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
}
