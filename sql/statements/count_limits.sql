-- count_limits
-- Counts a charge, or gives one back, against the user's limits of its scopes
-- and '*' (billing.count_limits, sql/limits.sql), with the account row locked;
-- returns the limits it takes above their cap, in scope order.
-- kind: write
-- $1 user_id text
-- $2 scopes text[]
-- $3 spent_delta numeric
-- $4 held_delta numeric
-- $5 counted_at timestamptz
-- $6 counted_seq bigint
SELECT c.scope, c.cap, c.spent, c.held, c.requested, c.period_end
  FROM billing.count_limits($1, $2, $3, $4, $5, $6) AS c;
