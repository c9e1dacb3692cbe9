-- insert_hold
-- A new hold, reserved for ttl.
-- kind: write
-- $1 user_id text
-- $2 amount numeric
-- $3 funding text
-- $4 ttl interval
-- $5 account_type text
-- $6 source_type text
-- $7 source text
-- $8 remark text
-- $9 association_no text
-- $10 association_user_id text
-- $11 idempotency_key text
-- $12 reserved_after_seq bigint
-- $13 scopes text[]
INSERT INTO billing.holds AS h
       (user_id, amount, funding, expires_at, account_type, source_type, source, remark,
        association_no, association_user_id, idempotency_key, reserved_after_seq, scopes)
VALUES ($1, $2, $3::pg_catalog.jsonb, pg_catalog.now() OPERATOR(pg_catalog.+) $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING
--@ include shared/hold_row.sql with alias = h
;
