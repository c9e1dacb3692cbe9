-- hold
-- A hold read after the lock (by id, or by the caller's key): the row, then its parts.
-- This one by id.
-- kind: write
-- $1 user_id text
-- $2 hold_id bigint
SELECT h,
--@ include shared/funding.sql with column = h.funding
, h.status, h.amount,
h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS lapsed, h.settled_amount, h.log_id,
h.account_type, h.source_type, h.source, h.remark, h.association_no, h.association_user_id, h.closed_at::pg_catalog.text,
h.hold_id

  FROM billing.holds AS h
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2;
