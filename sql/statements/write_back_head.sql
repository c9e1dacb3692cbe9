-- write_back_head
-- Makes grant_store exact: the head grant's remaining comes from the account row
-- (the same function billing_expire and billing_revoke_subscription use, sql/operations.sql).
-- kind: write
-- $1 user_id text
SELECT billing.write_back_heads(ARRAY[$1]);
