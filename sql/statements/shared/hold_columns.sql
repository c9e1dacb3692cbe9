-- A hold read after the lock: the row, its funding (shared/funding.sql), then its parts.
--@ include shared/hold_row.sql with alias = h
,
--@ include shared/funding.sql with column = h.funding
, h.status, h.amount,
h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS lapsed, h.settled_amount, h.log_id,
h.account_type, h.source_type, h.source, h.remark, h.association_no, h.association_user_id, h.closed_at::pg_catalog.text,
h.hold_id, h.scopes, h.created_at
