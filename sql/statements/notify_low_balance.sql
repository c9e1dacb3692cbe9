-- notify_low_balance
-- Records a low-balance event and notifies (sql/operations.sql holds the rule,
-- which the PL/pgSQL functions call too).
-- kind: write
-- $1 user_id text
-- $2 threshold numeric
-- $3 available numeric
SELECT billing.notify_low_balance($1, $2, $3);
