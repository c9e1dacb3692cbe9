-- Replays the ledger and counts what disagrees with the stored state: each
-- account's permanent balance, its gap-free seq and cached grants_total, each
-- grant's remaining, the rules the hot tables carry no CHECK for, and the
-- cached head grant. 0 means healthy. Used by the #[pg_test]s and tests/.
WITH perm AS (
    SELECT user_id, sum(direction * coalesce((detail->>'permanent')::numeric, 0)) AS permanent,
           count(*) AS entries, max(seq) AS last_seq, min(seq) AS first_seq
      FROM billing.account_log GROUP BY user_id),
grant_moves AS (
    SELECT l.user_id, (g->>'id')::bigint AS id, sum(l.direction * (g->>'amount')::numeric) AS remaining
      FROM billing.account_log l, jsonb_array_elements(coalesce(l.detail->'grants', '[]')) g
     GROUP BY 1, 2)
SELECT (SELECT count(*) FROM billing.accounts a FULL JOIN perm p USING (user_id)
         WHERE a.permanent IS DISTINCT FROM p.permanent
            OR a.last_seq IS DISTINCT FROM p.entries
            OR p.last_seq IS DISTINCT FROM p.entries
            OR p.first_seq <> 1
            OR a.grants_total <> (SELECT coalesce(sum(remaining), 0) FROM billing.grants g WHERE g.user_id = a.user_id))
     + (SELECT count(*) FROM billing.grants g FULL JOIN grant_moves m USING (user_id, id)
         WHERE g.remaining IS DISTINCT FROM m.remaining)
     + (SELECT count(*) FROM billing.account_log
         WHERE direction NOT IN (1, -1) OR amount <= 0 OR seq <= 0 OR balance_after < 0)
     + (SELECT count(*) FROM billing.accounts WHERE permanent < 0 OR grants_total < 0)
     + (SELECT count(*) FROM billing.accounts a
         LEFT JOIN LATERAL (SELECT g.id, g.remaining FROM billing.grants g
                             WHERE g.user_id = a.user_id AND g.remaining > 0 AND g.expire_at > now()
                             ORDER BY g.expire_at, g.id LIMIT 1) head ON true
         WHERE (a.next_expiry IS NULL OR a.next_expiry > now())
           AND (a.head_grant_id IS DISTINCT FROM head.id OR a.head_remaining IS DISTINCT FROM head.remaining
                OR a.next_expiry IS DISTINCT FROM (SELECT min(expire_at) FROM billing.grants g
                                                    WHERE g.user_id = a.user_id AND g.remaining > 0)))
