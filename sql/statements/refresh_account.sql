-- refresh_account
-- Adds $2 to the permanent balance and $3 to last_seq and rebuilds the account
-- row's caches, through the one rebuild there is (billing.refresh_accounts in
-- sql/power.sql, which the PL/pgSQL operations call too). Returns the new
-- last_seq and the power available now.
-- kind: write
-- $1 user_id text
-- $2 permanent_delta numeric
-- $3 seq_delta bigint
SELECT r.last_seq, r.available
  FROM billing.refresh_accounts(ARRAY[$1]::pg_catalog.text[], $2::pg_catalog.numeric, $3::pg_catalog.int8) AS r;
