-- types
-- The direction of an account type (NULL: unknown) and whether a source type exists.
-- kind: read
-- $1 account_type text
-- $2 source_type text
SELECT (SELECT direction FROM billing.account_types WHERE code OPERATOR(pg_catalog.=) $1),
       EXISTS (SELECT FROM billing.source_types WHERE code OPERATOR(pg_catalog.=) $2);
