-- hold
-- A hold read after the lock, by its id: the row, then its parts (shared/hold_columns.sql).
-- kind: write
-- $1 user_id text
-- $2 hold_id bigint
SELECT
--@ include shared/hold_columns.sql
  FROM billing.holds AS h
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2;
