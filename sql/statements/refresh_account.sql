-- refresh_account
-- Rebuilds the account row's caches from grant_store and the open holds, after
-- adding $2 to the permanent balance and $3 to last_seq. Returns the new
-- last_seq and the power available now.
-- kind: write
-- $1 user_id text
-- $2 permanent_delta numeric
-- $3 seq_delta bigint
UPDATE billing.accounts AS a
   SET permanent = pg_catalog.trim_scale(a.permanent OPERATOR(pg_catalog.+) $2),
       last_seq = a.last_seq OPERATOR(pg_catalog.+) $3,
       grants_total = s.total, next_expiry = s.next_expiry,
       head_grant_id = s.head[1], head_remaining = s.head_remaining[1],
       holds_due_at = (SELECT pg_catalog.min(h.expires_at) FROM billing.holds AS h
                        WHERE h.user_id OPERATOR(pg_catalog.=) $1
                          AND h.status OPERATOR(pg_catalog.=) 'held'),
       updated_at = pg_catalog.now()
  FROM (SELECT coalesce(pg_catalog.sum(g.remaining), 0) AS total,
               pg_catalog.min(g.expire_at) FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0) AS next_expiry,
               coalesce(pg_catalog.sum(g.remaining)
                 FILTER (WHERE g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()), 0) AS live,
               pg_catalog.array_agg(g.id ORDER BY g.expire_at, g.id)
                 FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0
                           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS head,
               pg_catalog.array_agg(g.remaining ORDER BY g.expire_at, g.id)
                 FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0
                           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS head_remaining
          FROM billing.grant_store AS g
         WHERE g.user_id OPERATOR(pg_catalog.=) $1) AS s
 WHERE a.user_id OPERATOR(pg_catalog.=) $1
RETURNING a.last_seq, a.permanent OPERATOR(pg_catalog.+) s.live AS available;
