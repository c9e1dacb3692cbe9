-- The SQL functions, implemented in Rust (src/power.rs, src/accounts.rs). None
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
        association_user_id text DEFAULT NULL, idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_deduct';
COMMENT ON FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text) IS
    'Spends power, soonest-expiring grants first, then the permanent balance; PB001 if there is not enough. Returns the ledger entry.';
