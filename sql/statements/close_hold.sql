-- close_hold
-- Closes an open hold; with reserve_entry_id, reserves (and returns) the id of
-- the ledger entry that settles it. That id is drawn in the CTE `ids`, not in
-- the SET list: Citus refuses a volatile function in an UPDATE of a distributed
-- table.
-- kind: write
-- $1 user_id text
-- $2 hold_id bigint
-- $3 status text
-- $4 settled_amount numeric
-- $5 reserve_entry_id boolean
-- $6 reason text
-- $7 closed_after_seq bigint
WITH ids AS MATERIALIZED (
  SELECT CASE WHEN $5 THEN pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass) END AS log_id
)
UPDATE billing.holds AS h
   SET status = $3, settled_amount = $4, reason = $6, closed_after_seq = $7, closed_at = pg_catalog.now(),
       log_id = ids.log_id
  FROM ids
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2
RETURNING
--@ include shared/hold_row.sql with alias = h
, h.log_id;
