-- Low-balance thresholds and events (billing_set_low_balance,
-- billing_low_balance_events), and the one place an event is recorded and
-- announced, billing.notify_low_balance.

-- Low-balance events. A change that takes a user's available power from at or
-- above the threshold to below it records an event here and sends NOTIFY
-- billing_low_balance with no payload: LISTEN is open to every role, so the
-- channel says only "look"; what happened is read with billing_low_balance_events,
-- which only roles granted it may execute (as they are granted billing_power).
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

-- The one place a low-balance event is recorded and announced, for the Rust
-- functions (src/notify.rs) and the PL/pgSQL ones alike.
CREATE FUNCTION billing.notify_low_balance(user_id text, threshold numeric, available numeric)
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

CREATE FUNCTION @extschema@.billing_set_low_balance(user_id text, threshold numeric)
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
