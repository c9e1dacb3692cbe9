-- entry_row
-- An entry of the user by id, as a row (a settled hold's entry).
-- kind: write
-- $1 user_id text
-- $2 log_id bigint
SELECT
--@ include shared/log_row.sql with alias = l
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.id OPERATOR(pg_catalog.=) $2;
