-- available
-- The user's available power as billing.balances states it (sql/power.sql):
-- what billing_power returns when the account row's cached total is stale
-- (a grant has expired or a hold has lapsed and no write has swept it yet).
-- kind: read
-- $1 user_id text
SELECT b.available
  FROM billing.balances AS b
 WHERE b.user_id OPERATOR(pg_catalog.=) $1;
