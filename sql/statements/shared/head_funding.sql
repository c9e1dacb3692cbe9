-- Where $2 taken that way came from, in the ledger's detail format, given the
-- `account` CTE's head_grant_id.
CASE WHEN account.head_grant_id IS NULL
            THEN pg_catalog.jsonb_build_object('permanent', $2)
            ELSE pg_catalog.jsonb_build_object('grants', pg_catalog.jsonb_build_array(
                   pg_catalog.jsonb_build_object('id', account.head_grant_id, 'amount', $2)))
       END
