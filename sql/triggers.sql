-- Charging from triggers: a table's rows pay for themselves (README, "Charging
-- from triggers"). Two generic row trigger functions, configured by their
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
-- The row is read column by column with billing.trigger_column (C): never
-- through to_jsonb(NEW), which would run any cast to json that the table's
-- owner defined for a column's type, with the extension owner's rights. No SQL
-- is built from the arguments.

CREATE FUNCTION billing.trigger_column(tuple record, argument text, column_name text)
    RETURNS text
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'billing_trigger_column';
COMMENT ON FUNCTION billing.trigger_column(record, text, text) IS
    'The value of one column of a row, as text (NULL when NULL, or when column_name is NULL: an argument not given), through the type''s output function; 42703 naming the trigger argument when the row has no such column';

-- An amount given as a trigger argument or read from the row, checked like the
-- amounts of the functions (amounts.rs): a plain decimal number, greater than
-- zero (or zero when zero_allowed), at most 8 decimal places, at most 10^12.
CREATE FUNCTION billing.trigger_amount(argument text, value text, zero_allowed boolean)
    RETURNS numeric
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    amount numeric;
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', argument USING ERRCODE = '22004';
    END IF;
    IF value !~ '^[+-]?[0-9]+(\.[0-9]*)?$' THEN
        RAISE EXCEPTION '% is not a number: %', argument, value USING ERRCODE = '22023',
            HINT = 'Amounts are plain decimal numbers such as 5 or 0.25 (a numeric or integer column).';
    END IF;
    amount := value::numeric;
    IF amount < 0 THEN
        RAISE EXCEPTION '% %, got %', argument,
            CASE WHEN zero_allowed THEN 'must not be negative' ELSE 'must be greater than zero' END, value
            USING ERRCODE = '22023';
    END IF;
    IF amount = 0 AND NOT zero_allowed THEN
        RAISE EXCEPTION '% must be greater than zero', argument USING ERRCODE = '22023';
    END IF;
    IF amount <> round(amount, 8) THEN
        RAISE EXCEPTION '% has more than 8 decimal places: %', argument, value USING ERRCODE = '22023';
    END IF;
    IF amount > 1000000000000 THEN
        RAISE EXCEPTION '% must be at most 1000000000000, got %', argument, value USING ERRCODE = '22023';
    END IF;
    RETURN amount;
END
$$;
COMMENT ON FUNCTION billing.trigger_amount(text, text, boolean) IS
    'Checks an amount from a trigger argument or a row like the functions'' amounts (22004, 22023 naming the argument) and returns it';

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
    usage text := format('CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON ... FOR EACH ROW EXECUTE FUNCTION %s(''user_column=...'', ''amount=...'', ''account_type=...'', ''source_type=...'', ''source=...'', ''association_column=...''); see README, "Charging from triggers".', trigger_function);
    holding boolean := trigger_function = 'billing_hold_charge';
    allowed text[] := ARRAY['user_column', 'amount', 'amount_column', 'account_type', 'source_type', 'source',
                            'remark', 'association_column', 'key_column', 'status_column', 'failed_status'];
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
        config := config || jsonb_build_object('amount', billing.trigger_amount('amount', config ->> 'amount', false)::text);
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

-- Refunds what is left of a charge, once: the refund's key is derived from
-- the charge, so a second firing replays the first refund. A charge already
-- refunded in full another way is left alone.
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
    PERFORM @extschema@.billing_refund(charge_id, NULL, why, refund_key);
END
$$;
COMMENT ON FUNCTION billing.trigger_refund(text, bigint, text) IS
    'Refunds what is left of a charge once, with the key trigger-refund:<charge id>';

CREATE FUNCTION @extschema@.billing_charge()
    RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config jsonb := billing.trigger_config('billing_charge', TG_NAME, TG_WHEN, TG_LEVEL, TG_OP,
                                           TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV);
    failed text := config ->> 'failed_status';
    why text;
    old_identity text[];
    new_identity text[];
    charge_id bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, TG_TABLE_NAME);
        PERFORM billing.trigger_require(config, new_identity);
        -- a row that is failed from the start is never charged
        IF billing.trigger_column(NEW, 'status_column', config ->> 'status_column') = failed THEN
            RETURN NULL;
        END IF;
        -- a key charges once: a row that comes back after its charge was refunded is refused
        SELECT l.id INTO charge_id FROM billing.account_log AS l
         WHERE l.user_id = new_identity[1] AND l.idempotency_key = new_identity[2];
        IF charge_id IS NOT NULL THEN
            PERFORM FROM billing.account_log AS l WHERE l.user_id = new_identity[1] AND l.refund_of = charge_id;
            IF FOUND THEN
                RAISE EXCEPTION 'idempotency key "%" of this row was charged and refunded already', new_identity[2]
                    USING ERRCODE = 'PB003',
                          DETAIL = format('Ledger entry %s charged it and has been refunded.', charge_id),
                          HINT = 'A row''s charge is found by its key, so a key charges once: give the new row a new value.';
            END IF;
        END IF;
        PERFORM @extschema@.billing_deduct(
            new_identity[1],
            coalesce((config ->> 'amount')::numeric,
                     billing.trigger_amount(format('amount_column %I', config ->> 'amount_column'),
                                            billing.trigger_column(NEW, 'amount_column', config ->> 'amount_column'),
                                            false)),
            config ->> 'account_type', config ->> 'source_type', config ->> 'source', config ->> 'remark',
            new_identity[3], NULL, new_identity[2]);
        RETURN NULL;
    END IF;

    old_identity := billing.trigger_identity(config, OLD, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    SELECT l.id INTO charge_id FROM billing.account_log AS l
     WHERE l.user_id = old_identity[1] AND l.idempotency_key = old_identity[2];
    IF TG_OP = 'UPDATE' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, TG_TABLE_NAME);
        IF old_identity[1:2] IS DISTINCT FROM new_identity[1:2] THEN
            PERFORM billing.trigger_keep_identity(config, old_identity, new_identity, charge_id IS NOT NULL);
        END IF;
        -- only the change into the failed status refunds
        IF billing.trigger_column(NEW, 'status_column', config ->> 'status_column') IS DISTINCT FROM failed
           OR billing.trigger_column(OLD, 'status_column', config ->> 'status_column') IS NOT DISTINCT FROM failed THEN
            RETURN NULL;
        END IF;
        why := format('trigger %I on %I.%I: %s became %s', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                      config ->> 'status_column', failed);
    ELSE
        why := format('trigger %I on %I.%I: row deleted', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    END IF;
    IF charge_id IS NOT NULL THEN
        PERFORM billing.trigger_refund(old_identity[1], charge_id, why);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_charge() IS
    'Row trigger (AFTER INSERT OR UPDATE OR DELETE) configured by name=value arguments: charges each new row with billing_deduct, and refunds that charge with billing_refund once, when the row is deleted or its status becomes failed_status';

CREATE FUNCTION @extschema@.billing_hold_charge()
    RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config jsonb := billing.trigger_config('billing_hold_charge', TG_NAME, TG_WHEN, TG_LEVEL, TG_OP,
                                           TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV);
    failed text := config ->> 'failed_status';
    allow_debt boolean := coalesce((config ->> 'allow_debt')::boolean, false);
    actual_argument text := format('actual_column %I', config ->> 'actual_column');
    why text;
    actual text;
    old_identity text[];
    new_identity text[];
    hold_row billing.holds;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, TG_TABLE_NAME);
        PERFORM billing.trigger_require(config, new_identity);
        IF billing.trigger_column(NEW, 'status_column', config ->> 'status_column') = failed THEN
            RETURN NULL;
        END IF;
        -- a key holds once: a row that comes back after its hold was closed is refused
        SELECT h.* INTO hold_row FROM billing.holds AS h
         WHERE h.user_id = new_identity[1] AND h.idempotency_key = new_identity[2];
        IF hold_row.status <> 'held' THEN
            RAISE EXCEPTION 'idempotency key "%" of this row was used by a hold that is % already', new_identity[2], hold_row.status
                USING ERRCODE = 'PB003',
                      DETAIL = format('Hold %s was made for it.', hold_row.hold_id),
                      HINT = 'A row''s hold is found by its key, so a key holds once: give the new row a new value.';
        END IF;
        SELECT h.* INTO hold_row FROM @extschema@.billing_hold(
            new_identity[1],
            coalesce((config ->> 'amount')::numeric,
                     billing.trigger_amount(format('amount_column %I', config ->> 'amount_column'),
                                            billing.trigger_column(NEW, 'amount_column', config ->> 'amount_column'),
                                            false)),
            config ->> 'account_type', config ->> 'source_type', config ->> 'source', config ->> 'remark',
            new_identity[3], NULL, coalesce((config ->> 'ttl')::interval, interval '15 minutes'),
            new_identity[2]) AS h;
        -- the cost may be known already
        actual := billing.trigger_column(NEW, 'actual_column', config ->> 'actual_column');
        IF actual IS NOT NULL THEN
            PERFORM @extschema@.billing_settle(hold_row.hold_id, billing.trigger_amount(actual_argument, actual, true),
                                               NULL, allow_debt);
        END IF;
        RETURN NULL;
    END IF;

    old_identity := billing.trigger_identity(config, OLD, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    SELECT h.* INTO hold_row FROM billing.holds AS h
     WHERE h.user_id = old_identity[1] AND h.idempotency_key = old_identity[2];
    IF TG_OP = 'UPDATE' THEN
        new_identity := billing.trigger_identity(config, NEW, TG_TABLE_SCHEMA, TG_TABLE_NAME);
        IF old_identity[1:2] IS DISTINCT FROM new_identity[1:2] THEN
            PERFORM billing.trigger_keep_identity(config, old_identity, new_identity, hold_row.hold_id IS NOT NULL);
        END IF;
        IF hold_row.hold_id IS NULL THEN
            RETURN NULL;
        END IF;
        IF failed IS NOT NULL
           AND billing.trigger_column(NEW, 'status_column', config ->> 'status_column') IS NOT DISTINCT FROM failed THEN
            IF billing.trigger_column(OLD, 'status_column', config ->> 'status_column') IS NOT DISTINCT FROM failed THEN
                RETURN NULL;
            END IF;
            why := format('trigger %I on %I.%I: %s became %s', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                          config ->> 'status_column', failed);
        ELSE
            -- the actual cost was written (or changed): settle; a repeat of the same cost replays.
            -- A hold released when the row failed stays released: the row is not charged again.
            actual := billing.trigger_column(NEW, 'actual_column', config ->> 'actual_column');
            IF actual IS NOT NULL AND hold_row.status <> 'released'
               AND actual IS DISTINCT FROM billing.trigger_column(OLD, 'actual_column', config ->> 'actual_column') THEN
                PERFORM @extschema@.billing_settle(hold_row.hold_id, billing.trigger_amount(actual_argument, actual, true),
                                                   NULL, allow_debt);
            END IF;
            RETURN NULL;
        END IF;
    ELSE
        IF hold_row.hold_id IS NULL THEN
            RETURN NULL;
        END IF;
        why := format('trigger %I on %I.%I: row deleted', TG_NAME, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    END IF;
    -- failure: give back what is held, or refund what was charged
    IF hold_row.status = 'held' THEN
        PERFORM @extschema@.billing_release(hold_row.hold_id, why);
    ELSIF hold_row.status = 'settled' AND hold_row.log_id IS NOT NULL THEN
        PERFORM billing.trigger_refund(hold_row.user_id, hold_row.log_id, why);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_hold_charge() IS
    'Row trigger (AFTER INSERT OR UPDATE OR DELETE) for work of unknown cost, configured by name=value arguments: holds power for each new row with billing_hold, settles the hold when actual_column is set, and releases it (or refunds the settled charge) when the row is deleted or its status becomes failed_status';
