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
    ), holds AS (
        SELECT h.* FROM billing.holds AS h WHERE only_user IS NULL OR h.user_id = only_user
    ), hold_parts AS (
        -- what each hold reserved, part by part: grant_id NULL is the permanent balance
        SELECT h.user_id, h.hold_id, h.status, h.reserved_after_seq, h.closed_after_seq,
               NULL::bigint AS grant_id, coalesce((h.funding ->> 'permanent')::numeric, 0) AS amount
          FROM holds AS h
        UNION ALL
        SELECT h.user_id, h.hold_id, h.status, h.reserved_after_seq, h.closed_after_seq,
               (g ->> 'id')::bigint, (g ->> 'amount')::numeric
          FROM holds AS h, jsonb_array_elements(coalesce(h.funding -> 'grants', '[]')) AS g
    ), held_permanent AS (
        SELECT p.user_id, sum(p.amount) AS amount
          FROM hold_parts AS p WHERE p.status = 'held' AND p.grant_id IS NULL GROUP BY p.user_id
    ), held_grants AS (
        SELECT p.user_id, p.grant_id AS id, sum(p.amount) AS amount
          FROM hold_parts AS p WHERE p.status = 'held' AND p.grant_id IS NOT NULL GROUP BY 1, 2
    ), hold_shift AS (
        -- power that holds moved after each user's last entry, as the grants stood then:
        -- reserved after it and still open, less given back after it by a hold made before it
        SELECT le.user_id, sum(CASE WHEN p.status = 'held' THEN p.amount ELSE -p.amount END) AS amount
          FROM last_entries AS le
          JOIN hold_parts AS p ON p.user_id = le.user_id
          LEFT JOIN billing.grant_store AS gs ON gs.user_id = p.user_id AND gs.id = p.grant_id
         WHERE (p.grant_id IS NULL OR gs.expire_at > le.created_at)
           AND ((p.status = 'held' AND p.reserved_after_seq >= le.seq)
                OR (p.status IN ('released', 'expired') AND p.reserved_after_seq < le.seq
                    AND p.closed_after_seq >= le.seq))
         GROUP BY le.user_id
    ), refunds AS (
        SELECT e.user_id, e.refund_of, sum(e.amount) AS amount
          FROM entries AS e WHERE e.refund_of IS NOT NULL GROUP BY 1, 2
    ), limit_rows AS (
        SELECT l.* FROM billing.limits AS l WHERE only_user IS NULL OR l.user_id = only_user
    ), limit_charges AS (
        -- the charge entries each limit counts: naming its scope ('*': every charge),
        -- after the limit was set, in the period its counters are of
        SELECT lr.user_id, lr.scope, lr.period_end, e.id, e.amount
          FROM limit_rows AS lr
          JOIN entries AS e ON e.user_id = lr.user_id AND e.scopes IS NOT NULL
                           AND (lr.scope = '*' OR lr.scope = ANY (e.scopes))
                           AND e.seq > lr.counted_after_seq
                           AND e.created_at >= lr.period_start AND e.created_at < lr.period_end
    ), limit_spent AS (
        -- less what refunds of them gave back while the period lasted
        SELECT c.user_id, c.scope, sum(c.amount) AS amount
          FROM (SELECT lc.user_id, lc.scope, lc.amount FROM limit_charges AS lc
                UNION ALL
                SELECT lc.user_id, lc.scope, -e.amount
                  FROM limit_charges AS lc
                  JOIN entries AS e ON e.user_id = lc.user_id AND e.refund_of = lc.id
                                   AND e.created_at < lc.period_end) AS c
         GROUP BY 1, 2
    ), limit_held AS (
        -- the holds naming its scope made in the period, open at its end (or now)
        SELECT lr.user_id, lr.scope, sum(h.amount) AS amount
          FROM limit_rows AS lr
          JOIN holds AS h ON h.user_id = lr.user_id
                         AND (lr.scope = '*' OR lr.scope = ANY (h.scopes))
                         AND h.created_at >= lr.period_start AND h.created_at < lr.period_end
                         AND (h.status = 'held' OR h.closed_at >= lr.period_end)
         GROUP BY 1, 2
    ), heads AS (
        SELECT DISTINCT ON (g.user_id) g.user_id, g.id, g.remaining
          FROM grants AS g WHERE g.remaining > 0 AND g.expire_at > now()
         ORDER BY g.user_id, g.expire_at, g.id
    )
    -- the permanent balance (plus what open holds took from it), the entry count and
    -- the seq the account row holds
    -- (an account may have no entries yet: one made to hold a low-balance threshold)
    SELECT coalesce(a.user_id, r.user_id), 'permanent balance', coalesce(r.permanent, 0)::text,
           (a.permanent + coalesce(hp.amount, 0))::text
      FROM accounts AS a FULL JOIN replayed AS r ON r.user_id = a.user_id
      LEFT JOIN held_permanent AS hp ON hp.user_id = a.user_id
     WHERE a.permanent + coalesce(hp.amount, 0) IS DISTINCT FROM coalesce(r.permanent, 0)
    UNION ALL
    SELECT r.user_id, 'seq without gaps', '1..' || r.entries, r.first_seq || '..' || r.last_seq
      FROM replayed AS r WHERE r.first_seq <> 1 OR r.last_seq <> r.entries
    UNION ALL
    SELECT a.user_id, 'last_seq', coalesce(r.entries, 0)::text, a.last_seq::text
      FROM accounts AS a LEFT JOIN replayed AS r ON r.user_id = a.user_id
     WHERE a.last_seq IS DISTINCT FROM coalesce(r.entries, 0)
    -- every grant's remaining (plus what open holds took from it), and its bounds
    UNION ALL
    SELECT coalesce(g.user_id, m.user_id), 'grant ' || coalesce(g.id, m.id) || ' remaining',
           m.remaining::text, (g.remaining + coalesce(hg.amount, 0))::text
      FROM grants AS g FULL JOIN grant_moves AS m ON m.user_id = g.user_id AND m.id = g.id
      LEFT JOIN held_grants AS hg ON hg.user_id = g.user_id AND hg.id = g.id
     WHERE g.remaining + coalesce(hg.amount, 0) IS DISTINCT FROM m.remaining
    UNION ALL
    SELECT g.user_id, 'grant ' || g.id || ' within 0..amount', '0..' || g.amount, g.remaining::text
      FROM grants AS g WHERE g.remaining < 0 OR g.remaining > g.amount
    -- the ledger's own rules
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' direction and amount', 'direction 1 or -1, amount > 0',
           'direction ' || e.direction || ', amount ' || e.amount
      FROM entries AS e WHERE e.direction NOT IN (1, -1) OR e.amount <= 0
    -- every entry names a known account type of its own direction, and a known source type
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' account_type',
           'a type of direction ' || e.direction || ' in billing.account_types',
           e.account_type || CASE WHEN t.code IS NULL THEN ' (unknown)' ELSE ' (direction ' || t.direction || ')' END
      FROM entries AS e LEFT JOIN billing.account_types AS t ON t.code = e.account_type
     WHERE t.direction IS DISTINCT FROM e.direction
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' source_type', 'a type in billing.source_types', e.source_type || ' (unknown)'
      FROM entries AS e LEFT JOIN billing.source_types AS s ON s.code = e.source_type
     WHERE s.code IS NULL
    UNION ALL
    SELECT r.user_id, 'refunds of entry ' || r.refund_of, 'at most ' || coalesce(o.amount::text, 'a debit'),
           r.amount::text
      FROM refunds AS r
      LEFT JOIN billing.account_log AS o ON o.user_id = r.user_id AND o.id = r.refund_of AND o.direction = -1
     WHERE o.amount IS NULL OR r.amount > o.amount
    -- balance_after of the last entry: the power available when it was written
    UNION ALL
    SELECT a.user_id, 'balance_after of entry ' || le.seq, le.balance_after::text,
           (a.permanent + coalesce(lw.remaining, 0) + coalesce(hs.amount, 0))::text
      FROM accounts AS a JOIN last_entries AS le ON le.user_id = a.user_id
      LEFT JOIN live_when_last_written AS lw ON lw.user_id = a.user_id
      LEFT JOIN hold_shift AS hs ON hs.user_id = a.user_id
     WHERE le.balance_after <> a.permanent + coalesce(lw.remaining, 0) + coalesce(hs.amount, 0)
    -- every hold: its parts add up to its amount; a settled one has its entry
    UNION ALL
    SELECT p.user_id, 'hold ' || p.hold_id || ' funding', h.amount::text, sum(p.amount)::text
      FROM hold_parts AS p JOIN holds AS h ON h.user_id = p.user_id AND h.hold_id = p.hold_id
     GROUP BY p.user_id, p.hold_id, h.amount HAVING sum(p.amount) <> h.amount
    UNION ALL
    SELECT h.user_id, 'hold ' || h.hold_id || ' settle entry', 'an entry of ' || h.settled_amount,
           coalesce(l.amount::text, 'none')
      FROM holds AS h
      LEFT JOIN billing.account_log AS l ON l.user_id = h.user_id AND l.id = h.log_id
     WHERE h.status = 'settled' AND (l.amount IS DISTINCT FROM h.settled_amount OR l.direction <> -1)
    -- every charge or hold a charging trigger recorded as its own exists, for that user
    UNION ALL
    SELECT t.user_id, CASE WHEN t.is_hold THEN 'trigger hold ' ELSE 'trigger charge ' END || t.id,
           CASE WHEN t.is_hold THEN 'a hold of the user' ELSE 'a debit entry of the user' END, 'none'
      FROM billing.trigger_charges AS t
     WHERE (only_user IS NULL OR t.user_id = only_user)
       AND NOT CASE WHEN t.is_hold
                    THEN EXISTS (SELECT FROM billing.holds AS h WHERE h.user_id = t.user_id AND h.hold_id = t.id)
                    ELSE EXISTS (SELECT FROM billing.account_log AS l
                                  WHERE l.user_id = t.user_id AND l.id = t.id AND l.direction = -1)
               END
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
    SELECT a.user_id, 'holds_due_at', min(h.expires_at)::text, a.holds_due_at::text
      FROM accounts AS a LEFT JOIN holds AS h ON h.user_id = a.user_id AND h.status = 'held'
     GROUP BY a.user_id, a.holds_due_at HAVING a.holds_due_at IS DISTINCT FROM min(h.expires_at)
    UNION ALL
    SELECT a.user_id, 'head grant', concat(h.id, ' with ', h.remaining), concat(a.head_grant_id, ' with ', a.head_remaining)
      FROM accounts AS a LEFT JOIN heads AS h ON h.user_id = a.user_id
     WHERE (a.next_expiry IS NULL OR a.next_expiry > now())
       AND (a.head_grant_id IS DISTINCT FROM h.id OR a.head_remaining IS DISTINCT FROM h.remaining)
    -- each spending limit's counters, for the period they are of (sql/limits.sql)
    UNION ALL
    SELECT lr.user_id, 'limit ' || lr.scope || ' spent', coalesce(s.amount, 0)::text, lr.spent::text
      FROM limit_rows AS lr LEFT JOIN limit_spent AS s ON s.user_id = lr.user_id AND s.scope = lr.scope
     WHERE lr.spent <> coalesce(s.amount, 0)
    UNION ALL
    SELECT lr.user_id, 'limit ' || lr.scope || ' held', coalesce(h.amount, 0)::text, lr.held::text
      FROM limit_rows AS lr LEFT JOIN limit_held AS h ON h.user_id = lr.user_id AND h.scope = lr.scope
     WHERE lr.held <> coalesce(h.amount, 0)
    UNION ALL
    SELECT lr.user_id, 'limit ' || lr.scope || ' period', 'a period of the limit',
           lr.period_start || ' .. ' || lr.period_end
      FROM limit_rows AS lr
     WHERE lr.period_start >= lr.period_end
        OR billing.limit_period(lr.period, lr.period_len, lr.time_zone, lr.anchor, lr.period_start)
           <> tstzrange(lr.period_start, lr.period_end)
    UNION ALL
    SELECT a.user_id, 'limited', (l.user_id IS NOT NULL)::text, a.limited::text
      FROM accounts AS a
      LEFT JOIN (SELECT DISTINCT lr.user_id FROM limit_rows AS lr) AS l ON l.user_id = a.user_id
     WHERE a.limited <> (l.user_id IS NOT NULL);
END
$$;
COMMENT ON FUNCTION @extschema@.billing_verify(text) IS
    'Replays the ledger (of one user, or all) and returns one row per disagreement with the stored balances, grants, caches and spending-limit counters; no rows means healthy';
