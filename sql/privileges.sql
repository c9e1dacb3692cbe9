-- Privileges and dump registration, once every object exists.
-- PUBLIC gets nothing: README shows the GRANTs an application role needs.

REVOKE ALL ON SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.reject_ledger_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.guard_type_codes() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.forget_type_codes() FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.guard_drop() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_power(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_has_power(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_add(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_deduct(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_settle(bigint, numeric, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_release(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_refund(bigint, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_verify(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.check_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_history(text, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_by_association(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_statement(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_price(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.write_back_heads(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.refresh_accounts(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.available_now(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.return_due_holds(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.notify_low_balance(text, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_set_low_balance(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_expire(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_revoke_subscription(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_column(record, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_amount(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_config(text, name, text, text, text, name, name, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_identity(jsonb, record, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_require(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_keep_identity(jsonb, text[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_refund(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_charge() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold_charge() FROM PUBLIC;

-- pg_dump keeps balances, grants, the ledger, the sequences, any type a DBA
-- added and the pricing rules.
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
