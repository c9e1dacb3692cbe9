-- insert_grant
-- A new grant, created with `remaining` (less than amount when it first pays a debt),
-- and the id of the ledger entry that will record it.
-- kind: write
-- $1 user_id text
-- $2 amount numeric
-- $3 remaining numeric
-- $4 expire_at timestamptz
-- $5 subscription_id text
INSERT INTO billing.grant_store (user_id, amount, remaining, expire_at, subscription_id, log_id)
VALUES ($1, $2, $3, $4, $5, pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass))
RETURNING id, log_id;
