-- Operations for DBAs and schedulers: billing_expire (sweeps expired grants
-- and lapsed holds), billing_revoke_subscription, billing_adjust, and the
-- billing.balances view. They are PL/pgSQL over the same tables and keep the
-- same rules as the Rust functions: the account rows are locked first, every
-- change of a balance is one ledger entry, and the caches on the account row
-- are rebuilt from grant_store afterwards (billing.refresh_accounts).

-- billing_expire finds the accounts with something due through these.
CREATE INDEX accounts_next_expiry ON billing.accounts (next_expiry) WHERE next_expiry IS NOT NULL;
COMMENT ON INDEX billing.accounts_next_expiry IS 'billing_expire: accounts with a grant that may have expired';
CREATE INDEX accounts_holds_due ON billing.accounts (holds_due_at) WHERE holds_due_at IS NOT NULL;
COMMENT ON INDEX billing.accounts_holds_due IS 'billing_expire: accounts with a hold whose ttl may have passed';
-- billing_revoke_subscription finds a subscription's grants through this.
CREATE INDEX grant_store_by_subscription ON billing.grant_store (subscription_id) WHERE subscription_id IS NOT NULL;
COMMENT ON INDEX billing.grant_store_by_subscription IS 'billing_revoke_subscription: the grants of a subscription';

-- Called with the accounts of users locked: writes each head grant's live
-- remaining back to grant_store, so that grant_store is exact.
CREATE FUNCTION billing.write_back_heads(users text[])
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE billing.grant_store AS g
       SET remaining = a.head_remaining
      FROM billing.accounts AS a
     WHERE a.user_id = ANY (users) AND g.user_id = a.user_id AND g.id = a.head_grant_id;
$$;
COMMENT ON FUNCTION billing.write_back_heads(text[]) IS
    'Internal: with the accounts locked, copies each head grant''s live remaining back to grant_store';

-- Called with the accounts of users locked, after grant_store and holds have
-- changed: rebuilds last_seq, grants_total, next_expiry, the head grant and
-- holds_due_at of each account from the ledger, grant_store and the open holds.
CREATE FUNCTION billing.refresh_accounts(users text[])
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE billing.accounts AS a
       SET last_seq = coalesce((SELECT max(l.seq) FROM billing.account_log AS l WHERE l.user_id = a.user_id), 0),
           grants_total = s.total, next_expiry = s.next_expiry,
           head_grant_id = s.head[1], head_remaining = s.head_remaining[1],
           holds_due_at = (SELECT min(h.expires_at) FROM billing.holds AS h
                            WHERE h.user_id = a.user_id AND h.status = 'held'),
           updated_at = now()
      FROM (SELECT u.user_id, coalesce(sum(g.remaining), 0) AS total,
                   min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry,
                   array_agg(g.id ORDER BY g.expire_at, g.id)
                     FILTER (WHERE g.remaining > 0 AND g.expire_at > now()) AS head,
                   array_agg(g.remaining ORDER BY g.expire_at, g.id)
                     FILTER (WHERE g.remaining > 0 AND g.expire_at > now()) AS head_remaining
              FROM unnest(users) AS u(user_id)
              LEFT JOIN billing.grant_store AS g ON g.user_id = u.user_id
             GROUP BY u.user_id) AS s
     WHERE a.user_id = s.user_id;
$$;
COMMENT ON FUNCTION billing.refresh_accounts(text[]) IS
    'Internal: with the accounts locked, rebuilds each account row''s caches from the ledger, grant_store and open holds';

-- Power each user can spend now, from grant_store (after write_back_heads).
CREATE FUNCTION billing.available_now(users text[])
    RETURNS TABLE (user_id text, available numeric)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.user_id,
           a.permanent + coalesce((SELECT sum(g.remaining) FROM billing.grant_store AS g
                                    WHERE g.user_id = a.user_id AND g.expire_at > now()), 0)
      FROM billing.accounts AS a
     WHERE a.user_id = ANY (users);
$$;
COMMENT ON FUNCTION billing.available_now(text[]) IS
    'Internal: the power each user can spend now, read from grant_store (call after write_back_heads)';

-- Low-balance events. A change that takes a user's available power from at or
-- above the threshold to below it records an event here and sends NOTIFY
-- billing_low_balance with no payload: LISTEN is open to every role, so the
-- channel says only "look"; what happened is read with billing_low_balance_events,
-- which only roles granted it may execute (as they are granted billing_power).
CREATE SEQUENCE billing.low_balance_events_id_seq;
CREATE TABLE billing.low_balance_events (
    user_id     text NOT NULL,
    event_id    bigint NOT NULL DEFAULT pg_catalog.nextval('billing.low_balance_events_id_seq'::pg_catalog.regclass),
    threshold   numeric NOT NULL,
    available   numeric NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, event_id)
);
ALTER SEQUENCE billing.low_balance_events_id_seq OWNED BY billing.low_balance_events.event_id;
CREATE INDEX low_balance_events_by_id ON billing.low_balance_events (event_id);
CREATE INDEX low_balance_events_by_time ON billing.low_balance_events (at);
COMMENT ON TABLE billing.low_balance_events IS 'Low-balance events: a change took a user''s available power below the threshold (billing_set_low_balance). Read with billing_low_balance_events; billing_expire deletes events older than 7 days.';
COMMENT ON COLUMN billing.low_balance_events.user_id IS 'The user whose power went below the threshold';
COMMENT ON COLUMN billing.low_balance_events.event_id IS 'Increasing event id (billing_low_balance_events(after_id) reads the events after one)';
COMMENT ON COLUMN billing.low_balance_events.threshold IS 'The threshold that was crossed';
COMMENT ON COLUMN billing.low_balance_events.available IS 'Available power right after the change';
COMMENT ON COLUMN billing.low_balance_events.at IS 'now() of the transaction that crossed the threshold';
COMMENT ON SEQUENCE billing.low_balance_events_id_seq IS 'Low-balance event ids';
COMMENT ON INDEX billing.low_balance_events_by_id IS 'billing_low_balance_events: the events after an id';
COMMENT ON INDEX billing.low_balance_events_by_time IS 'billing_expire: deleting events older than 7 days';

-- The one place a low-balance event is recorded and announced, for the Rust
-- functions (src/notify.rs) and the PL/pgSQL ones alike.
CREATE FUNCTION billing.notify_low_balance(user_id text, threshold numeric, available numeric)
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO billing.low_balance_events (user_id, threshold, available)
    VALUES (user_id, trim_scale(threshold), trim_scale(available));
    SELECT pg_notify('billing_low_balance', '');
$$;
COMMENT ON FUNCTION billing.notify_low_balance(text, numeric, numeric) IS
    'Internal: records a low-balance event and sends NOTIFY billing_low_balance without a payload';

CREATE FUNCTION @extschema@.billing_low_balance_events(after_id bigint DEFAULT 0)
    RETURNS TABLE (event_id bigint, user_id text, threshold numeric, available numeric, at timestamptz)
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.event_id, e.user_id, e.threshold, e.available, e.at
      FROM billing.low_balance_events AS e
     WHERE e.event_id > coalesce(after_id, 0)
     ORDER BY e.event_id;
$$;
COMMENT ON FUNCTION @extschema@.billing_low_balance_events(bigint) IS
    'Low-balance events with an id above after_id, oldest first: event_id, user_id, threshold, available, at. Call it when NOTIFY billing_low_balance arrives (the notification has no payload).';

CREATE FUNCTION @extschema@.billing_set_low_balance(user_id text, threshold numeric)
    RETURNS numeric
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM billing.check_key('user_id', billing_set_low_balance.user_id);
    -- the amount rule (0 allowed; NULL removes the threshold)
    IF threshold IS NOT NULL THEN
        threshold := billing.check_amount('threshold'::text, threshold::text, true);
    END IF;
    -- the account row is where the threshold lives (and what every write locks)
    INSERT INTO billing.accounts AS a (user_id, low_balance_at)
    VALUES (billing_set_low_balance.user_id, threshold)
    ON CONFLICT (user_id) DO UPDATE SET low_balance_at = EXCLUDED.low_balance_at;
    RETURN threshold;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_set_low_balance(text, numeric) IS
    'Sets the user''s low-balance threshold (NULL removes it): a change that takes available power from at or above it to below it sends NOTIFY billing_low_balance. Returns the threshold.';

-- Called with the accounts of users locked (and their heads written back): gives
-- back what their holds past the ttl reserved, to the grants and the permanent
-- balance it came from, and marks those holds expired. No ledger entry: a hold
-- was never a charge. Returns how many holds it ended.
CREATE FUNCTION billing.return_due_holds(users text[])
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        UPDATE billing.holds AS h
           SET status = 'expired', closed_at = now(), closed_after_seq = a.last_seq
          FROM billing.accounts AS a
         WHERE h.user_id = ANY (users) AND a.user_id = h.user_id
           AND h.status = 'held' AND h.expires_at <= now()
        RETURNING h.user_id, h.funding
    ), back AS (
        SELECT due.user_id, (g ->> 'id')::bigint AS id, sum((g ->> 'amount')::numeric) AS amount
          FROM due, jsonb_array_elements(coalesce(due.funding -> 'grants', '[]')) AS g
         GROUP BY 1, 2
    ), moved AS (
        UPDATE billing.grant_store AS s
           SET remaining = trim_scale(s.remaining + back.amount)
          FROM back
         WHERE s.user_id = back.user_id AND s.id = back.id
    ), permanent AS (
        SELECT due.user_id, sum(coalesce((due.funding ->> 'permanent')::numeric, 0)) AS amount, count(*) AS holds
          FROM due GROUP BY due.user_id
    ), credited AS (
        UPDATE billing.accounts AS a
           SET permanent = trim_scale(a.permanent + permanent.amount)
          FROM permanent
         WHERE a.user_id = permanent.user_id
    )
    SELECT coalesce(sum(permanent.holds), 0)::bigint FROM permanent;
$$;
COMMENT ON FUNCTION billing.return_due_holds(text[]) IS
    'Internal: with the accounts locked and heads written back, gives back what lapsed holds reserved and marks them expired; returns how many';

CREATE FUNCTION @extschema@.billing_expire(as_of timestamptz DEFAULT pg_catalog.now(), batch_size integer DEFAULT 10000)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    users text[];
    expired bigint;
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

    -- Lock up to batch_size accounts with an expired grant or a lapsed hold. Rows
    -- another transaction holds (a deduct, another billing_expire) are skipped, not
    -- waited for: the next run takes them.
    SELECT array_agg(a.user_id) INTO users
      FROM (SELECT a.user_id FROM billing.accounts AS a
             WHERE a.next_expiry <= as_of OR a.holds_due_at <= now()
             LIMIT batch_size
               FOR UPDATE SKIP LOCKED) AS a;
    IF users IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM billing.write_back_heads(users);

    -- Lapsed holds give back what they reserved (no ledger entry: nothing was charged).
    holds_ended := billing.return_due_holds(users);

    -- One MEMBERSHIP_GIFT_EXPIRED entry per grant that expired with power left.
    WITH gone AS (
        SELECT g.user_id, g.id, g.remaining, g.expire_at, g.subscription_id,
               row_number() OVER (PARTITION BY g.user_id ORDER BY g.expire_at, g.id) AS n
          FROM billing.grant_store AS g
         WHERE g.user_id = ANY (users) AND g.expire_at <= as_of AND g.remaining > 0
    ), emptied AS (
        UPDATE billing.grant_store AS g
           SET remaining = 0
          FROM gone
         WHERE g.user_id = gone.user_id AND g.id = gone.id
    ), logged AS (
        INSERT INTO billing.account_log
               (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
                remark, subscription_id, expire_at, detail)
        SELECT gone.user_id, a.last_seq + gone.n, -1, gone.remaining, now_.available,
               'MEMBERSHIP_GIFT_EXPIRED', 'MEMBERSHIP_GIFT', 'expiry', NULL, gone.subscription_id, gone.expire_at,
               jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', gone.id, 'amount', gone.remaining)))
          FROM gone
          JOIN billing.accounts AS a ON a.user_id = gone.user_id
          JOIN billing.available_now(users) AS now_ ON now_.user_id = gone.user_id
        RETURNING 1
    )
    SELECT count(*) INTO expired FROM logged;

    PERFORM billing.refresh_accounts(users);
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
        SELECT av.available INTO before FROM billing.available_now(ARRAY[owner]) AS av;
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
        PERFORM billing.refresh_accounts(ARRAY[owner]);
        SELECT av.available INTO after FROM billing.available_now(ARRAY[owner]) AS av;
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
        entry := billing.billing_deduct(target::text, (-delta)::numeric, 'SYSTEM_MANUAL_DEC'::text, 'SYSTEM'::text,
                                        'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                        NULL::text);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) IS
    'A manual correction by staff: SYSTEM_MANUAL_INC for a positive delta, SYSTEM_MANUAL_DEC (PB001 if not there) for a negative one, with association_user_id = operator. Returns the ledger entry.';

CREATE VIEW billing.balances AS
SELECT a.user_id,
       a.permanent,
       coalesce(live.remaining, 0) AS grants_live,
       coalesce(held.amount, 0) AS held,
       a.permanent OPERATOR(pg_catalog.+) coalesce(live.remaining, 0)
                   OPERATOR(pg_catalog.+) coalesce(lapsed.amount, 0) AS available,
       live.next_expiry
  FROM billing.accounts AS a
  LEFT JOIN LATERAL (
        SELECT pg_catalog.sum(g.remaining) AS remaining,
               pg_catalog.min(g.expire_at) FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0) AS next_expiry
          FROM billing.grants AS g
         WHERE g.user_id OPERATOR(pg_catalog.=) a.user_id
           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS live ON true
  LEFT JOIN LATERAL (
        SELECT pg_catalog.sum(h.amount) AS amount
          FROM billing.holds AS h
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS held ON true
  LEFT JOIN LATERAL (
        -- holds past their ttl that no write has swept yet reserve nothing: what they
        -- took from the permanent balance and from live grants is available again
        SELECT pg_catalog.sum(p.amount) AS amount
          FROM billing.holds AS h,
               LATERAL (SELECT (h.funding OPERATOR(pg_catalog.->>) 'permanent')::numeric AS amount
                        UNION ALL
                        SELECT (e.value OPERATOR(pg_catalog.->>) 'amount')::numeric
                          FROM pg_catalog.jsonb_array_elements(
                                 coalesce(h.funding OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb)) AS e
                          JOIN billing.grant_store AS g
                            ON g.user_id OPERATOR(pg_catalog.=) h.user_id
                           AND g.id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'id')::bigint
                         WHERE g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS p
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) AS lapsed ON true;
COMMENT ON VIEW billing.balances IS 'Each user''s power as it stands: permanent balance, live grants, power held by open holds, and what can be spent now';
COMMENT ON COLUMN billing.balances.user_id IS 'The user';
COMMENT ON COLUMN billing.balances.permanent IS 'Power that never expires (negative while a debt is open)';
COMMENT ON COLUMN billing.balances.grants_live IS 'Remaining of the grants not yet expired';
COMMENT ON COLUMN billing.balances.held IS 'Power reserved by open holds (already taken out of permanent and grants_live)';
COMMENT ON COLUMN billing.balances.available IS 'What billing_power returns: what can be spent now';
COMMENT ON COLUMN billing.balances.next_expiry IS 'When the next live grant with power left expires';
