-- idempotent_entry
-- The entry an earlier call with this idempotency key wrote, and what it was.
-- kind: write
-- $1 user_id text
-- $2 idempotency_key text
SELECT
--@ include shared/log_row.sql with alias = l
, l.direction, l.amount, l.account_type, l.refund_of
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1
   AND l.idempotency_key OPERATOR(pg_catalog.=) $2;
