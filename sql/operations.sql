-- Operations for DBAs and schedulers: billing_expire (sweeps expired grants
-- and lapsed holds), billing_revoke_subscription and billing_adjust. They are
-- PL/pgSQL over the same tables and keep the same rules as the Rust functions:
-- the account rows are locked first, every change of a balance is one ledger
-- entry, and the caches on the account row are rebuilt afterwards by the one
-- rebuild there is, billing.refresh_accounts (sql/power.sql).

-- billing_expire finds the accounts with something due through these.
CREATE INDEX accounts_next_expiry ON billing.accounts (next_expiry) WHERE next_expiry IS NOT NULL;
COMMENT ON INDEX billing.accounts_next_expiry IS 'billing_expire: accounts with a grant that may have expired';
CREATE INDEX accounts_holds_due ON billing.accounts (holds_due_at) WHERE holds_due_at IS NOT NULL;
COMMENT ON INDEX billing.accounts_holds_due IS 'billing_expire: accounts with a hold whose ttl may have passed';
-- billing_revoke_subscription finds a subscription's grants through this.
CREATE INDEX grant_store_by_subscription ON billing.grant_store (subscription_id) WHERE subscription_id IS NOT NULL;
COMMENT ON INDEX billing.grant_store_by_subscription IS 'billing_revoke_subscription: the grants of a subscription';
CREATE FUNCTION @extschema@.billing_expire(as_of timestamptz DEFAULT pg_catalog.now(), batch_size integer DEFAULT 10000)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    candidates text[];
    users text[] := '{}';
    one text;
    expired bigint := 0;
    holds_ended bigint;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF as_of > now() THEN
        RAISE EXCEPTION 'as_of must not be in the future' USING ERRCODE = '22023',
            DETAIL = 'Grants are expired only once their expire_at has passed.';
    END IF;
    IF batch_size IS NULL THEN
        RAISE EXCEPTION 'batch_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF batch_size < 1 OR batch_size > 1000000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 1000000, not %', batch_size USING ERRCODE = '22023';
    END IF;

    -- Low-balance events are kept for 7 days (billing_low_balance_events).
    DELETE FROM billing.low_balance_events AS e WHERE e.at < as_of - interval '7 days';

    -- Lock up to batch_size accounts with an expired grant or a lapsed hold, one
    -- at a time (a lock of rows of several users is one statement Citus cannot
    -- route). Rows another transaction holds (a deduct, another billing_expire)
    -- are skipped, not waited for: the next run takes them.
    SELECT array_agg(a.user_id) INTO candidates
      FROM (SELECT a.user_id FROM billing.accounts AS a
             WHERE a.next_expiry <= as_of OR a.holds_due_at <= now()
             LIMIT batch_size) AS a;
    FOREACH one IN ARRAY coalesce(candidates, '{}') LOOP
        PERFORM FROM billing.accounts AS a
         WHERE a.user_id = one AND (a.next_expiry <= as_of OR a.holds_due_at <= now())
           FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            users := users || one;
        END IF;
    END LOOP;
    IF cardinality(users) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM billing.write_back_heads(users);

    -- Lapsed holds give back what they reserved (no ledger entry: nothing was charged).
    holds_ended := billing.return_due_holds(users);

    -- One MEMBERSHIP_GIFT_EXPIRED entry per grant that expired with power left,
    -- user by user (each statement then touches one Citus shard group).
    FOREACH one IN ARRAY users LOOP
        WITH gone AS (
            SELECT g.user_id, g.id, g.remaining, g.expire_at, g.subscription_id,
                   row_number() OVER (ORDER BY g.expire_at, g.id) AS n
              FROM billing.grant_store AS g
             WHERE g.user_id = one AND g.expire_at <= as_of AND g.remaining > 0
        ), emptied AS (
            UPDATE billing.grant_store AS g
               SET remaining = 0
              FROM gone
             WHERE g.user_id = one AND g.id = gone.id
        ), logged AS (
            INSERT INTO billing.account_log
                   (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
                    remark, subscription_id, expire_at, detail)
            SELECT one, a.last_seq + gone.n, -1, gone.remaining, now_.available,
                   'MEMBERSHIP_GIFT_EXPIRED', 'MEMBERSHIP_GIFT', 'expiry', NULL, gone.subscription_id, gone.expire_at,
                   jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', gone.id, 'amount', gone.remaining)))
              FROM gone
              JOIN billing.accounts AS a ON a.user_id = one
              JOIN billing.balances AS now_ ON now_.user_id = one
            RETURNING 1
        )
        SELECT expired + count(*) INTO expired FROM logged;
    END LOOP;

    PERFORM billing.refresh_accounts(users, 0::numeric, NULL::bigint);
    -- the lapsed holds count too, so that callers loop until nothing is left to do
    RETURN expired + holds_ended;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_expire(timestamptz, integer) IS
    'Ends grants that expired (at or before as_of) with power left, one MEMBERSHIP_GIFT_EXPIRED entry each, and gives back what lapsed holds reserved; up to batch_size accounts per call. Returns how many grants and holds it ended (0: nothing left to do).';

CREATE FUNCTION @extschema@.billing_revoke_subscription(subscription_id text, remark text DEFAULT NULL)
    RETURNS SETOF billing.account_log
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    subscription text := billing_revoke_subscription.subscription_id;
    note text := billing_revoke_subscription.remark;
    owner text;
    threshold numeric;
    before numeric;
    after numeric;
BEGIN
    PERFORM billing.check_key('subscription_id', subscription);
    IF length(note) > 4000 THEN
        RAISE EXCEPTION 'remark is longer than 4000 characters' USING ERRCODE = '22023';
    END IF;
    -- A subscription belongs to one user; should several share an id, each is
    -- handled in turn, in user_id order, one account lock at a time.
    FOR owner IN
        SELECT DISTINCT g.user_id FROM billing.grant_store AS g
         WHERE g.subscription_id = subscription ORDER BY g.user_id
    LOOP
        SELECT a.low_balance_at INTO threshold FROM billing.accounts AS a WHERE a.user_id = owner FOR UPDATE;
        PERFORM billing.write_back_heads(ARRAY[owner]);
        PERFORM billing.return_due_holds(ARRAY[owner]);
        SELECT b.available INTO before FROM billing.balances AS b WHERE b.user_id = owner;
        -- The grants end now: their remaining goes in MEMBERSHIP_GIFT_DEC entries, and
        -- their expire_at becomes now, so power a hold gives back to them later expires.
        RETURN QUERY
        WITH ending AS (
            SELECT g.id, g.remaining, g.expire_at
              FROM billing.grant_store AS g
             WHERE g.user_id = owner AND g.subscription_id = subscription AND g.expire_at > now()
        ), ended AS (
            UPDATE billing.grant_store AS g
               SET remaining = 0, expire_at = now()
              FROM ending
             WHERE g.user_id = owner AND g.id = ending.id
        ), charged AS (
            SELECT e.*, row_number() OVER (ORDER BY e.expire_at, e.id) AS n
              FROM ending AS e WHERE e.remaining > 0
        ), logged AS (
            -- each entry's balance_after: the power before, less this grant and those before it
            INSERT INTO billing.account_log AS l
                   (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
                    remark, subscription_id, expire_at, detail)
            SELECT owner, a.last_seq + c.n, -1, c.remaining,
                   before - sum(c.remaining) OVER (ORDER BY c.n),
                   'MEMBERSHIP_GIFT_DEC', 'MEMBERSHIP_GIFT', 'revoke', note, subscription, c.expire_at,
                   jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', c.id, 'amount', c.remaining)))
              FROM charged AS c, billing.accounts AS a
             WHERE a.user_id = owner
            RETURNING l.*
        )
        SELECT * FROM logged ORDER BY logged.seq;
        PERFORM billing.refresh_accounts(ARRAY[owner], 0::numeric, NULL::bigint);
        SELECT b.available INTO after FROM billing.balances AS b WHERE b.user_id = owner;
        IF before >= threshold AND after < threshold THEN
            PERFORM billing.notify_low_balance(owner, threshold, after);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_revoke_subscription(text, text) IS
    'Ends every live grant of a subscription now: one MEMBERSHIP_GIFT_DEC entry per grant with power left. Returns the entries.';

CREATE FUNCTION @extschema@.billing_adjust(user_id text, delta numeric, remark text, operator text DEFAULT current_user)
    RETURNS billing.account_log
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    target text := billing_adjust.user_id;
    entry billing.account_log;
BEGIN
    PERFORM billing.check_key('user_id', target);
    PERFORM billing.check_key('operator', billing_adjust.operator);
    IF remark IS NULL THEN
        RAISE EXCEPTION 'remark must not be NULL' USING ERRCODE = '22004',
            HINT = 'Say why the balance is corrected; the remark is kept in the ledger.';
    END IF;
    IF btrim(remark) = '' THEN
        RAISE EXCEPTION 'remark must not be empty' USING ERRCODE = '22023',
            HINT = 'Say why the balance is corrected; the remark is kept in the ledger.';
    END IF;
    IF delta IS NULL THEN
        RAISE EXCEPTION 'delta must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF delta = 0 OR delta = 'NaN' THEN
        RAISE EXCEPTION 'delta must not be zero or NaN, got %', delta USING ERRCODE = '22023',
            HINT = 'A positive delta credits the user, a negative one debits.';
    END IF;
    -- the amount rule, for the size of the correction
    PERFORM billing.check_amount('delta'::text, abs(delta)::text, false);
    IF delta > 0 THEN
        -- every argument with its exact type, to the protected name (sql/privileges.sql)
        entry := billing.billing_add(target::text, delta::numeric, 'SYSTEM_MANUAL_INC'::text, 'SYSTEM'::text,
                                     'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                     NULL::timestamptz, NULL::text, NULL::text);
    ELSE
        entry := billing.deduct_uncounted(target::text, (-delta)::numeric, 'SYSTEM_MANUAL_DEC'::text, 'SYSTEM'::text,
                                        'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                        NULL::text);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) IS
    'A manual correction by staff: SYSTEM_MANUAL_INC for a positive delta, SYSTEM_MANUAL_DEC (PB001 if not there) for a negative one, with association_user_id = operator. Returns the ledger entry.';
