-- The UPDATE that counts a call against the user's limits: the one place a
-- limit's counters change. count_limits.sql (which describes the rules) runs it
-- alone; the one-statement deduct and hold (FAST_DEBIT, FAST_HOLD) run it as a
-- CTE, so their charge is counted in the same statement, after the account CTE
-- has locked the row. The statement has a CTE `account` (of one row, or none),
-- which the UPDATE joins; {gate}, a condition on it: when false or NULL it
-- counts nothing (a user without limits, or a call that is not a charge). Not
-- a subquery of `account`: Citus cannot route an UPDATE whose subquery reads a
-- CTE, and then refuses the CASEs below. {spent} and {held} are the
-- deltas, {counted_at} and {counted_seq} what a negative one gives back (see
-- count_limits.sql). Returns each limit it changed: its scope and cap, spent
-- and held as they were before the call (held without the hold a settle
-- closes), the period's end, and `over`, true when the call takes the limit
-- above its cap (only when it adds to spent plus held). {now} is the
-- transaction's start, passed in rather than called: Citus refuses a
-- non-immutable function inside a CASE of an UPDATE, and a STABLE one given a
-- column, so the period that starts when one is over (billing.limit_period) is
-- computed in the subquery `fresh`, which reads the same limits unlocked (their
-- period settings change only under the account lock the caller holds).
UPDATE billing.limits AS l
   SET spent = pg_catalog.trim_scale(
           CASE WHEN {now} OPERATOR(pg_catalog.<) l.period_end THEN l.spent ELSE 0 END
           OPERATOR(pg_catalog.+)
           CASE WHEN {spent} OPERATOR(pg_catalog.>=) 0 THEN {spent}
                WHEN {now} OPERATOR(pg_catalog.<) l.period_end
                     AND {counted_at} OPERATOR(pg_catalog.>=) l.period_start
                     AND {counted_seq} OPERATOR(pg_catalog.>) l.counted_after_seq THEN {spent}
                ELSE 0 END),
       held = pg_catalog.trim_scale(
           CASE WHEN {now} OPERATOR(pg_catalog.<) l.period_end THEN l.held ELSE 0 END
           OPERATOR(pg_catalog.+)
           CASE WHEN {held} OPERATOR(pg_catalog.>=) 0 THEN {held}
                WHEN {now} OPERATOR(pg_catalog.<) l.period_end
                     AND {counted_at} OPERATOR(pg_catalog.>=) l.period_start THEN {held}
                ELSE 0 END),
       period_start = CASE WHEN {now} OPERATOR(pg_catalog.<) l.period_end THEN l.period_start
                           ELSE pg_catalog.lower(fresh.period) END,
       period_end = CASE WHEN {now} OPERATOR(pg_catalog.<) l.period_end THEN l.period_end
                         ELSE pg_catalog.upper(fresh.period) END,
       updated_at = {now}
  FROM account, (SELECT f.scope,
               CASE WHEN {now} OPERATOR(pg_catalog.>=) f.period_end
                    THEN billing.limit_period(f.period, f.period_len, f.time_zone, f.anchor, {now}) END AS period
          FROM billing.limits AS f
         WHERE f.user_id OPERATOR(pg_catalog.=) {user_id}
           AND f.scope OPERATOR(pg_catalog.=) ANY (coalesce({scopes}, '{}'::pg_catalog.text[]) OPERATOR(pg_catalog.||) '*'::pg_catalog.text)) AS fresh
 WHERE {gate}
   AND l.user_id OPERATOR(pg_catalog.=) {user_id}
   AND l.scope OPERATOR(pg_catalog.=) fresh.scope
RETURNING l.scope, l.cap,
          l.spent OPERATOR(pg_catalog.-) greatest({spent}, 0) AS spent_before,
          l.held OPERATOR(pg_catalog.-) greatest({held}, 0) AS held_before,
          l.period_end,
          l.spent OPERATOR(pg_catalog.+) l.held OPERATOR(pg_catalog.>) l.cap
          AND greatest({spent}, 0) OPERATOR(pg_catalog.+) greatest({held}, 0)
              OPERATOR(pg_catalog.+) CASE WHEN {held} OPERATOR(pg_catalog.<) 0 AND {counted_at} OPERATOR(pg_catalog.>=) l.period_start
                                          THEN {held} ELSE 0 END
              OPERATOR(pg_catalog.>) 0 AS over
