-- grant_expiries
-- The expiry of some of the user's grants.
-- kind: write
-- $1 user_id text
-- $2 grant_ids bigint[]
SELECT id, expire_at, expire_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired
  FROM billing.grant_store
 WHERE user_id OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.=) ANY ($2::bigint[]);
