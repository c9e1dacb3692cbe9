-- billing 0.2.0 -> 0.3.0: a database shared with roles the extension does not
-- trust (issue 11), and the other changes of 0.3.0. Each section is a delta from
-- 0.2.0; tests/upgrade.rs checks that an upgraded catalog equals a fresh install.

-- == Who made each entry: the session user and the calling role ==
CREATE FUNCTION billing.calling_role()
    RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_calling_role';
COMMENT ON FUNCTION billing.calling_role() IS
    'The role that called the running function: the session user or the role set with SET ROLE, which SECURITY DEFINER does not change';

REVOKE ALL ON FUNCTION billing.calling_role() FROM PUBLIC;
-- Entries made before 0.3.0 keep NULL (who made them was not recorded).
ALTER TABLE billing.account_log ADD COLUMN session_role text;
ALTER TABLE billing.account_log ADD COLUMN calling_role text;
ALTER TABLE billing.account_log ALTER COLUMN session_role SET DEFAULT SESSION_USER;
ALTER TABLE billing.account_log ALTER COLUMN calling_role SET DEFAULT billing.calling_role();
COMMENT ON COLUMN billing.account_log.session_role IS 'The session user of the connection that made the entry (NULL: made before 0.3.0)';
COMMENT ON COLUMN billing.account_log.calling_role IS 'The role that called the function (after SET ROLE, before the SECURITY DEFINER switch) (NULL: made before 0.3.0)';

-- == Low-balance events: the channel carries no payload ==
CREATE SEQUENCE billing.low_balance_events_id_seq;
CREATE TABLE billing.low_balance_events (
    user_id     text NOT NULL,
    event_id    bigint NOT NULL DEFAULT pg_catalog.nextval('billing.low_balance_events_id_seq'::pg_catalog.regclass),
    threshold   numeric NOT NULL,
    available   numeric NOT NULL,
    at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, event_id)
);
ALTER SEQUENCE billing.low_balance_events_id_seq OWNED BY billing.low_balance_events.event_id;
CREATE INDEX low_balance_events_by_id ON billing.low_balance_events (event_id);
CREATE INDEX low_balance_events_by_time ON billing.low_balance_events (at);
COMMENT ON TABLE billing.low_balance_events IS 'Low-balance events: a change took a user''s available power below the threshold (billing_set_low_balance). Read with billing_low_balance_events; billing_expire deletes events older than 7 days.';
COMMENT ON COLUMN billing.low_balance_events.user_id IS 'The user whose power went below the threshold';
COMMENT ON COLUMN billing.low_balance_events.event_id IS 'Increasing event id (billing_low_balance_events(after_id) reads the events after one)';
COMMENT ON COLUMN billing.low_balance_events.threshold IS 'The threshold that was crossed';
COMMENT ON COLUMN billing.low_balance_events.available IS 'Available power right after the change';
COMMENT ON COLUMN billing.low_balance_events.at IS 'now() of the transaction that crossed the threshold';
COMMENT ON SEQUENCE billing.low_balance_events_id_seq IS 'Low-balance event ids';
COMMENT ON INDEX billing.low_balance_events_by_id IS 'billing_low_balance_events: the events after an id';
COMMENT ON INDEX billing.low_balance_events_by_time IS 'billing_expire: deleting events older than 7 days';

CREATE OR REPLACE FUNCTION billing.notify_low_balance(user_id text, threshold numeric, available numeric)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO billing.low_balance_events (user_id, threshold, available)
    VALUES (notify_low_balance.user_id, trim_scale(notify_low_balance.threshold),
            trim_scale(notify_low_balance.available));
    PERFORM pg_notify('billing_low_balance', '');
END
$$;
COMMENT ON FUNCTION billing.notify_low_balance(text, numeric, numeric) IS
    'Internal: records a low-balance event and sends NOTIFY billing_low_balance without a payload';

CREATE FUNCTION @extschema@.billing_low_balance_events(after_id bigint DEFAULT 0)
    RETURNS TABLE (event_id bigint, user_id text, threshold numeric, available numeric, at timestamptz)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT e.event_id, e.user_id, e.threshold, e.available, e.at
      FROM billing.low_balance_events AS e
     WHERE e.event_id > coalesce(billing_low_balance_events.after_id, 0)
     ORDER BY e.event_id;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_low_balance_events(bigint) IS
    'Low-balance events with an id above after_id, oldest first: event_id, user_id, threshold, available, at. Call it when NOTIFY billing_low_balance arrives (the notification has no payload).';

REVOKE ALL ON FUNCTION @extschema@.billing_low_balance_events(bigint) FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA billing FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('billing.low_balance_events', '');
SELECT pg_catalog.pg_extension_config_dump('billing.low_balance_events_id_seq', '');

-- billing_expire also deletes low-balance events older than 7 days
CREATE OR REPLACE FUNCTION @extschema@.billing_expire(as_of timestamptz DEFAULT pg_catalog.now(), batch_size integer DEFAULT 10000)
    RETURNS bigint
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    candidates text[];
    users text[] := '{}';
    one text;
    expired bigint := 0;
    holds_ended bigint;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF as_of > now() THEN
        RAISE EXCEPTION 'as_of must not be in the future' USING ERRCODE = '22023',
            DETAIL = 'Grants are expired only once their expire_at has passed.';
    END IF;
    IF batch_size IS NULL THEN
        RAISE EXCEPTION 'batch_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF batch_size < 1 OR batch_size > 1000000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 1000000, not %', batch_size USING ERRCODE = '22023';
    END IF;

    -- Low-balance events are kept for 7 days (billing_low_balance_events).
    DELETE FROM billing.low_balance_events AS e WHERE e.at < as_of - interval '7 days';

    -- Lock up to batch_size accounts with an expired grant or a lapsed hold, one
    -- at a time (a lock of rows of several users is one statement Citus cannot
    -- route). Rows another transaction holds (a deduct, another billing_expire)
    -- are skipped, not waited for: the next run takes them.
    SELECT array_agg(a.user_id) INTO candidates
      FROM (SELECT a.user_id FROM billing.accounts AS a
             WHERE a.next_expiry <= as_of OR a.holds_due_at <= now()
             LIMIT batch_size) AS a;
    FOREACH one IN ARRAY coalesce(candidates, '{}') LOOP
        PERFORM FROM billing.accounts AS a
         WHERE a.user_id = one AND (a.next_expiry <= as_of OR a.holds_due_at <= now())
           FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            users := users || one;
        END IF;
    END LOOP;
    IF cardinality(users) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM billing.write_back_heads(users);

    -- Lapsed holds give back what they reserved (no ledger entry: nothing was charged).
    holds_ended := billing.return_due_holds(users);

    -- One MEMBERSHIP_GIFT_EXPIRED entry per grant that expired with power left,
    -- user by user (each statement then touches one Citus shard group).
    FOREACH one IN ARRAY users LOOP
        WITH gone AS (
            SELECT g.user_id, g.id, g.remaining, g.expire_at, g.subscription_id,
                   row_number() OVER (ORDER BY g.expire_at, g.id) AS n
              FROM billing.grant_store AS g
             WHERE g.user_id = one AND g.expire_at <= as_of AND g.remaining > 0
        ), emptied AS (
            UPDATE billing.grant_store AS g
               SET remaining = 0
              FROM gone
             WHERE g.user_id = one AND g.id = gone.id
        ), logged AS (
            INSERT INTO billing.account_log
                   (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
                    remark, subscription_id, expire_at, detail)
            SELECT one, a.last_seq + gone.n, -1, gone.remaining, now_.available,
                   'MEMBERSHIP_GIFT_EXPIRED', 'MEMBERSHIP_GIFT', 'expiry', NULL, gone.subscription_id, gone.expire_at,
                   jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', gone.id, 'amount', gone.remaining)))
              FROM gone
              JOIN billing.accounts AS a ON a.user_id = one
              JOIN billing.balances AS now_ ON now_.user_id = one
            RETURNING 1
        )
        SELECT expired + count(*) INTO expired FROM logged;
    END LOOP;

    PERFORM billing.refresh_accounts(users, 0::numeric, NULL::bigint);
    -- the lapsed holds count too, so that callers loop until nothing is left to do
    RETURN expired + holds_ended;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_expire(timestamptz, integer) IS
    'Ends grants that expired (at or before as_of) with power left, one MEMBERSHIP_GIFT_EXPIRED entry each, and gives back what lapsed holds reserved; up to batch_size accounts per call. Returns how many grants and holds it ended (0: nothing left to do).';

-- == Internal calls go to the protected names, with exact argument types ==
CREATE OR REPLACE FUNCTION @extschema@.billing_adjust(user_id text, delta numeric, remark text, operator text DEFAULT current_user)
    RETURNS billing.account_log
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    target text := billing_adjust.user_id;
    entry billing.account_log;
BEGIN
    PERFORM billing.check_key('user_id', target);
    PERFORM billing.check_key('operator', billing_adjust.operator);
    IF remark IS NULL THEN
        RAISE EXCEPTION 'remark must not be NULL' USING ERRCODE = '22004',
            HINT = 'Say why the balance is corrected; the remark is kept in the ledger.';
    END IF;
    IF btrim(remark) = '' THEN
        RAISE EXCEPTION 'remark must not be empty' USING ERRCODE = '22023',
            HINT = 'Say why the balance is corrected; the remark is kept in the ledger.';
    END IF;
    IF delta IS NULL THEN
        RAISE EXCEPTION 'delta must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF delta = 0 OR delta = 'NaN' THEN
        RAISE EXCEPTION 'delta must not be zero or NaN, got %', delta USING ERRCODE = '22023',
            HINT = 'A positive delta credits the user, a negative one debits.';
    END IF;
    -- the amount rule, for the size of the correction
    PERFORM billing.check_amount('delta'::text, abs(delta)::text, false);
    IF delta > 0 THEN
        -- every argument with its exact type, to the protected name (sql/privileges.sql)
        entry := billing.billing_add(target::text, delta::numeric, 'SYSTEM_MANUAL_INC'::text, 'SYSTEM'::text,
                                     'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                     NULL::timestamptz, NULL::text, NULL::text);
    ELSE
        entry := billing.deduct_uncounted(target::text, (-delta)::numeric, 'SYSTEM_MANUAL_DEC'::text, 'SYSTEM'::text,
                                        'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                        NULL::text);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) IS
    'A manual correction by staff: SYSTEM_MANUAL_INC for a positive delta, SYSTEM_MANUAL_DEC (PB001 if not there) for a negative one, with association_user_id = operator. Returns the ledger entry.';

-- == Charging triggers (issue 11: items 1, 3, 5, 6) ==
-- A trigger acts with the billing privileges of its table's owner, gives back
-- only the charges and holds it made itself (billing.trigger_charges), calls
-- the billing functions through schema billing with exact argument types,
-- shows no other charge in its errors, locks the account before reading a
-- charge's refunds, and writes column values with fixed settings.
COMMENT ON FUNCTION billing.trigger_column(record, text, text) IS
    'The value of one column of a row, as text (NULL when NULL, or when column_name is NULL: an argument not given), through the type''s output function with DateStyle, TimeZone, IntervalStyle, bytea_output, extra_float_digits and lc_monetary fixed, so the same under any session settings; 42703 naming the trigger argument when the row has no such column';

CREATE FUNCTION billing.trigger_session_column(tuple record, argument text, column_name text)
    RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_trigger_session_column';
COMMENT ON FUNCTION billing.trigger_session_column(record, text, text) IS
    'Like trigger_column, but written with the session''s own settings, as 0.2.0 derived keys: finds the charge of a row charged before 0.3.0';

CREATE FUNCTION billing.written_in_this_transaction(row_xmin xid)
    RETURNS boolean
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_written_in_this_transaction';
COMMENT ON FUNCTION billing.written_in_this_transaction(xid) IS
    'Whether a row version (its xmin) was written by the current transaction or one of its subtransactions: tells a charge a trigger just made from one that was replayed';

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

CREATE OR REPLACE FUNCTION billing.trigger_refund(charged_user text, charge_id bigint, why text)
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

CREATE OR REPLACE FUNCTION @extschema@.billing_charge()
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

CREATE OR REPLACE FUNCTION @extschema@.billing_hold_charge()
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

REVOKE ALL ON FUNCTION billing.trigger_session_column(record, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.written_in_this_transaction(xid) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.documented_arguments(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.may_execute(oid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_privilege(oid, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_made(text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_find(jsonb, record, name, name, text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_record(text, boolean, bigint, boolean, name, name) FROM PUBLIC;
REVOKE ALL ON TABLE billing.trigger_charges FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('billing.trigger_charges', '');

-- The charges and holds that 0.2.0's triggers made under derived keys
-- ('trigger:<schema>.<table>:<association value>') become the triggers' own,
-- for the table that has a charging trigger and whose derived prefix the key
-- starts with (the longest such prefix, should two tables' prefixes match), so
-- those rows are refunded (released) after the upgrade as before it. Charges
-- under a key_column are not recorded: the ledger cannot tell them from the
-- application's own charges under the same key (README, "Upgrading").
WITH charging_tables AS (
    SELECT DISTINCT pg_catalog.format('%I.%I', n.nspname, c.relname) AS table_name,
           'trigger:' OPERATOR(pg_catalog.||) n.nspname OPERATOR(pg_catalog.||) '.'
               OPERATOR(pg_catalog.||) c.relname OPERATOR(pg_catalog.||) ':' AS prefix
      FROM pg_catalog.pg_trigger AS t
      JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
      JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE t.tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY['@extschema@.billing_charge()'::pg_catalog.regprocedure,
                                                     '@extschema@.billing_hold_charge()'::pg_catalog.regprocedure]::pg_catalog.oid[])
), made AS (
    SELECT l.user_id, false AS is_hold, l.id, l.idempotency_key AS key
      FROM billing.account_log AS l
     WHERE pg_catalog.starts_with(l.idempotency_key, 'trigger:') AND l.direction OPERATOR(pg_catalog.=) -1
    UNION ALL
    SELECT h.user_id, true, h.hold_id, h.idempotency_key
      FROM billing.holds AS h
     WHERE pg_catalog.starts_with(h.idempotency_key, 'trigger:')
)
INSERT INTO billing.trigger_charges (user_id, is_hold, id, table_name)
SELECT DISTINCT ON (m.user_id, m.is_hold, m.id) m.user_id, m.is_hold, m.id, ct.table_name
  FROM made AS m
  JOIN charging_tables AS ct ON pg_catalog.starts_with(m.key, ct.prefix)
 ORDER BY m.user_id, m.is_hold, m.id, pg_catalog.length(ct.prefix) DESC;

-- == Caches never outlive the truth: type codes (issue 11, item 4) ==
-- The guard of the type tables no longer tests TG_TABLE_NAME (Citus shards
-- rename tables): its trigger arguments say what it guards.
CREATE OR REPLACE FUNCTION billing.guard_type_codes() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        RAISE EXCEPTION '% rows cannot be deleted: the ledger refers to them', TG_ARGV[0]
            USING ERRCODE = 'PB007', HINT = 'Stop using the code instead.';
    END IF;
    IF NEW.code OPERATOR(pg_catalog.<>) OLD.code THEN
        RAISE EXCEPTION 'the code of % rows cannot change: the ledger refers to them', TG_ARGV[0]
            USING ERRCODE = 'PB007', HINT = 'Add a new code instead.';
    END IF;
    -- only a table whose trigger says so has a direction (plpgsql reads NEW.direction only here)
    IF TG_NARGS OPERATOR(pg_catalog.>) 1 AND TG_ARGV[1] OPERATOR(pg_catalog.=) 'direction' THEN
        IF NEW.direction OPERATOR(pg_catalog.<>) OLD.direction THEN
            RAISE EXCEPTION 'the direction of % rows cannot change: the ledger refers to them', TG_ARGV[0]
                USING ERRCODE = 'PB007', HINT = 'Add a new code instead.';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION billing.guard_type_codes() IS 'Trigger: type codes are never renamed, deleted or turned around (arguments: the table''s name for messages, then ''direction'' if its rows have one)';
DROP TRIGGER account_types_guard ON billing.account_types;
DROP TRIGGER source_types_guard ON billing.source_types;
CREATE TRIGGER account_types_guard BEFORE UPDATE OR DELETE ON billing.account_types
    FOR EACH ROW EXECUTE FUNCTION billing.guard_type_codes('account_types', 'direction');
CREATE TRIGGER source_types_guard BEFORE UPDATE OR DELETE ON billing.source_types
    FOR EACH ROW EXECUTE FUNCTION billing.guard_type_codes('source_types');
-- A change to a type table invalidates its relcache entry, which empties every
-- backend's cache of valid codes (at command end, at rollback, at commit elsewhere).
CREATE FUNCTION billing.forget_type_codes() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'billing_forget_type_codes';
COMMENT ON FUNCTION billing.forget_type_codes() IS 'Trigger: a change to a type table empties every backend''s cache of valid type codes (at command end, at rollback, and at commit in other backends)';
CREATE TRIGGER account_types_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.account_types
    FOR EACH STATEMENT EXECUTE FUNCTION billing.forget_type_codes();
CREATE TRIGGER source_types_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing.source_types
    FOR EACH STATEMENT EXECUTE FUNCTION billing.forget_type_codes();
ALTER TABLE billing.account_types ENABLE ALWAYS TRIGGER account_types_changed;
ALTER TABLE billing.source_types ENABLE ALWAYS TRIGGER source_types_changed;
REVOKE ALL ON FUNCTION billing.forget_type_codes() FROM PUBLIC;
-- billing_verify reports entries whose codes are unknown or of the other direction
CREATE OR REPLACE FUNCTION @extschema@.billing_verify(user_id text DEFAULT NULL)
    RETURNS SETOF billing.violation
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    only_user text := billing_verify.user_id;
BEGIN
    RETURN QUERY
    WITH entries AS (
        SELECT l.* FROM billing.account_log AS l
         WHERE only_user IS NULL OR l.user_id = only_user
    ), replayed AS (
        SELECT e.user_id,
               sum(e.direction * coalesce((e.detail ->> 'permanent')::numeric, 0)) AS permanent,
               count(*) AS entries, min(e.seq) AS first_seq, max(e.seq) AS last_seq
          FROM entries AS e GROUP BY e.user_id
    ), last_entries AS (
        SELECT DISTINCT ON (e.user_id) e.user_id, e.seq, e.balance_after, e.created_at
          FROM entries AS e ORDER BY e.user_id, e.seq DESC
    ), grant_moves AS (
        SELECT e.user_id, (g ->> 'id')::bigint AS id, sum(e.direction * (g ->> 'amount')::numeric) AS remaining
          FROM entries AS e, jsonb_array_elements(coalesce(e.detail -> 'grants', '[]')) AS g
         GROUP BY 1, 2
    ), accounts AS (
        SELECT a.* FROM billing.accounts AS a WHERE only_user IS NULL OR a.user_id = only_user
    ), grants AS (
        SELECT g.* FROM billing.grants AS g WHERE only_user IS NULL OR g.user_id = only_user
    ), grant_sums AS (
        SELECT g.user_id, sum(g.remaining) AS remaining, min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry
          FROM grants AS g GROUP BY g.user_id
    ), live_when_last_written AS (
        -- what each user's grants held that was still live when the last entry was written
        SELECT le.user_id, sum(g.remaining) AS remaining
          FROM last_entries AS le JOIN grants AS g ON g.user_id = le.user_id AND g.expire_at > le.created_at
         GROUP BY le.user_id
    ), holds AS (
        SELECT h.* FROM billing.holds AS h WHERE only_user IS NULL OR h.user_id = only_user
    ), hold_parts AS (
        -- what each hold reserved, part by part: grant_id NULL is the permanent balance
        SELECT h.user_id, h.hold_id, h.status, h.reserved_after_seq, h.closed_after_seq,
               NULL::bigint AS grant_id, coalesce((h.funding ->> 'permanent')::numeric, 0) AS amount
          FROM holds AS h
        UNION ALL
        SELECT h.user_id, h.hold_id, h.status, h.reserved_after_seq, h.closed_after_seq,
               (g ->> 'id')::bigint, (g ->> 'amount')::numeric
          FROM holds AS h, jsonb_array_elements(coalesce(h.funding -> 'grants', '[]')) AS g
    ), held_permanent AS (
        SELECT p.user_id, sum(p.amount) AS amount
          FROM hold_parts AS p WHERE p.status = 'held' AND p.grant_id IS NULL GROUP BY p.user_id
    ), held_grants AS (
        SELECT p.user_id, p.grant_id AS id, sum(p.amount) AS amount
          FROM hold_parts AS p WHERE p.status = 'held' AND p.grant_id IS NOT NULL GROUP BY 1, 2
    ), hold_shift AS (
        -- power that holds moved after each user's last entry, as the grants stood then:
        -- reserved after it and still open, less given back after it by a hold made before it
        SELECT le.user_id, sum(CASE WHEN p.status = 'held' THEN p.amount ELSE -p.amount END) AS amount
          FROM last_entries AS le
          JOIN hold_parts AS p ON p.user_id = le.user_id
          LEFT JOIN billing.grant_store AS gs ON gs.user_id = p.user_id AND gs.id = p.grant_id
         WHERE (p.grant_id IS NULL OR gs.expire_at > le.created_at)
           AND ((p.status = 'held' AND p.reserved_after_seq >= le.seq)
                OR (p.status IN ('released', 'expired') AND p.reserved_after_seq < le.seq
                    AND p.closed_after_seq >= le.seq))
         GROUP BY le.user_id
    ), refunds AS (
        SELECT e.user_id, e.refund_of, sum(e.amount) AS amount
          FROM entries AS e WHERE e.refund_of IS NOT NULL GROUP BY 1, 2
    ), limit_rows AS (
        SELECT l.* FROM billing.limits AS l WHERE only_user IS NULL OR l.user_id = only_user
    ), limit_charges AS (
        -- the charge entries each limit counts: naming its scope ('*': every charge),
        -- after the limit was set, in the period its counters are of
        SELECT lr.user_id, lr.scope, lr.period_end, e.id, e.amount
          FROM limit_rows AS lr
          JOIN entries AS e ON e.user_id = lr.user_id AND e.scopes IS NOT NULL
                           AND (lr.scope = '*' OR lr.scope = ANY (e.scopes))
                           AND e.seq > lr.counted_after_seq
                           AND e.created_at >= lr.period_start AND e.created_at < lr.period_end
    ), limit_spent AS (
        -- less what refunds of them gave back while the period lasted
        SELECT c.user_id, c.scope, sum(c.amount) AS amount
          FROM (SELECT lc.user_id, lc.scope, lc.amount FROM limit_charges AS lc
                UNION ALL
                SELECT lc.user_id, lc.scope, -e.amount
                  FROM limit_charges AS lc
                  JOIN entries AS e ON e.user_id = lc.user_id AND e.refund_of = lc.id
                                   AND e.created_at < lc.period_end) AS c
         GROUP BY 1, 2
    ), limit_held AS (
        -- the holds naming its scope made in the period, open at its end (or now)
        SELECT lr.user_id, lr.scope, sum(h.amount) AS amount
          FROM limit_rows AS lr
          JOIN holds AS h ON h.user_id = lr.user_id
                         AND (lr.scope = '*' OR lr.scope = ANY (h.scopes))
                         AND h.created_at >= lr.period_start AND h.created_at < lr.period_end
                         AND (h.status = 'held' OR h.closed_at >= lr.period_end)
         GROUP BY 1, 2
    ), heads AS (
        SELECT DISTINCT ON (g.user_id) g.user_id, g.id, g.remaining
          FROM grants AS g WHERE g.remaining > 0 AND g.expire_at > now()
         ORDER BY g.user_id, g.expire_at, g.id
    )
    -- the permanent balance (plus what open holds took from it), the entry count and
    -- the seq the account row holds
    -- (an account may have no entries yet: one made to hold a low-balance threshold)
    SELECT coalesce(a.user_id, r.user_id), 'permanent balance', coalesce(r.permanent, 0)::text,
           (a.permanent + coalesce(hp.amount, 0))::text
      FROM accounts AS a FULL JOIN replayed AS r ON r.user_id = a.user_id
      LEFT JOIN held_permanent AS hp ON hp.user_id = a.user_id
     WHERE a.permanent + coalesce(hp.amount, 0) IS DISTINCT FROM coalesce(r.permanent, 0)
    UNION ALL
    SELECT r.user_id, 'seq without gaps', '1..' || r.entries, r.first_seq || '..' || r.last_seq
      FROM replayed AS r WHERE r.first_seq <> 1 OR r.last_seq <> r.entries
    UNION ALL
    SELECT a.user_id, 'last_seq', coalesce(r.entries, 0)::text, a.last_seq::text
      FROM accounts AS a LEFT JOIN replayed AS r ON r.user_id = a.user_id
     WHERE a.last_seq IS DISTINCT FROM coalesce(r.entries, 0)
    -- every grant's remaining (plus what open holds took from it), and its bounds
    UNION ALL
    SELECT coalesce(g.user_id, m.user_id), 'grant ' || coalesce(g.id, m.id) || ' remaining',
           m.remaining::text, (g.remaining + coalesce(hg.amount, 0))::text
      FROM grants AS g FULL JOIN grant_moves AS m ON m.user_id = g.user_id AND m.id = g.id
      LEFT JOIN held_grants AS hg ON hg.user_id = g.user_id AND hg.id = g.id
     WHERE g.remaining + coalesce(hg.amount, 0) IS DISTINCT FROM m.remaining
    UNION ALL
    SELECT g.user_id, 'grant ' || g.id || ' within 0..amount', '0..' || g.amount, g.remaining::text
      FROM grants AS g WHERE g.remaining < 0 OR g.remaining > g.amount
    -- the ledger's own rules
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' direction and amount', 'direction 1 or -1, amount > 0',
           'direction ' || e.direction || ', amount ' || e.amount
      FROM entries AS e WHERE e.direction NOT IN (1, -1) OR e.amount <= 0
    -- every entry names a known account type of its own direction, and a known source type
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' account_type',
           'a type of direction ' || e.direction || ' in billing.account_types',
           e.account_type || CASE WHEN t.code IS NULL THEN ' (unknown)' ELSE ' (direction ' || t.direction || ')' END
      FROM entries AS e LEFT JOIN billing.account_types AS t ON t.code = e.account_type
     WHERE t.direction IS DISTINCT FROM e.direction
    UNION ALL
    SELECT e.user_id, 'entry ' || e.seq || ' source_type', 'a type in billing.source_types', e.source_type || ' (unknown)'
      FROM entries AS e LEFT JOIN billing.source_types AS s ON s.code = e.source_type
     WHERE s.code IS NULL
    UNION ALL
    SELECT r.user_id, 'refunds of entry ' || r.refund_of, 'at most ' || coalesce(o.amount::text, 'a debit'),
           r.amount::text
      FROM refunds AS r
      LEFT JOIN billing.account_log AS o ON o.user_id = r.user_id AND o.id = r.refund_of AND o.direction = -1
     WHERE o.amount IS NULL OR r.amount > o.amount
    -- balance_after of the last entry: the power available when it was written
    UNION ALL
    SELECT a.user_id, 'balance_after of entry ' || le.seq, le.balance_after::text,
           (a.permanent + coalesce(lw.remaining, 0) + coalesce(hs.amount, 0))::text
      FROM accounts AS a JOIN last_entries AS le ON le.user_id = a.user_id
      LEFT JOIN live_when_last_written AS lw ON lw.user_id = a.user_id
      LEFT JOIN hold_shift AS hs ON hs.user_id = a.user_id
     WHERE le.balance_after <> a.permanent + coalesce(lw.remaining, 0) + coalesce(hs.amount, 0)
    -- every hold: its parts add up to its amount; a settled one has its entry
    UNION ALL
    SELECT p.user_id, 'hold ' || p.hold_id || ' funding', h.amount::text, sum(p.amount)::text
      FROM hold_parts AS p JOIN holds AS h ON h.user_id = p.user_id AND h.hold_id = p.hold_id
     GROUP BY p.user_id, p.hold_id, h.amount HAVING sum(p.amount) <> h.amount
    UNION ALL
    SELECT h.user_id, 'hold ' || h.hold_id || ' settle entry', 'an entry of ' || h.settled_amount,
           coalesce(l.amount::text, 'none')
      FROM holds AS h
      LEFT JOIN billing.account_log AS l ON l.user_id = h.user_id AND l.id = h.log_id
     WHERE h.status = 'settled' AND (l.amount IS DISTINCT FROM h.settled_amount OR l.direction <> -1)
    -- every charge or hold a charging trigger recorded as its own exists, for that user
    UNION ALL
    SELECT t.user_id, CASE WHEN t.is_hold THEN 'trigger hold ' ELSE 'trigger charge ' END || t.id,
           CASE WHEN t.is_hold THEN 'a hold of the user' ELSE 'a debit entry of the user' END, 'none'
      FROM billing.trigger_charges AS t
     WHERE (only_user IS NULL OR t.user_id = only_user)
       AND NOT CASE WHEN t.is_hold
                    THEN EXISTS (SELECT FROM billing.holds AS h WHERE h.user_id = t.user_id AND h.hold_id = t.id)
                    ELSE EXISTS (SELECT FROM billing.account_log AS l
                                  WHERE l.user_id = t.user_id AND l.id = t.id AND l.direction = -1)
               END
    -- the caches on the account row
    UNION ALL
    SELECT a.user_id, 'grants_total', coalesce(s.remaining, 0)::text, a.grants_total::text
      FROM accounts AS a LEFT JOIN grant_sums AS s ON s.user_id = a.user_id
     WHERE a.grants_total <> coalesce(s.remaining, 0)
    UNION ALL
    SELECT a.user_id, 'next_expiry', s.next_expiry::text, a.next_expiry::text
      FROM accounts AS a LEFT JOIN grant_sums AS s ON s.user_id = a.user_id
     WHERE a.next_expiry IS DISTINCT FROM s.next_expiry
    UNION ALL
    SELECT a.user_id, 'holds_due_at', min(h.expires_at)::text, a.holds_due_at::text
      FROM accounts AS a LEFT JOIN holds AS h ON h.user_id = a.user_id AND h.status = 'held'
     GROUP BY a.user_id, a.holds_due_at HAVING a.holds_due_at IS DISTINCT FROM min(h.expires_at)
    UNION ALL
    SELECT a.user_id, 'head grant', concat(h.id, ' with ', h.remaining), concat(a.head_grant_id, ' with ', a.head_remaining)
      FROM accounts AS a LEFT JOIN heads AS h ON h.user_id = a.user_id
     WHERE (a.next_expiry IS NULL OR a.next_expiry > now())
       AND (a.head_grant_id IS DISTINCT FROM h.id OR a.head_remaining IS DISTINCT FROM h.remaining)
    -- each spending limit's counters, for the period they are of (sql/limits.sql)
    UNION ALL
    SELECT lr.user_id, 'limit ' || lr.scope || ' spent', coalesce(s.amount, 0)::text, lr.spent::text
      FROM limit_rows AS lr LEFT JOIN limit_spent AS s ON s.user_id = lr.user_id AND s.scope = lr.scope
     WHERE lr.spent <> coalesce(s.amount, 0)
    UNION ALL
    SELECT lr.user_id, 'limit ' || lr.scope || ' held', coalesce(h.amount, 0)::text, lr.held::text
      FROM limit_rows AS lr LEFT JOIN limit_held AS h ON h.user_id = lr.user_id AND h.scope = lr.scope
     WHERE lr.held <> coalesce(h.amount, 0)
    UNION ALL
    SELECT lr.user_id, 'limit ' || lr.scope || ' period', 'a period of the limit',
           lr.period_start || ' .. ' || lr.period_end
      FROM limit_rows AS lr
     WHERE lr.period_start >= lr.period_end
        OR billing.limit_period(lr.period, lr.period_len, lr.time_zone, lr.anchor, lr.period_start)
           <> tstzrange(lr.period_start, lr.period_end)
    UNION ALL
    SELECT a.user_id, 'limited', (l.user_id IS NOT NULL)::text, a.limited::text
      FROM accounts AS a
      LEFT JOIN (SELECT DISTINCT lr.user_id FROM limit_rows AS lr) AS l ON l.user_id = a.user_id
     WHERE a.limited <> (l.user_id IS NOT NULL);
END
$$;
COMMENT ON FUNCTION @extschema@.billing_verify(text) IS
    'Replays the ledger (of one user, or all) and returns one row per disagreement with the stored balances, grants, caches and spending-limit counters; no rows means healthy';

-- == Dropping the extension refuses while the ledger holds entries (issue 11, item 8) ==
CREATE FUNCTION billing.guard_drop() RETURNS event_trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'billing_guard_drop';
COMMENT ON FUNCTION billing.guard_drop() IS 'Event trigger: loads the library whose hook refuses to drop a ledger that holds entries (unless billing.allow_drop is on in the same transaction)';
CREATE EVENT TRIGGER billing_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION billing.guard_drop();
COMMENT ON EVENT TRIGGER billing_guard_drop IS 'Dropping the extension refuses while the ledger holds entries (billing.allow_drop)';
REVOKE ALL ON FUNCTION billing.guard_drop() FROM PUBLIC;

-- == One rule for amounts: billing.check_amount is the Rust functions' own ==
-- (it replaces billing.trigger_amount, a PL/pgSQL copy of the rule)
CREATE FUNCTION billing.check_amount(argument text, value text, zero_allowed boolean)
    RETURNS numeric
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_check_amount';
COMMENT ON FUNCTION billing.check_amount(text, text, boolean) IS
    'Checks an amount given as text like the functions'' amounts (22004, 22023 naming the argument) and returns it';
REVOKE ALL ON FUNCTION billing.check_amount(text, text, boolean) FROM PUBLIC;
DROP FUNCTION billing.trigger_amount(text, text, boolean);
CREATE OR REPLACE FUNCTION billing.trigger_config(
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
CREATE OR REPLACE FUNCTION @extschema@.billing_set_low_balance(user_id text, threshold numeric)
    RETURNS numeric
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM billing.check_key('user_id', billing_set_low_balance.user_id);
    -- the amount rule (0 allowed; NULL removes the threshold)
    IF threshold IS NOT NULL THEN
        threshold := billing.check_amount('threshold'::text, threshold::text, true);
    END IF;
    -- the account row is where the threshold lives (and what every write locks)
    INSERT INTO billing.accounts AS a (user_id, low_balance_at)
    VALUES (billing_set_low_balance.user_id, threshold)
    ON CONFLICT (user_id) DO UPDATE SET low_balance_at = EXCLUDED.low_balance_at;
    RETURN threshold;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_set_low_balance(text, numeric) IS
    'Sets the user''s low-balance threshold (NULL removes it): a change that takes available power from at or above it to below it sends NOTIFY billing_low_balance. Returns the threshold.';

-- == One rule for required text arguments: billing.check_key is the Rust functions' own ==
CREATE OR REPLACE FUNCTION billing.check_key(argument text, value text)
    RETURNS void
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_check_key';
COMMENT ON FUNCTION billing.check_key(text, text) IS
    'Raises 22004 for a NULL, 22023 for an empty or over-255-character required text argument, naming it';

-- == One rebuild of the account row's caches, one SQL statement of available power ==
-- billing.refresh_accounts takes the Rust general path's deltas and returns
-- last_seq and available power (sql/power.sql); billing.available_now gives way
-- to the view billing.balances.
DROP FUNCTION billing.refresh_accounts(text[]);
DROP FUNCTION billing.available_now(text[]);
CREATE FUNCTION billing.refresh_accounts(users text[], permanent_delta numeric, seq_delta bigint)
    RETURNS TABLE (user_id text, last_seq bigint, available numeric)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    one text;
    s record;
    ledger_seq bigint;
    due_at timestamptz;
BEGIN
    FOREACH one IN ARRAY users LOOP
        SELECT coalesce(sum(g.remaining), 0) AS total,
               min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry,
               coalesce(sum(g.remaining) FILTER (WHERE g.expire_at > now()), 0) AS live,
               (array_agg(g.id ORDER BY g.expire_at, g.id)
                  FILTER (WHERE g.remaining > 0 AND g.expire_at > now()))[1] AS head,
               (array_agg(g.remaining ORDER BY g.expire_at, g.id)
                  FILTER (WHERE g.remaining > 0 AND g.expire_at > now()))[1] AS head_remaining
          INTO s
          FROM billing.grant_store AS g
         WHERE g.user_id = one;
        ledger_seq := NULL;
        IF refresh_accounts.seq_delta IS NULL THEN
            SELECT max(l.seq) INTO ledger_seq FROM billing.account_log AS l WHERE l.user_id = one;
        END IF;
        SELECT min(h.expires_at) INTO due_at FROM billing.holds AS h WHERE h.user_id = one AND h.status = 'held';
        RETURN QUERY
        UPDATE billing.accounts AS a
           SET permanent = trim_scale(a.permanent + refresh_accounts.permanent_delta),
               last_seq = coalesce(a.last_seq + refresh_accounts.seq_delta, ledger_seq, 0),
               grants_total = s.total, next_expiry = s.next_expiry,
               head_grant_id = s.head, head_remaining = s.head_remaining,
               holds_due_at = due_at,
               updated_at = now()
         WHERE a.user_id = one
        RETURNING a.user_id, a.last_seq, a.permanent + s.live;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.refresh_accounts(text[], numeric, bigint) IS
    'Internal: with the accounts locked, adds permanent_delta and seq_delta (NULL: the ledger''s last seq) and rebuilds each account row''s caches from grant_store and the open holds; returns last_seq and available power';
REVOKE ALL ON FUNCTION billing.refresh_accounts(text[], numeric, bigint) FROM PUBLIC;
CREATE OR REPLACE FUNCTION billing.return_due_holds(users text[])
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    one text;
    is_limited boolean;
    due record;
    part record;
    ended bigint := 0;
    users_ended text[] := '{}';
BEGIN
    FOREACH one IN ARRAY users LOOP
        SELECT a.limited INTO is_limited FROM billing.accounts AS a WHERE a.user_id = one;
        FOR due IN
            UPDATE billing.holds AS h
               SET status = 'expired', closed_at = now(),
                   closed_after_seq = (SELECT a.last_seq FROM billing.accounts AS a WHERE a.user_id = one)
             WHERE h.user_id = one AND h.status = 'held' AND h.expires_at <= now()
            RETURNING h.funding, h.amount, h.scopes, h.created_at
        LOOP
            FOR part IN SELECT (g ->> 'id')::bigint AS id, (g ->> 'amount')::numeric AS amount
                          FROM jsonb_array_elements(coalesce(due.funding -> 'grants', '[]')) AS g LOOP
                UPDATE billing.grant_store AS s
                   SET remaining = trim_scale(s.remaining + part.amount)
                 WHERE s.user_id = one AND s.id = part.id;
            END LOOP;
            UPDATE billing.accounts AS a
               SET permanent = trim_scale(a.permanent + coalesce((due.funding ->> 'permanent')::numeric, 0))
             WHERE a.user_id = one;
            -- what the hold counted as held against the user's limits (a give-back is never over a cap)
            IF is_limited THEN
                PERFORM billing.count_limits(one, due.scopes, 0::numeric, -due.amount, due.created_at, NULL::bigint);
            END IF;
            ended := ended + 1;
            IF NOT one = ANY (users_ended) THEN
                users_ended := users_ended || one;
            END IF;
        END LOOP;
    END LOOP;
    IF ended > 0 THEN
        PERFORM billing.refresh_accounts(users_ended, 0::numeric, NULL::bigint);
    END IF;
    RETURN ended;
END
$$;
COMMENT ON FUNCTION billing.return_due_holds(text[]) IS
    'Internal: with the accounts locked and heads written back, gives back what lapsed holds reserved, marks them expired and rebuilds the caches; returns how many';
CREATE OR REPLACE FUNCTION @extschema@.billing_revoke_subscription(subscription_id text, remark text DEFAULT NULL)
    RETURNS SETOF billing.account_log
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    subscription text := billing_revoke_subscription.subscription_id;
    note text := billing_revoke_subscription.remark;
    owner text;
    threshold numeric;
    before numeric;
    after numeric;
BEGIN
    PERFORM billing.check_key('subscription_id', subscription);
    IF length(note) > 4000 THEN
        RAISE EXCEPTION 'remark is longer than 4000 characters' USING ERRCODE = '22023';
    END IF;
    -- A subscription belongs to one user; should several share an id, each is
    -- handled in turn, in user_id order, one account lock at a time.
    FOR owner IN
        SELECT DISTINCT g.user_id FROM billing.grant_store AS g
         WHERE g.subscription_id = subscription ORDER BY g.user_id
    LOOP
        SELECT a.low_balance_at INTO threshold FROM billing.accounts AS a WHERE a.user_id = owner FOR UPDATE;
        PERFORM billing.write_back_heads(ARRAY[owner]);
        PERFORM billing.return_due_holds(ARRAY[owner]);
        SELECT b.available INTO before FROM billing.balances AS b WHERE b.user_id = owner;
        -- The grants end now: their remaining goes in MEMBERSHIP_GIFT_DEC entries, and
        -- their expire_at becomes now, so power a hold gives back to them later expires.
        RETURN QUERY
        WITH ending AS (
            SELECT g.id, g.remaining, g.expire_at
              FROM billing.grant_store AS g
             WHERE g.user_id = owner AND g.subscription_id = subscription AND g.expire_at > now()
        ), ended AS (
            UPDATE billing.grant_store AS g
               SET remaining = 0, expire_at = now()
              FROM ending
             WHERE g.user_id = owner AND g.id = ending.id
        ), charged AS (
            SELECT e.*, row_number() OVER (ORDER BY e.expire_at, e.id) AS n
              FROM ending AS e WHERE e.remaining > 0
        ), logged AS (
            -- each entry's balance_after: the power before, less this grant and those before it
            INSERT INTO billing.account_log AS l
                   (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
                    remark, subscription_id, expire_at, detail)
            SELECT owner, a.last_seq + c.n, -1, c.remaining,
                   before - sum(c.remaining) OVER (ORDER BY c.n),
                   'MEMBERSHIP_GIFT_DEC', 'MEMBERSHIP_GIFT', 'revoke', note, subscription, c.expire_at,
                   jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', c.id, 'amount', c.remaining)))
              FROM charged AS c, billing.accounts AS a
             WHERE a.user_id = owner
            RETURNING l.*
        )
        SELECT * FROM logged ORDER BY logged.seq;
        PERFORM billing.refresh_accounts(ARRAY[owner], 0::numeric, NULL::bigint);
        SELECT b.available INTO after FROM billing.balances AS b WHERE b.user_id = owner;
        IF before >= threshold AND after < threshold THEN
            PERFORM billing.notify_low_balance(owner, threshold, after);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_revoke_subscription(text, text) IS
    'Ends every live grant of a subscription now: one MEMBERSHIP_GIFT_DEC entry per grant with power left. Returns the entries.';

-- == The debt floor (billing_set_debt_limit) ==
ALTER TABLE billing.accounts ADD COLUMN max_debt numeric;
COMMENT ON COLUMN billing.accounts.max_debt IS 'The debt floor (billing_set_debt_limit): a settle with allow_debt never takes permanent below -max_debt; NULL: no floor';
CREATE FUNCTION @extschema@.billing_set_debt_limit(user_id text, max_debt numeric)
    RETURNS numeric
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM billing.check_key('user_id', billing_set_debt_limit.user_id);
    -- the amount rule (0 allowed: no debt at all; NULL removes the floor)
    IF max_debt IS NOT NULL THEN
        max_debt := billing.check_amount('max_debt'::text, max_debt::text, true);
    END IF;
    -- the account row is where the floor lives (and what every write locks)
    INSERT INTO billing.accounts AS a (user_id, max_debt)
    VALUES (billing_set_debt_limit.user_id, max_debt)
    ON CONFLICT (user_id) DO UPDATE SET max_debt = EXCLUDED.max_debt;
    RETURN max_debt;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_set_debt_limit(text, numeric) IS
    'Sets the user''s debt floor (NULL removes it): a settle with allow_debt never takes the permanent balance below -max_debt (PB001). Returns max_debt.';
REVOKE ALL ON FUNCTION @extschema@.billing_set_debt_limit(text, numeric) FROM PUBLIC;

-- == Metrics: counters in shared memory and gauges from the tables (issue 17) ==
CREATE FUNCTION billing.metric_counters()
    RETURNS jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'billing_metric_counters';
COMMENT ON FUNCTION billing.metric_counters() IS
    'Internal: the counters of calls and errors per C entry point and SQLSTATE from shared memory, as a JSON array of {metric, kind, labels, value} (only billing_counters_active 0 when the library was not preloaded)';
CREATE FUNCTION @extschema@.billing_metrics()
    RETURNS TABLE (metric text, kind text, labels jsonb, value numeric)
    LANGUAGE sql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH counters AS (
        SELECT c.metric, c.kind, c.labels, c.value
          FROM jsonb_to_recordset(billing.metric_counters()) AS c (metric text, kind text, labels jsonb, value numeric)
    ), overdue_holds AS (
        -- the accounts whose soonest open hold is due (accounts_holds_due), then
        -- their open holds that are due (holds_open)
        SELECT count(*) AS n, min(h.expires_at) AS oldest
          FROM billing.accounts AS a
          JOIN billing.holds AS h
            ON h.user_id = a.user_id AND h.status = 'held' AND h.expires_at <= now()
         WHERE a.holds_due_at <= now()
    ), unswept AS (
        -- the accounts whose soonest grant with power left has expired
        -- (accounts_next_expiry), then their expired grants with power left
        -- (grant_store_by_expiry; the head grant's live remaining is on its account row)
        SELECT count(*) AS n, min(g.expire_at) AS oldest
          FROM billing.accounts AS a
          JOIN billing.grant_store AS g
            ON g.user_id = a.user_id AND g.expire_at <= now()
         WHERE a.next_expiry <= now()
           AND CASE WHEN g.id = a.head_grant_id THEN a.head_remaining ELSE g.remaining END > 0
    ), ledger AS (
        -- the planner's estimate: rows per page at the last VACUUM or ANALYZE, times the pages now
        SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                    THEN round(c.reltuples::numeric / c.relpages
                               * (pg_relation_size(c.oid) / current_setting('block_size')::numeric))
                    ELSE greatest(c.reltuples, 0)::numeric END AS rows
          FROM pg_class AS c
         WHERE c.oid = 'billing.account_log'::regclass
    )
    SELECT counters.metric, counters.kind, counters.labels, counters.value FROM counters
    UNION ALL
    SELECT 'billing_holds_open', 'gauge', '{}'::jsonb,
           (SELECT count(*) FROM billing.holds AS h WHERE h.status = 'held')::numeric
    UNION ALL
    SELECT 'billing_holds_overdue', 'gauge', '{}'::jsonb, overdue_holds.n::numeric FROM overdue_holds
    UNION ALL
    SELECT 'billing_holds_overdue_oldest_seconds', 'gauge', '{}'::jsonb,
           coalesce(floor(extract(epoch FROM now() - overdue_holds.oldest)), 0) FROM overdue_holds
    UNION ALL
    SELECT 'billing_grants_unswept', 'gauge', '{}'::jsonb, unswept.n::numeric FROM unswept
    UNION ALL
    SELECT 'billing_grants_unswept_oldest_seconds', 'gauge', '{}'::jsonb,
           coalesce(floor(extract(epoch FROM now() - unswept.oldest)), 0) FROM unswept
    UNION ALL
    SELECT 'billing_accounts_in_debt', 'gauge', '{}'::jsonb,
           (SELECT count(*) FROM billing.accounts AS a WHERE a.permanent < 0)::numeric
    UNION ALL
    SELECT 'billing_ledger_rows_estimate', 'gauge', '{}'::jsonb, ledger.rows FROM ledger;
$$;
COMMENT ON FUNCTION @extschema@.billing_metrics() IS
    'Metrics for monitoring: counters of calls and errors per C entry point and SQLSTATE since the server started (when the library is in shared_preload_libraries; billing_counters_active says), and gauges of open and overdue holds, unswept expired grants, accounts in debt and the ledger''s estimated rows. Counts only: no balance, no user id.';
CREATE FUNCTION @extschema@.billing_metrics_reset()
    RETURNS void
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_metrics_reset';
COMMENT ON FUNCTION @extschema@.billing_metrics_reset() IS
    'Zeroes the counters of billing_metrics() for the whole server. Superusers only (42501 for any other calling role, even with EXECUTE).';
REVOKE ALL ON FUNCTION billing.metric_counters() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_metrics() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_metrics_reset() FROM PUBLIC;

-- == Spending limits per scope and period (issue 15) ==
ALTER TABLE billing.accounts ADD COLUMN limited boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN billing.accounts.limited IS 'The user has spending limits (billing_set_limit): every charge counts against them';
-- Charges made before 0.3.0 keep NULL scopes: they counted against nothing.
ALTER TABLE billing.account_log ADD COLUMN scopes text[];
COMMENT ON COLUMN billing.account_log.scopes IS 'For a charge (a deduct or a settle): the scopes it named and counted against, sorted (the user''s ''*'' limit counts every charge); NULL for entries that are not charges, and for charges made before 0.3.0';
ALTER TABLE billing.holds ADD COLUMN scopes text[];
COMMENT ON COLUMN billing.holds.scopes IS 'The scopes the hold counts against while open, and its settle after (sorted; NULL: made before 0.3.0, counted as none)';
CREATE TABLE billing.limits (
    user_id           text NOT NULL,
    scope             text NOT NULL,
    cap               numeric NOT NULL,
    period            text,
    period_len        interval,
    time_zone         text NOT NULL,
    anchor            timestamptz NOT NULL,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    spent             numeric NOT NULL DEFAULT 0,
    held              numeric NOT NULL DEFAULT 0,
    counted_after_seq bigint NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, scope)
) WITH (fillfactor = 70);
COMMENT ON TABLE billing.limits IS 'Spending limits: a cap per user and scope, per period, with the counters of the period the limit last counted in. Change it only through billing_set_limit; read it with billing_limits.';
COMMENT ON COLUMN billing.limits.user_id IS 'The user whose charges the limit caps';
COMMENT ON COLUMN billing.limits.scope IS 'The scope a charge names to count against the limit (''*'': every charge of the user)';
COMMENT ON COLUMN billing.limits.cap IS 'The most that spent plus held may reach in one period';
COMMENT ON COLUMN billing.limits.period IS 'NULL (lifetime), day, week, month (calendar periods in time_zone), or an interval (fixed windows from anchor), as billing_set_limit was given it';
COMMENT ON COLUMN billing.limits.period_len IS 'The length of a period: 1 day, 7 days or 1 month for calendar periods, the interval otherwise; NULL for a lifetime cap';
COMMENT ON COLUMN billing.limits.time_zone IS 'The time zone of calendar periods';
COMMENT ON COLUMN billing.limits.anchor IS 'When the counting began (the limit was set, or its period changed): the start of the first interval window and of a lifetime cap';
COMMENT ON COLUMN billing.limits.period_start IS 'Start of the period the counters are of';
COMMENT ON COLUMN billing.limits.period_end IS 'End of the period the counters are of (exclusive; infinity for a lifetime cap)';
COMMENT ON COLUMN billing.limits.spent IS 'Charged in the period (settled or deducted), less what refunds gave back while the period lasted';
COMMENT ON COLUMN billing.limits.held IS 'Reserved by open holds made in the period';
COMMENT ON COLUMN billing.limits.counted_after_seq IS 'The user''s last ledger seq when counting began: only entries after it count';
COMMENT ON COLUMN billing.limits.created_at IS 'When the limit was first set';
COMMENT ON COLUMN billing.limits.updated_at IS 'When the limit or its counters last changed';
CREATE FUNCTION billing.limit_period(period text, period_len interval, time_zone text, anchor timestamptz, at timestamptz)
    RETURNS tstzrange
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE
    WHEN period_len IS NULL THEN tstzrange(anchor, 'infinity')
    WHEN period = ANY (ARRAY['day', 'week', 'month']) THEN
        tstzrange(date_trunc(period, at, time_zone),
                  (date_trunc(period, at, time_zone) AT TIME ZONE time_zone + period_len) AT TIME ZONE time_zone)
    ELSE tstzrange(date_bin(period_len, at, anchor), date_bin(period_len, at, anchor) + period_len)
END
$$;
COMMENT ON FUNCTION billing.limit_period(text, interval, text, timestamptz, timestamptz) IS
    'Internal: the period of a limit (its period, period_len, time_zone and anchor) that contains the time at';
CREATE FUNCTION billing.count_limits(
        user_id text, scopes text[], spent_delta numeric, held_delta numeric,
        counted_at timestamptz, counted_seq bigint)
    RETURNS text[]
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'billing_count_limits';
COMMENT ON FUNCTION billing.count_limits(text, text[], numeric, numeric, timestamptz, bigint) IS
    'Internal: with the account locked, counts a charge (or gives one back) against the user''s limits of its scopes and ''*'', starting a new period''s counters when one began; returns the first limit it takes above its cap as ARRAY[scope, cap, spent, held, requested, period_end], or NULL';
CREATE TYPE billing.spending_limit AS (
    scope text, cap numeric, period text, time_zone text, period_start timestamptz,
    period_end timestamptz, spent numeric, held numeric, remaining numeric);
COMMENT ON TYPE billing.spending_limit IS 'A spending limit as it stands now: scope, cap, period and time_zone as set, the current period''s start and end (NULL end: a lifetime cap), spent and held in it, and what remains (cap - spent - held, at least 0)';
CREATE FUNCTION billing.limits_now(user_id text)
    RETURNS SETOF billing.spending_limit
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l billing.limits;
    r billing.spending_limit;
    p tstzrange;
    lapsed numeric;
BEGIN
    FOR l IN SELECT lim.* FROM billing.limits AS lim
              WHERE lim.user_id = limits_now.user_id ORDER BY lim.scope COLLATE pg_catalog."C" LOOP
        IF now() < l.period_end THEN
            SELECT sum(h.amount) INTO lapsed
              FROM billing.holds AS h
             WHERE h.user_id = l.user_id AND h.status = 'held' AND h.expires_at <= now()
               AND (l.scope = '*' OR l.scope = ANY (h.scopes))
               AND h.created_at >= l.period_start AND h.created_at < l.period_end;
            SELECT l.scope, l.cap, l.period, l.time_zone, l.period_start, nullif(l.period_end, 'infinity'),
                   l.spent, trim_scale(l.held - coalesce(lapsed, 0)),
                   trim_scale(greatest(l.cap - (l.spent + l.held - coalesce(lapsed, 0)), 0))
              INTO r;
        ELSE
            p := billing.limit_period(l.period, l.period_len, l.time_zone, l.anchor, now());
            SELECT l.scope, l.cap, l.period, l.time_zone, lower(p), nullif(upper(p), 'infinity'),
                   0::numeric, 0::numeric, trim_scale(greatest(l.cap, 0))
              INTO r;
        END IF;
        RETURN NEXT r;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.limits_now(text) IS
    'Internal: a user''s limits with the counters of the current period (what billing_limits returns)';
CREATE FUNCTION @extschema@.billing_limits(user_id text)
    RETURNS SETOF billing.spending_limit
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing.check_key('user_id', billing_limits.user_id);
    RETURN QUERY SELECT n.* FROM billing.limits_now(billing_limits.user_id) AS n;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_limits(text) IS
    'The user''s spending limits, one row per scope: cap, period, the current period''s start and end (NULL: a lifetime cap), spent, held and what remains';
CREATE FUNCTION @extschema@.billing_set_limit(
        user_id text, scope text, cap numeric, period text DEFAULT NULL, time_zone text DEFAULT 'UTC')
    RETURNS SETOF billing.spending_limit
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    the_user text := billing_set_limit.user_id;
    the_scope text := billing_set_limit.scope;
    the_cap numeric := billing_set_limit.cap;
    the_period text := lower(btrim(billing_set_limit.period));
    the_zone text := billing_set_limit.time_zone;
    len interval;
    last_seq bigint;
    holds_due boolean;
    old billing.limits;
    bounds tstzrange;
    held_now numeric;
BEGIN
    PERFORM billing.check_key('user_id', the_user);
    PERFORM billing.check_key('scope', the_scope);
    IF the_cap IS NOT NULL THEN
        the_cap := billing.check_amount('cap'::text, the_cap::text, true);
    END IF;
    IF the_zone IS NULL THEN
        RAISE EXCEPTION 'time_zone must not be NULL' USING ERRCODE = '22004', HINT = 'Omit it for UTC.';
    END IF;
    BEGIN
        PERFORM now() AT TIME ZONE the_zone;
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'time_zone "%" is not a known time zone', the_zone
            USING ERRCODE = '22023', HINT = 'Use a name from pg_timezone_names, such as Europe/Berlin or UTC.';
    END;
    IF the_period IS NULL THEN
        len := NULL;
    ELSIF the_period = 'day' THEN
        len := interval '1 day';
    ELSIF the_period = 'week' THEN
        len := interval '7 days';
    ELSIF the_period = 'month' THEN
        len := interval '1 month';
    ELSE
        BEGIN
            len := the_period::interval;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow
                       OR invalid_parameter_value THEN
            RAISE EXCEPTION 'period "%" is not day, week, month or an interval', billing_set_limit.period
                USING ERRCODE = '22023', HINT = 'For example period => ''month'', or period => ''1 hour'' for fixed windows.';
        END;
        IF len <= interval '0' OR extract(year FROM len) <> 0 OR extract(month FROM len) <> 0
           OR extract(day FROM len) < 0 OR extract(epoch FROM len) < 1 THEN
            RAISE EXCEPTION 'period "%" must be a positive interval of at least one second, without months or years', billing_set_limit.period
                USING ERRCODE = '22023', HINT = 'For calendar months use period => ''month''.';
        END IF;
    END IF;

    -- the account row first, as every write locks it; lapsed holds give back what
    -- they counted first, as every write sweeps them
    SELECT a.last_seq, coalesce(a.holds_due_at <= now(), false) INTO last_seq, holds_due
      FROM billing.accounts AS a WHERE a.user_id = the_user FOR UPDATE;
    IF NOT FOUND THEN
        IF the_cap IS NULL THEN
            RETURN;
        END IF;
        INSERT INTO billing.accounts AS a (user_id) VALUES (the_user);
        last_seq := 0;
    ELSIF holds_due THEN
        PERFORM billing.write_back_heads(ARRAY[the_user]);
        PERFORM billing.return_due_holds(ARRAY[the_user]);
    END IF;
    SELECT l.* INTO old FROM billing.limits AS l WHERE l.user_id = the_user AND l.scope = the_scope;

    IF the_cap IS NULL THEN
        DELETE FROM billing.limits AS l WHERE l.user_id = the_user AND l.scope = the_scope;
        UPDATE billing.accounts AS a
           SET limited = EXISTS (SELECT FROM billing.limits AS l WHERE l.user_id = the_user)
         WHERE a.user_id = the_user;
        RETURN;
    END IF;

    -- the same period: the same length, time zone, and kind (calendar or not; a lifetime cap has neither)
    IF old.user_id IS NOT NULL AND old.period_len IS NOT DISTINCT FROM len AND old.time_zone = the_zone
       AND coalesce(old.period = ANY (ARRAY['day', 'week', 'month']), false)
           = coalesce(the_period = ANY (ARRAY['day', 'week', 'month']), false) THEN
        UPDATE billing.limits AS l SET cap = the_cap, period = the_period, updated_at = now()
         WHERE l.user_id = the_user AND l.scope = the_scope;
    ELSE
        -- a new limit, or a new period: counting starts afresh, with the open holds made in the period
        bounds := billing.limit_period(the_period, len, the_zone, now(), now());
        -- (the held sum and now() as values: Citus refuses a subquery in an INSERT
        -- and a non-immutable function in its DO UPDATE)
        SELECT coalesce(sum(h.amount), 0) INTO held_now FROM billing.holds AS h
         WHERE h.user_id = the_user AND h.status = 'held'
           AND (the_scope = '*' OR the_scope = ANY (h.scopes))
           AND h.created_at >= lower(bounds) AND h.created_at < upper(bounds);
        INSERT INTO billing.limits AS l
               (user_id, scope, cap, period, period_len, time_zone, anchor, period_start, period_end,
                spent, held, counted_after_seq, updated_at)
        VALUES (the_user, the_scope, the_cap, the_period, len, the_zone, now(), lower(bounds), upper(bounds), 0,
                held_now, last_seq, now())
        ON CONFLICT ON CONSTRAINT limits_pkey DO UPDATE
           SET cap = EXCLUDED.cap, period = EXCLUDED.period, period_len = EXCLUDED.period_len,
               time_zone = EXCLUDED.time_zone, anchor = EXCLUDED.anchor, period_start = EXCLUDED.period_start,
               period_end = EXCLUDED.period_end, spent = EXCLUDED.spent, held = EXCLUDED.held,
               counted_after_seq = EXCLUDED.counted_after_seq, updated_at = EXCLUDED.updated_at;
    END IF;
    UPDATE billing.accounts AS a SET limited = true WHERE a.user_id = the_user AND NOT a.limited;
    RETURN QUERY SELECT n.* FROM billing.limits_now(the_user) AS n WHERE n.scope = the_scope;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_set_limit(text, text, numeric, text, text) IS
    'Sets the user''s spending limit of a scope (''*'': every charge): cap per period (NULL: a lifetime cap; day, week or month in time_zone; or an interval). The same period keeps the counters; another starts afresh. A NULL cap removes the limit. Returns the limit as billing_limits shows it.';
-- billing_deduct and billing_hold take the scopes of a charge. A new signature
-- is a new function: the old one is renamed, the new one created, every
-- privilege granted on the old one granted again on the new one, and the old
-- one dropped, so roles that could call them still can.
ALTER FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text)
    RENAME TO billing_deduct_0_2_0;
ALTER FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text)
    RENAME TO billing_hold_0_2_0;
CREATE FUNCTION @extschema@.billing_deduct(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, idempotency_key text DEFAULT NULL,
        scopes text[] DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_deduct';
COMMENT ON FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) IS
    'Spends power, soonest-expiring grants first, then the permanent balance; PB001 if there is not enough, PB008 if it would take a spending limit of its scopes (or ''*'') above its cap. Returns the ledger entry.';
CREATE FUNCTION @extschema@.billing_hold(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, ttl interval DEFAULT '15 minutes',
        idempotency_key text DEFAULT NULL, scopes text[] DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_hold';
COMMENT ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]) IS
    'Reserves power for work of unknown cost until billing_settle, billing_release or ttl; PB001 if there is not enough, PB008 if it would take a spending limit of its scopes (or ''*'') above its cap. Writes no ledger entry. Returns the hold.';
REVOKE ALL ON FUNCTION @extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]) FROM PUBLIC;
DO $carry$
DECLARE
    pair record;
    privilege record;
BEGIN
    FOR pair IN
        SELECT '@extschema@.billing_deduct_0_2_0(text, numeric, text, text, text, text, text, text, text)'::pg_catalog.regprocedure AS old,
               '@extschema@.billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])'::pg_catalog.regprocedure AS new
        UNION ALL
        SELECT '@extschema@.billing_hold_0_2_0(text, numeric, text, text, text, text, text, text, interval, text)'::pg_catalog.regprocedure,
               '@extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[])'::pg_catalog.regprocedure
    LOOP
        FOR privilege IN
            SELECT a.grantee, a.is_grantable
              FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
             WHERE p.oid OPERATOR(pg_catalog.=) pair.old
               AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
               AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', pair.new,
                CASE WHEN privilege.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(privilege.grantee)) END,
                CASE WHEN privilege.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END
$carry$;
DROP FUNCTION @extschema@.billing_deduct_0_2_0(text, numeric, text, text, text, text, text, text, text);
DROP FUNCTION @extschema@.billing_hold_0_2_0(text, numeric, text, text, text, text, text, text, interval, text);
CREATE FUNCTION billing.deduct_uncounted(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text, association_no text, association_user_id text, idempotency_key text)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'billing_deduct_uncounted';
COMMENT ON FUNCTION billing.deduct_uncounted(text, numeric, text, text, text, text, text, text, text) IS
    'Internal: billing_deduct for billing_adjust, a correction that counts against no spending limit (its entry has no scopes)';
CREATE FUNCTION billing.trigger_scopes(tuple record, argument text, column_name text)
    RETURNS text[]
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_trigger_scopes';
COMMENT ON FUNCTION billing.trigger_scopes(record, text, text) IS
    'The scopes a charging trigger''s row names in its scope_column: the value of a text[] column, or of a text column as one scope; NULL when the value is NULL or column_name is NULL (no scope_column); 42703 naming the trigger argument when the row has no such column, 22023 for a column of another type';
REVOKE ALL ON FUNCTION billing.deduct_uncounted(text, numeric, text, text, text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_set_limit(text, text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_limits(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.limit_period(text, interval, text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.count_limits(text, text[], numeric, numeric, timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.limits_now(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_scopes(record, text, text) FROM PUBLIC;
REVOKE ALL ON TABLE billing.limits FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('billing.limits', '');
-- a settle counts against the hold's limits
COMMENT ON FUNCTION @extschema@.billing_settle(bigint, numeric, text, boolean) IS
    'Charges the actual cost of a hold in one ledger entry and gives back the rest; more than held takes the difference from available power (PB001, or a debt with allow_debt). The actual cost counts against the spending limits of the hold''s scopes (PB008 above a cap). 0 releases. Returns the ledger entry (NULL for 0).';
-- the options object of billing_deduct takes "scopes"
COMMENT ON FUNCTION @extschema@.billing_deduct(jsonb) IS
    'billing_deduct with the options object services pass: {"userId", "amount", "accountType", "source": {"type", "source"}, "remark", "associationNo", "associationUserId", "idempotencyKey", "scopes"}. Returns the ledger entry.';

-- (sections of the other 0.3.0 changes go here, above the protected names)

-- == Citus (issue 13): every function works through a Citus coordinator ==
-- Statements change one table of one user each (Citus routes those to the
-- user's shard), SQL functions that read tables became PL/pgSQL, the view of
-- available power has no UNION of a subquery without FROM, and the charging
-- triggers name the table as the application sees it (never a shard).
CREATE OR REPLACE VIEW billing.balances AS
SELECT a.user_id,
       a.permanent,
       coalesce(live.remaining, 0) AS grants_live,
       coalesce(held.amount, 0) AS held,
       a.permanent OPERATOR(pg_catalog.+) coalesce(live.remaining, 0)
                   OPERATOR(pg_catalog.+) coalesce(lapsed.permanent, 0)
                   OPERATOR(pg_catalog.+) coalesce(lapsed_grants.amount, 0) AS available,
       live.next_expiry
  FROM billing.accounts AS a
  LEFT JOIN LATERAL (
        SELECT pg_catalog.sum(g.remaining) AS remaining,
               pg_catalog.min(g.expire_at) FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0) AS next_expiry
          FROM billing.grants AS g
         WHERE g.user_id OPERATOR(pg_catalog.=) a.user_id
           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS live ON true
  LEFT JOIN LATERAL (
        SELECT pg_catalog.sum(h.amount) AS amount
          FROM billing.holds AS h
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS held ON true
  LEFT JOIN LATERAL (
        -- holds past their ttl that no write has swept yet reserve nothing: what they
        -- took from the permanent balance and from live grants is available again
        -- (two subqueries, not one UNION ALL: Citus cannot route a union of a
        -- subquery without FROM)
        SELECT pg_catalog.sum((h.funding OPERATOR(pg_catalog.->>) 'permanent')::numeric) AS permanent
          FROM billing.holds AS h
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) AS lapsed ON true
  LEFT JOIN LATERAL (
        SELECT pg_catalog.sum((e.value OPERATOR(pg_catalog.->>) 'amount')::numeric) AS amount
          FROM billing.holds AS h
         CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(
                 coalesce(h.funding OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb)) AS e
          JOIN billing.grant_store AS g
            ON g.user_id OPERATOR(pg_catalog.=) h.user_id
           AND g.id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'id')::bigint
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()
           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS lapsed_grants ON true;
CREATE OR REPLACE FUNCTION billing.write_back_heads(users text[])
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    one text;
    head bigint;
    head_left numeric;
BEGIN
    FOREACH one IN ARRAY users LOOP
        SELECT a.head_grant_id, a.head_remaining INTO head, head_left FROM billing.accounts AS a WHERE a.user_id = one;
        IF head IS NOT NULL THEN
            UPDATE billing.grant_store AS g SET remaining = head_left WHERE g.user_id = one AND g.id = head;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION billing.write_back_heads(text[]) IS
    'Internal: with the accounts locked, copies each head grant''s live remaining back to grant_store';
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
REVOKE ALL ON FUNCTION billing.table_as_seen(oid, name) FROM PUBLIC;

-- The user-keyed forms of settle, release and refund
CREATE FUNCTION @extschema@.billing_user_settle(
        user_id text, hold_id bigint, actual_amount numeric, remark text DEFAULT NULL,
        allow_debt boolean DEFAULT false)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_user_settle';
COMMENT ON FUNCTION @extschema@.billing_user_settle(text, bigint, numeric, text, boolean) IS
    'billing_settle of a hold of user_id (22023 if the hold is not the user''s): on Citus it runs on the node that holds the user. Returns the ledger entry (NULL for 0).';
CREATE FUNCTION @extschema@.billing_user_release(user_id text, hold_id bigint, reason text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_user_release';
COMMENT ON FUNCTION @extschema@.billing_user_release(text, bigint, text) IS
    'billing_release of a hold of user_id (22023 if the hold is not the user''s): on Citus it runs on the node that holds the user. Returns the hold.';
CREATE FUNCTION @extschema@.billing_user_refund(
        user_id text, log_id bigint, amount numeric DEFAULT NULL, remark text DEFAULT NULL,
        idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_user_refund';
COMMENT ON FUNCTION @extschema@.billing_user_refund(text, bigint, numeric, text, text) IS
    'billing_refund of an entry of user_id (22023 if the entry is not the user''s): on Citus it runs on the node that holds the user. Returns the ledger entry.';
REVOKE ALL ON FUNCTION @extschema@.billing_user_settle(text, bigint, numeric, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_user_release(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_user_refund(text, bigint, numeric, text, text) FROM PUBLIC;

-- billing_distribute() and the ranges of ids per node
CREATE FUNCTION billing.claim_id_range(group_id integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    floor bigint := group_id::bigint * (2::bigint ^ 48)::bigint;
    seq regclass;
    moved integer := 0;
BEGIN
    IF group_id IS NULL OR group_id < 0 OR group_id >= 32767 THEN
        RAISE EXCEPTION 'group_id must be a Citus node group id (0 to 32766), not %', group_id
            USING ERRCODE = '22023';
    END IF;
    FOREACH seq IN ARRAY ARRAY['billing.account_log_id_seq', 'billing.grants_id_seq', 'billing.holds_id_seq',
                               'billing.low_balance_events_id_seq']::regclass[] LOOP
        -- a sequence below its node's range starts at the range's floor
        IF group_id > 0 AND coalesce(pg_catalog.pg_sequence_last_value(seq), 0) < floor THEN
            PERFORM pg_catalog.setval(seq, floor);
            moved := moved + 1;
        END IF;
    END LOOP;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION billing.claim_id_range(integer) IS
    'Internal (Citus): moves the id sequences of this node (group group_id) up to its range, group_id * 2^48 and up, so that ids are unique across the cluster; returns how many it moved';
CREATE FUNCTION @extschema@.billing_distribute(delegate boolean DEFAULT false)
    RETURNS TABLE (object text, distribution text)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    billing_oid oid := (SELECT e.oid FROM pg_catalog.pg_extension AS e WHERE e.extname = 'billing');
    table_oid regclass;
    has_user boolean;
    fn regprocedure;
    delegated boolean;
    replica_role text;
BEGIN
    IF delegate IS NULL THEN
        RAISE EXCEPTION 'delegate must not be NULL' USING ERRCODE = '22004',
            HINT = 'delegate => true sends the calls to the users'' nodes; false (the default) does not.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension AS e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION 'billing_distribute needs Citus, and the citus extension is not installed in this database'
            USING ERRCODE = 'PB009',
                  HINT = 'Install Citus''s packages, add citus to shared_preload_libraries, CREATE EXTENSION citus, add the workers, then call billing_distribute() on the coordinator.';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'billing_distribute runs on the Citus coordinator, and this node is a worker'
            USING ERRCODE = 'PB009', HINT = 'Connect to the coordinator and call it there.';
    END IF;

    -- Citus may distribute a table that has triggers (the ledger's append-only
    -- guard, the type tables' guard) only with this setting; for this transaction.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);

    -- the tables: without a user_id column a reference table; billing.accounts
    -- first, then the others with a user_id co-located with it
    FOR table_oid, has_user IN
        SELECT c.oid::regclass,
               EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                        WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped)
          FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_class AS c ON c.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = billing_oid
           AND c.relkind = 'r'
         ORDER BY c.relname <> 'accounts', c.relname
    LOOP
        object := table_oid::text;
        IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition AS p WHERE p.logicalrelid = table_oid) THEN
            distribution := CASE WHEN has_user THEN 'distributed by user_id' ELSE 'reference table' END
                            || ' (already)';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF NOT has_user THEN
            PERFORM pg_catalog.create_reference_table(table_oid);
            distribution := 'reference table';
        ELSIF table_oid = 'billing.accounts'::pg_catalog.regclass THEN
            PERFORM pg_catalog.create_distributed_table(table_oid, 'user_id');
            distribution := 'distributed by user_id';
        ELSE
            PERFORM pg_catalog.create_distributed_table(table_oid, 'user_id',
                                                        colocate_with => 'billing.accounts');
            distribution := 'distributed by user_id';
        END IF;
        -- Citus copied the rows into the shards and left them in the local
        -- table, where nothing reads them any more but billing_power's direct
        -- index read would: empty it. The ledger refuses TRUNCATE to everyone
        -- (its append-only trigger), so triggers are off for this one step.
        replica_role := pg_catalog.current_setting('session_replication_role');
        PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
        PERFORM pg_catalog.truncate_local_data_after_distributing_table(table_oid);
        PERFORM pg_catalog.set_config('session_replication_role', replica_role, true);
        RETURN NEXT;
    END LOOP;

    -- ids unique across the cluster: each worker draws from its own range
    PERFORM billing.claim_id_range(0);
    PERFORM FROM pg_catalog.run_command_on_workers(
        'SELECT billing.claim_id_range(l.groupid) FROM pg_catalog.pg_dist_local_group AS l') AS r
     WHERE NOT r.success OR r.result IS NULL;
    IF FOUND THEN
        RAISE EXCEPTION 'billing_distribute could not give every worker its range of ids'
            USING ERRCODE = 'PB009',
                  DETAIL = (SELECT string_agg(r.nodename || ':' || r.nodeport || ': ' || r.result, '; ')
                              FROM pg_catalog.run_command_on_workers(
                                   'SELECT billing.claim_id_range(l.groupid) FROM pg_catalog.pg_dist_local_group AS l') AS r
                             WHERE NOT r.success),
                  HINT = 'Check that every worker is reachable and has the billing extension, then call billing_distribute() again.';
    END IF;
    object := 'id sequences';
    distribution := 'a range of ids per node (group id * 2^48 and up)';
    RETURN NEXT;

    -- the per-user functions: those whose first argument is a required user_id.
    -- Delegated (delegate => true), Citus sends each call to the user's node;
    -- otherwise they run where they are called and Citus routes each statement.
    -- Off by default: Citus 13.2 crashes the coordinator planning a query that
    -- wraps a call of a delegated function in a subquery (docs/citus.md). Once
    -- on it stays on: Citus refuses to keep an extension's function distributed
    -- without its distribution argument.
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_proc AS p ON p.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = billing_oid
           AND p.prokind = 'f' AND p.proname LIKE 'billing\_%' AND p.pronargs > 0
           AND p.proargtypes[0] = 'pg_catalog.text'::pg_catalog.regtype
           AND p.proargnames[1] = 'user_id'
           AND p.pronargs - p.pronargdefaults > 0
         ORDER BY p.proname, p.oid
    LOOP
        object := fn::text;
        delegated := EXISTS (SELECT FROM pg_catalog.pg_dist_object AS o
                              WHERE o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND o.objid = fn
                                AND o.distribution_argument_index = 0 AND o.force_delegation);
        IF delegate AND delegated THEN
            distribution := 'delegated by user_id (already)';
        ELSIF delegate THEN
            PERFORM pg_catalog.create_distributed_function(fn, 'user_id', colocate_with => 'billing.accounts',
                                                           force_delegation => true);
            distribution := 'delegated by user_id';
        ELSIF delegated THEN
            -- Citus keeps it so: it refuses an extension's function without a distribution argument
            distribution := 'delegated by user_id (already; Citus cannot turn delegation off)';
        ELSE
            distribution := 'not delegated: runs where called, each statement routed (already)';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_distribute(boolean) IS
    'Citus, on the coordinator: distributes the billing tables by user_id (co-located with billing.accounts) and the type and pricing tables as reference tables, gives each node its own range of ids, and with delegate true sends the calls of the functions whose first argument is user_id to the node holding the user (once on, it stays on); harmless to run again (after adding a worker, run it again); PB009 without Citus';
REVOKE ALL ON FUNCTION billing.claim_id_range(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_distribute(boolean) FROM PUBLIC;

-- == The protected names: a copy of every function in schema billing (last) ==
CREATE FUNCTION billing.copy_protected_names()
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $copy$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.oid, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS arguments
          FROM pg_catalog.pg_proc AS p
          JOIN pg_catalog.pg_depend AS d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
          JOIN pg_catalog.pg_extension AS e
            ON e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.extname OPERATOR(pg_catalog.=) 'billing'
         WHERE p.pronamespace OPERATOR(pg_catalog.=) e.extnamespace
           AND e.extnamespace OPERATOR(pg_catalog.<>) 'billing'::pg_catalog.regnamespace
         ORDER BY p.proname, p.oid
    LOOP
        EXECUTE pg_catalog.regexp_replace(pg_catalog.pg_get_functiondef(f.oid),
                                          '^CREATE OR REPLACE FUNCTION [^(]*\.', 'CREATE OR REPLACE FUNCTION billing.');
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION billing.%I(%s) IS %L', f.proname, f.arguments,
                                  pg_catalog.obj_description(f.oid, 'pg_proc'));
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION billing.%I(%s) FROM PUBLIC', f.proname, f.arguments);
    END LOOP;
END
$copy$;
COMMENT ON FUNCTION billing.copy_protected_names() IS
    'Internal: (re)creates in schema billing an exact copy of every function the extension has in its own schema (the protected names), with its comment; PUBLIC may execute none. Run by the install and upgrade scripts.';
REVOKE ALL ON FUNCTION billing.copy_protected_names() FROM PUBLIC;
SELECT billing.copy_protected_names();
