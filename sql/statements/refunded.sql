-- refunded
-- What the refunds already made of an entry gave back, per grant (NULL: the permanent balance).
-- kind: write
-- $1 user_id text
-- $2 log_id bigint
SELECT NULL::bigint AS grant_id, pg_catalog.sum((l.detail OPERATOR(pg_catalog.->>) 'permanent')::numeric)
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.refund_of OPERATOR(pg_catalog.=) $2
HAVING pg_catalog.count(l.detail OPERATOR(pg_catalog.->>) 'permanent') OPERATOR(pg_catalog.>) 0
UNION ALL
SELECT (g.value OPERATOR(pg_catalog.->>) 'id')::bigint, pg_catalog.sum((g.value OPERATOR(pg_catalog.->>) 'amount')::numeric)
  FROM billing.account_log AS l,
       pg_catalog.jsonb_array_elements(coalesce(l.detail OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb)) AS g
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.refund_of OPERATOR(pg_catalog.=) $2
 GROUP BY 1;
