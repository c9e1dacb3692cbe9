-- store_grants
-- Stores the remaining that a write computed for many grants at once: what
-- store_grant.sql does for one, for a write that changes more than a few
-- (src/ledger.rs, STORE_ONE_BY_ONE). PostgreSQL plans it at every call (its
-- generic plan is costed for a hundred rows from unnest), which costs less than
-- a statement per grant once there are many.
-- kind: write
-- $1 user_id text
-- $2 grant_ids bigint[]
-- $3 remainings numeric[]
UPDATE billing.grant_store AS g
   SET remaining = t.remaining
  FROM ROWS FROM (pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::numeric[])) AS t(id, remaining)
 WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) t.id;
