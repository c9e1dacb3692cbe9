-- fast_hold
-- The common hold in one statement, on the same conditions as FAST_DEBIT: it
-- takes the amount from the head grant (or, for a user without grants, the
-- permanent balance) on the account row and inserts the hold. Returns no row
-- when the conditions do not hold; the caller then takes the general path. For
-- a user with limits the hold is counted as FAST_DEBIT counts a deduct.
-- kind: write
-- $1 user_id text
-- $2 amount numeric
-- $3 ttl interval
-- $4 account_type text
-- $5 source_type text
-- $6 source text
-- $7 remark text
-- $8 association_no text
-- $9 association_user_id text
-- $10 idempotency_key text
-- $11 scopes text[]
-- $12 now timestamptz
WITH account AS (
  UPDATE billing.accounts AS a
     SET
--@ include shared/take_from_head.sql
         holds_due_at = least(a.holds_due_at, pg_catalog.now() OPERATOR(pg_catalog.+) $3),
         updated_at = pg_catalog.now()
   WHERE
--@ include shared/head_covers.sql
  RETURNING a.user_id, a.last_seq, a.head_grant_id, a.low_balance_at,
            a.permanent OPERATOR(pg_catalog.+) a.grants_total AS available, a.limited
), held AS (
  INSERT INTO billing.holds AS h
         (user_id, amount, funding, expires_at, account_type, source_type, source, remark,
          association_no, association_user_id, idempotency_key, reserved_after_seq, scopes)
  SELECT account.user_id, $2,

--@ include shared/head_funding.sql
       ,
         pg_catalog.now() OPERATOR(pg_catalog.+) $3, $4, $5, $6, $7, $8, $9, $10, account.last_seq, $11
    FROM account
  RETURNING
--@ include shared/hold_row.sql with alias = h
  AS h
), counted AS (
--@ include shared/count_limits.sql with gate = account.limited AND $11 IS NOT NULL, user_id = $1, scopes = $11, spent = 0::pg_catalog.numeric, held = $2, counted_at = NULL::pg_catalog.timestamptz, counted_seq = NULL::pg_catalog.int8, now = $12
)
SELECT held.h, account.low_balance_at, account.available,
--@ include shared/first_over.sql with counted = counted, spent = 0::pg_catalog.numeric, held = $2
  FROM held, account;
