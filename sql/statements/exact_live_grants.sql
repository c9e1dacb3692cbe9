-- exact_live_grants
-- Every grant the user has with remaining > 0 that has not expired, in spending
-- order, as grant_store holds it (call after WRITE_BACK_HEAD).
-- kind: write
-- $1 user_id text
SELECT id, remaining, expire_at
  FROM billing.grant_store
 WHERE user_id OPERATOR(pg_catalog.=) $1
   AND remaining OPERATOR(pg_catalog.>) 0
   AND expire_at OPERATOR(pg_catalog.>) pg_catalog.now()
 ORDER BY expire_at, id;
