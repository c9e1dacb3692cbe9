-- hold_owner
-- The user a hold belongs to, found by its id alone (before any lock).
-- kind: read
-- $1 hold_id bigint
SELECT user_id FROM billing.holds WHERE hold_id OPERATOR(pg_catalog.=) $1;
