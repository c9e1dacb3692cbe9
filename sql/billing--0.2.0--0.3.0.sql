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
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO billing.low_balance_events (user_id, threshold, available)
    VALUES (user_id, trim_scale(threshold), trim_scale(available));
    SELECT pg_notify('billing_low_balance', '');
$$;
COMMENT ON FUNCTION billing.notify_low_balance(text, numeric, numeric) IS
    'Internal: records a low-balance event and sends NOTIFY billing_low_balance without a payload';

CREATE FUNCTION @extschema@.billing_low_balance_events(after_id bigint DEFAULT 0)
    RETURNS TABLE (event_id bigint, user_id text, threshold numeric, available numeric, at timestamptz)
    LANGUAGE sql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.event_id, e.user_id, e.threshold, e.available, e.at
      FROM billing.low_balance_events AS e
     WHERE e.event_id > coalesce(after_id, 0)
     ORDER BY e.event_id;
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
    users text[];
    expired bigint;
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

    -- Lock up to batch_size accounts with an expired grant or a lapsed hold. Rows
    -- another transaction holds (a deduct, another billing_expire) are skipped, not
    -- waited for: the next run takes them.
    SELECT array_agg(a.user_id) INTO users
      FROM (SELECT a.user_id FROM billing.accounts AS a
             WHERE a.next_expiry <= as_of OR a.holds_due_at <= now()
             LIMIT batch_size
               FOR UPDATE SKIP LOCKED) AS a;
    IF users IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM billing.write_back_heads(users);

    -- Lapsed holds give back what they reserved (no ledger entry: nothing was charged).
    holds_ended := billing.return_due_holds(users);

    -- One MEMBERSHIP_GIFT_EXPIRED entry per grant that expired with power left.
    WITH gone AS (
        SELECT g.user_id, g.id, g.remaining, g.expire_at, g.subscription_id,
               row_number() OVER (PARTITION BY g.user_id ORDER BY g.expire_at, g.id) AS n
          FROM billing.grant_store AS g
         WHERE g.user_id = ANY (users) AND g.expire_at <= as_of AND g.remaining > 0
    ), emptied AS (
        UPDATE billing.grant_store AS g
           SET remaining = 0
          FROM gone
         WHERE g.user_id = gone.user_id AND g.id = gone.id
    ), logged AS (
        INSERT INTO billing.account_log
               (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
                remark, subscription_id, expire_at, detail)
        SELECT gone.user_id, a.last_seq + gone.n, -1, gone.remaining, now_.available,
               'MEMBERSHIP_GIFT_EXPIRED', 'MEMBERSHIP_GIFT', 'expiry', NULL, gone.subscription_id, gone.expire_at,
               jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', gone.id, 'amount', gone.remaining)))
          FROM gone
          JOIN billing.accounts AS a ON a.user_id = gone.user_id
          JOIN billing.available_now(users) AS now_ ON now_.user_id = gone.user_id
        RETURNING 1
    )
    SELECT count(*) INTO expired FROM logged;

    PERFORM billing.refresh_accounts(users);
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
    IF abs(delta) > 1000000000000 THEN
        RAISE EXCEPTION 'delta must be between -1000000000000 and 1000000000000, got %', delta USING ERRCODE = '22023';
    END IF;
    IF scale(trim_scale(delta)) > 8 THEN
        RAISE EXCEPTION 'delta has more than 8 decimal places: %', delta USING ERRCODE = '22023';
    END IF;
    IF delta > 0 THEN
        -- every argument with its exact type, to the protected name (sql/privileges.sql)
        entry := billing.billing_add(target::text, delta::numeric, 'SYSTEM_MANUAL_INC'::text, 'SYSTEM'::text,
                                     'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                     NULL::timestamptz, NULL::text, NULL::text);
    ELSE
        entry := billing.billing_deduct(target::text, (-delta)::numeric, 'SYSTEM_MANUAL_DEC'::text, 'SYSTEM'::text,
                                        'manual'::text, remark::text, NULL::text, billing_adjust.operator::text,
                                        NULL::text);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) IS
    'A manual correction by staff: SYSTEM_MANUAL_INC for a positive delta, SYSTEM_MANUAL_DEC (PB001 if not there) for a negative one, with association_user_id = operator. Returns the ledger entry.';

-- (sections of the other 0.3.0 changes go here, above the protected names)

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
