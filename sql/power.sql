-- What a user's power is, in SQL: the view billing.balances (the one SQL
-- statement of available power: the permanent balance, live grants with the
-- head grant's live remaining as billing.grants shows it, and what lapsed holds
-- give back), and the helpers that keep the account row's caches exact, called
-- with the accounts locked: write_back_heads, return_due_holds and the one
-- rebuild, refresh_accounts. The Rust functions read the same view when the
-- cached total is stale (src/power.rs) and call the same rebuild
-- (src/general_path.rs).

-- Called with the accounts of users locked: writes each head grant's live
-- remaining back to grant_store, so that grant_store is exact. These helpers
-- take an array of users but read and change one user and one table per
-- statement: on Citus each statement then goes to the one shard that holds the
-- user (Citus crashes planning some UPDATE ... FROM a subquery).
CREATE FUNCTION billing.write_back_heads(users text[])
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    one text;
    head bigint;
    head_left numeric;
BEGIN
    FOREACH one IN ARRAY users LOOP
        SELECT a.head_grant_id, a.head_remaining INTO head, head_left FROM billing.accounts AS a WHERE a.user_id = one;
        IF head IS NOT NULL THEN
            UPDATE billing.grant_store AS g SET remaining = head_left WHERE g.user_id = one AND g.id = head;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.write_back_heads(text[]) IS
    'Internal: with the accounts locked, copies each head grant''s live remaining back to grant_store';

-- Called with the accounts of users locked (and their heads written back): gives
-- back what their holds past the ttl reserved, to the grants and the permanent
-- balance it came from, and marks those holds expired, and gives back what they
-- counted as held against the users' spending limits (billing.count_limits).
-- No ledger entry: a hold was never a charge. When it ended any, it rebuilds the account rows' caches
-- (the head grant may have changed), so that billing.grants and billing.balances
-- state the power exactly again. Returns how many holds it ended.
CREATE FUNCTION billing.return_due_holds(users text[])
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    one text;
    is_limited boolean;
    due record;
    part record;
    ended bigint := 0;
    users_ended text[] := '{}';
BEGIN
    FOREACH one IN ARRAY users LOOP
        SELECT a.limited INTO is_limited FROM billing.accounts AS a WHERE a.user_id = one;
        FOR due IN
            UPDATE billing.holds AS h
               SET status = 'expired', closed_at = now(),
                   closed_after_seq = (SELECT a.last_seq FROM billing.accounts AS a WHERE a.user_id = one)
             WHERE h.user_id = one AND h.status = 'held' AND h.expires_at <= now()
            RETURNING h.funding, h.amount, h.scopes, h.created_at
        LOOP
            FOR part IN SELECT (g ->> 'id')::bigint AS id, (g ->> 'amount')::numeric AS amount
                          FROM jsonb_array_elements(coalesce(due.funding -> 'grants', '[]')) AS g LOOP
                UPDATE billing.grant_store AS s
                   SET remaining = trim_scale(s.remaining + part.amount)
                 WHERE s.user_id = one AND s.id = part.id;
            END LOOP;
            UPDATE billing.accounts AS a
               SET permanent = trim_scale(a.permanent + coalesce((due.funding ->> 'permanent')::numeric, 0))
             WHERE a.user_id = one;
            -- what the hold counted as held against the user's limits (a give-back is never over a cap)
            IF is_limited THEN
                PERFORM billing.count_limits(one, due.scopes, 0::numeric, -due.amount, due.created_at, NULL::bigint);
            END IF;
            ended := ended + 1;
            IF NOT one = ANY (users_ended) THEN
                users_ended := users_ended || one;
            END IF;
        END LOOP;
    END LOOP;
    IF ended > 0 THEN
        PERFORM billing.refresh_accounts(users_ended, 0::numeric, NULL::bigint);
    END IF;
    RETURN ended;
END
$$;
COMMENT ON FUNCTION billing.return_due_holds(text[]) IS
    'Internal: with the accounts locked and heads written back, gives back what lapsed holds reserved, marks them expired and rebuilds the caches; returns how many';

-- The one rebuild of the account row's caches (last_seq, grants_total,
-- next_expiry, the head grant and its live remaining, holds_due_at), for the
-- Rust functions' general path (sql/statements/refresh_account.sql) and the
-- PL/pgSQL operations alike. Called with the accounts of users locked, after
-- grant_store and the holds have changed (heads written back, lapsed holds
-- returned). permanent_delta is added to the permanent balance; last_seq
-- becomes last_seq + seq_delta, or with seq_delta NULL the ledger's last seq.
-- Returns each account's new last_seq and the power available now.
CREATE FUNCTION billing.refresh_accounts(users text[], permanent_delta numeric, seq_delta bigint)
    RETURNS TABLE (user_id text, last_seq bigint, available numeric)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    one text;
    s record;
    ledger_seq bigint;
    due_at timestamptz;
BEGIN
    FOREACH one IN ARRAY users LOOP
        SELECT coalesce(sum(g.remaining), 0) AS total,
               min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry,
               coalesce(sum(g.remaining) FILTER (WHERE g.expire_at > now()), 0) AS live,
               (array_agg(g.id ORDER BY g.expire_at, g.id)
                  FILTER (WHERE g.remaining > 0 AND g.expire_at > now()))[1] AS head,
               (array_agg(g.remaining ORDER BY g.expire_at, g.id)
                  FILTER (WHERE g.remaining > 0 AND g.expire_at > now()))[1] AS head_remaining
          INTO s
          FROM billing.grant_store AS g
         WHERE g.user_id = one;
        ledger_seq := NULL;
        IF refresh_accounts.seq_delta IS NULL THEN
            SELECT max(l.seq) INTO ledger_seq FROM billing.account_log AS l WHERE l.user_id = one;
        END IF;
        SELECT min(h.expires_at) INTO due_at FROM billing.holds AS h WHERE h.user_id = one AND h.status = 'held';
        RETURN QUERY
        UPDATE billing.accounts AS a
           SET permanent = trim_scale(a.permanent + refresh_accounts.permanent_delta),
               last_seq = coalesce(a.last_seq + refresh_accounts.seq_delta, ledger_seq, 0),
               grants_total = s.total, next_expiry = s.next_expiry,
               head_grant_id = s.head, head_remaining = s.head_remaining,
               holds_due_at = due_at,
               updated_at = now()
         WHERE a.user_id = one
        RETURNING a.user_id, a.last_seq, a.permanent + s.live;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.refresh_accounts(text[], numeric, bigint) IS
    'Internal: with the accounts locked, adds permanent_delta and seq_delta (NULL: the ledger''s last seq) and rebuilds each account row''s caches from grant_store and the open holds; returns last_seq and available power';

CREATE VIEW billing.balances AS
SELECT a.user_id,
       a.permanent,
       coalesce(live.remaining, 0) AS grants_live,
       coalesce(held.amount, 0) AS held,
       a.permanent OPERATOR(pg_catalog.+) coalesce(live.remaining, 0)
                   OPERATOR(pg_catalog.+) coalesce(lapsed.permanent, 0)
                   OPERATOR(pg_catalog.+) coalesce(lapsed_grants.amount, 0) AS available,
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
        -- (two subqueries, not one UNION ALL: Citus cannot route a union of a
        -- subquery without FROM)
        SELECT pg_catalog.sum((h.funding OPERATOR(pg_catalog.->>) 'permanent')::numeric) AS permanent
          FROM billing.holds AS h
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) AS lapsed ON true
  LEFT JOIN LATERAL (
        SELECT pg_catalog.sum((e.value OPERATOR(pg_catalog.->>) 'amount')::numeric) AS amount
          FROM billing.holds AS h
         CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(
                 coalesce(h.funding OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb)) AS e
          JOIN billing.grant_store AS g
            ON g.user_id OPERATOR(pg_catalog.=) h.user_id
           AND g.id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'id')::bigint
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()
           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS lapsed_grants ON true;
COMMENT ON VIEW billing.balances IS 'Each user''s power as it stands: permanent balance, live grants, power held by open holds, and what can be spent now';
COMMENT ON COLUMN billing.balances.user_id IS 'The user';
COMMENT ON COLUMN billing.balances.permanent IS 'Power that never expires (negative while a debt is open)';
COMMENT ON COLUMN billing.balances.grants_live IS 'Remaining of the grants not yet expired';
COMMENT ON COLUMN billing.balances.held IS 'Power reserved by open holds (already taken out of permanent and grants_live)';
COMMENT ON COLUMN billing.balances.available IS 'What billing_power returns: what can be spent now';
COMMENT ON COLUMN billing.balances.next_expiry IS 'When the next live grant with power left expires';
