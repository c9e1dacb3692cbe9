-- may_execute
-- Whether a role (its oid) may execute a documented billing function, by name:
-- the rule of billing.may_execute (sql/triggers.sql). src/errors.rs asks it for
-- the calling role before a DETAIL shows a balance or another charge.
-- kind: read
-- $1 role bigint
-- $2 function_name text
SELECT billing.may_execute($1::pg_catalog.oid, $2);
