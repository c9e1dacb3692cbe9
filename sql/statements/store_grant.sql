-- store_grant
-- Stores the remaining that a write computed for one grant (a grant spent from,
-- or the old head grant written back), before write_entry. One grant per call:
-- with scalar parameters the generic plan costs what a custom one does, so
-- PostgreSQL plans it once per backend. (write_entry used to take the grants as
-- arrays: the generic plan of `id = ANY($n)` is costed for ten elements, above
-- the custom plan for the three a deduct passes, so the whole write was planned
-- again at every call, a fifth of scenario 4's time; BENCHMARKS.md, row 15.)
-- A write that changes more grants than src/ledger.rs's STORE_ONE_BY_ONE runs
-- store_grants.sql once instead.
-- kind: write
-- $1 user_id text
-- $2 grant_id bigint
-- $3 remaining numeric
UPDATE billing.grant_store AS g
   SET remaining = $3
 WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) $2;
