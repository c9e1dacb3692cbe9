-- TEMPORARY (branch wip-triggers only): the billing.* copies that main is adding;
-- this file is removed when main is merged.

CREATE FUNCTION billing.billing_deduct(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_deduct';


CREATE FUNCTION billing.billing_hold(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, ttl interval DEFAULT '15 minutes',
        idempotency_key text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_hold';


CREATE FUNCTION billing.billing_settle(
        hold_id bigint, actual_amount numeric, remark text DEFAULT NULL,
        allow_debt boolean DEFAULT false)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_settle';


CREATE FUNCTION billing.billing_release(hold_id bigint, reason text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_release';


CREATE FUNCTION billing.billing_refund(
        log_id bigint, amount numeric DEFAULT NULL, remark text DEFAULT NULL,
        idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_refund';

COMMENT ON FUNCTION billing.billing_deduct(text, numeric, text, text, text, text, text, text, text) IS 'copy';
COMMENT ON FUNCTION billing.billing_hold(text, numeric, text, text, text, text, text, text, interval, text) IS 'copy';
COMMENT ON FUNCTION billing.billing_settle(bigint, numeric, text, boolean) IS 'copy';
COMMENT ON FUNCTION billing.billing_release(bigint, text) IS 'copy';
COMMENT ON FUNCTION billing.billing_refund(bigint, numeric, text, text) IS 'copy';
REVOKE ALL ON FUNCTION billing.billing_deduct(text, numeric, text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.billing_hold(text, numeric, text, text, text, text, text, text, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.billing_settle(bigint, numeric, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.billing_release(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.billing_refund(bigint, numeric, text, text) FROM PUBLIC;
