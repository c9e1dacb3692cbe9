-- The UPDATE that counts a call against the user's limits: the one place a
-- limit's counters change. count_limits.sql (which describes the rules) runs it
-- alone; the one-statement deduct and hold (FAST_DEBIT, FAST_HOLD) run it as a
-- CTE, so their charge is counted in the same statement, after the account CTE
-- has locked the row. {gate}: when false or NULL it counts nothing (a user
-- without limits, or a call that is not a charge). {spent} and {held} are the
-- deltas, {counted_at} and {counted_seq} what a negative one gives back (see
-- count_limits.sql). Returns each limit it changed: its scope and cap, spent
-- and held as they were before the call (held without the hold a settle
-- closes), the period's end, and `over`, true when the call takes the limit
-- above its cap (only when it adds to spent plus held).
UPDATE billing.limits AS l
   SET spent = pg_catalog.trim_scale(
           CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.spent ELSE 0 END
           OPERATOR(pg_catalog.+)
           CASE WHEN {spent} OPERATOR(pg_catalog.>=) 0 THEN {spent}
                WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end
                     AND {counted_at} OPERATOR(pg_catalog.>=) l.period_start
                     AND {counted_seq} OPERATOR(pg_catalog.>) l.counted_after_seq THEN {spent}
                ELSE 0 END),
       held = pg_catalog.trim_scale(
           CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.held ELSE 0 END
           OPERATOR(pg_catalog.+)
           CASE WHEN {held} OPERATOR(pg_catalog.>=) 0 THEN {held}
                WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end
                     AND {counted_at} OPERATOR(pg_catalog.>=) l.period_start THEN {held}
                ELSE 0 END),
       period_start = CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.period_start
                           ELSE pg_catalog.lower(billing.limit_period(l.period, l.period_len, l.time_zone, l.anchor,
                                                                      pg_catalog.now())) END,
       period_end = CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.period_end
                         ELSE pg_catalog.upper(billing.limit_period(l.period, l.period_len, l.time_zone, l.anchor,
                                                                    pg_catalog.now())) END,
       updated_at = pg_catalog.now()
 WHERE {gate}
   AND l.user_id OPERATOR(pg_catalog.=) {user_id}
   AND l.scope OPERATOR(pg_catalog.=) ANY (coalesce({scopes}, '{}'::pg_catalog.text[]) OPERATOR(pg_catalog.||) '*'::pg_catalog.text)
RETURNING l.scope, l.cap,
          l.spent OPERATOR(pg_catalog.-) greatest({spent}, 0) AS spent_before,
          l.held OPERATOR(pg_catalog.-) greatest({held}, 0) AS held_before,
          l.period_end,
          l.spent OPERATOR(pg_catalog.+) l.held OPERATOR(pg_catalog.>) l.cap
          AND greatest({spent}, 0) OPERATOR(pg_catalog.+) greatest({held}, 0)
              OPERATOR(pg_catalog.+) CASE WHEN {held} OPERATOR(pg_catalog.<) 0 AND {counted_at} OPERATOR(pg_catalog.>=) l.period_start
                                          THEN {held} ELSE 0 END
              OPERATOR(pg_catalog.>) 0 AS over
