//! The hostile tenant (issue 11). The write functions run as the extension's
//! owner, a superuser, in a database that other roles share. A role that can
//! CREATE in public (the database owner always can in PostgreSQL 15, through
//! pg_database_owner) plants look-alikes of every function and operator the
//! extension defines or calls: text-typed overloads, overloads with an extra
//! defaulted parameter, same-signature copies of the pg_catalog functions the
//! extension's bodies call, `=` and friends for text and numeric, and tables
//! named like ours. Then every function runs through its protected name
//! (billing.billing_*) and every trigger event fires: the results must be those
//! of a clean database, no planted code may run, and nothing may become ambiguous.
//!
//! Every function the extension defines must appear in SCENARIO: a new function
//! that is not called here fails `every_function_is_in_the_scenario`.

mod common;

use common::*;

/// The scenario, run as the application role through the protected names. Each
/// entry is a query whose rows are compared (as text) with a clean database's.
/// Timestamps and role names are left out: they differ between the two databases.
const SCENARIO: &[&str] = &[
    "SELECT seq, amount, balance_after, detail FROM billing.billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop', idempotency_key => 'k-add')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_add('u', 30, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => pg_catalog.now() OPERATOR(pg_catalog.+) '30 days'::pg_catalog.interval, subscription_id => 'sub-1')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_add('{\"userId\": \"v\", \"amount\": 50, \"accountType\": \"RECHARGE_INC\", \"source\": {\"type\": \"RECHARGE\", \"source\": \"shop\"}}'::pg_catalog.jsonb)",
    "SELECT billing.billing_power('u'), billing.billing_has_power('u', 130), billing.billing_has_power('u', 131)",
    "SELECT billing.billing_set_low_balance('u', 60)",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_deduct('u', 40, 'CHAT_DEC', 'CHAT', 'chat-1', association_no => 'task-1', idempotency_key => 'k-chat-1')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_deduct('u', 40, 'CHAT_DEC', 'CHAT', 'chat-1', association_no => 'task-1', idempotency_key => 'k-chat-1')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_deduct('{\"userId\": \"v\", \"amount\": 5, \"accountType\": \"CHAT_DEC\", \"source\": {\"type\": \"CHAT\", \"source\": \"x\"}}'::pg_catalog.jsonb)",
    "SELECT hold_id, status, amount, funding FROM billing.billing_hold('u', 20, 'CHAT_DEC', 'CHAT', 'metered', idempotency_key => 'k-hold-1')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_settle(1, 25)",
    "SELECT hold_id, status, amount, funding FROM billing.billing_hold('u', 10, 'CHAT_DEC', 'CHAT', 'metered-2')",
    "SELECT hold_id, status, reason FROM billing.billing_release(2, 'cancelled')",
    "SELECT seq, amount, balance_after, detail, refund_of FROM billing.billing_refund(4, 15, 'partial')",
    "SELECT seq, amount, balance_after, detail, refund_of FROM billing.billing_refund(4)",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_adjust('u', -7, 'correction', 'staff')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_adjust('u', 3, 'goodwill', 'staff')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_revoke_subscription('sub-1', 'cancelled')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_deduct('u', 66, 'CHAT_DEC', 'CHAT', 'chat-2')",
    "SELECT event_id, user_id, threshold, available FROM billing.billing_low_balance_events(0)",
    "SELECT billing.billing_expire()",
    "SELECT seq, account_type, amount, balance_after, association_no FROM billing.billing_history('u', 100, NULL)",
    "SELECT seq, account_type, amount FROM billing.billing_by_association('u', 'task-1')",
    "SELECT account_type, entries, credited, debited, net, opening_balance, closing_balance FROM billing.billing_statement('u', '-infinity', 'infinity')",
    "SELECT billing.billing_price('gpt', 2500)",
    "SELECT billing.billing_set_debt_limit('v', 10)",
    "SELECT hold_id, status, amount, funding FROM billing.billing_hold('v', 40, 'CHAT_DEC', 'CHAT', 'metered-3')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_settle(3, 50, NULL, true)",
    // the user-keyed forms of settle, release and refund (holds 4 and 5 are x's)
    "SELECT seq, amount FROM billing.billing_add('x', 20, 'RECHARGE_INC', 'RECHARGE', 'shop')",
    "SELECT hold_id, status, amount, funding FROM billing.billing_hold('x', 5, 'CHAT_DEC', 'CHAT', 'metered-5')",
    "SELECT seq, amount, balance_after, detail FROM billing.billing_user_settle('x', 4, 2)",
    "SELECT hold_id, status, amount, funding FROM billing.billing_hold('x', 3, 'CHAT_DEC', 'CHAT', 'metered-6')",
    "SELECT app.outcome('SELECT billing.billing_user_release(''u'', 5)')",
    "SELECT hold_id, status, reason FROM billing.billing_user_release('x', 5, 'cancelled')",
    "SELECT seq, amount, balance_after, detail, refund_of FROM billing.billing_user_refund('x', (SELECT pg_catalog.max(l.id) FROM billing.account_log AS l WHERE l.user_id OPERATOR(pg_catalog.=) 'x'), 1, 'partial')",
    // Citus only: PB009 here, in both databases, with nothing planted run
    "SELECT app.outcome('SELECT billing.billing_distribute()')",
    // the gauges (the ledger's estimate follows autovacuum, and the counters the cluster)
    "SELECT metric, kind, labels, value FROM billing.billing_metrics() WHERE kind OPERATOR(pg_catalog.=) 'gauge' AND metric OPERATOR(pg_catalog.<>) 'billing_ledger_rows_estimate'",
    // refused to the application (superusers only), by the extension and not a look-alike
    "SELECT app.outcome('SELECT billing.billing_metrics_reset()')",
    // the charging triggers, every event (tasks and jobs belong to the application)
    "INSERT INTO app.tasks (task_no, user_id, cost) VALUES ('t1', 'u', 2), ('t2', 'u', 3) RETURNING task_no",
    "UPDATE app.tasks SET status = 'failed' WHERE task_no OPERATOR(pg_catalog.=) 't1' RETURNING task_no",
    "DELETE FROM app.tasks WHERE task_no OPERATOR(pg_catalog.=) 't2' RETURNING task_no",
    "INSERT INTO app.jobs (job_no, user_id) VALUES ('j1', 'u'), ('j2', 'u'), ('j3', 'u') RETURNING job_no",
    "UPDATE app.jobs SET actual = 4 WHERE job_no OPERATOR(pg_catalog.=) 'j1' RETURNING job_no",
    "UPDATE app.jobs SET status = 'failed' WHERE job_no OPERATOR(pg_catalog.=) 'j2' RETURNING job_no",
    "DELETE FROM app.jobs WHERE job_no OPERATOR(pg_catalog.=) ANY (ARRAY['j1', 'j3']) RETURNING job_no",
    // spending limits: set, counted by a deduct and a hold, refused above the cap, read, removed
    "SELECT seq, amount FROM billing.billing_add('w', 20, 'RECHARGE_INC', 'RECHARGE', 'shop')",
    "SELECT scope, cap, period, time_zone, spent, held, remaining FROM billing.billing_set_limit('w', 'key:a', 8, 'month', 'Europe/Berlin')",
    "SELECT seq, amount, scopes FROM billing.billing_deduct('w', 5, 'CHAT_DEC', 'CHAT', 'chat-3', scopes => ARRAY['key:a', 'key:b'])",
    "SELECT app.outcome('SELECT billing.billing_deduct(''w'', 5, ''CHAT_DEC'', ''CHAT'', ''chat-4'', scopes => ARRAY[''key:a''])')",
    "SELECT status, amount, scopes FROM billing.billing_hold('w', 2, 'CHAT_DEC', 'CHAT', 'metered-4', scopes => ARRAY['key:a'])",
    "SELECT scope, cap, spent, held, remaining FROM billing.billing_limits('w')",
    "SELECT count(*) FROM billing.billing_set_limit('w', 'key:a', NULL)",
    "SELECT user_id, seq, account_type, amount, balance_after, detail, refund_of FROM billing.account_log ORDER BY user_id, seq",
    "SELECT user_id, hold_id, status, amount, settled_amount, funding FROM billing.holds ORDER BY user_id, hold_id",
    "SELECT billing.billing_power('u'), billing.billing_power('v')",
    "SELECT * FROM billing.billing_verify(NULL)",
];

/// The application's tables with charging triggers, created by the application role,
/// and app.outcome, the SQLSTATE of a statement the application may not run.
const APP_TABLES: &str = "
    CREATE SCHEMA app;
    CREATE FUNCTION app.outcome(statement text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
        EXECUTE statement;
        RETURN '00000';
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE || ' ' || SQLERRM;
    END $$;
    CREATE TABLE app.tasks (task_no text PRIMARY KEY, user_id text NOT NULL, cost numeric, status text NOT NULL DEFAULT 'new');
    CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON app.tasks FOR EACH ROW
        EXECUTE FUNCTION billing.billing_charge('user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC',
            'source_type=CHAT', 'source=tasks', 'association_column=task_no', 'status_column=status', 'failed_status=failed');
    CREATE TABLE app.jobs (job_no text PRIMARY KEY, user_id text NOT NULL, actual numeric, status text NOT NULL DEFAULT 'new');
    CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON app.jobs FOR EACH ROW
        EXECUTE FUNCTION billing.billing_hold_charge('user_column=user_id', 'amount=3', 'account_type=CHAT_DEC',
            'source_type=CHAT', 'source=jobs', 'association_column=job_no', 'actual_column=actual',
            'status_column=status', 'failed_status=failed');";

/// Planted by a role that may CREATE in public: a record of every planted call,
/// and look-alikes that record themselves.
const PLANT: &str = r#"
    CREATE TABLE public.planted_ran (what text);
    GRANT INSERT, SELECT ON public.planted_ran TO PUBLIC;
    CREATE FUNCTION public.planted(what text) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.planted_ran VALUES (what);
        BEGIN
            EXECUTE 'ALTER ROLE ' || quote_ident(session_user) || ' SUPERUSER';
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
        RETURN true;
    END $$;
    GRANT EXECUTE ON FUNCTION public.planted(text) TO PUBLIC;
    -- operators for text, numeric, bigint and jsonb that match everything
    CREATE FUNCTION public.any_text(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT public.planted('text op') $$;
    CREATE FUNCTION public.any_numeric(numeric, numeric) RETURNS boolean LANGUAGE sql AS $$ SELECT public.planted('numeric op') $$;
    CREATE FUNCTION public.any_bigint(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT public.planted('bigint op') $$;
    CREATE FUNCTION public.plus_numeric(numeric, numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT 0::numeric WHERE public.planted('+') $$;
    CREATE FUNCTION public.get_text(jsonb, text) RETURNS text LANGUAGE sql AS $$ SELECT 'x' WHERE public.planted('->>') $$;
    CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.any_text);
    CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.any_text);
    CREATE OPERATOR public.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = public.any_text);
    CREATE OPERATOR public.= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.any_numeric);
    CREATE OPERATOR public.< (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.any_numeric);
    CREATE OPERATOR public.> (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.any_numeric);
    CREATE OPERATOR public.<= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.any_numeric);
    CREATE OPERATOR public.>= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.any_numeric);
    CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.any_bigint);
    CREATE OPERATOR public.+ (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.plus_numeric);
    CREATE OPERATOR public.- (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = public.plus_numeric);
    CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.get_text);
    -- tables named like ours
    CREATE TABLE public.accounts (user_id text, permanent numeric);
    CREATE TABLE public.account_log (user_id text, seq bigint, amount numeric);
    CREATE TABLE public.grant_store (user_id text, id bigint, remaining numeric);
    CREATE TABLE public.holds (user_id text, hold_id bigint, status text);
    CREATE TABLE public.account_types (code text, direction smallint);
    CREATE TABLE public.source_types (code text);
    CREATE TABLE public.low_balance_events (user_id text, event_id bigint);
    CREATE TABLE public.pricing_rules (code text, tokens bigint, power numeric);
    GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC;
    -- every function of the extension, as text-typed and extra-defaulted overloads,
    -- and a same-signature copy of every pg_catalog function its bodies call
    DO $plant$
    DECLARE
        f record;
        planted integer := 0;
        body text;
    BEGIN
        FOR f IN
            SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args, p.pronargs
              FROM pg_catalog.pg_proc AS p
             WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'billing\_%'
        LOOP
            body := format('$b$ BEGIN PERFORM public.planted(%L); RETURN NULL; END $b$', 'overload of ' || f.proname);
            BEGIN
                EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS text LANGUAGE plpgsql AS %s',
                               f.proname, array_to_string(array_fill('text'::text, ARRAY[greatest(f.pronargs, 1)]), ', '), body);
                planted := planted + 1;
            EXCEPTION WHEN duplicate_function THEN NULL;  -- ours is all text already
            END;
            EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS text LANGUAGE plpgsql AS %s',
                           f.proname, concat_ws(', ', nullif(f.args, ''), 'planted integer DEFAULT 0'), body);
            planted := planted + 1;
        END LOOP;
        -- the exact function of the superuser takeover: billing_refund(bigint, text, text, text)
        BEGIN
            EXECUTE 'CREATE FUNCTION public.billing_refund(bigint, text, text, text) RETURNS text LANGUAGE plpgsql AS
                     $b$ BEGIN PERFORM public.planted(''billing_refund(bigint, text, text, text)''); RETURN NULL; END $b$';
        EXCEPTION WHEN duplicate_function THEN NULL;
        END;
        FOR f IN
            SELECT DISTINCT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
                   pg_catalog.format_type(p.prorettype, NULL) AS returns, p.proretset
              FROM pg_catalog.pg_proc AS p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
               AND length(p.proname) > 2
               AND EXISTS (SELECT FROM pg_catalog.pg_proc AS ours
                            WHERE (ours.pronamespace = 'billing'::regnamespace OR ours.proname LIKE 'billing\_%')
                              AND ours.prolang <> 13  -- not C
                              AND ours.prosrc ~ ('\m' || p.proname || '\s*\('))
        LOOP
            BEGIN
                EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %s',
                               f.proname, f.args, CASE WHEN f.proretset THEN 'SETOF ' ELSE '' END, f.returns,
                               format('$b$ BEGIN PERFORM public.planted(%L); RETURN%s; END $b$', f.proname,
                                      CASE WHEN f.proretset THEN '' ELSE ' NULL' END));
                planted := planted + 1;
            EXCEPTION WHEN OTHERS THEN NULL;  -- pseudo-types plpgsql cannot declare ("any", internal)
            END;
        END LOOP;
        RAISE NOTICE 'planted % functions', planted;
        PERFORM set_config('planted.count', planted::text, false);
    END
    $plant$;
    CREATE AGGREGATE public.sum(numeric) (SFUNC = public.plus_numeric, STYPE = numeric);
    CREATE AGGREGATE public.max(bigint) (SFUNC = int8larger, STYPE = bigint);
    SET search_path = public, pg_catalog;
"#;

/// Creates a database, the application role with every grant it needs on the
/// protected names, the application's tables, and a pricing rule.
fn database(test: &str) -> (String, String) {
    let db = fresh_database(test);
    let app = format!("{db}_app");
    let mut admin = connect(&db);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {app} LOGIN;
             GRANT USAGE ON SCHEMA billing TO {app};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA billing TO {app};
             GRANT SELECT ON billing.account_log, billing.holds TO {app};
             GRANT CREATE ON DATABASE {db} TO {app};
             INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('gpt', 1000, 0.3);"
        ))
        .unwrap();
    connect_as(&db, &app).batch_execute(APP_TABLES).unwrap();
    (db, app)
}

/// Runs SCENARIO as `role`, each query's rows as lines of text.
fn run_scenario(db: &str, role: &str, search_path: &str) -> Vec<String> {
    let mut c = connect_as(db, role);
    c.batch_execute(&format!("SET search_path = {search_path}")).unwrap();
    let mut out = Vec::new();
    for query in SCENARIO {
        let wrapped = format!("WITH r AS ({query}) SELECT pg_catalog.row_to_json(r)::pg_catalog.text FROM r");
        let rows = c.query(&wrapped, &[]).unwrap_or_else(|e| panic!("{query}: {:?}", e.as_db_error()));
        out.push(format!("{query}\n  -> {}", rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n     ")));
    }
    out
}

fn expected_results() -> Vec<String> {
    let (db, app) = database("hostile_clean");
    run_scenario(&db, &app, "\"$user\", public")
}

/// Plants as `planter` (who may CREATE in public), runs the scenario, and compares.
fn planted_database_behaves_like_a_clean_one(db: &str, app: &str, planter: &str) {
    let mut p = connect_as(db, planter);
    p.batch_execute(PLANT).unwrap();
    let planted: i64 = text(&mut p, "SELECT pg_catalog.current_setting('planted.count')").parse().unwrap();
    assert!(planted > 60, "the plant covers the extension's functions and what they call: {planted}");
    drop(p);

    // the application runs with the planter's objects first on its search_path
    let got = run_scenario(db, app, "public, pg_catalog");
    let want = expected_results();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "a planted database gave a different result");
    }
    assert_eq!(got.len(), want.len());

    let mut admin = connect(db);
    admin.batch_execute("SET search_path = pg_catalog").unwrap();
    assert_eq!(text(&mut admin, "SELECT string_agg(what, ', ') FROM public.planted_ran"), "NULL", "planted code ran");
    assert_eq!(text(&mut admin, &format!("SELECT rolsuper::text FROM pg_roles WHERE rolname = '{planter}'")), "false");
    assert_eq!(text(&mut admin, "SELECT count(*)::text FROM billing.billing_verify(NULL)"), "0");
}

#[test]
fn a_role_with_create_on_public_plants_look_alikes_and_nothing_changes() {
    let (db, app) = database("hostile_planter");
    let planter = format!("{db}_planter");
    connect(&db)
        .batch_execute(&format!("CREATE ROLE {planter} LOGIN; GRANT CREATE ON SCHEMA public TO {planter};"))
        .unwrap();
    planted_database_behaves_like_a_clean_one(&db, &app, &planter);
}

#[test]
fn the_database_owner_plants_look_alikes_and_nothing_changes() {
    let (db, app) = database("hostile_owner");
    let owner = format!("{db}_owner");
    let mut admin = connect(&db);
    // in PostgreSQL 15 the database owner may CREATE in public through pg_database_owner
    admin.batch_execute(&format!("CREATE ROLE {owner} LOGIN; ALTER DATABASE {db} OWNER TO {owner};")).unwrap();
    planted_database_behaves_like_a_clean_one(&db, &app, &owner);
}

#[test]
fn every_function_is_in_the_scenario() {
    let db = fresh_database("hostile_coverage");
    let mut c = connect(&db);
    let rows = c
        .query(
            "SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
              JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'billing'
             WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1",
            &[],
        )
        .unwrap();
    let scenario = SCENARIO.join("\n") + APP_TABLES;
    let missing: Vec<String> = rows
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|name| !scenario.contains(&format!("billing.{name}(")))
        .collect();
    assert!(missing.is_empty(), "functions the hostile-tenant scenario never calls: {missing:?}");
    // and each has its protected copy
    let unprotected: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
              JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'billing'
             WHERE p.pronamespace = 'public'::regnamespace
               AND to_regprocedure('billing.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')') IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unprotected, 0);
}
