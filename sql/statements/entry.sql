-- entry
-- An entry, read after the lock: the row, its funding (shared/funding.sql), and what it was.
-- kind: write
-- $1 user_id text
-- $2 log_id bigint
SELECT
--@ include shared/log_row.sql with alias = l
,
--@ include shared/funding.sql with column = l.detail
, l.direction, l.amount, l.account_type, l.refund_of, l.source_type, l.source,
       l.association_no, l.association_user_id, l.scopes, l.created_at, l.seq
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.id OPERATOR(pg_catalog.=) $2;
