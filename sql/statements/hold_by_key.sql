-- hold_by_key
-- A hold read after the lock, by the caller's idempotency key: the row, then its
-- parts (shared/hold_columns.sql).
-- kind: write
-- $1 user_id text
-- $2 idempotency_key text
SELECT
--@ include shared/hold_columns.sql
  FROM billing.holds AS h
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.idempotency_key OPERATOR(pg_catalog.=) $2;
