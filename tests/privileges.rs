//! What README's GRANTs give an application role, and what nobody gets.

mod common;

use common::*;

/// README's GRANTs for an application role, word for word (role name aside).
const APP_GRANTS: &str = "
    GRANT EXECUTE ON FUNCTION billing_power(text), billing_has_power(text, numeric),
      billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text),
      billing_deduct(text, numeric, text, text, text, text, text, text, text),
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
