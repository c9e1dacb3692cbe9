-- live_grants
-- Grants that can be spent now, in spending order, the first how_many of them
-- (NULL: all, as the general path reads them after writing the head back),
-- each with its live remaining as billing.grants shows it (the head grant's
-- from the account row).
-- kind: write
-- $1 user_id text
-- $2 how_many bigint
SELECT g.id, g.remaining, g.expire_at
  FROM billing.grants AS g
 WHERE g.user_id OPERATOR(pg_catalog.=) $1
   AND g.remaining OPERATOR(pg_catalog.>) 0
   AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()
 ORDER BY g.expire_at, g.id
 LIMIT $2;
