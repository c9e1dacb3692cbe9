//! In-database tests of the trust boundary (issue 11): the protected names in
//! schema billing, and who each ledger entry records.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    #[pg_test]
    fn every_function_has_an_exact_protected_copy_in_schema_billing() {
        // same definition but for the schema, same comment, and PUBLIC may execute neither
        let differing = text(
            "SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), 'none')
               FROM pg_proc AS p
               JOIN pg_depend AS d ON d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'billing'
               LEFT JOIN pg_proc AS c
                 ON c.pronamespace = 'billing'::regnamespace AND c.proname = p.proname
                AND c.proargtypes = p.proargtypes
              WHERE p.pronamespace = e.extnamespace
                AND (c.oid IS NULL
                     OR replace(pg_get_functiondef(p.oid), 'FUNCTION public.', 'FUNCTION billing.')
                        <> pg_get_functiondef(c.oid)
                     OR obj_description(p.oid, 'pg_proc') IS DISTINCT FROM obj_description(c.oid, 'pg_proc')
                     OR has_function_privilege('public', c.oid, 'EXECUTE')
                     OR has_function_privilege('public', p.oid, 'EXECUTE'))",
        );
        assert_eq!(differing, "none");
        assert_eq!(
            text("SELECT count(*)::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'billing\\_%'"),
            text("SELECT count(*)::text FROM pg_proc WHERE pronamespace = 'billing'::regnamespace AND proname LIKE 'billing\\_%'"),
        );
        // and they do the same thing
        Spi::run("SELECT billing.billing_add('copy', 5, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
        Spi::run("SELECT billing.billing_deduct('copy', 2, 'CHAT_DEC', 'CHAT', 'x')").unwrap();
        assert_eq!(text("SELECT billing.billing_power('copy')::text"), "3");
        assert_eq!(power("copy"), "3");
    }

    #[pg_test]
    fn every_entry_records_the_session_user_and_the_calling_role() {
        Spi::run(
            "CREATE ROLE billing_who_app;
             GRANT EXECUTE ON FUNCTION billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text),
                                       billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])
                TO billing_who_app;",
        )
        .unwrap();
        recharge("who", "10");
        Spi::run("SET ROLE billing_who_app").unwrap();
        Spi::run("SELECT billing_deduct('who', 3, 'CHAT_DEC', 'CHAT', 'x')").unwrap();
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(
            text(
                "SELECT string_agg(seq || ' ' || (session_role = session_user)::text || ' ' || calling_role, ', ' ORDER BY seq)
                   FROM billing.account_log WHERE user_id = 'who'"
            ),
            format!("1 true {}, 2 true billing_who_app", text("SELECT current_user::text"))
        );
        // the functions run as the extension's owner, yet the entry names the caller
        assert_eq!(text("SELECT billing.calling_role()"), text("SELECT current_user::text"));
    }

    #[pg_test]
    fn the_replay_check_reports_a_trigger_charge_that_names_nothing() {
        recharge("tc", "10");
        Spi::run("SELECT billing_deduct('tc', 3, 'CHAT_DEC', 'CHAT', 'x')").unwrap();
        let entry = text("SELECT id::text FROM billing.account_log WHERE user_id = 'tc' AND direction = -1");
        Spi::run(&format!(
            "INSERT INTO billing.trigger_charges (user_id, is_hold, id, table_name) VALUES
                 ('tc', false, {entry}, 'public.tasks'),
                 ('tc', true, 424242, 'public.jobs'),
                 ('other', false, {entry}, 'public.tasks')"
        ))
        .unwrap();
        assert_eq!(
            text("SELECT string_agg(user_id || ': ' || \"check\", ', ' ORDER BY user_id, \"check\") FROM billing_verify()"),
            format!("other: trigger charge {entry}, tc: trigger hold 424242")
        );
    }
}
