-- write_grant
-- One ledger entry that creates a grant, with the account's new cached totals.
-- new_grant_is_head: the new grant is spent next; otherwise head_grant_id and
-- head_remaining are the head. written_back_*: a grant whose live remaining to
-- write back (the old head, when the head moves).
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
-- $13 expire_at timestamptz
-- $14 idempotency_key text
-- $15 grants_total numeric
-- $16 next_expiry timestamptz
-- $17 new_grant_is_head boolean
-- $18 head_grant_id bigint
-- $19 head_remaining numeric
-- $20 written_back_grant_id bigint
-- $21 written_back_remaining numeric
WITH ids AS MATERIALIZED (
  SELECT pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass) AS log_id,
         pg_catalog.nextval('billing.grants_id_seq'::pg_catalog.regclass) AS grant_id
), granted AS (
  INSERT INTO billing.grant_store (user_id, id, amount, remaining, expire_at, subscription_id, log_id)
  SELECT $1, ids.grant_id, $4, $4, $13, $12, ids.log_id FROM ids
), old_head AS (
  UPDATE billing.grant_store AS g
     SET remaining = $21
   WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) $20
), account AS (
  UPDATE billing.accounts
     SET grants_total = $15, next_expiry = $16, last_seq = $2, updated_at = pg_catalog.now(),
         head_grant_id = CASE WHEN $17 THEN ids.grant_id ELSE $18 END,
         head_remaining = CASE WHEN $17 THEN $4 ELSE $19 END
    FROM ids
   WHERE user_id OPERATOR(pg_catalog.=) $1
)
INSERT INTO billing.account_log AS l
       (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, expire_at, detail,
        idempotency_key)
SELECT ids.log_id, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
       pg_catalog.jsonb_build_object('grants', pg_catalog.jsonb_build_array(
         pg_catalog.jsonb_build_object('id', ids.grant_id, 'amount', $4))),
       $14
  FROM ids
RETURNING
--@ include shared/log_row.sql with alias = l
;
