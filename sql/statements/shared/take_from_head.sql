-- SET items that take $2 from the head grant, whose live remaining is on the
-- account row `a`, or, for a user without grants, from the permanent balance.
permanent = CASE WHEN a.grants_total OPERATOR(pg_catalog.=) 0
                          THEN a.permanent OPERATOR(pg_catalog.-) $2 ELSE a.permanent END,
         grants_total = CASE WHEN a.grants_total OPERATOR(pg_catalog.=) 0
                             THEN a.grants_total ELSE a.grants_total OPERATOR(pg_catalog.-) $2 END,
         head_remaining = a.head_remaining OPERATOR(pg_catalog.-) $2,
