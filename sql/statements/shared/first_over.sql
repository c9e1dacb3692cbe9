-- A scalar subquery over {counted}, the rows shared/count_limits.sql returned
-- for a call of deltas {spent} and {held}: the first limit (in scope order,
-- bytewise) the call takes above its cap, as ARRAY[scope, cap, spent, held,
-- requested, period_end] (spent and held before the call; period_end in RFC
-- 3339 UTC, or `never`), which src/limits.rs turns into PB008; NULL when none.
(SELECT ARRAY[c.scope,
              pg_catalog.trim_scale(c.cap)::pg_catalog.text,
              pg_catalog.trim_scale(c.spent_before)::pg_catalog.text,
              pg_catalog.trim_scale(c.held_before)::pg_catalog.text,
              pg_catalog.trim_scale(greatest({spent}, 0) OPERATOR(pg_catalog.+) greatest({held}, 0))::pg_catalog.text,
              CASE WHEN pg_catalog.isfinite(c.period_end)
                   THEN pg_catalog.to_char(pg_catalog.timezone('UTC'::pg_catalog.text, c.period_end),
                                           'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   ELSE 'never' END]
   FROM {counted} AS c
  WHERE c.over
  ORDER BY c.scope COLLATE pg_catalog."C"
  LIMIT 1)
