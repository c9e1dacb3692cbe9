-- Columns 1-3 of an entry's or a hold's funding ({column}, in the ledger's detail
-- format): the permanent part, then the grants' ids and amounts in order.
coalesce(({column} OPERATOR(pg_catalog.->>) 'permanent')::numeric, 0),
ARRAY(SELECT (g.value OPERATOR(pg_catalog.->>) 'id')::bigint
        FROM pg_catalog.jsonb_array_elements(coalesce({column} OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb))
             WITH ORDINALITY AS g(value, n)
       ORDER BY g.n),
ARRAY(SELECT (g.value OPERATOR(pg_catalog.->>) 'amount')::numeric
        FROM pg_catalog.jsonb_array_elements(coalesce({column} OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb))
             WITH ORDINALITY AS g(value, n)
       ORDER BY g.n)
