-- The end of a one-statement charge: the last six columns are the first limit
-- (in scope order) that the `counted` CTE (shared/count_charge.sql) found the
-- charge takes above its cap, or NULLs.
       over.scope, over.cap, over.spent, over.held, over.requested, over.period_end
  FROM {made}, account
  LEFT JOIN LATERAL (SELECT counted.* FROM counted ORDER BY counted.scope COLLATE pg_catalog."C" LIMIT 1) AS over ON true
