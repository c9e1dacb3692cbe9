-- The SQL signatures of the functions implemented in Rust (src/power.rs,
-- src/accounts.rs, src/holds.rs, src/refunds.rs, src/options.rs). None
-- is executable by PUBLIC (see privileges.sql). The writes lock the user's
-- account row first and run as the extension owner with a pinned search_path.
-- The two reads run no SQL and resolve no names (they read the account row
-- through its primary key), so they run as the caller: EXECUTE on them is the
-- permission to read balances.

CREATE FUNCTION @extschema@.billing_power(user_id text)
    RETURNS numeric
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_power';
COMMENT ON FUNCTION @extschema@.billing_power(text) IS
    'Available power of a user: permanent balance plus unexpired grants (0 for an unknown user)';

CREATE FUNCTION @extschema@.billing_has_power(user_id text, amount numeric)
    RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_has_power';
COMMENT ON FUNCTION @extschema@.billing_has_power(text, numeric) IS
    'True when the user could spend amount now';

CREATE FUNCTION @extschema@.billing_add(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, expire_at timestamptz DEFAULT NULL,
        subscription_id text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_add';
COMMENT ON FUNCTION @extschema@.billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text) IS
    'Credits power: to the permanent balance, or as a grant when expire_at is given. Returns the ledger entry.';

CREATE FUNCTION @extschema@.billing_deduct(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, idempotency_key text DEFAULT NULL,
        scopes text[] DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_deduct';
COMMENT ON FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) IS
    'Spends power, soonest-expiring grants first, then the permanent balance; PB001 if there is not enough, PB008 if it would take a spending limit of its scopes (or ''*'') above its cap. Returns the ledger entry.';

-- billing_adjust's debit: a correction, which counts against no spending limit.
CREATE FUNCTION billing.deduct_uncounted(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text, association_no text, association_user_id text, idempotency_key text)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'billing_deduct_uncounted';
COMMENT ON FUNCTION billing.deduct_uncounted(text, numeric, text, text, text, text, text, text, text) IS
    'Internal: billing_deduct for billing_adjust, a correction that counts against no spending limit (its entry has no scopes)';

CREATE FUNCTION @extschema@.billing_hold(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, ttl interval DEFAULT '15 minutes',
        idempotency_key text DEFAULT NULL, scopes text[] DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_hold';
COMMENT ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]) IS
    'Reserves power for work of unknown cost until billing_settle, billing_release or ttl; PB001 if there is not enough, PB008 if it would take a spending limit of its scopes (or ''*'') above its cap. Writes no ledger entry. Returns the hold.';

CREATE FUNCTION @extschema@.billing_settle(
        hold_id bigint, actual_amount numeric, remark text DEFAULT NULL,
        allow_debt boolean DEFAULT false)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_settle';
COMMENT ON FUNCTION @extschema@.billing_settle(bigint, numeric, text, boolean) IS
    'Charges the actual cost of a hold in one ledger entry and gives back the rest; more than held takes the difference from available power (PB001, or a debt with allow_debt). The actual cost counts against the spending limits of the hold''s scopes (PB008 above a cap). 0 releases. Returns the ledger entry (NULL for 0).';

CREATE FUNCTION @extschema@.billing_release(hold_id bigint, reason text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_release';
COMMENT ON FUNCTION @extschema@.billing_release(bigint, text) IS
    'Gives a hold''s reserved power back to where it came from, charging nothing. Returns the hold.';

CREATE FUNCTION @extschema@.billing_refund(
        log_id bigint, amount numeric DEFAULT NULL, remark text DEFAULT NULL,
        idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_refund';
COMMENT ON FUNCTION @extschema@.billing_refund(bigint, numeric, text, text) IS
    'Gives back all (amount NULL) or part of an earlier debit to the grants and permanent balance it came from, in one REFUND_INC entry; never more than it took (PB005). Returns the ledger entry.';

-- The user-keyed forms of settle, release and refund: the same functions with
-- the user first. Citus sends a call to the node that holds the user only when
-- the user is an argument, and a charging trigger on a shard may only work on
-- its own node, so on Citus these are the fast forms (docs/citus.md). Their own
-- names, not overloads of billing_settle and the others: an untyped call such
-- as billing_settle($1, $2, $3) would otherwise resolve to the form with a text
-- first argument.
CREATE FUNCTION @extschema@.billing_user_settle(
        user_id text, hold_id bigint, actual_amount numeric, remark text DEFAULT NULL,
        allow_debt boolean DEFAULT false)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_user_settle';
COMMENT ON FUNCTION @extschema@.billing_user_settle(text, bigint, numeric, text, boolean) IS
    'billing_settle of a hold of user_id (22023 if the hold is not the user''s): on Citus it runs on the node that holds the user. Returns the ledger entry (NULL for 0).';

CREATE FUNCTION @extschema@.billing_user_release(user_id text, hold_id bigint, reason text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_user_release';
COMMENT ON FUNCTION @extschema@.billing_user_release(text, bigint, text) IS
    'billing_release of a hold of user_id (22023 if the hold is not the user''s): on Citus it runs on the node that holds the user. Returns the hold.';

CREATE FUNCTION @extschema@.billing_user_refund(
        user_id text, log_id bigint, amount numeric DEFAULT NULL, remark text DEFAULT NULL,
        idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_user_refund';
COMMENT ON FUNCTION @extschema@.billing_user_refund(text, bigint, numeric, text, text) IS
    'billing_refund of an entry of user_id (22023 if the entry is not the user''s): on Citus it runs on the node that holds the user. Returns the ledger entry.';

CREATE FUNCTION @extschema@.billing_add(options jsonb)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_add_options';
COMMENT ON FUNCTION @extschema@.billing_add(jsonb) IS
    'billing_add with the options object services pass: {"userId", "amount", "accountType", "source": {"type", "source"}, "remark", "associationNo", "associationUserId", "expireAt", "subscriptionId", "idempotencyKey"}. Returns the ledger entry.';

CREATE FUNCTION @extschema@.billing_deduct(options jsonb)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_deduct_options';
COMMENT ON FUNCTION @extschema@.billing_deduct(jsonb) IS
    'billing_deduct with the options object services pass: {"userId", "amount", "accountType", "source": {"type", "source"}, "remark", "associationNo", "associationUserId", "idempotencyKey", "scopes"}. Returns the ledger entry.';
