-- live_grants
-- Grants that can be spent now, in spending order, the first how_many of them
-- (NULL: all, as the general path reads them after writing the head back).
-- The head grant's stored remaining may be behind: the caller overlays the
-- account row's head_remaining.
-- kind: write
-- $1 user_id text
-- $2 how_many bigint
SELECT id, remaining, expire_at
  FROM billing.grant_store
 WHERE user_id OPERATOR(pg_catalog.=) $1
   AND remaining OPERATOR(pg_catalog.>) 0
   AND expire_at OPERATOR(pg_catalog.>) pg_catalog.now()
 ORDER BY expire_at, id
 LIMIT $2;
