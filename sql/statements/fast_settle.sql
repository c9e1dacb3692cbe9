-- fast_settle
-- A settle that gives back nothing, or gives back only to the permanent balance
-- and/or the head grant (whose live remaining is on the account row), in one
-- statement: the account row (already locked), the hold, and the entry. The
-- entry's id is drawn in the CTE `ids` (Citus refuses nextval in an UPDATE's SET).
-- kind: write
-- $1 user_id text
-- $2 hold_id bigint
-- $3 actual numeric
-- $4 to_permanent numeric
-- $5 to_head numeric
-- $6 account_type text
-- $7 source_type text
-- $8 source text
-- $9 remark text
-- $10 association_no text
-- $11 association_user_id text
-- $12 detail text
WITH ids AS MATERIALIZED (
  SELECT pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass) AS log_id
), account AS (
  UPDATE billing.accounts AS a
     SET permanent = a.permanent OPERATOR(pg_catalog.+) $4,
         grants_total = a.grants_total OPERATOR(pg_catalog.+) $5,
         head_remaining = a.head_remaining OPERATOR(pg_catalog.+) $5,
         last_seq = a.last_seq OPERATOR(pg_catalog.+) 1,
         holds_due_at = (SELECT pg_catalog.min(h.expires_at) FROM billing.holds AS h
                          WHERE h.user_id OPERATOR(pg_catalog.=) $1
                            AND h.status OPERATOR(pg_catalog.=) 'held'
                            AND h.hold_id OPERATOR(pg_catalog.<>) $2),
         updated_at = pg_catalog.now()
   WHERE a.user_id OPERATOR(pg_catalog.=) $1
  RETURNING a.user_id, a.last_seq, a.permanent OPERATOR(pg_catalog.+) a.grants_total AS available
), closed AS (
  UPDATE billing.holds AS h
     SET status = 'settled', settled_amount = $3, closed_at = pg_catalog.now(),
         closed_after_seq = account.last_seq,
         log_id = ids.log_id
    FROM account, ids
   WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2
  RETURNING h.log_id, h.scopes
)
INSERT INTO billing.account_log AS l
       (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, detail, scopes)
SELECT closed.log_id, account.user_id, account.last_seq, -1, $3, account.available, $6, $7, $8,
       $9, $10, $11, $12::pg_catalog.jsonb, coalesce(closed.scopes, '{}'::pg_catalog.text[])
  FROM account, closed
RETURNING
--@ include shared/log_row.sql with alias = l
;
