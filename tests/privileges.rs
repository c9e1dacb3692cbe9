//! What README's GRANTs give an application role, and what nobody gets.

mod common;

use common::*;

/// README's GRANTs for an application role, word for word (role name aside).
const APP_GRANTS: &str = "
    GRANT EXECUTE ON FUNCTION billing_power(text), billing_has_power(text, numeric),
      billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text),
      billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]),
      billing_history(text, integer, bigint), billing_by_association(text, text),
      billing_price(text, bigint) TO app;
    GRANT USAGE ON SCHEMA billing TO app;
    GRANT SELECT ON billing.account_log, billing.accounts, billing.grants TO app;";

/// Roles are cluster-wide: each test gets its own (app, stranger) pair, named after its database.
fn setup_roles(db: &str) -> (String, String) {
    let (app, stranger) = (format!("{db}_app"), format!("{db}_stranger"));
    let mut admin = connect(db);
    admin.batch_execute(&format!("CREATE ROLE {app} LOGIN; CREATE ROLE {stranger} LOGIN")).unwrap();
    admin.batch_execute(&APP_GRANTS.replace(" TO app;", &format!(" TO {app};"))).unwrap();
    (app, stranger)
}

#[test]
fn an_application_role_calls_and_reads_but_cannot_write_tables() {
    let db = fresh_database("app_role");
    let (app_role, _) = setup_roles(&db);
    let mut app = connect_as(&db, &app_role);
    app.batch_execute("SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    let row = app.query_one("SELECT seq, balance_after::text FROM billing_deduct('u', 3, 'CHAT_DEC', 'CHAT', 'x')", &[]).unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (2, "7".to_string()));
    assert_eq!(power(&mut app, "u"), "7");
    assert_eq!(text(&mut app, "SELECT count(*)::text FROM billing.account_log"), "2");
    for statement in [
        "UPDATE billing.accounts SET permanent = 1000000",
        "INSERT INTO billing.accounts (user_id, permanent) VALUES ('v', 5)",
        "DELETE FROM billing.grant_store",
        "UPDATE billing.grant_store SET remaining = amount",
        "INSERT INTO billing.account_log (user_id, seq, direction, amount, balance_after, account_type, source_type, source, detail) VALUES ('u', 3, 1, 1, 8, 'RECHARGE_INC', 'RECHARGE', 'x', '{}')",
        "UPDATE billing.account_log SET amount = 1",
        "DELETE FROM billing.account_log",
        "TRUNCATE billing.account_log",
        "INSERT INTO billing.account_types (code, direction) VALUES ('FREE_INC', 1)",
    ] {
        assert_eq!(sqlstate(app.batch_execute(statement)), "42501", "{statement}");
    }
    assert_eq!(power(&mut app, "u"), "7");
}

#[test]
fn an_application_role_reads_history_and_prices_but_not_statements_or_rules() {
    let db = fresh_database("app_reports");
    let (app_role, _) = setup_roles(&db);
    connect(&db)
        .batch_execute(
            "INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('gpt', 1000, 3);
             SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
             SELECT billing_deduct('u', 3, 'CHAT_DEC', 'CHAT', 'x', association_no => 'task-1');",
        )
        .unwrap();
    let mut app = connect_as(&db, &app_role);
    assert_eq!(text(&mut app, "SELECT string_agg(seq::text, ',') FROM billing_history('u')"), "2,1");
    assert_eq!(text(&mut app, "SELECT string_agg(seq::text, ',') FROM billing_by_association('u', 'task-1')"), "2");
    assert_eq!(text(&mut app, "SELECT billing_price('gpt', 12000)::text"), "36");
    for statement in [
        "SELECT * FROM billing_statement('u', '-infinity', 'infinity')",
        "SELECT * FROM billing_verify()",
        "UPDATE billing.pricing_rules SET power = 0",
        "INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('free', 1, 0)",
        "SELECT billing.check_key('user_id', 'u')",
    ] {
        assert_eq!(sqlstate(app.batch_execute(statement)), "42501", "{statement}");
    }
}

#[test]
fn a_role_without_grants_can_do_nothing() {
    let db = fresh_database("stranger");
    let (_, stranger_role) = setup_roles(&db);
    let mut stranger = connect_as(&db, &stranger_role);
    for statement in [
        "SELECT billing_power('u')",
        "SELECT billing_has_power('u', 1)",
        "SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop')",
        "SELECT billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 'x')",
        "SELECT * FROM billing_history('u')",
        "SELECT * FROM billing_by_association('u', 'task-1')",
        "SELECT * FROM billing_statement('u', '-infinity', 'infinity')",
        "SELECT billing_price('gpt', 1)",
        "SELECT billing_set_debt_limit('u', 1)",
        "SELECT * FROM billing_set_limit('u', 'key:a', 1)",
        "SELECT * FROM billing_limits('u')",
        "SELECT * FROM billing_user_settle('u', 1, 1)",
        "SELECT * FROM billing_user_release('u', 1)",
        "SELECT * FROM billing_user_refund('u', 1)",
        "SELECT * FROM billing_distribute()",
        "SELECT * FROM billing.limits",
        "SELECT * FROM billing.pricing_rules",
        "SELECT * FROM billing.account_log",
        "SELECT * FROM billing.accounts",
    ] {
        assert_eq!(sqlstate(stranger.batch_execute(statement)), "42501", "{statement}");
    }
}

#[test]
fn look_alike_objects_in_public_do_not_change_what_the_functions_do() {
    let db = fresh_database("search_path");
    let (app_role, _) = setup_roles(&db);
    connect(&db).batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {app_role}")).unwrap();
    let mut app = connect_as(&db, &app_role);
    app.batch_execute(
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
         CREATE FUNCTION public.nextval(regclass) RETURNS bigint LANGUAGE sql AS $$ SELECT 1::bigint $$;
         CREATE FUNCTION public.text_eq_any(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
         CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.text_eq_any);
         CREATE TABLE public.accounts (user_id text, permanent numeric);
         SET search_path = public, pg_catalog;",
    )
    .unwrap();
    app.batch_execute(
        "SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('other', 99, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => pg_catalog.now() + interval '1 day');
         SELECT billing_deduct('u', 12, 'CHAT_DEC', 'CHAT', 'x');",
    )
    .unwrap();
    // the reports compare with pg_catalog's =, not the look-alike that matches everything
    assert_eq!(text(&mut app, "SELECT string_agg(user_id || ':' || seq, ',') FROM billing_history('u')"), "u:3,u:2,u:1");
    assert_eq!(text(&mut app, "SELECT count(*)::text FROM billing_by_association('u', 'nothing')"), "0");
    let mut admin = connect(&db);
    assert_eq!(power(&mut admin, "u"), "3");
    assert_eq!(power(&mut admin, "other"), "99");
    assert_eq!(text(&mut admin, "SELECT count(DISTINCT id)::text FROM billing.account_log"), "4");
    assert_eq!(ledger_disagreements(&mut admin), 0);
}

/// The DETAIL of a failed statement ("" if none, or if it worked).
fn detail(result: Result<impl Sized, postgres::Error>) -> String {
    match result {
        Ok(_) => String::new(),
        Err(e) => e.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_string(),
    }
}

/// A role that owns tables in public and may create charging triggers on them, and user
/// `victim` with 1000 power, 7 of it spent by the application under the key 'order-1'.
fn trigger_owner(db: &str, extra_grants: &str) -> (String, Client) {
    let owner = format!("{db}_owner");
    let mut admin = connect(db);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN;
             GRANT CREATE ON SCHEMA public TO {owner};
             GRANT EXECUTE ON FUNCTION billing_charge(), billing_hold_charge() TO {owner};
             {extra_grants}
             SELECT billing_add('victim', 1000, 'RECHARGE_INC', 'RECHARGE', 'shop');
             SELECT billing_deduct('victim', 7, 'CHAT_DEC', 'CHAT', 'app', idempotency_key => 'order-1');
             SELECT billing_hold('victim', 50, 'CHAT_DEC', 'CHAT', 'app', idempotency_key => 'job-1');"
        ))
        .unwrap();
    let mut c = connect_as(db, &owner);
    c.batch_execute(
        "CREATE TABLE public.work (k text PRIMARY KEY, user_id text, cost numeric, actual numeric,
                                   status text NOT NULL DEFAULT 'running');
         CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.work FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC',
             'source_type=CHAT', 'source=work', 'key_column=k', 'status_column=status', 'failed_status=failed');
         CREATE TABLE public.metered (LIKE public.work INCLUDING DEFAULTS);
         CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.metered FOR EACH ROW
         EXECUTE FUNCTION billing_hold_charge('user_column=user_id', 'amount_column=cost', 'actual_column=actual',
             'account_type=CHAT_DEC', 'source_type=CHAT', 'source=metered', 'key_column=k', 'allow_debt=true',
             'status_column=status', 'failed_status=failed');",
    )
    .unwrap();
    (owner, c)
}

/// What the victim has and how much the ledger and holds hold, to compare before and after.
fn books(db: &str) -> String {
    text(
        &mut connect(db),
        "SELECT billing_power('victim')::text || ' ' || (SELECT count(*) FROM billing.account_log)
                || ' ' || (SELECT string_agg(status, ',' ORDER BY hold_id) FROM billing.holds)",
    )
}

/// Issue 11, item 3: with EXECUTE on billing_charge() and billing_hold_charge() only, a table
/// owner can neither (a) read a balance, (b) learn another charge, (c) refund the
/// application's charge, nor (d) push a user into debt: every charging firing is refused.
#[test]
fn a_table_owner_with_only_the_trigger_functions_can_do_nothing_with_them() {
    let db = fresh_database("trigger_only_owner");
    let (_, mut owner) = trigger_owner(&db, "");
    let before = books(&db);
    for statement in [
        // (a) and (b): a PB001 or PB003 would have shown the victim's balance or the other charge
        "INSERT INTO public.work (k, user_id, cost) VALUES ('big', 'victim', 1000000)",
        "INSERT INTO public.work (k, user_id, cost) VALUES ('order-1', 'victim', 1)",
        // (c): replaying the application's charge, to refund it on DELETE
        "INSERT INTO public.work (k, user_id, cost) VALUES ('order-1', 'victim', 7)",
        // (d): a tiny hold settled for 10^12 with allow_debt
        "INSERT INTO public.metered (k, user_id, cost) VALUES ('d', 'victim', 0.00000001)",
        "INSERT INTO public.metered (k, user_id, cost, actual) VALUES ('d', 'victim', 0.00000001, 1000000000000)",
        // and the application's hold cannot be released or settled through a replay either
        "INSERT INTO public.metered (k, user_id, cost, actual) VALUES ('job-1', 'victim', 50, 1000)",
    ] {
        let result = owner.batch_execute(statement);
        let (state, shown) = match &result {
            Ok(_) => ("00000".to_string(), String::new()),
            Err(e) => (
                e.code().map(|c| c.code().to_string()).unwrap_or_default(),
                e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()),
            ),
        };
        assert_eq!(state, "42501", "{statement}: {shown}");
        assert!(shown.contains("permission denied for function billing_"), "{statement}: {shown}");
        assert!(!detail(result).contains("943"), "{statement}");
    }
    assert_eq!(books(&db), before, "nothing was charged, held, settled or refunded");
    assert_eq!(ledger_disagreements(&mut connect(&db)), 0);
}

/// README: EXECUTE on billing_deduct and billing_refund lets a table owner's billing_charge
/// trigger charge and refund its rows, and gives nothing else: no balance or other charge
/// in a DETAIL, no refund of the application's charge, no hold.
#[test]
fn a_table_owner_granted_deduct_and_refund_charges_and_refunds_its_own_rows_only() {
    let db = fresh_database("trigger_charging_owner");
    let (owner_role, mut owner) = trigger_owner(&db, "");
    connect(&db)
        .batch_execute(&format!(
            "GRANT EXECUTE ON FUNCTION billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]),
                                       billing_refund(bigint, numeric, text, text) TO {owner_role}"
        ))
        .unwrap();
    owner.batch_execute("INSERT INTO public.work (k, user_id, cost) VALUES ('w1', 'victim', 10), ('w2', 'victim', 5)").unwrap();
    // 1000, less the application's charge of 7 and hold of 50, less 15
    assert_eq!(power(&mut connect(&db), "victim"), "928");
    owner.batch_execute("DELETE FROM public.work WHERE k = 'w1'; UPDATE public.work SET status = 'failed' WHERE k = 'w2'").unwrap();
    assert_eq!(power(&mut connect(&db), "victim"), "943");
    // (a) and (b): the DETAIL keeps the balance and the other charge to itself
    let result = owner.batch_execute("INSERT INTO public.work (k, user_id, cost) VALUES ('big', 'victim', 1000000)");
    assert_eq!(detail(result), "Requested 1000000; the available power is shown to roles that may execute billing_power.");
    let result = owner.batch_execute("INSERT INTO public.work (k, user_id, cost) VALUES ('order-1', 'victim', 1)");
    let shown = detail(result);
    assert!(shown.starts_with("This call asks for a debit of 1 as CHAT_DEC;") && !shown.contains('7'), "{shown}");
    // (c): the application's charge is replayed, and not refunded when the row goes
    let before = books(&db);
    owner
        .batch_execute(
            "INSERT INTO public.work (k, user_id, cost) VALUES ('order-1', 'victim', 7);
             UPDATE public.work SET status = 'failed' WHERE k = 'order-1';
             DELETE FROM public.work WHERE k = 'order-1';",
        )
        .unwrap();
    assert_eq!(books(&db), before);
    // (d): holds need billing_hold
    assert_eq!(
        sqlstate(owner.batch_execute("INSERT INTO public.metered (k, user_id, cost) VALUES ('d', 'victim', 0.00000001)")),
        "42501"
    );
    assert_eq!(books(&db), before);
    assert_eq!(ledger_disagreements(&mut connect(&db)), 0);
}

/// When the account row's cached total is stale (a grant expired and a hold lapsed,
/// and no write has swept them yet), billing_power reads billing.balances as the
/// extension's owner: EXECUTE on billing_power is still all a reader needs, and the
/// reader is itself again afterwards.
#[test]
fn billing_power_alone_reads_a_balance_no_write_has_swept() {
    let db = fresh_database("power_only");
    let reader = format!("{db}_reader");
    connect(&db)
        .batch_execute(&format!(
            "CREATE ROLE {reader} LOGIN;
             GRANT EXECUTE ON FUNCTION billing_power(text), billing_has_power(text, numeric) TO {reader};
             SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
             SELECT billing_add('u', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'gift',
                                expire_at => clock_timestamp() + interval '1 second');
             SELECT billing_hold('u', 8, 'CHAT_DEC', 'CHAT', 'x', ttl => interval '1 second');"
        ))
        .unwrap();
    let mut client = connect_as(&db, &reader);
    // the hold took all 5 of the gift and 3 of the permanent balance
    assert_eq!(power(&mut client, "u"), "7");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // the gift has expired and the hold lapsed: its 3 permanent are back, its 5 expired with the gift
    assert_eq!(
        text(&mut client, "SELECT billing_power('u')::text || ' ' || billing_has_power('u', 10) || ' ' || billing_has_power('u', 11) || ' ' || current_user"),
        format!("10 true false {reader}")
    );
    assert_eq!(sqlstate(client.batch_execute("SELECT * FROM billing.balances")), "42501");
}

/// billing_set_limit lets a role set, change and remove any user's limits; billing_limits
/// lets it read them and the counters in a PB008's DETAIL. Neither gives the other, and
/// the application role of the GRANTs above charges with scopes without either.
#[test]
fn set_limit_sets_limits_and_billing_limits_reads_them() {
    let db = fresh_database("limit_grants");
    let (app_role, _) = setup_roles(&db);
    let (setter, reader) = (format!("{db}_setter"), format!("{db}_reader"));
    let mut admin = connect(&db);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {setter} LOGIN; CREATE ROLE {reader} LOGIN;
             GRANT EXECUTE ON FUNCTION billing_set_limit(text, text, numeric, text, text) TO {setter};
             GRANT EXECUTE ON FUNCTION billing_limits(text) TO {reader};
             SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');"
        ))
        .unwrap();
    let mut setter = connect_as(&db, &setter);
    let mut reader = connect_as(&db, &reader);
    let mut app = connect_as(&db, &app_role);
    assert_eq!(text(&mut setter, "SELECT remaining::text FROM billing_set_limit('u', 'key:a', 5, 'day')"), "5");
    assert_eq!(sqlstate(setter.batch_execute("SELECT * FROM billing_limits('u')")), "42501");
    assert_eq!(sqlstate(reader.batch_execute("SELECT * FROM billing_set_limit('u', 'key:a', 50)")), "42501");
    assert_eq!(sqlstate(app.batch_execute("SELECT * FROM billing_set_limit('u', 'key:a', 50)")), "42501");
    assert_eq!(sqlstate(app.batch_execute("SELECT * FROM billing_limits('u')")), "42501");
    // the application charges with scopes; the cap stops it, and it learns only what it asked for
    app.batch_execute("SELECT billing_deduct('u', 4, 'CHAT_DEC', 'CHAT', 'x', scopes => ARRAY['key:a'])").unwrap();
    let refused = app.batch_execute("SELECT billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'x', scopes => ARRAY['key:a'])");
    assert_eq!(detail(refused), "requested=2");
    assert_eq!(text(&mut reader, "SELECT concat_ws('/', spent, held, remaining) FROM billing_limits('u')"), "4/0/1");
    // a role that may read limits sees the counters in the DETAIL
    admin.batch_execute(&format!("GRANT EXECUTE ON FUNCTION billing_limits(text) TO {app_role}")).unwrap();
    let refused = app.batch_execute("SELECT billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'x', scopes => ARRAY['key:a'])");
    assert!(detail(refused).starts_with("cap=5 spent=4 held=0 requested=2 period_end="));
    // removing the limit is setting it to NULL
    assert_eq!(text(&mut setter, "SELECT count(*)::text FROM billing_set_limit('u', 'key:a', NULL)"), "0");
    app.batch_execute("SELECT billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'x', scopes => ARRAY['key:a'])").unwrap();
    assert_eq!(ledger_disagreements(&mut admin), 0);
}

/// security.md: EXECUTE on billing_user_settle, billing_user_release and
/// billing_user_refund allows what billing_settle, billing_release and
/// billing_refund allow (any user's holds and entries), each on its own; the
/// application's GRANTs do not include them.
#[test]
fn the_user_keyed_forms_each_need_their_own_grant() {
    let db = fresh_database("user_forms");
    let (app_role, _) = setup_roles(&db);
    let mut admin = connect(&db);
    admin
        .batch_execute(
            "SELECT billing_add('u', 50, 'RECHARGE_INC', 'RECHARGE', 'shop');
             SELECT billing_hold('u', 10, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h1');
             SELECT billing_hold('u', 5, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h2');",
        )
        .unwrap();
    admin.batch_execute(&format!("GRANT SELECT ON billing.holds TO {app_role}")).unwrap();
    let hold = |key: &str| format!("(SELECT hold_id FROM billing.holds WHERE idempotency_key = '{key}')");
    let mut app = connect_as(&db, &app_role);
    let settle = format!("SELECT id FROM billing_user_settle('u', {}, 4)", hold("h1"));
    let release = format!("SELECT hold_id FROM billing_user_release('u', {})", hold("h2"));
    let refund = "SELECT id FROM billing_user_refund('u', (SELECT max(id) FROM billing.account_log), 1)";
    for statement in [&settle, &release, refund] {
        assert_eq!(sqlstate(app.batch_execute(statement)), "42501", "{statement}");
    }
    admin.batch_execute(&format!("GRANT EXECUTE ON FUNCTION billing_user_settle(text, bigint, numeric, text, boolean) TO {app_role}")).unwrap();
    assert_eq!(sqlstate(app.batch_execute(&settle)), "00000");
    for statement in [&release, refund] {
        assert_eq!(sqlstate(app.batch_execute(statement)), "42501", "{statement}");
    }
    admin.batch_execute(&format!("GRANT EXECUTE ON FUNCTION billing_user_release(text, bigint, text), billing_user_refund(text, bigint, numeric, text, text) TO {app_role}")).unwrap();
    assert_eq!(sqlstate(app.batch_execute(&release)), "00000");
    assert_eq!(sqlstate(app.batch_execute(refund)), "00000");
    // the hold settled for 4, the other released, 1 of the 4 refunded
    assert_eq!(power(&mut app, "u"), "47");
    assert_eq!(ledger_disagreements(&mut admin), 0);
}

/// security.md: EXECUTE on billing_distribute lets a role distribute the
/// extension's tables on Citus (it runs as the extension's owner); nobody has it
/// unless granted, and without Citus it raises PB009 and changes nothing.
#[test]
fn billing_distribute_is_granted_to_nobody_and_needs_citus() {
    let db = fresh_database("distribute");
    let (app_role, _) = setup_roles(&db);
    let mut app = connect_as(&db, &app_role);
    assert_eq!(sqlstate(app.batch_execute("SELECT * FROM billing_distribute()")), "42501");
    let mut admin = connect(&db);
    admin.batch_execute("SELECT billing_add('u', 5, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    assert_eq!(sqlstate(admin.batch_execute("SELECT * FROM billing_distribute()")), "PB009");
    assert_eq!(text(&mut admin, "SELECT nextval('billing.account_log_id_seq')::text"), "2", "the id sequences did not move");
}
