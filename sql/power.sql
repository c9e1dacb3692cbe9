-- What a user's power is, in SQL: the view billing.balances (the one SQL
-- statement of available power: the permanent balance, live grants with the
-- head grant's live remaining as billing.grants shows it, and what lapsed holds
-- give back), and the helpers that keep the account row's caches exact, called
-- with the accounts locked: write_back_heads, return_due_holds and the one
-- rebuild, refresh_accounts. The Rust functions read the same view when the
-- cached total is stale (src/power.rs) and call the same rebuild
-- (src/general_path.rs).

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
    ended bigint;
    given bigint;
BEGIN
    WITH due AS (
        UPDATE billing.holds AS h
           SET status = 'expired', closed_at = now(), closed_after_seq = a.last_seq
          FROM billing.accounts AS a
         WHERE h.user_id = ANY (users) AND a.user_id = h.user_id
           AND h.status = 'held' AND h.expires_at <= now()
        RETURNING h.user_id, h.funding, h.amount, h.scopes, h.created_at
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
    ), given_back AS (
        -- what the holds counted as held against the users' limits (a give-back is never over a cap)
        SELECT billing.count_limits(due.user_id, due.scopes, 0::numeric, -due.amount, due.created_at, NULL::bigint)
          FROM due JOIN billing.accounts AS a ON a.user_id = due.user_id AND a.limited
    )
    -- (given_back is read so that it runs)
    SELECT coalesce(sum(permanent.holds), 0)::bigint, (SELECT count(*) FROM given_back)
      INTO ended, given FROM permanent;
    IF ended > 0 THEN
        PERFORM billing.refresh_accounts(users, 0::numeric, NULL::bigint);
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
BEGIN
    RETURN QUERY
    UPDATE billing.accounts AS a
       SET permanent = trim_scale(a.permanent + refresh_accounts.permanent_delta),
           last_seq = coalesce(a.last_seq + refresh_accounts.seq_delta,
                               (SELECT max(l.seq) FROM billing.account_log AS l WHERE l.user_id = a.user_id), 0),
           grants_total = s.total, next_expiry = s.next_expiry,
           head_grant_id = s.head[1], head_remaining = s.head_remaining[1],
           holds_due_at = (SELECT min(h.expires_at) FROM billing.holds AS h
                            WHERE h.user_id = a.user_id AND h.status = 'held'),
           updated_at = now()
      FROM (SELECT u.user_id, coalesce(sum(g.remaining), 0) AS total,
                   min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry,
                   coalesce(sum(g.remaining) FILTER (WHERE g.expire_at > now()), 0) AS live,
                   array_agg(g.id ORDER BY g.expire_at, g.id)
                     FILTER (WHERE g.remaining > 0 AND g.expire_at > now()) AS head,
                   array_agg(g.remaining ORDER BY g.expire_at, g.id)
                     FILTER (WHERE g.remaining > 0 AND g.expire_at > now()) AS head_remaining
              FROM unnest(refresh_accounts.users) AS u(user_id)
              LEFT JOIN billing.grant_store AS g ON g.user_id = u.user_id
             GROUP BY u.user_id) AS s
     WHERE a.user_id = s.user_id
    RETURNING a.user_id, a.last_seq, a.permanent + s.live;
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
