-- Privileges and dump registration, once every object exists.
-- PUBLIC gets nothing: docs/security.md shows the GRANTs an application role needs.

-- The protected names. Every function the extension documents is created in
-- the extension's schema (@extschema@, normally public), where the documented
-- names are callable from the default search_path. A schema that other roles
-- can CREATE in can hold look-alikes (a planted overload with a text-typed or an
-- extra defaulted parameter), so each function also gets an exact copy in
-- schema billing, where nobody else may create objects: billing.billing_deduct
-- and so on. The copy is made from the catalog's own definition (same C symbol
-- or body, arguments, defaults, SECURITY DEFINER and search_path, comment), so
-- the two never differ. Everything the extension runs calls the billing.
-- copies, with exact argument types. PUBLIC may execute neither.
CREATE FUNCTION billing.copy_protected_names()
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $copy$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS arguments
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_depend AS d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
          JOIN pg_catalog.pg_extension AS e
            ON e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.extname OPERATOR(pg_catalog.=) 'billing'
         WHERE p.pronamespace OPERATOR(pg_catalog.=) e.extnamespace
           AND e.extnamespace OPERATOR(pg_catalog.<>) 'billing'::pg_catalog.regnamespace
         ORDER BY p.proname, p.oid
    LOOP
        EXECUTE pg_catalog.regexp_replace(pg_catalog.pg_get_functiondef(f.oid),
                                          '^CREATE OR REPLACE FUNCTION [^(]*\.', 'CREATE OR REPLACE FUNCTION billing.');
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION billing.%I(%s) IS %L', f.proname, f.arguments,
                                  pg_catalog.obj_description(f.oid, 'pg_proc'));
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION billing.%I(%s) FROM PUBLIC', f.proname, f.arguments);
    END LOOP;
END
$copy$;
COMMENT ON FUNCTION billing.copy_protected_names() IS
    'Internal: (re)creates in schema billing an exact copy of every function the extension has in its own schema (the protected names), with its comment; PUBLIC may execute none. Run by the install and upgrade scripts.';
REVOKE ALL ON FUNCTION billing.copy_protected_names() FROM PUBLIC;
SELECT billing.copy_protected_names();

REVOKE ALL ON SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.reject_ledger_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.calling_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.guard_type_codes() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.forget_type_codes() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.guard_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_power(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_has_power(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.deduct_uncounted(text, numeric, text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_add(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_deduct(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_settle(bigint, numeric, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_release(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_refund(bigint, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_user_settle(text, bigint, numeric, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_user_release(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_user_refund(text, bigint, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_verify(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.check_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.check_amount(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_history(text, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_by_association(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_statement(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_price(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.write_back_heads(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.refresh_accounts(text[], numeric, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.return_due_holds(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.notify_low_balance(text, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_low_balance_events(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_set_low_balance(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_set_debt_limit(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_set_limit(text, text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_limits(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.limit_period(text, interval, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.count_limits(text, text[], numeric, numeric, timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.limits_now(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_expire(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_revoke_subscription(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_column(record, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_config(text, name, text, text, text, name, name, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_identity(jsonb, record, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_require(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_keep_identity(jsonb, text[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_session_column(record, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_scopes(record, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.written_in_this_transaction(xid) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.documented_arguments(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.may_execute(oid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_privilege(oid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_made(text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_find(jsonb, record, name, name, text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_record(text, boolean, bigint, boolean, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_refund(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.table_as_seen(oid, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_charge() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold_charge() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.metric_counters() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_metrics() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_metrics_reset() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.claim_id_range(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_distribute(boolean) FROM PUBLIC;

-- pg_dump keeps balances, grants, the ledger, the sequences, any type a DBA
-- added, the pricing rules, which charges the charging triggers made, and the
-- spending limits with their counters.
SELECT pg_catalog.pg_extension_config_dump('billing.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('billing.grant_store', '');
SELECT pg_catalog.pg_extension_config_dump('billing.account_log', '');
SELECT pg_catalog.pg_extension_config_dump('billing.holds', '');
SELECT pg_catalog.pg_extension_config_dump('billing.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('billing.grants_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('billing.account_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('billing.account_types', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('billing.source_types', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('billing.pricing_rules', '');
SELECT pg_catalog.pg_extension_config_dump('billing.low_balance_events', '');
SELECT pg_catalog.pg_extension_config_dump('billing.low_balance_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('billing.trigger_charges', '');
SELECT pg_catalog.pg_extension_config_dump('billing.limits', '');
