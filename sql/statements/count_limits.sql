-- count_limits
-- Counts a charge, or gives one back, against the user's limits of its scopes
-- and '*', with the account row locked (src/limits.rs for the Rust paths, and
-- billing.count_limits, its C entry point, for the sweep of lapsed holds). Its
-- UPDATE (shared/count_limits.sql) is the one place a limit's counters change;
-- the one-statement deduct and hold run the same UPDATE as a CTE. A positive
-- spent_delta or held_delta is a new charge or hold, counted now; a negative
-- one gives back what was counted at counted_at (the hold's creation, or the
-- charge entry's, with counted_seq its seq), only to a limit whose current
-- period it was counted in. A limit whose period is over starts the current
-- one at zero first. A limit is over when the call takes its spent plus held
-- above the cap, and only when the call adds to them (a settle adds its actual
-- amount less the hold it closes, if that hold was counted in this period).
-- Returns one row: the first limit the call takes above its cap, as
-- shared/first_over.sql gives it, or NULL.
-- kind: write
-- $1 user_id text
-- $2 scopes text[]
-- $3 spent_delta numeric
-- $4 held_delta numeric
-- $5 counted_at timestamptz
-- $6 counted_seq bigint
-- $7 now timestamptz
-- (the piece joins a CTE `account`: here one empty row, for the caller holds the lock)
WITH account AS MATERIALIZED (
  SELECT
), counted AS (
--@ include shared/count_limits.sql with gate = true, user_id = $1, scopes = $2, spent = $3, held = $4, counted_at = $5, counted_seq = $6, now = $7
)
SELECT
--@ include shared/first_over.sql with counted = counted, spent = $3, held = $4
