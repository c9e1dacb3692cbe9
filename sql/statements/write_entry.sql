-- write_entry
-- One ledger entry that moves the permanent balance and/or spends grants,
-- with the account's new cached totals, in one statement. The grants it spends
-- from (and the old head grant written back) are stored first, by store_grant.sql
-- (store_grants.sql when there are many: src/ledger.rs, store_grants).
-- kind: write
-- $1 user_id text
-- $2 seq bigint
-- $3 direction smallint
-- $4 amount numeric
-- $5 balance_after numeric
-- $6 account_type text
-- $7 source_type text
-- $8 source text
-- $9 remark text
-- $10 association_no text
-- $11 association_user_id text
-- $12 subscription_id text
-- $13 detail text
-- $14 idempotency_key text
-- $15 permanent numeric
-- $16 grants_total numeric
-- $17 next_expiry timestamptz
-- $18 head_grant_id bigint
-- $19 head_remaining numeric
-- $20 scopes text[]
WITH account AS (
  UPDATE billing.accounts
     SET permanent = $15, grants_total = $16, next_expiry = $17, last_seq = $2,
         head_grant_id = $18, head_remaining = $19, updated_at = pg_catalog.now()
   WHERE user_id OPERATOR(pg_catalog.=) $1
)
INSERT INTO billing.account_log AS l
       (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, detail, idempotency_key, scopes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::pg_catalog.jsonb, $14, $20)
RETURNING
--@ include shared/log_row.sql with alias = l
;
