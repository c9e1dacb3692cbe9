-- return_due_holds
-- Gives back what the user's open holds past their ttl reserved, to the grants and
-- the permanent balance it came from, and marks them expired (sql/operations.sql).
-- kind: write
-- $1 user_id text
SELECT billing.return_due_holds(ARRAY[$1]);
