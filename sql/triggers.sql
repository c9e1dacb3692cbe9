-- Charging from triggers: a table's rows pay for themselves (docs/triggers.md).
-- Two generic row trigger functions, configured by their
-- trigger arguments ('name=value'):
--   billing_charge       charges on INSERT (billing_deduct); refunds on DELETE
--                        and on an UPDATE into the failed status (billing_refund)
--   billing_hold_charge  holds on INSERT (billing_hold); settles when the
--                        actual cost is written (billing_settle); releases, or
--                        refunds a settled charge, on DELETE and failure
-- A row's charge (or hold) is found again by its idempotency key: the row's
-- key_column, or 'trigger:<schema>.<table>:<association value>'. A refund's
-- own key is 'trigger-refund:<id of the charge>', so a second firing replays
-- it instead of refunding twice.
--
-- Trust: the trigger functions are SECURITY DEFINER (the extension owner), but
-- a trigger acts with the billing privileges of its table's owner, checked
-- each time it fires (billing.trigger_privilege): charging needs EXECUTE on
-- billing_deduct (billing_hold, billing_settle), refunding on billing_refund,
-- releasing on billing_release. It refunds, releases or settles only what it
-- made itself for a row of its table (billing.trigger_charges), never an
-- application's charge that an INSERT under the same key replayed.
-- Internal calls go to schema billing, never to @extschema@ (public, where
-- other roles may create look-alikes), with every argument cast to its exact
-- type, so no overload anybody else defined can be chosen.
--
-- The row is read column by column with billing.trigger_column (C): never
-- through to_jsonb(NEW), which would run any cast to json that the table's
-- owner defined for a column's type, with the extension owner's rights. No SQL
-- is built from the arguments.

CREATE FUNCTION billing.trigger_column(tuple record, argument text, column_name text)
    RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_trigger_column';
COMMENT ON FUNCTION billing.trigger_column(record, text, text) IS
    'The value of one column of a row, as text (NULL when NULL, or when column_name is NULL: an argument not given), through the type''s output function with DateStyle, TimeZone, IntervalStyle, bytea_output, extra_float_digits and lc_monetary fixed, so the same under any session settings; 42703 naming the trigger argument when the row has no such column';

CREATE FUNCTION billing.trigger_session_column(tuple record, argument text, column_name text)
    RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_trigger_session_column';
COMMENT ON FUNCTION billing.trigger_session_column(record, text, text) IS
    'Like trigger_column, but written with the session''s own settings, as 0.2.0 derived keys: finds the charge of a row charged before 0.3.0';

CREATE FUNCTION billing.trigger_scopes(tuple record, argument text, column_name text)
    RETURNS text[]
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_trigger_scopes';
COMMENT ON FUNCTION billing.trigger_scopes(record, text, text) IS
    'The scopes a charging trigger''s row names in its scope_column: the value of a text[] column, or of a text column as one scope; NULL when the value is NULL or column_name is NULL (no scope_column); 42703 naming the trigger argument when the row has no such column, 22023 for a column of another type';

CREATE FUNCTION billing.written_in_this_transaction(row_xmin xid)
    RETURNS boolean
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_written_in_this_transaction';
COMMENT ON FUNCTION billing.written_in_this_transaction(xid) IS
    'Whether a row version (its xmin) was written by the current transaction or one of its subtransactions: tells a charge a trigger just made from one that was replayed';

-- The argument types of a documented function, by name (the signature
-- may_execute checks and a GRANT names), every type qualified; NULL for a
-- name that is not one of them.
CREATE FUNCTION billing.documented_arguments(function_name text)
    RETURNS text
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE function_name
    WHEN 'billing_power' THEN 'pg_catalog.text'
    WHEN 'billing_has_power' THEN 'pg_catalog.text, pg_catalog.numeric'
    WHEN 'billing_add' THEN 'pg_catalog.text, pg_catalog.numeric, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.timestamptz, pg_catalog.text, pg_catalog.text'
    WHEN 'billing_deduct' THEN 'pg_catalog.text, pg_catalog.numeric, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text[]'
    WHEN 'billing_hold' THEN 'pg_catalog.text, pg_catalog.numeric, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.text, pg_catalog.interval, pg_catalog.text, pg_catalog.text[]'
    WHEN 'billing_settle' THEN 'pg_catalog.int8, pg_catalog.numeric, pg_catalog.text, pg_catalog.bool'
    WHEN 'billing_release' THEN 'pg_catalog.int8, pg_catalog.text'
    WHEN 'billing_refund' THEN 'pg_catalog.int8, pg_catalog.numeric, pg_catalog.text, pg_catalog.text'
    WHEN 'billing_history' THEN 'pg_catalog.text, pg_catalog.int4, pg_catalog.int8'
    WHEN 'billing_by_association' THEN 'pg_catalog.text, pg_catalog.text'
    WHEN 'billing_statement' THEN 'pg_catalog.text, pg_catalog.timestamptz, pg_catalog.timestamptz'
    WHEN 'billing_price' THEN 'pg_catalog.text, pg_catalog.int8'
    WHEN 'billing_verify' THEN 'pg_catalog.text'
    WHEN 'billing_expire' THEN 'pg_catalog.timestamptz, pg_catalog.int4'
    WHEN 'billing_revoke_subscription' THEN 'pg_catalog.text, pg_catalog.text'
    WHEN 'billing_adjust' THEN 'pg_catalog.text, pg_catalog.numeric, pg_catalog.text, pg_catalog.text'
    WHEN 'billing_set_low_balance' THEN 'pg_catalog.text, pg_catalog.numeric'
    WHEN 'billing_low_balance_events' THEN 'pg_catalog.int8'
    WHEN 'billing_limits' THEN 'pg_catalog.text'
    WHEN 'billing_set_limit' THEN 'pg_catalog.text, pg_catalog.text, pg_catalog.numeric, pg_catalog.text, pg_catalog.text'
    WHEN 'billing_charge' THEN ''
    WHEN 'billing_hold_charge' THEN ''
END
$$;
COMMENT ON FUNCTION billing.documented_arguments(text) IS
    'The argument types (schema-qualified) of a documented billing function given by name, as may_execute checks it; NULL for an unknown name';

-- The one rule for "may role X use billing_Y": EXECUTE on the documented
-- function (@extschema@.billing_Y, its exact signature) or on its copy in
-- schema billing, directly or through a role it belongs to. Functions are
-- found by their schema-qualified signature with every type qualified, never
-- through a search_path.
CREATE FUNCTION billing.may_execute(role oid, function_name text)
    RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    arguments text := billing.documented_arguments(function_name);
    documented regprocedure;
    copy regprocedure;
BEGIN
    IF arguments IS NULL THEN
        RAISE EXCEPTION 'may_execute does not know the function %', function_name USING ERRCODE = '22023';
    END IF;
    documented := pg_catalog.to_regprocedure(pg_catalog.format('%I.%I(%s)', '@extschema@', function_name, arguments));
    copy := pg_catalog.to_regprocedure(pg_catalog.format('billing.%I(%s)', function_name, arguments));
    RETURN coalesce(pg_catalog.has_function_privilege(role, documented, 'EXECUTE'), false)
        OR coalesce(pg_catalog.has_function_privilege(role, copy, 'EXECUTE'), false);
END
$$;
COMMENT ON FUNCTION billing.may_execute(oid, text) IS
    'Whether a role may execute a documented billing function, given by name: EXECUTE on @extschema@.<name> with its documented signature, or on its copy billing.<name>';

-- What the charging triggers made themselves: the charges (ledger entries) of
-- billing_charge and the holds of billing_hold_charge, each with the table it
-- was made for. A row's DELETE or failure gives back only these.
CREATE TABLE billing.trigger_charges (
    user_id     text    NOT NULL,
    is_hold     boolean NOT NULL,
    id          bigint  NOT NULL,
    table_name  text    NOT NULL,
    PRIMARY KEY (user_id, is_hold, id)
);
COMMENT ON TABLE billing.trigger_charges IS
    'The charges and holds that a charging trigger made itself (not those an INSERT under an existing key replayed): only these are refunded, released or settled when their row is deleted, fails or gets its cost';
COMMENT ON COLUMN billing.trigger_charges.user_id IS 'The user charged';
COMMENT ON COLUMN billing.trigger_charges.is_hold IS 'false: id is the billing_charge entry''s account_log.id; true: id is the billing_hold_charge hold''s holds.hold_id';
COMMENT ON COLUMN billing.trigger_charges.id IS 'The ledger entry or hold the trigger made';
COMMENT ON COLUMN billing.trigger_charges.table_name IS 'The table whose trigger made it, as schema.table quoted where needed (the name survives a dump and restore)';

-- The name of the table a trigger fires on, as the application sees it: on a
-- Citus cluster a distributed table's trigger fires on its shards, which are
-- named table_SHARDID (cut short and hashed when that is too long), as is the
-- trigger on each (the trigger functions take that suffix off); Citus's
-- catalog pg_dist_shard says which table a shard belongs to. Keys derived from
-- the name (and trigger_charges.table_name) then name the table, never a
-- shard, so a row charged before the table was distributed is found after.
CREATE FUNCTION billing.table_as_seen(table_oid oid, table_name name)
    RETURNS name
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shard text := substring(table_name FROM '_([0-9]+)$');
    seen name;
BEGIN
    IF shard IS NULL OR to_regclass('pg_catalog.pg_dist_shard') IS NULL THEN
        RETURN table_name;
    END IF;
    SELECT c.relname INTO seen
      FROM pg_catalog.pg_dist_shard AS s JOIN pg_catalog.pg_class AS c ON c.oid = s.logicalrelid
     WHERE s.shardid = shard::bigint AND c.relnamespace = (SELECT r.relnamespace FROM pg_catalog.pg_class AS r
                                                          WHERE r.oid = table_oid)
       AND c.oid <> table_oid
       AND (c.relname || '_' || shard = table_name OR octet_length(c.relname || '_' || shard) > 63);
    RETURN coalesce(seen, table_name);
END
$$;
COMMENT ON FUNCTION billing.table_as_seen(oid, name) IS
    'Internal: the name of the table a trigger fires on as the application sees it (on Citus, the distributed table a shard belongs to)';

-- Raises 42501 unless the table's owner may execute function_name: a
-- charging trigger does what its table's owner may do, checked as it fires.
CREATE FUNCTION billing.trigger_privilege(table_oid oid, trigger_function text, function_name text)
    RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner oid;
BEGIN
    SELECT c.relowner INTO owner FROM pg_catalog.pg_class AS c WHERE c.oid = table_oid;
    IF NOT billing.may_execute(owner, function_name) THEN
        RAISE EXCEPTION 'permission denied for function %: % on table % acts for the table''s owner %, who may not execute it',
                function_name, trigger_function, table_oid::regclass, owner::regrole
            USING ERRCODE = '42501',
                  DETAIL = 'A charging trigger charges, holds, settles, releases and refunds only as far as the owner of its table may call those functions itself.',
                  HINT = pg_catalog.format('GRANT EXECUTE ON FUNCTION %s(%s) TO %s; (docs/triggers.md, Privileges)',
                                           function_name,
                                           pg_catalog.replace(billing.documented_arguments(function_name), 'pg_catalog.', ''),
                                           owner::regrole);
    END IF;
END
$$;
COMMENT ON FUNCTION billing.trigger_privilege(oid, text, text) IS
    'Raises 42501 naming the function unless the owner of the trigger''s table may execute it (billing.may_execute)';

-- The charge (holding false: account_log.id) or hold (true: holds.hold_id)
-- that a charging trigger on on_table made under the user and key, or NULL.
CREATE FUNCTION billing.trigger_made(charged_user text, row_key text, on_table text, holding boolean)
    RETURNS bigint
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    made bigint;
BEGIN
    -- PL/pgSQL, one table per statement: Citus cannot plan a SQL function's
    -- statement that takes parameters
    IF holding THEN
        SELECT h.hold_id INTO made FROM billing.holds AS h
         WHERE h.user_id = charged_user AND h.idempotency_key = row_key;
    ELSE
        SELECT l.id INTO made FROM billing.account_log AS l
         WHERE l.user_id = charged_user AND l.idempotency_key = row_key;
    END IF;
    PERFORM FROM billing.trigger_charges AS t
     WHERE t.user_id = charged_user AND t.is_hold = holding AND t.table_name = on_table AND t.id = made;
    RETURN CASE WHEN FOUND THEN made END;
END
$$;
COMMENT ON FUNCTION billing.trigger_made(text, text, text, boolean) IS
    'The charge (account_log.id) or hold (holds.hold_id) that a charging trigger on the table made under this user and key, or NULL';

-- Checks how the trigger is fired and parses its arguments into a jsonb
-- object {name: value}. Every firing does this, so a misconfigured trigger
-- fails at its first firing, whatever the event.
CREATE FUNCTION billing.trigger_config(
        trigger_function text, trigger_name name, trigger_when text, trigger_level text,
        trigger_op text, table_schema name, table_name name, arguments text[])
    RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    about text := format('Trigger %I on table %I.%I runs %s.', trigger_name, table_schema, table_name, trigger_function);
    usage text := format('CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON ... FOR EACH ROW EXECUTE FUNCTION %s(''user_column=...'', ''amount=...'', ''account_type=...'', ''source_type=...'', ''source=...'', ''association_column=...''); see docs/triggers.md.', trigger_function);
    holding boolean := trigger_function = 'billing_hold_charge';
    allowed text[] := ARRAY['user_column', 'amount', 'amount_column', 'account_type', 'source_type', 'source',
                            'remark', 'association_column', 'key_column', 'status_column', 'failed_status',
                            'scope_column'];
    required text[] := ARRAY['user_column', 'account_type', 'source_type', 'source'];
    config jsonb := '{}';
    argument text;
    arg_name text;
    arg_value text;
    ttl interval;
BEGIN
    IF trigger_level <> 'ROW' THEN
        RAISE EXCEPTION '% must be fired FOR EACH ROW, not FOR EACH %', trigger_function, trigger_level
            USING ERRCODE = '39P01', DETAIL = about, HINT = usage;
    END IF;
    IF trigger_when <> 'AFTER' THEN
        RAISE EXCEPTION '% must be fired AFTER the row is written, not %', trigger_function, trigger_when
            USING ERRCODE = '39P01', DETAIL = about, HINT = usage;
    END IF;
    IF holding THEN
        allowed := allowed || ARRAY['actual_column', 'ttl', 'allow_debt'];
        required := required || ARRAY['actual_column'];
    END IF;
    FOREACH argument IN ARRAY coalesce(arguments, '{}'::text[]) LOOP
        IF strpos(argument, '=') = 0 THEN
            RAISE EXCEPTION 'trigger argument "%" is not of the form name=value', argument
                USING ERRCODE = '22023', DETAIL = about, HINT = usage;
        END IF;
        arg_name := substr(argument, 1, strpos(argument, '=') - 1);
        arg_value := substr(argument, strpos(argument, '=') + 1);
        IF NOT arg_name = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown trigger argument "%"', arg_name
                USING ERRCODE = '22023', DETAIL = about,
                      HINT = format('%s takes %s.', trigger_function, array_to_string(allowed, ', '));
        END IF;
        IF config ? arg_name THEN
            RAISE EXCEPTION '% is given twice', arg_name USING ERRCODE = '22023', DETAIL = about;
        END IF;
        IF arg_value !~ '[^[:space:]]' THEN
            RAISE EXCEPTION '% must not be empty', arg_name USING ERRCODE = '22023', DETAIL = about;
        END IF;
        config := config || jsonb_build_object(arg_name, arg_value);
    END LOOP;
    FOREACH arg_name IN ARRAY required LOOP
        IF NOT config ? arg_name THEN
            RAISE EXCEPTION '% is required', arg_name USING ERRCODE = '22023', DETAIL = about, HINT = usage;
        END IF;
    END LOOP;
    IF config ? 'amount' AND config ? 'amount_column' THEN
        RAISE EXCEPTION 'amount and amount_column cannot both be given' USING ERRCODE = '22023', DETAIL = about,
            HINT = 'Give a fixed amount (amount=5) or the column that holds it (amount_column=cost).';
    END IF;
    IF NOT (config ? 'amount' OR config ? 'amount_column') THEN
        RAISE EXCEPTION 'amount or amount_column is required' USING ERRCODE = '22023', DETAIL = about,
            HINT = 'Give a fixed amount (amount=5) or the column that holds it (amount_column=cost).';
    END IF;
    IF config ? 'amount' THEN
        config := config || jsonb_build_object('amount', billing.check_amount('amount', config ->> 'amount', false)::text);
    END IF;
    IF NOT (config ? 'key_column' OR config ? 'association_column') THEN
        RAISE EXCEPTION 'association_column or key_column is required' USING ERRCODE = '22023', DETAIL = about,
            HINT = 'The trigger finds the charge of a row again by that column''s value, which must not be NULL and must be unique per user in the table (a primary key, for example).';
    END IF;
    IF config ? 'status_column' AND NOT config ? 'failed_status' THEN
        RAISE EXCEPTION 'failed_status is required with status_column' USING ERRCODE = '22023', DETAIL = about;
    END IF;
    IF config ? 'failed_status' AND NOT config ? 'status_column' THEN
        RAISE EXCEPTION 'status_column is required with failed_status' USING ERRCODE = '22023', DETAIL = about;
    END IF;
    IF trigger_op = 'UPDATE' AND NOT holding AND NOT config ? 'status_column' THEN
        RAISE EXCEPTION 'status_column is required when billing_charge fires on UPDATE' USING ERRCODE = '22023',
            DETAIL = about,
            HINT = 'An UPDATE refunds the charge when status_column changes to failed_status. Without them, create the trigger AFTER INSERT OR DELETE only.';
    END IF;
    IF config ? 'ttl' THEN
        BEGIN
            ttl := (config ->> 'ttl')::interval;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
            RAISE EXCEPTION 'ttl is not an interval: %', config ->> 'ttl' USING ERRCODE = '22023', DETAIL = about,
                HINT = 'For example ttl=2 hours.';
        END;
        IF ttl <= interval '0' OR ttl > interval '30 days' THEN
            RAISE EXCEPTION 'ttl must be longer than zero and at most 30 days, got %', config ->> 'ttl'
                USING ERRCODE = '22023', DETAIL = about;
        END IF;
    END IF;
    IF config ? 'allow_debt' AND NOT (config ->> 'allow_debt') = ANY (ARRAY['true', 'false']) THEN
        RAISE EXCEPTION 'allow_debt must be true or false, got %', config ->> 'allow_debt'
            USING ERRCODE = '22023', DETAIL = about;
    END IF;
    IF length(config ->> 'remark') > 4000 THEN
        RAISE EXCEPTION 'remark is longer than 4000 characters' USING ERRCODE = '22023', DETAIL = about;
    END IF;
    RETURN config;
END
$$;
COMMENT ON FUNCTION billing.trigger_config(text, name, text, text, text, name, name, text[]) IS
    'Checks that a charging trigger is fired AFTER, FOR EACH ROW (39P01) and parses its name=value arguments (22023 naming the argument)';

-- Who a row belongs to and how its charge is found: ARRAY[user_id,
-- idempotency key, association_no]. Every configured column is read (or
-- checked to exist), so an unknown column fails at the first firing.
CREATE FUNCTION billing.trigger_identity(config jsonb, tuple record, table_schema name, table_name name)
    RETURNS text[]
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    user_id text := billing.trigger_column(tuple, 'user_column', config ->> 'user_column');
    association text;
    row_key text;
    other text;
BEGIN
    IF config ? 'association_column' THEN
        association := billing.trigger_column(tuple, 'association_column', config ->> 'association_column');
    END IF;
    IF config ? 'key_column' THEN
        row_key := billing.trigger_column(tuple, 'key_column', config ->> 'key_column');
    ELSIF association IS NOT NULL THEN
        row_key := 'trigger:' || table_schema || '.' || table_name || ':' || association;
    END IF;
    FOREACH other IN ARRAY ARRAY['amount_column', 'status_column', 'actual_column'] LOOP
        IF config ? other THEN
            PERFORM billing.trigger_column(tuple, other, config ->> other);
        END IF;
    END LOOP;
    RETURN ARRAY[user_id, row_key, association];
END
$$;
COMMENT ON FUNCTION billing.trigger_identity(jsonb, record, name, name) IS
    'The user_id, the idempotency key that finds the row''s charge, and the association_no of a row of a charging trigger''s table';

-- A new row must say whose it is and carry the key its charge is found by.
CREATE FUNCTION billing.trigger_require(config jsonb, identity text[])
    RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF identity[1] IS NULL THEN
        RAISE EXCEPTION 'user_column "%" must not be NULL in a new row', config ->> 'user_column'
            USING ERRCODE = '22004';
    END IF;
    IF identity[2] IS NULL AND config ? 'key_column' THEN
        RAISE EXCEPTION 'key_column "%" must not be NULL in a new row', config ->> 'key_column'
            USING ERRCODE = '22004',
                  HINT = 'The trigger finds the row''s charge again by this value.';
    END IF;
    IF identity[2] IS NULL THEN
        RAISE EXCEPTION 'association_column "%" must not be NULL in a new row', config ->> 'association_column'
            USING ERRCODE = '22004',
                  HINT = 'The trigger finds the row''s charge again by this value; give key_column to find it by another column.';
    END IF;
END
$$;
COMMENT ON FUNCTION billing.trigger_require(jsonb, text[]) IS
    'Raises 22004 naming user_column, key_column or association_column when a new row has no user or no key';

-- An UPDATE must not move a charged row to another user or key: its charge
-- could no longer be found, and would never be refunded. found_old says
-- whether a charge (or hold) exists under the old values.
CREATE FUNCTION billing.trigger_keep_identity(config jsonb, old_identity text[], new_identity text[], found_old boolean)
    RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    argument text;
BEGIN
    IF NOT found_old THEN
        RETURN;
    END IF;
    IF old_identity[1] IS DISTINCT FROM new_identity[1] THEN
        argument := 'user_column';
    ELSIF config ? 'key_column' THEN
        argument := 'key_column';
    ELSE
        argument := 'association_column';
    END IF;
    RAISE EXCEPTION '% "%" must not change in a row that was charged', argument, config ->> argument
        USING ERRCODE = '22023',
              DETAIL = format('It would change from %s to %s.',
                              coalesce(quote_literal(CASE argument WHEN 'user_column' THEN old_identity[1] ELSE old_identity[2] END), 'NULL'),
                              coalesce(quote_literal(CASE argument WHEN 'user_column' THEN new_identity[1] ELSE new_identity[2] END), 'NULL')),
              HINT = 'The trigger finds the row''s charge by these columns. Delete the row (which refunds it) and insert a new one.';
END
$$;
COMMENT ON FUNCTION billing.trigger_keep_identity(jsonb, text[], text[], boolean) IS
    'Raises 22023 naming the argument when an UPDATE changes the user or key of a row that has a charge or hold';

-- The charge (or hold) that the trigger on this table made for a row (NULL
-- when it made none): by the row's key, or else by the key as this session's
-- settings write it, which is how 0.2.0 derived keys from a date, time,
-- bytea, float or money column (a row charged before the upgrade is found
-- under the settings it was inserted with, as it was then).
CREATE FUNCTION billing.trigger_find(config jsonb, tuple record, table_schema name, table_name name,
                                     identity text[], holding boolean)
    RETURNS billing.trigger_charges
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    on_table text := format('%I.%I', table_schema, table_name);
    found billing.trigger_charges;
    session_user_id text;
    session_key text;
BEGIN
    IF identity[1] IS NULL OR identity[2] IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT t.* INTO found FROM billing.trigger_charges AS t
     WHERE t.user_id = identity[1] AND t.is_hold = holding
       AND t.id = billing.trigger_made(identity[1], identity[2], on_table, holding);
    IF found.id IS NOT NULL THEN
        RETURN found;
    END IF;
    session_user_id := billing.trigger_session_column(tuple, 'user_column', config ->> 'user_column');
    IF config ? 'key_column' THEN
        session_key := billing.trigger_session_column(tuple, 'key_column', config ->> 'key_column');
    ELSE
        session_key := 'trigger:' || table_schema || '.' || table_name || ':'
                       || billing.trigger_session_column(tuple, 'association_column', config ->> 'association_column');
    END IF;
    IF session_user_id IS NULL OR session_key IS NULL
       OR (session_user_id = identity[1] AND session_key = identity[2]) THEN
        RETURN NULL;
    END IF;
    SELECT t.* INTO found FROM billing.trigger_charges AS t
     WHERE t.user_id = session_user_id AND t.is_hold = holding
       AND t.id = billing.trigger_made(session_user_id, session_key, on_table, holding);
    RETURN found;
END
$$;
COMMENT ON FUNCTION billing.trigger_find(jsonb, record, name, name, text[], boolean) IS
    'The charge or hold that the charging trigger on this table made for a row (billing.trigger_charges), by the row''s key or, for a row charged before 0.3.0, by the key as this session''s settings write it';

-- Records a charge or hold that the trigger has just made for a row of its
-- table: made is what billing_deduct or billing_hold returned, found_before
-- whether the key had a charge (hold) before the call. A replay (the key was
-- taken, or a concurrent transaction committed it in the meantime) is not
-- recorded, so the row's DELETE or failure never gives it back.
CREATE FUNCTION billing.trigger_record(charged_user text, holding boolean, made bigint, found_before boolean,
                                       table_schema name, table_name name)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fresh boolean;
BEGIN
    IF found_before THEN
        RETURN false;
    END IF;
    IF holding THEN
        SELECT billing.written_in_this_transaction(h.xmin) INTO fresh FROM billing.holds AS h
         WHERE h.user_id = charged_user AND h.hold_id = made;
    ELSE
        SELECT billing.written_in_this_transaction(l.xmin) INTO fresh FROM billing.account_log AS l
         WHERE l.user_id = charged_user AND l.id = made;
    END IF;
    IF fresh THEN
        INSERT INTO billing.trigger_charges (user_id, is_hold, id, table_name)
        VALUES (charged_user, holding, made, format('%I.%I', table_schema, table_name));
    END IF;
    RETURN coalesce(fresh, false);
END
$$;
COMMENT ON FUNCTION billing.trigger_record(text, boolean, bigint, boolean, name, name) IS
    'Records in billing.trigger_charges a charge or hold that a charging trigger has just made (not one it replayed); returns whether it did';

-- Refunds what is left of a charge, once: the refund's key is derived from
-- the charge, so a second firing replays the first refund. A charge already
-- refunded in full another way is left alone. The account row is locked
-- first, then the refunds are read: a concurrent refund of the same charge
-- has committed by then, and only what it left is refunded.
CREATE FUNCTION billing.trigger_refund(charged_user text, charge_id bigint, why text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    refund_key text := 'trigger-refund:' || charge_id;
    charged numeric;
    given numeric;
BEGIN
    PERFORM FROM billing.accounts AS a WHERE a.user_id = charged_user FOR UPDATE;
    PERFORM FROM billing.account_log AS l WHERE l.user_id = charged_user AND l.idempotency_key = refund_key;
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT l.amount INTO charged FROM billing.account_log AS l WHERE l.user_id = charged_user AND l.id = charge_id;
    SELECT coalesce(sum(l.amount), 0) INTO given FROM billing.account_log AS l
     WHERE l.user_id = charged_user AND l.refund_of = charge_id;
    IF given >= charged THEN
        RETURN;
    END IF;
    PERFORM billing.billing_user_refund(charged_user::text, charge_id::bigint, NULL::numeric, why::text, refund_key::text);
END
$$;
COMMENT ON FUNCTION billing.trigger_refund(text, bigint, text) IS
    'Refunds what is left of a charge once, with the key trigger-refund:<charge id>, reading what is left after locking the account row';

CREATE FUNCTION @extschema@.billing_charge()
    RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seen_as name := billing.table_as_seen(TG_RELID, TG_TABLE_NAME);
    -- on a shard Citus names the trigger as the shard, name_SHARDID: the application's name
    trigger_seen_as name := CASE WHEN seen_as = TG_TABLE_NAME THEN TG_NAME
                                 ELSE pg_catalog.regexp_replace(TG_NAME, '_[0-9]+$', '') END;
    config jsonb := billing.trigger_config('billing_charge', trigger_seen_as, TG_WHEN, TG_LEVEL, TG_OP,
                                           TG_TABLE_SCHEMA, seen_as, TG_ARGV);
    failed text := config ->> 'failed_status';
    why text;
    old_identity text[];
    new_identity text[];
    charge_id bigint;
    made bigint;
    own billing.trigger_charges;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, seen_as);
        PERFORM billing.trigger_require(config, new_identity);
        -- a row that is failed from the start is never charged
        IF billing.trigger_column(NEW, 'status_column', config ->> 'status_column') = failed THEN
            RETURN NULL;
        END IF;
        PERFORM billing.trigger_privilege(TG_RELID, 'billing_charge', 'billing_deduct');
        SELECT l.id INTO charge_id FROM billing.account_log AS l
         WHERE l.user_id = new_identity[1] AND l.idempotency_key = new_identity[2];
        -- a key charges once: a row that comes back after this table's charge for it was refunded is refused
        IF charge_id IS NOT NULL
           AND charge_id = billing.trigger_made(new_identity[1], new_identity[2],
                                                format('%I.%I', TG_TABLE_SCHEMA, seen_as), false) THEN
            PERFORM FROM billing.account_log AS l WHERE l.user_id = new_identity[1] AND l.refund_of = charge_id;
            IF FOUND THEN
                RAISE EXCEPTION 'idempotency key "%" of this row was charged and refunded already', new_identity[2]
                    USING ERRCODE = 'PB003',
                          DETAIL = 'A row of this table with this key was charged, and that charge has been refunded.',
                          HINT = 'A row''s charge is found by its key, so a key charges once: give the new row a new value.';
            END IF;
        END IF;
        SELECT d.id INTO made FROM billing.billing_deduct(
            new_identity[1]::text,
            coalesce((config ->> 'amount')::numeric,
                     billing.check_amount(format('amount_column %I', config ->> 'amount_column'),
                                            billing.trigger_column(NEW, 'amount_column', config ->> 'amount_column'),
                                            false))::numeric,
            (config ->> 'account_type')::text, (config ->> 'source_type')::text, (config ->> 'source')::text,
            (config ->> 'remark')::text, new_identity[3]::text, NULL::text, new_identity[2]::text,
            billing.trigger_scopes(NEW, 'scope_column', config ->> 'scope_column')::text[]) AS d;
        PERFORM billing.trigger_record(new_identity[1], false, made, charge_id IS NOT NULL, TG_TABLE_SCHEMA, seen_as);
        RETURN NULL;
    END IF;

    old_identity := billing.trigger_identity(config, OLD, TG_TABLE_SCHEMA, seen_as);
    own := billing.trigger_find(config, OLD, TG_TABLE_SCHEMA, seen_as, old_identity, false);
    IF TG_OP = 'UPDATE' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, seen_as);
        IF old_identity[1:2] IS DISTINCT FROM new_identity[1:2] THEN
            PERFORM billing.trigger_keep_identity(config, old_identity, new_identity, own.id IS NOT NULL);
        END IF;
        -- only the change into the failed status refunds
        IF billing.trigger_column(NEW, 'status_column', config ->> 'status_column') IS DISTINCT FROM failed
           OR billing.trigger_column(OLD, 'status_column', config ->> 'status_column') IS NOT DISTINCT FROM failed THEN
            RETURN NULL;
        END IF;
        why := format('trigger %I on %I.%I: %s became %s', trigger_seen_as, TG_TABLE_SCHEMA, seen_as,
                      config ->> 'status_column', failed);
    ELSE
        why := format('trigger %I on %I.%I: row deleted', trigger_seen_as, TG_TABLE_SCHEMA, seen_as);
    END IF;
    IF own.id IS NOT NULL THEN
        PERFORM billing.trigger_privilege(TG_RELID, 'billing_charge', 'billing_refund');
        PERFORM billing.trigger_refund(own.user_id, own.id, why);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_charge() IS
    'Row trigger (AFTER INSERT OR UPDATE OR DELETE) configured by name=value arguments: charges each new row with billing_deduct, and refunds that charge with billing_refund once, when the row is deleted or its status becomes failed_status; acts with the billing privileges of the table''s owner';

CREATE FUNCTION @extschema@.billing_hold_charge()
    RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seen_as name := billing.table_as_seen(TG_RELID, TG_TABLE_NAME);
    -- on a shard Citus names the trigger as the shard, name_SHARDID: the application's name
    trigger_seen_as name := CASE WHEN seen_as = TG_TABLE_NAME THEN TG_NAME
                                 ELSE pg_catalog.regexp_replace(TG_NAME, '_[0-9]+$', '') END;
    config jsonb := billing.trigger_config('billing_hold_charge', trigger_seen_as, TG_WHEN, TG_LEVEL, TG_OP,
                                           TG_TABLE_SCHEMA, seen_as, TG_ARGV);
    failed text := config ->> 'failed_status';
    allow_debt boolean := coalesce((config ->> 'allow_debt')::boolean, false);
    actual_argument text := format('actual_column %I', config ->> 'actual_column');
    why text;
    actual text;
    old_identity text[];
    new_identity text[];
    hold_row billing.holds;
    own billing.trigger_charges;
    made bigint;
    mine boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, seen_as);
        PERFORM billing.trigger_require(config, new_identity);
        IF billing.trigger_column(NEW, 'status_column', config ->> 'status_column') = failed THEN
            RETURN NULL;
        END IF;
        PERFORM billing.trigger_privilege(TG_RELID, 'billing_hold_charge', 'billing_hold');
        SELECT h.* INTO hold_row FROM billing.holds AS h
         WHERE h.user_id = new_identity[1] AND h.idempotency_key = new_identity[2];
        -- this table's own earlier hold under the key (two rows sharing a key share it)
        mine := hold_row.hold_id IS NOT NULL
                AND hold_row.hold_id = billing.trigger_made(new_identity[1], new_identity[2],
                                                            format('%I.%I', TG_TABLE_SCHEMA, seen_as), true);
        -- a key holds once: a row that comes back after this table's hold for it was closed is refused
        IF mine AND hold_row.status <> 'held' THEN
            RAISE EXCEPTION 'idempotency key "%" of this row was used by a hold that is % already', new_identity[2], hold_row.status
                USING ERRCODE = 'PB003',
                      DETAIL = 'A row of this table with this key was held for, and that hold is closed.',
                      HINT = 'A row''s hold is found by its key, so a key holds once: give the new row a new value.';
        END IF;
        SELECT h.hold_id INTO made FROM billing.billing_hold(
            new_identity[1]::text,
            coalesce((config ->> 'amount')::numeric,
                     billing.check_amount(format('amount_column %I', config ->> 'amount_column'),
                                            billing.trigger_column(NEW, 'amount_column', config ->> 'amount_column'),
                                            false))::numeric,
            (config ->> 'account_type')::text, (config ->> 'source_type')::text, (config ->> 'source')::text,
            (config ->> 'remark')::text, new_identity[3]::text, NULL::text,
            coalesce((config ->> 'ttl')::interval, interval '15 minutes')::interval,
            new_identity[2]::text,
            billing.trigger_scopes(NEW, 'scope_column', config ->> 'scope_column')::text[]) AS h;
        mine := billing.trigger_record(new_identity[1], true, made, hold_row.hold_id IS NOT NULL,
                                       TG_TABLE_SCHEMA, seen_as)
                OR mine;
        -- the cost may be known already; a replayed hold that is not this table's is left alone
        actual := billing.trigger_column(NEW, 'actual_column', config ->> 'actual_column');
        IF actual IS NOT NULL AND mine THEN
            PERFORM billing.trigger_privilege(TG_RELID, 'billing_hold_charge', 'billing_settle');
            PERFORM billing.billing_user_settle(new_identity[1]::text, made::bigint,
                                                billing.check_amount(actual_argument, actual, true)::numeric,
                                                NULL::text, allow_debt::boolean);
        END IF;
        RETURN NULL;
    END IF;

    old_identity := billing.trigger_identity(config, OLD, TG_TABLE_SCHEMA, seen_as);
    own := billing.trigger_find(config, OLD, TG_TABLE_SCHEMA, seen_as, old_identity, true);
    IF TG_OP = 'UPDATE' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, seen_as);
        IF old_identity[1:2] IS DISTINCT FROM new_identity[1:2] THEN
            PERFORM billing.trigger_keep_identity(config, old_identity, new_identity, own.id IS NOT NULL);
        END IF;
        IF own.id IS NULL THEN
            RETURN NULL;
        END IF;
        IF failed IS NOT NULL
           AND billing.trigger_column(NEW, 'status_column', config ->> 'status_column') IS NOT DISTINCT FROM failed THEN
            IF billing.trigger_column(OLD, 'status_column', config ->> 'status_column') IS NOT DISTINCT FROM failed THEN
                RETURN NULL;
            END IF;
            why := format('trigger %I on %I.%I: %s became %s', trigger_seen_as, TG_TABLE_SCHEMA, seen_as,
                          config ->> 'status_column', failed);
        ELSE
            -- the actual cost was written (or changed): settle; a repeat of the same cost replays.
            -- A hold released when the row failed stays released: the row is not charged again.
            actual := billing.trigger_column(NEW, 'actual_column', config ->> 'actual_column');
            IF actual IS NOT NULL
               AND actual IS DISTINCT FROM billing.trigger_column(OLD, 'actual_column', config ->> 'actual_column') THEN
                SELECT h.* INTO hold_row FROM billing.holds AS h WHERE h.user_id = own.user_id AND h.hold_id = own.id;
                IF hold_row.status <> 'released' THEN
                    PERFORM billing.trigger_privilege(TG_RELID, 'billing_hold_charge', 'billing_settle');
                    PERFORM billing.billing_user_settle(own.user_id::text, own.id::bigint,
                                                        billing.check_amount(actual_argument, actual, true)::numeric,
                                                        NULL::text, allow_debt::boolean);
                END IF;
            END IF;
            RETURN NULL;
        END IF;
    ELSE
        IF own.id IS NULL THEN
            RETURN NULL;
        END IF;
        why := format('trigger %I on %I.%I: row deleted', trigger_seen_as, TG_TABLE_SCHEMA, seen_as);
    END IF;
    -- failure: give back what is held, or refund what was charged. The account
    -- row is locked first and the hold read after, so a concurrent release or
    -- settle of it has committed and is seen.
    PERFORM FROM billing.accounts AS a WHERE a.user_id = own.user_id FOR UPDATE;
    SELECT h.* INTO hold_row FROM billing.holds AS h WHERE h.user_id = own.user_id AND h.hold_id = own.id;
    IF hold_row.status = 'held' THEN
        PERFORM billing.trigger_privilege(TG_RELID, 'billing_hold_charge', 'billing_release');
        PERFORM billing.billing_user_release(own.user_id::text, own.id::bigint, why::text);
    ELSIF hold_row.status = 'settled' AND hold_row.log_id IS NOT NULL THEN
        PERFORM billing.trigger_privilege(TG_RELID, 'billing_hold_charge', 'billing_refund');
        PERFORM billing.trigger_refund(own.user_id, hold_row.log_id, why);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_hold_charge() IS
    'Row trigger (AFTER INSERT OR UPDATE OR DELETE) for work of unknown cost, configured by name=value arguments: holds power for each new row with billing_hold, settles the hold when actual_column is set, and releases it (or refunds the settled charge) when the row is deleted or its status becomes failed_status; acts with the billing privileges of the table''s owner';
