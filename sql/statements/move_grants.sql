-- move_grants
-- Adds $3[i] (negative to take) to the remaining of grant $2[i]; each id once.
-- kind: write
-- $1 user_id text
-- $2 grant_ids bigint[]
-- $3 deltas numeric[]
UPDATE billing.grant_store AS g
   SET remaining = pg_catalog.trim_scale(g.remaining OPERATOR(pg_catalog.+) t.delta)
  FROM ROWS FROM (pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::numeric[])) AS t(id, delta)
 WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) t.id;
