-- fast_debit
-- The common deduct in one statement: no idempotency key to check (or already
-- checked under the lock), no expired grant or lapsed hold waiting to be
-- swept, no debt, and either no grants at all or a head grant that covers the amount. It changes only the
-- account row (which it locks by updating it; the head grant's live remaining
-- lives there) and appends the ledger entry: the same work as the floor.
-- Returns no row when those conditions do not hold; the caller then takes the
-- general path. For a user with limits, a charge ($10 not NULL) is counted
-- against them in the same statement, after the account row is locked (the
-- `counted` CTE, shared/count_limits.sql; for a user without limits its gate
-- is false and it reads no limit row), and the first limit it takes above its
-- cap comes back in the last column: the caller then raises PB008, which
-- undoes the statement.
-- kind: write
-- $1 user_id text
-- $2 amount numeric
-- $3 account_type text
-- $4 source_type text
-- $5 source text
-- $6 remark text
-- $7 association_no text
-- $8 association_user_id text
-- $9 idempotency_key text
-- $10 scopes text[]
-- $11 now timestamptz
WITH account AS (
  UPDATE billing.accounts AS a
     SET
--@ include shared/take_from_head.sql
         last_seq = a.last_seq OPERATOR(pg_catalog.+) 1,
         updated_at = pg_catalog.now()
   WHERE
--@ include shared/head_covers.sql
  RETURNING a.user_id, a.last_seq, a.permanent OPERATOR(pg_catalog.+) a.grants_total AS balance_after,
            a.head_grant_id, a.low_balance_at, a.limited
), logged AS (
INSERT INTO billing.account_log AS l
       (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, detail, idempotency_key, scopes)
SELECT account.user_id, account.last_seq, -1, $2, account.balance_after, $3, $4, $5, $6, $7, $8,

--@ include shared/head_funding.sql
       ,
       $9, $10
  FROM account
RETURNING
--@ include shared/log_row.sql with alias = l
AS l
), counted AS (
--@ include shared/count_limits.sql with gate = account.limited AND $10 IS NOT NULL, user_id = $1, scopes = $10, spent = $2, held = 0::pg_catalog.numeric, counted_at = NULL::pg_catalog.timestamptz, counted_seq = NULL::pg_catalog.int8, now = $11
)
SELECT logged.l, account.low_balance_at, account.balance_after,
--@ include shared/first_over.sql with counted = counted, spent = $2, held = 0::pg_catalog.numeric
  FROM logged, account;
