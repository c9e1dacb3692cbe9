//! ALTER EXTENSION billing UPDATE from every earlier release (0.1.0, 0.2.0) gives
//! the same objects as a fresh install, and keeps the balances and the ledger it had.

mod common;

use common::*;

/// Every object of the extension, described so that two databases can be compared:
/// columns in order, indexes, constraints, triggers, function definitions, comments, ACLs.
fn catalog(c: &mut Client) -> String {
    text(
        c,
        "WITH members AS (
             SELECT d.classid, d.objid FROM pg_depend d
              WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'billing'))
         SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
             SELECT pg_describe_object(m.classid, m.objid, 0) || ' comment ' || coalesce(obj_description(m.objid), '-') AS line
               FROM members m
             UNION ALL
             SELECT 'column ' || a.attrelid::regclass || ' ' || a.attnum || ' ' || a.attname || ' '
                    || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
                    || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-') || ' ' || coalesce(col_description(a.attrelid, a.attnum), '-')
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
              WHERE c.relnamespace = 'billing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT 'index ' || indexrelid::regclass || ' ' || pg_get_indexdef(indexrelid) || ' ' || coalesce(obj_description(indexrelid), '-')
               FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'billing'::regnamespace
             UNION ALL
             SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = 'billing'::regnamespace
             UNION ALL
             SELECT 'trigger ' || tgrelid::regclass || ' ' || pg_get_triggerdef(oid) || ' enabled ' || tgenabled::text
               FROM pg_trigger t WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'billing'::regnamespace)
             UNION ALL
             SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, '-')
               FROM pg_proc p WHERE p.oid IN (SELECT objid FROM members WHERE classid = 'pg_proc'::regclass)
             UNION ALL
             SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || coalesce(c.reloptions::text, '-') || ' acl ' || coalesce(c.relacl::text, '-')
               FROM pg_class c WHERE c.relnamespace = 'billing'::regnamespace
             UNION ALL
             SELECT 'dumped ' || cfg::regclass || ' ' || coalesce(cond, '-')
               FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(cfg, cond) WHERE e.extname = 'billing'
             UNION ALL
             SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regprocedure || ' enabled '
                    || evtenabled::text || ' tags ' || coalesce(evttags::text, '-')
               FROM pg_event_trigger WHERE evtname LIKE 'billing%'
             UNION ALL
             SELECT 'type code ' || code || ' ' || direction || ' ' || description || ' ' || builtin FROM billing.account_types
             UNION ALL
             SELECT 'source code ' || code || ' ' || description || ' ' || builtin FROM billing.source_types
         ) AS objects",
    )
}

/// The version this checkout builds (Cargo.toml's).
fn extension_version() -> String {
    let manifest = include_str!("../Cargo.toml");
    let line = manifest.lines().find(|l| l.starts_with("version = ")).expect("Cargo.toml has a version");
    line.trim_start_matches("version = ").trim_matches('"').to_owned()
}

/// Installs `version`, writes `rows` the way that release wrote them (the library
/// installed is this version's, which expects this version's schema, so the rows
/// are inserted directly), runs ALTER EXTENSION billing UPDATE, and checks that
/// the catalog equals a fresh install's. Returns a new session on the upgraded database.
fn upgrade_from(database: &str, version: &str, rows: &str) -> Client {
    let fresh = fresh_database(&format!("{database}_fresh"));
    let expected = catalog(&mut connect(&fresh));
    assert!(expected.lines().count() > 200, "the catalog description covers every object:\n{expected}");

    let old = fresh_database(database);
    let mut c = connect(&old);
    c.batch_execute(&format!("DROP EXTENSION billing; CREATE EXTENSION billing VERSION '{version}';")).unwrap();
    c.batch_execute(rows).unwrap();
    assert_eq!(text(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'billing'"), version);
    c.batch_execute("ALTER EXTENSION billing UPDATE").unwrap();
    // a new session, as after a deploy: the library's plans are prepared against the new schema
    let mut c = connect(&old);
    assert_eq!(
        text(&mut c, "SELECT extversion FROM pg_extension WHERE extname = 'billing'"),
        extension_version(),
    );
    let upgraded = catalog(&mut c);
    if upgraded != expected {
        let (a, b): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), upgraded.lines().collect());
        let only_fresh: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
        let only_upgraded: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
        panic!("the upgraded catalog differs.\nonly in a fresh install: {only_fresh:#?}\nonly after the upgrade: {only_upgraded:#?}");
    }
    c
}

#[test]
fn upgrading_from_the_first_release_matches_a_fresh_install() {
    // 0.1.0: 100 bought, a gift of 20, 25 spent.
    let mut c = upgrade_from(
        "upgrade_010",
        "0.1.0",
        "INSERT INTO billing.accounts (user_id, permanent, grants_total, next_expiry, last_seq)
              VALUES ('a', 95, 0, NULL, 3);
         INSERT INTO billing.grant_store (user_id, id, amount, remaining, expire_at, log_id)
              VALUES ('a', 1, 20, 0, now() + interval '30 days', 2);
         INSERT INTO billing.account_log (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source, expire_at, detail)
              VALUES (1, 'a', 1, 1, 100, 100, 'RECHARGE_INC', 'RECHARGE', 'shop', NULL, '{\"permanent\": 100}'),
                     (2, 'a', 2, 1, 20, 120, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', now() + interval '30 days', '{\"grants\": [{\"id\": 1, \"amount\": 20}]}'),
                     (3, 'a', 3, -1, 25, 95, 'CHAT_DEC', 'CHAT', 'x', NULL, '{\"permanent\": 5, \"grants\": [{\"id\": 1, \"amount\": 20}]}');
         SELECT setval('billing.account_log_id_seq', 3), setval('billing.grants_id_seq', 1);",
    );
    // the data came through, and the new functions work on it
    assert_eq!(ledger_disagreements(&mut c), 0);
    assert_eq!(power(&mut c, "a"), "95");
    let log_id: i64 = c.query_one("SELECT id FROM billing.account_log WHERE user_id = 'a' AND seq = 3", &[]).unwrap().get(0);
    c.execute("SELECT billing_refund($1, 5)", &[&log_id]).unwrap();
    let hold: i64 = c.query_one("SELECT hold_id FROM billing_hold('a', 50, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap().get(0);
    c.execute("SELECT billing_settle($1, 30)", &[&hold]).unwrap();
    assert_eq!(power(&mut c, "a"), "70");
    assert_eq!(ledger_disagreements(&mut c), 0);
    // entries made before 0.3.0 say nothing of who made them; new ones do
    assert_eq!(
        text(&mut c, "SELECT string_agg(seq || ':' || coalesce(session_role, '-') || ':' || coalesce(calling_role, '-'), ' ' ORDER BY seq) FROM billing.account_log WHERE user_id = 'a'"),
        "1:-:- 2:-:- 3:-:- 4:postgres:postgres 5:postgres:postgres"
    );
}

#[test]
fn upgrading_from_the_second_release_matches_a_fresh_install() {
    // 0.2.0: 100 bought, a gift of 20; 30 spent (20 from the gift), 4 of it refunded
    // to the permanent balance; an open hold of 10 from the permanent balance; a
    // low-balance threshold of 50.
    let mut c = upgrade_from(
        "upgrade_020",
        "0.2.0",
        "INSERT INTO billing.accounts (user_id, permanent, grants_total, next_expiry, last_seq, holds_due_at, low_balance_at)
              VALUES ('a', 84, 0, NULL, 4, now() + interval '1 hour', 50);
         INSERT INTO billing.grant_store (user_id, id, amount, remaining, expire_at, log_id)
              VALUES ('a', 1, 20, 0, now() + interval '30 days', 2);
         INSERT INTO billing.account_log (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source, expire_at, detail, refund_of, idempotency_key)
              VALUES (1, 'a', 1, 1, 100, 100, 'RECHARGE_INC', 'RECHARGE', 'shop', NULL, '{\"permanent\": 100}', NULL, NULL),
                     (2, 'a', 2, 1, 20, 120, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', now() + interval '30 days', '{\"grants\": [{\"id\": 1, \"amount\": 20}]}', NULL, NULL),
                     (3, 'a', 3, -1, 30, 90, 'CHAT_DEC', 'CHAT', 'x', NULL, '{\"permanent\": 10, \"grants\": [{\"id\": 1, \"amount\": 20}]}', NULL, 'k1'),
                     (4, 'a', 4, 1, 4, 94, 'REFUND_INC', 'CHAT', 'x', NULL, '{\"permanent\": 4}', 3, NULL);
         INSERT INTO billing.holds (user_id, hold_id, status, amount, account_type, source_type, source, expires_at, funding, reserved_after_seq)
              VALUES ('a', 1, 'held', 10, 'CHAT_DEC', 'CHAT', 'x', now() + interval '1 hour', '{\"permanent\": 10}', 4);
         SELECT setval('billing.account_log_id_seq', 4), setval('billing.grants_id_seq', 1), setval('billing.holds_id_seq', 1);",
    );
    assert_eq!(ledger_disagreements(&mut c), 0);
    assert_eq!(power(&mut c, "a"), "84");
    // a hold made before 0.3.0 (it named no scopes) and before the limit was set is not held
    // against the '*' limit, but its settle, a charge made after, counts
    c.execute("SELECT * FROM billing_set_limit('a', '*', 100)", &[]).unwrap();
    assert_eq!(text(&mut c, "SELECT held::text FROM billing_limits('a')"), "0");
    // the key replays, the hold settles, the rest of the debit refunds
    assert_eq!(
        text(&mut c, "SELECT seq::text FROM billing_deduct('a', 30, 'CHAT_DEC', 'CHAT', 'x', idempotency_key => 'k1')"),
        "3"
    );
    c.execute("SELECT billing_settle(1, 10)", &[]).unwrap();
    assert_eq!(text(&mut c, "SELECT concat_ws('/', spent, held) FROM billing_limits('a')"), "10/0");
    // a refund of a charge made before 0.3.0 gives nothing back to a limit
    c.execute("SELECT billing_refund(3)", &[]).unwrap();
    assert_eq!(text(&mut c, "SELECT concat_ws('/', spent, held) FROM billing_limits('a')"), "10/0");
    c.execute("SELECT * FROM billing_set_limit('a', '*', NULL)", &[]).unwrap();
    assert_eq!(power(&mut c, "a"), "110");
    // crossing the threshold now records an event
    c.execute("SELECT billing_deduct('a', 70, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap();
    assert_eq!(text(&mut c, "SELECT string_agg(user_id || ' ' || available, ',') FROM billing_low_balance_events()"), "a 40");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

/// Rows that 0.2.0's charging triggers charged (or held for) under derived keys are
/// still refunded (released) by their DELETE after the upgrade: the upgrade records those
/// charges as the triggers' own. A charge under a key_column key is not recorded (the
/// ledger cannot tell it from the application's), so its row's DELETE refunds nothing.
#[test]
fn rows_charged_by_the_second_releases_triggers_are_refunded_after_the_upgrade() {
    let mut c = upgrade_from(
        "upgrade_020_triggers",
        "0.2.0",
        "CREATE TABLE public.tasks (task_no text PRIMARY KEY, user_id text NOT NULL);
         CREATE TABLE public.jobs (job_no text PRIMARY KEY, user_id text NOT NULL, cost numeric);
         CREATE TABLE public.orders (order_no text PRIMARY KEY, user_id text NOT NULL, request text NOT NULL);
         INSERT INTO public.tasks VALUES ('t1', 'u');
         INSERT INTO public.jobs VALUES ('j1', 'u', NULL);
         INSERT INTO public.orders VALUES ('o1', 'u', 'req-9');
         CREATE TRIGGER charge AFTER INSERT OR DELETE ON public.tasks FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC',
             'source_type=CHAT', 'source=tasks', 'association_column=task_no');
         CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.jobs FOR EACH ROW
         EXECUTE FUNCTION billing_hold_charge('user_column=user_id', 'amount=10', 'actual_column=cost',
             'account_type=CHAT_DEC', 'source_type=CHAT', 'source=jobs', 'association_column=job_no');
         CREATE TRIGGER charge AFTER INSERT OR DELETE ON public.orders FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC',
             'source_type=CHAT', 'source=orders', 'key_column=request');
         -- what those triggers wrote in 0.2.0: 100 bought, 5 charged for t1, 5 for o1, 10 held for j1
         INSERT INTO billing.accounts (user_id, permanent, grants_total, next_expiry, last_seq, holds_due_at)
              VALUES ('u', 80, 0, NULL, 3, now() + interval '1 hour');
         INSERT INTO billing.account_log (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source, detail, association_no, idempotency_key)
              VALUES (1, 'u', 1, 1, 100, 100, 'RECHARGE_INC', 'RECHARGE', 'shop', '{\"permanent\": 100}', NULL, NULL),
                     (2, 'u', 2, -1, 5, 95, 'CHAT_DEC', 'CHAT', 'tasks', '{\"permanent\": 5}', 't1', 'trigger:public.tasks:t1'),
                     (3, 'u', 3, -1, 5, 90, 'CHAT_DEC', 'CHAT', 'orders', '{\"permanent\": 5}', NULL, 'req-9');
         INSERT INTO billing.holds (user_id, hold_id, status, amount, account_type, source_type, source, expires_at, funding, reserved_after_seq, association_no, idempotency_key)
              VALUES ('u', 1, 'held', 10, 'CHAT_DEC', 'CHAT', 'jobs', now() + interval '1 hour', '{\"permanent\": 10}', 3, 'j1', 'trigger:public.jobs:j1');
         SELECT setval('billing.account_log_id_seq', 3), setval('billing.holds_id_seq', 1);",
    );
    assert_eq!(ledger_disagreements(&mut c), 0);
    assert_eq!(
        text(&mut c, "SELECT string_agg(is_hold || ':' || id || ':' || table_name, ' ' ORDER BY is_hold, id) FROM billing.trigger_charges"),
        "false:2:public.tasks true:1:public.jobs"
    );
    assert_eq!(power(&mut c, "u"), "80");
    c.batch_execute("DELETE FROM public.tasks; DELETE FROM public.jobs; DELETE FROM public.orders").unwrap();
    assert_eq!(power(&mut c, "u"), "95", "t1's charge refunded and j1's hold released; o1's charge not refunded");
    assert_eq!(text(&mut c, "SELECT status FROM billing.holds WHERE hold_id = 1"), "released");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

/// A DBA's grants on the functions whose signatures 0.3.0 changes (billing_deduct and
/// billing_hold gained `scopes`) hold on the new signatures after the upgrade, grant
/// options included.
#[test]
fn grants_on_changed_signatures_carry_over() {
    let db = fresh_database("upgrade_grants");
    let mut c = connect(&db);
    let (app, admin) = (format!("{db}_app"), format!("{db}_admin"));
    c.batch_execute(&format!(
        "DROP EXTENSION billing; CREATE EXTENSION billing VERSION '0.2.0';
         CREATE ROLE {app}; CREATE ROLE {admin};
         GRANT EXECUTE ON FUNCTION billing_deduct(text, numeric, text, text, text, text, text, text, text) TO {app};
         GRANT EXECUTE ON FUNCTION billing_hold(text, numeric, text, text, text, text, text, text, interval, text)
               TO {app}, {admin} WITH GRANT OPTION;
         ALTER EXTENSION billing UPDATE;"
    ))
    .unwrap();
    let mut c = connect(&db);
    // the grants on the old signatures hold on the new ones, grant options included
    let granted: String = c
        .query_one(
            "SELECT string_agg(r || ' ' || f || ' ' || has_function_privilege(r, f, 'EXECUTE')
                               || ' ' || has_function_privilege(r, f, 'EXECUTE WITH GRANT OPTION'), ', ' ORDER BY r, f)
               FROM unnest(ARRAY[$1::text, $2::text]) AS r,
                    unnest(ARRAY['billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])',
                                 'billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[])']) AS f",
            &[&app, &admin],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        granted,
        format!(
            "{admin} billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) false false, \
             {admin} billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]) true true, \
             {app} billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) true false, \
             {app} billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]) true true"
        )
    );
}
