-- billing_verify: replays the ledger and reports every disagreement with the
-- stored state, one row per violation; no rows means healthy. Every check is a
-- grouped aggregate, a sort or a join on user_id (no correlated subquery), all
-- of which PostgreSQL spills to disk past work_mem: it runs in bounded memory
-- and in time that grows with the size of the ledger, not its square.

CREATE TYPE billing.violation AS (user_id text, "check" text, expected text, actual text);
COMMENT ON TYPE billing.violation IS 'One finding of billing_verify: which user, which check, what the ledger says and what is stored';

CREATE FUNCTION @extschema@.billing_verify(user_id text DEFAULT NULL)
    RETURNS SETOF billing.violation
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    only_user text := billing_verify.user_id;
BEGIN
    RETURN QUERY
    WITH entries AS (
        SELECT l.* FROM billing.account_log AS l
         WHERE only_user IS NULL OR l.user_id = only_user
    ), replayed AS (
        SELECT e.user_id,
               sum(e.direction * coalesce((e.detail ->> 'permanent')::numeric, 0)) AS permanent,
               count(*) AS entries, min(e.seq) AS first_seq, max(e.seq) AS last_seq
          FROM entries AS e GROUP BY e.user_id
    ), last_entries AS (
        SELECT DISTINCT ON (e.user_id) e.user_id, e.seq, e.balance_after, e.created_at
          FROM entries AS e ORDER BY e.user_id, e.seq DESC
    ), grant_moves AS (
        SELECT e.user_id, (g ->> 'id')::bigint AS id, sum(e.direction * (g ->> 'amount')::numeric) AS remaining
          FROM entries AS e, jsonb_array_elements(coalesce(e.detail -> 'grants', '[]')) AS g
         GROUP BY 1, 2
    ), accounts AS (
        SELECT a.* FROM billing.accounts AS a WHERE only_user IS NULL OR a.user_id = only_user
    ), grants AS (
        SELECT g.* FROM billing.grants AS g WHERE only_user IS NULL OR g.user_id = only_user
    ), grant_sums AS (
        SELECT g.user_id, sum(g.remaining) AS remaining, min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry
          FROM grants AS g GROUP BY g.user_id
    ), live_when_last_written AS (
        -- what each user's grants held that was still live when the last entry was written
        SELECT le.user_id, sum(g.remaining) AS remaining
          FROM last_entries AS le JOIN grants AS g ON g.user_id = le.user_id AND g.expire_at > le.created_at
         GROUP BY le.user_id
    ), heads AS (
        SELECT DISTINCT ON (g.user_id) g.user_id, g.id, g.remaining
          FROM grants AS g WHERE g.remaining > 0 AND g.expire_at > now()
         ORDER BY g.user_id, g.expire_at, g.id
    )
    -- the permanent balance, the entry count and the seq the account row holds
    SELECT coalesce(a.user_id, r.user_id), 'permanent balance', r.permanent::text, a.permanent::text
      FROM accounts AS a FULL JOIN replayed AS r ON r.user_id = a.user_id
     WHERE a.permanent IS DISTINCT FROM r.permanent
    UNION ALL
    SELECT r.user_id, 'seq without gaps', '1..' || r.entries, r.first_seq || '..' || r.last_seq
      FROM replayed AS r WHERE r.first_seq <> 1 OR r.last_seq <> r.entries
    UNION ALL
    SELECT a.user_id, 'last_seq', coalesce(r.entries, 0)::text, a.last_seq::text
      FROM accounts AS a LEFT JOIN replayed AS r ON r.user_id = a.user_id
     WHERE a.last_seq IS DISTINCT FROM coalesce(r.entries, 0)
    -- every grant's remaining, and its bounds
    UNION ALL
    SELECT coalesce(g.user_id, m.user_id), 'grant ' || coalesce(g.id, m.id) || ' remaining',
           m.remaining::text, g.remaining::text
      FROM grants AS g FULL JOIN grant_moves AS m ON m.user_id = g.user_id AND m.id = g.id
     WHERE g.remaining IS DISTINCT FROM m.remaining
    UNION ALL
    SELECT g.user_id, 'grant ' || g.id || ' within 0..amount', '0..' || g.amount, g.remaining::text
      FROM grants AS g WHERE g.remaining < 0 OR g.remaining > g.amount
    -- the ledger's own rules
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' direction and amount', 'direction 1 or -1, amount > 0',
           'direction ' || e.direction || ', amount ' || e.amount
      FROM entries AS e WHERE e.direction NOT IN (1, -1) OR e.amount <= 0
    UNION ALL
    SELECT a.user_id, 'no negative balance', '>= 0', a.permanent::text
      FROM accounts AS a WHERE a.permanent < 0
    -- balance_after of the last entry: the power available when it was written
    UNION ALL
    SELECT a.user_id, 'balance_after of entry ' || le.seq, le.balance_after::text,
           (a.permanent + coalesce(lw.remaining, 0))::text
      FROM accounts AS a JOIN last_entries AS le ON le.user_id = a.user_id
      LEFT JOIN live_when_last_written AS lw ON lw.user_id = a.user_id
     WHERE le.balance_after <> a.permanent + coalesce(lw.remaining, 0)
    -- the caches on the account row
    UNION ALL
    SELECT a.user_id, 'grants_total', coalesce(s.remaining, 0)::text, a.grants_total::text
      FROM accounts AS a LEFT JOIN grant_sums AS s ON s.user_id = a.user_id
     WHERE a.grants_total <> coalesce(s.remaining, 0)
    UNION ALL
    SELECT a.user_id, 'next_expiry', s.next_expiry::text, a.next_expiry::text
      FROM accounts AS a LEFT JOIN grant_sums AS s ON s.user_id = a.user_id
     WHERE a.next_expiry IS DISTINCT FROM s.next_expiry
    UNION ALL
    SELECT a.user_id, 'head grant', concat(h.id, ' with ', h.remaining), concat(a.head_grant_id, ' with ', a.head_remaining)
      FROM accounts AS a LEFT JOIN heads AS h ON h.user_id = a.user_id
     WHERE (a.next_expiry IS NULL OR a.next_expiry > now())
       AND (a.head_grant_id IS DISTINCT FROM h.id OR a.head_remaining IS DISTINCT FROM h.remaining);
END
$$;
COMMENT ON FUNCTION @extschema@.billing_verify(text) IS
    'Replays the ledger (of one user, or all) and returns one row per disagreement with the stored balances, grants and caches; no rows means healthy';
