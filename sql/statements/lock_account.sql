-- lock_account
-- Locks the user's account row: the first thing every write does.
-- kind: write
-- $1 user_id text
SELECT permanent, grants_total, next_expiry, last_seq,
       coalesce(next_expiry OPERATOR(pg_catalog.<=) pg_catalog.now(), false) AS has_expired,
       head_grant_id, head_remaining,
       coalesce(holds_due_at OPERATOR(pg_catalog.<=) pg_catalog.now(), false) AS holds_due,
       low_balance_at, max_debt, limited
  FROM billing.accounts
 WHERE user_id OPERATOR(pg_catalog.=) $1
   FOR UPDATE;
