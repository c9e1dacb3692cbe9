-- count_limits
-- Counts a charge, or gives one back, against the user's limits of its scopes
-- and '*', with the account row locked: the one statement that changes a
-- limit's counters (src/limits.rs, which billing.count_limits runs too). A
-- positive spent_delta or held_delta is a new charge or hold, counted now; a
-- negative one gives back what was counted at counted_at (the hold's creation,
-- or the charge entry's, with counted_seq its seq), only to a limit whose
-- current period it was counted in. A limit whose period is over starts the
-- current one at zero first. Returns each limit it changed, with `over` true
-- when the call takes it above its cap (only when it adds to spent plus held;
-- a settle adds its actual amount less the hold it closes, if that hold was
-- counted in this period), and spent and held as they were before the call
-- (held without the hold a settle closes).
-- kind: write
-- $1 user_id text
-- $2 scopes text[]
-- $3 spent_delta numeric
-- $4 held_delta numeric
-- $5 counted_at timestamptz
-- $6 counted_seq bigint
WITH counted AS (
  UPDATE billing.limits AS l
     SET spent = pg_catalog.trim_scale(
             CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.spent ELSE 0 END
             OPERATOR(pg_catalog.+)
             CASE WHEN $3 OPERATOR(pg_catalog.>=) 0 THEN $3
                  WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end
                       AND $5 OPERATOR(pg_catalog.>=) l.period_start
                       AND $6 OPERATOR(pg_catalog.>) l.counted_after_seq THEN $3
                  ELSE 0 END),
         held = pg_catalog.trim_scale(
             CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.held ELSE 0 END
             OPERATOR(pg_catalog.+)
             CASE WHEN $4 OPERATOR(pg_catalog.>=) 0 THEN $4
                  WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end
                       AND $5 OPERATOR(pg_catalog.>=) l.period_start THEN $4
                  ELSE 0 END),
         period_start = CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.period_start
                             ELSE pg_catalog.lower(billing.limit_period(l.period, l.period_len, l.time_zone, l.anchor,
                                                                        pg_catalog.now())) END,
         period_end = CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.<) l.period_end THEN l.period_end
                           ELSE pg_catalog.upper(billing.limit_period(l.period, l.period_len, l.time_zone, l.anchor,
                                                                      pg_catalog.now())) END,
         updated_at = pg_catalog.now()
   WHERE l.user_id OPERATOR(pg_catalog.=) $1
     AND l.scope OPERATOR(pg_catalog.=) ANY (coalesce($2, '{}'::pg_catalog.text[]) OPERATOR(pg_catalog.||) '*'::pg_catalog.text)
  RETURNING l.scope, l.cap, l.spent, l.held, l.period_start, l.period_end
)
SELECT c.scope, c.cap,
       c.spent OPERATOR(pg_catalog.-) greatest($3, 0) AS spent_before,
       c.held OPERATOR(pg_catalog.-) greatest($4, 0) AS held_before,
       CASE WHEN pg_catalog.isfinite(c.period_end)
            THEN pg_catalog.to_char(pg_catalog.timezone('UTC'::pg_catalog.text, c.period_end),
                                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            ELSE 'never' END AS period_end,
       c.spent OPERATOR(pg_catalog.+) c.held OPERATOR(pg_catalog.>) c.cap
       AND greatest($3, 0) OPERATOR(pg_catalog.+) greatest($4, 0)
           OPERATOR(pg_catalog.+) CASE WHEN $4 OPERATOR(pg_catalog.<) 0 AND $5 OPERATOR(pg_catalog.>=) c.period_start
                                       THEN $4 ELSE 0 END
           OPERATOR(pg_catalog.>) 0 AS over
  FROM counted AS c;
