-- entry_owner
-- The user an entry belongs to, found by its id alone (before any lock).
-- kind: read
-- $1 log_id bigint
SELECT user_id FROM billing.account_log WHERE id OPERATOR(pg_catalog.=) $1;
