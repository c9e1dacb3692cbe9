-- insert_entry
-- One ledger entry, written on its own (the general path); id NULL: the next
-- from the sequence.
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
-- $15 refund_of bigint
-- $16 expire_at timestamptz
-- $17 id bigint
-- $18 scopes text[]
INSERT INTO billing.account_log AS l
       (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, detail, idempotency_key,
        refund_of, expire_at, scopes)
VALUES (coalesce($17, pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass)),
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::pg_catalog.jsonb, $14, $15, $16, $18)
RETURNING
--@ include shared/log_row.sql with alias = l
, l.id;
