-- The account row `a` of user $1 can pay $2 that way: no expired grant or lapsed
-- hold waits to be swept, no debt, and either no grants at all (the permanent
-- balance covers $2) or a head grant that covers $2 and keeps something left.
a.user_id OPERATOR(pg_catalog.=) $1
     AND (a.next_expiry IS NULL OR a.next_expiry OPERATOR(pg_catalog.>) pg_catalog.now())
     AND (a.holds_due_at IS NULL OR a.holds_due_at OPERATOR(pg_catalog.>) pg_catalog.now())
     AND ((a.grants_total OPERATOR(pg_catalog.=) 0 AND a.permanent OPERATOR(pg_catalog.>=) $2)
          OR (a.head_remaining OPERATOR(pg_catalog.>) $2 AND a.permanent OPERATOR(pg_catalog.>=) 0))
