-- Spending limits: caps per user and scope, per period (billing_set_limit,
-- billing_limits), counted by every charge under the user's lock
-- (billing.count_limits), and the debt floor (billing_set_debt_limit).
--
-- What counts. A charge is a billing_deduct or a billing_hold (and the
-- settle of a hold); it counts against the user's limit of each scope it names
-- and against the user's '*' limit. Adjustments, revocations and expiry are
-- not charges. A deduct adds to spent; a hold adds to held while it is open;
-- a settle moves the hold out of held and adds the actual amount to spent; a
-- release (or a lapsed ttl) takes the hold out of held; a refund takes what it
-- gives back out of spent. Each of those gives back only to the period (and
-- the limit) the charge was counted in: nothing once that period is over.
--
-- Periods. NULL: one period from when the limit was set, never ending (a
-- lifetime cap). 'day', 'week' (ISO, from Monday) and 'month': calendar
-- periods in the limit's time zone. An interval such as '1 hour': fixed
-- windows of that length from the moment the limit was set. A limit's row
-- keeps the counters of the period it last counted in; the first charge in a
-- later period starts that period's counters at zero.
--
-- What billing_verify checks (the counters of each limit's stored period):
--   spent = the amounts of the charge entries that name the scope ('*': every
--           charge entry), written in the period after the limit was set
--           (seq > counted_after_seq), less what refunds written before the
--           period ended gave back of them
--   held  = the amounts of the holds that name the scope, made in the period,
--           and open at the period's end (or now)

-- Every charge of a user with limits updates its limit rows: they leave room on
-- their page (as billing.accounts does), so that the update is a HOT update that
-- touches no index.
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

-- The period of a limit that contains `at`.
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

-- Counting against the user's limits for the sweep of lapsed holds
-- (billing.return_due_holds): the C entry point of src/limits.rs, which runs
-- sql/statements/count_limits.sql. Its UPDATE (shared/count_limits.sql) is the
-- one place a limit's counters change; the one-statement deduct and hold run it
-- as a CTE of their statement, and the Rust paths run count_limits.sql too.
-- Called with the account row locked, before the charge checks power.
-- scopes are the charge's own (checked and without '*'); the '*' limit always
-- counts. A positive spent_delta or held_delta is a new charge or hold, counted
-- now; a negative one gives back what was counted at counted_at (the hold's
-- creation, or the charge entry's, with counted_seq its seq), only to a limit
-- whose current period it was counted in. Returns the first limit (in scope
-- order, bytewise) that the charge takes above its cap, as ARRAY[scope, cap,
-- spent, held, requested, period_end], or NULL: the caller raises PB008, which
-- undoes everything.
CREATE FUNCTION billing.count_limits(
        user_id text, scopes text[], spent_delta numeric, held_delta numeric,
        counted_at timestamptz, counted_seq bigint)
    RETURNS text[]
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'billing_count_limits';
COMMENT ON FUNCTION billing.count_limits(text, text[], numeric, numeric, timestamptz, bigint) IS
    'Internal: with the account locked, counts a charge (or gives one back) against the user''s limits of its scopes and ''*'', starting a new period''s counters when one began; returns the first limit it takes above its cap as ARRAY[scope, cap, spent, held, requested, period_end], or NULL';

-- A spending limit as billing_limits and billing_set_limit return it.
CREATE TYPE billing.spending_limit AS (
    scope text, cap numeric, period text, time_zone text, period_start timestamptz,
    period_end timestamptz, spent numeric, held numeric, remaining numeric);
COMMENT ON TYPE billing.spending_limit IS 'A spending limit as it stands now: scope, cap, period and time_zone as set, the current period''s start and end (NULL end: a lifetime cap), spent and held in it, and what remains (cap - spent - held, at least 0)';

-- A user's limits as they stand now: a limit whose stored period is over shows
-- the current period, with nothing spent or held yet; a hold past its ttl that
-- no write has swept yet holds nothing (as billing.balances counts its power
-- available again). PL/pgSQL, limit by limit: Citus cannot plan the statement
-- of a SQL function that takes parameters, nor push down a join of the limits
-- with a subquery of the holds.
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
