-- billing 0.1.0 -> 0.2.0: holds and refunds, reports and pricing, expiry and other
-- operations, JSON calls, low-balance notifications, charging from triggers.
-- It creates what a fresh 0.2.0 install creates (tests/upgrade.rs compares the two catalogs).

-- accounts: the soonest ttl among open holds, the low-balance threshold;
-- the ledger: which entry a refund gives back
ALTER TABLE billing.accounts ADD COLUMN holds_due_at timestamptz;

ALTER TABLE billing.accounts ADD COLUMN low_balance_at numeric;

ALTER TABLE billing.account_log ADD COLUMN refund_of bigint;

CREATE INDEX account_log_by_id ON billing.account_log (id);
CREATE INDEX account_log_refunds ON billing.account_log (user_id, refund_of) WHERE refund_of IS NOT NULL;
-- comments added to 0.1.0's objects
COMMENT ON COLUMN billing.account_types.code IS 'The type''s code, as the functions and the ledger name it (upper case, never renamed)';
COMMENT ON COLUMN billing.account_types.direction IS '+1: a credit type (billing_add), -1: a debit type (billing_deduct, billing_hold)';
COMMENT ON COLUMN billing.account_types.description IS 'What the type is for';
COMMENT ON COLUMN billing.source_types.code IS 'The source type''s code, as the functions and the ledger name it (upper case, never renamed)';
COMMENT ON COLUMN billing.source_types.description IS 'What the source type is for';
COMMENT ON COLUMN billing.accounts.user_id IS 'The user (the application''s id); the key every table begins with';
COMMENT ON COLUMN billing.accounts.created_at IS 'When the user''s first credit (or threshold) created the row';
COMMENT ON COLUMN billing.accounts.updated_at IS 'When a function last changed the row';
COMMENT ON COLUMN billing.accounts.holds_due_at IS 'Soonest expires_at among the user''s open holds (cache); at or before now() means a hold''s reservation is due back';
COMMENT ON COLUMN billing.accounts.low_balance_at IS 'Threshold of the low-balance notification (billing_set_low_balance); NULL: none';
COMMENT ON COLUMN billing.grant_store.user_id IS 'The user the grant belongs to';
COMMENT ON COLUMN billing.grant_store.id IS 'The grant''s id, as the ledger''s detail names it';
COMMENT ON COLUMN billing.grant_store.amount IS 'Power granted';
COMMENT ON COLUMN billing.grant_store.expire_at IS 'When the grant expires; spent soonest-expiring first';
COMMENT ON COLUMN billing.grant_store.subscription_id IS 'The subscription that gave it (billing_revoke_subscription ends them)';
COMMENT ON COLUMN billing.grant_store.created_at IS 'When the grant was made';
COMMENT ON SEQUENCE billing.grants_id_seq IS 'Grant ids';
COMMENT ON COLUMN billing.grants.user_id IS 'The user the grant belongs to';
COMMENT ON COLUMN billing.grants.id IS 'The grant''s id, as the ledger''s detail names it';
COMMENT ON COLUMN billing.grants.amount IS 'Power granted';
COMMENT ON COLUMN billing.grants.expire_at IS 'When the grant expires; spent soonest-expiring first';
COMMENT ON COLUMN billing.grants.subscription_id IS 'The subscription that gave it';
COMMENT ON COLUMN billing.grants.created_at IS 'When the grant was made';
COMMENT ON COLUMN billing.account_log.refund_of IS 'For a refund: id of the debit entry it gives back (part of)';
COMMENT ON COLUMN billing.account_log.user_id IS 'The user';
COMMENT ON COLUMN billing.account_log.account_type IS 'What kind of change (billing.account_types)';
COMMENT ON COLUMN billing.account_log.source_type IS 'Where the change came from (billing.source_types)';
COMMENT ON COLUMN billing.account_log.source IS 'The caller''s source: an order, a feature, a model';
COMMENT ON COLUMN billing.account_log.remark IS 'Free text from the caller';
COMMENT ON COLUMN billing.account_log.association_no IS 'The caller''s reference (a task or order number); billing_by_association finds entries by it';
COMMENT ON COLUMN billing.account_log.association_user_id IS 'Another user the change concerns, or the operator of a billing_adjust';
COMMENT ON COLUMN billing.account_log.subscription_id IS 'For grant entries: the subscription';
COMMENT ON COLUMN billing.account_log.expire_at IS 'For a grant''s credit (and its expiry or revocation): when the grant expires';
COMMENT ON COLUMN billing.account_log.created_at IS 'now() of the transaction that wrote the entry';
COMMENT ON SEQUENCE billing.account_log_id_seq IS 'Ledger entry ids';
INSERT INTO billing.account_types (code, direction, description, builtin) VALUES
    ('REFUND_INC',              1, 'Refund of an earlier debit, to where it came from', true);

-- Holds: power reserved for work whose cost is known only when it ends.
--
-- billing_hold takes the amount out of the user's grants and permanent balance
-- at once (same lock, same draw-down order as billing_deduct) and records in
-- the hold where it came from (funding). Nothing is written to the ledger at
-- hold time: a reservation is not yet a charge, and the ledger records what
-- the user was charged. billing_settle writes the one ledger entry for the
-- actual cost and gives back the rest; billing_release, or the hold's ttl
-- passing, gives everything back. So at every moment:
--   stored balances = ledger replayed - funding of the open holds
-- which billing_verify checks.

CREATE SEQUENCE billing.holds_id_seq;
CREATE TABLE billing.holds (
    user_id             text NOT NULL,
    hold_id             bigint NOT NULL DEFAULT pg_catalog.nextval('billing.holds_id_seq'::pg_catalog.regclass),
    status              text NOT NULL DEFAULT 'held'
                        CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['held', 'settled', 'released', 'expired'])),
    amount              numeric NOT NULL CHECK (amount OPERATOR(pg_catalog.>) 0),
    expires_at          timestamptz NOT NULL,
    account_type        text NOT NULL,
    source_type         text NOT NULL,
    source              text NOT NULL,
    remark              text,
    association_no      text,
    association_user_id text,
    idempotency_key     text,
    funding             jsonb NOT NULL,
    reserved_after_seq  bigint NOT NULL,
    settled_amount      numeric,
    log_id              bigint,
    reason              text,
    closed_after_seq    bigint,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    closed_at           timestamptz,
    PRIMARY KEY (user_id, hold_id)
);
ALTER SEQUENCE billing.holds_id_seq OWNED BY billing.holds.hold_id;
CREATE UNIQUE INDEX holds_idempotency ON billing.holds (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- billing_settle and billing_release find a hold by its id alone.
CREATE INDEX holds_by_id ON billing.holds (hold_id);
-- The open holds of a user, soonest ttl first (the account row caches the first).
CREATE INDEX holds_open ON billing.holds (user_id, expires_at) WHERE status OPERATOR(pg_catalog.=) 'held';

COMMENT ON TABLE billing.holds IS 'Power reserved by billing_hold until billing_settle, billing_release or its ttl. Change it only through the billing functions.';
COMMENT ON COLUMN billing.holds.user_id IS 'The user whose power is held';
COMMENT ON SEQUENCE billing.holds_id_seq IS 'Hold ids';
COMMENT ON COLUMN billing.holds.hold_id IS 'The id billing_settle and billing_release take';
COMMENT ON COLUMN billing.holds.status IS 'held (reserving, until expires_at), settled, released, or expired (its ttl passed first)';
COMMENT ON COLUMN billing.holds.amount IS 'Power reserved';
COMMENT ON COLUMN billing.holds.expires_at IS 'When the reservation lapses by itself (creation time plus ttl)';
COMMENT ON COLUMN billing.holds.account_type IS 'Debit type of the entry the settle writes';
COMMENT ON COLUMN billing.holds.source_type IS 'Source type of the entry the settle writes';
COMMENT ON COLUMN billing.holds.source IS 'Source of the entry the settle writes';
COMMENT ON COLUMN billing.holds.remark IS 'Remark of the settle entry, unless the settle gives its own';
COMMENT ON COLUMN billing.holds.association_no IS 'Caller''s reference, copied to the settle entry';
COMMENT ON COLUMN billing.holds.association_user_id IS 'Caller''s reference to another user, copied to the settle entry';
COMMENT ON COLUMN billing.holds.idempotency_key IS 'Caller''s key: a repeat of billing_hold with it returns this hold';
COMMENT ON COLUMN billing.holds.funding IS 'Where the reserved power was taken from, as in the ledger''s detail: {"permanent": x, "grants": [{"id": g, "amount": y}]}';
COMMENT ON COLUMN billing.holds.reserved_after_seq IS 'The user''s last ledger seq when the hold was made';
COMMENT ON COLUMN billing.holds.settled_amount IS 'The actual amount charged by billing_settle';
COMMENT ON COLUMN billing.holds.log_id IS 'id of the ledger entry billing_settle wrote';
COMMENT ON COLUMN billing.holds.reason IS 'Why it was released (billing_release''s reason)';
COMMENT ON COLUMN billing.holds.closed_after_seq IS 'The user''s last ledger seq when the hold was settled, released or expired';
COMMENT ON COLUMN billing.holds.created_at IS 'When the hold was made';
COMMENT ON COLUMN billing.holds.closed_at IS 'When the hold stopped reserving';

CREATE FUNCTION @extschema@.billing_hold(
        user_id text, amount numeric, account_type text, source_type text, source text,
        remark text DEFAULT NULL, association_no text DEFAULT NULL,
        association_user_id text DEFAULT NULL, ttl interval DEFAULT '15 minutes',
        idempotency_key text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_hold';
COMMENT ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text) IS
    'Reserves power for work of unknown cost until billing_settle, billing_release or ttl; PB001 if there is not enough. Writes no ledger entry. Returns the hold.';

CREATE FUNCTION @extschema@.billing_settle(
        hold_id bigint, actual_amount numeric, remark text DEFAULT NULL,
        allow_debt boolean DEFAULT false)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_settle';
COMMENT ON FUNCTION @extschema@.billing_settle(bigint, numeric, text, boolean) IS
    'Charges the actual cost of a hold in one ledger entry and gives back the rest; more than held takes the difference from available power (PB001, or a debt with allow_debt). 0 releases. Returns the ledger entry (NULL for 0).';

CREATE FUNCTION @extschema@.billing_release(hold_id bigint, reason text DEFAULT NULL)
    RETURNS billing.holds
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_release';
COMMENT ON FUNCTION @extschema@.billing_release(bigint, text) IS
    'Gives a hold''s reserved power back to where it came from, charging nothing. Returns the hold.';

CREATE FUNCTION @extschema@.billing_refund(
        log_id bigint, amount numeric DEFAULT NULL, remark text DEFAULT NULL,
        idempotency_key text DEFAULT NULL)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_refund';
COMMENT ON FUNCTION @extschema@.billing_refund(bigint, numeric, text, text) IS
    'Gives back all (amount NULL) or part of an earlier debit to the grants and permanent balance it came from, in one REFUND_INC entry; never more than it took (PB005). Returns the ledger entry.';

CREATE FUNCTION @extschema@.billing_add(options jsonb)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_add_options';
COMMENT ON FUNCTION @extschema@.billing_add(jsonb) IS
    'billing_add with the options object services pass: {"userId", "amount", "accountType", "source": {"type", "source"}, "remark", "associationNo", "associationUserId", "expireAt", "subscriptionId", "idempotencyKey"}. Returns the ledger entry.';

CREATE FUNCTION @extschema@.billing_deduct(options jsonb)
    RETURNS billing.account_log
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_deduct_options';
COMMENT ON FUNCTION @extschema@.billing_deduct(jsonb) IS
    'billing_deduct with the options object services pass: {"userId", "amount", "accountType", "source": {"type", "source"}, "remark", "associationNo", "associationUserId", "idempotencyKey"}. Returns the ledger entry.';

-- billing_verify reconciles holds and refunds too
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
       AND (a.head_grant_id IS DISTINCT FROM h.id OR a.head_remaining IS DISTINCT FROM h.remaining);
END
$$;
COMMENT ON FUNCTION @extschema@.billing_verify(text) IS
    'Replays the ledger (of one user, or all) and returns one row per disagreement with the stored balances, grants and caches; no rows means healthy';

-- Reading the ledger and pricing usage: billing_history (keyset pages),
-- billing_by_association, billing_statement, and billing_price over the
-- pricing rules. All are plain SQL over the tables, SECURITY DEFINER with a
-- pinned search_path like billing_verify; none writes. EXECUTE on them is the
-- permission to read what they return (privileges.sql revokes it from PUBLIC).

-- Lookups by the caller's association number (a task, an order) go through
-- this index. Like every key here it begins with user_id, so it can be
-- distributed by user_id; entries without an association_no are left out.
-- seq is in it so that the index also gives billing_by_association its order:
-- without it, the generic plan that plpgsql caches after a few calls (where
-- the association_no is not known) prefers the primary key, which is in seq
-- order, and filters the user's whole ledger.
CREATE INDEX account_log_by_association ON billing.account_log (user_id, association_no, seq)
    WHERE association_no IS NOT NULL;
COMMENT ON INDEX billing.account_log_by_association IS 'billing_by_association: a user''s entries with a given association_no';

-- The checks every required text argument passes, as in the Rust functions
-- (fmgr.rs): not NULL (22004), not empty or only white space, at most 255
-- characters (22023); the message starts with the argument's name.
CREATE FUNCTION billing.check_key(argument text, value text)
    RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', argument USING ERRCODE = '22004';
    END IF;
    IF value !~ '[^[:space:]]' THEN
        RAISE EXCEPTION '% must not be empty', argument USING ERRCODE = '22023';
    END IF;
    IF length(value) > 255 THEN
        RAISE EXCEPTION '% is longer than 255 characters', argument USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION billing.check_key(text, text) IS
    'Raises 22004 for a NULL, 22023 for an empty or over-255-character required text argument, naming it';

CREATE FUNCTION @extschema@.billing_history(user_id text, page_size integer DEFAULT 50, before_seq bigint DEFAULT NULL)
    RETURNS SETOF billing.account_log
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- one index condition, seq < below, whether or not a page was given
    below bigint := coalesce(before_seq, 9223372036854775807);
BEGIN
    PERFORM billing.check_key('user_id', billing_history.user_id);
    IF page_size IS NULL THEN
        RAISE EXCEPTION 'page_size must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF page_size < 1 OR page_size > 1000 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 1000, not %', page_size USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
        SELECT l.* FROM billing.account_log AS l
         WHERE l.user_id = billing_history.user_id AND l.seq < below
         ORDER BY l.seq DESC
         LIMIT page_size;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_history(text, integer, bigint) IS
    'A user''s ledger entries, newest first, page_size (1..1000) at a time; pass the last seq of a page as before_seq for the next page';

CREATE FUNCTION @extschema@.billing_by_association(user_id text, association_no text)
    RETURNS SETOF billing.account_log
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM billing.check_key('user_id', billing_by_association.user_id);
    PERFORM billing.check_key('association_no', billing_by_association.association_no);
    RETURN QUERY
        SELECT l.* FROM billing.account_log AS l
         WHERE l.user_id = billing_by_association.user_id
           AND l.association_no = billing_by_association.association_no
         ORDER BY l.seq;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_by_association(text, text) IS
    'A user''s ledger entries that carry the given association_no, oldest first (through index account_log_by_association)';

-- One row per account_type with entries in [from_ts, to_ts), then a total row
-- (account_type NULL), always present. Opening and closing balances are on
-- every row: the balance_after of the user's last entry before from_ts and
-- before to_ts (0 without one).
CREATE FUNCTION @extschema@.billing_statement(user_id text, from_ts timestamptz, to_ts timestamptz)
    RETURNS TABLE (account_type text, entries bigint, credited numeric, debited numeric, net numeric,
                   opening_balance numeric, closing_balance numeric)
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    opening numeric;
    closing numeric;
BEGIN
    PERFORM billing.check_key('user_id', billing_statement.user_id);
    IF from_ts IS NULL THEN
        RAISE EXCEPTION 'from_ts must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF to_ts IS NULL THEN
        RAISE EXCEPTION 'to_ts must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF from_ts >= to_ts THEN
        RAISE EXCEPTION 'from_ts must be before to_ts, but % is not before %', from_ts, to_ts
            USING ERRCODE = '22023';
    END IF;
    -- the last entry by seq among those written before each bound
    SELECT l.balance_after INTO opening FROM billing.account_log AS l
     WHERE l.user_id = billing_statement.user_id AND l.created_at < from_ts
     ORDER BY l.seq DESC LIMIT 1;
    SELECT l.balance_after INTO closing FROM billing.account_log AS l
     WHERE l.user_id = billing_statement.user_id AND l.created_at < to_ts
     ORDER BY l.seq DESC LIMIT 1;
    RETURN QUERY
        SELECT l.account_type,
               count(*),
               coalesce(sum(l.amount) FILTER (WHERE l.direction = 1), 0),
               coalesce(sum(l.amount) FILTER (WHERE l.direction = -1), 0),
               coalesce(sum(l.direction * l.amount), 0),
               coalesce(opening, 0),
               coalesce(closing, 0)
          FROM billing.account_log AS l
         WHERE l.user_id = billing_statement.user_id
           AND l.created_at >= from_ts AND l.created_at < to_ts
         GROUP BY GROUPING SETS ((l.account_type), ())
         ORDER BY l.account_type NULLS LAST;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_statement(text, timestamptz, timestamptz) IS
    'Statement of a user for [from_ts, to_ts): per account_type the entries, credited, debited and net power, then a total row (account_type NULL); every row carries the opening and closing balance';

CREATE TABLE billing.pricing_rules (
    code        text PRIMARY KEY,
    tokens      bigint NOT NULL CHECK (tokens OPERATOR(pg_catalog.>) 0),
    power       numeric NOT NULL CHECK (power OPERATOR(pg_catalog.>=) 0 AND power OPERATOR(pg_catalog.<) 'Infinity'),
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE billing.pricing_rules IS 'What usage costs: a rule charges power for every tokens used (billing_price). A DBA adds and changes rules with INSERT and UPDATE.';
COMMENT ON COLUMN billing.pricing_rules.code IS 'The rule''s name, as passed to billing_price (case-sensitive)';
COMMENT ON COLUMN billing.pricing_rules.tokens IS 'Size of the unit priced, in tokens (> 0)';
COMMENT ON COLUMN billing.pricing_rules.power IS 'Power charged per tokens (>= 0, finite)';
COMMENT ON COLUMN billing.pricing_rules.description IS 'What the rule is for';

CREATE FUNCTION @extschema@.billing_price(rule_code text, tokens bigint)
    RETURNS numeric
    LANGUAGE plpgsql STABLE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule billing.pricing_rules;
    cost numeric;
BEGIN
    PERFORM billing.check_key('rule_code', rule_code);
    IF tokens IS NULL THEN
        RAISE EXCEPTION 'tokens must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF tokens < 0 THEN
        RAISE EXCEPTION 'tokens must not be negative, not %', tokens USING ERRCODE = '22023';
    END IF;
    SELECT r.* INTO rule FROM billing.pricing_rules AS r WHERE r.code = rule_code;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown rule_code "%"', rule_code
            USING ERRCODE = 'PB002',
                  HINT = 'Pricing rules are the rows of billing.pricing_rules; a DBA adds new ones with INSERT.';
    END IF;
    -- ceil(tokens * power / rule tokens) without a rounded division: div() and
    -- mod() on numeric are exact, so the ceiling is exact for any size.
    cost := billing_price.tokens::numeric * rule.power;
    RETURN div(cost, rule.tokens::numeric) + CASE WHEN mod(cost, rule.tokens::numeric) > 0 THEN 1 ELSE 0 END;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_price(text, bigint) IS
    'Power that tokens of usage cost under a pricing rule: ceil(tokens * power / rule tokens), computed exactly; PB002 for an unknown rule';

-- Operations for DBAs and schedulers: billing_expire (sweeps expired grants
-- and lapsed holds), billing_revoke_subscription, billing_adjust, and the
-- billing.balances view. They are PL/pgSQL over the same tables and keep the
-- same rules as the Rust functions: the account rows are locked first, every
-- change of a balance is one ledger entry, and the caches on the account row
-- are rebuilt from grant_store afterwards (billing.refresh_accounts).

-- billing_expire finds the accounts with something due through these.
CREATE INDEX accounts_next_expiry ON billing.accounts (next_expiry) WHERE next_expiry IS NOT NULL;
COMMENT ON INDEX billing.accounts_next_expiry IS 'billing_expire: accounts with a grant that may have expired';
CREATE INDEX accounts_holds_due ON billing.accounts (holds_due_at) WHERE holds_due_at IS NOT NULL;
COMMENT ON INDEX billing.accounts_holds_due IS 'billing_expire: accounts with a hold whose ttl may have passed';
-- billing_revoke_subscription finds a subscription's grants through this.
CREATE INDEX grant_store_by_subscription ON billing.grant_store (subscription_id) WHERE subscription_id IS NOT NULL;
COMMENT ON INDEX billing.grant_store_by_subscription IS 'billing_revoke_subscription: the grants of a subscription';

-- Called with the accounts of users locked: writes each head grant's live
-- remaining back to grant_store, so that grant_store is exact.
CREATE FUNCTION billing.write_back_heads(users text[])
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE billing.grant_store AS g
       SET remaining = a.head_remaining
      FROM billing.accounts AS a
     WHERE a.user_id = ANY (users) AND g.user_id = a.user_id AND g.id = a.head_grant_id;
$$;
COMMENT ON FUNCTION billing.write_back_heads(text[]) IS
    'Internal: with the accounts locked, copies each head grant''s live remaining back to grant_store';

-- Called with the accounts of users locked, after grant_store and holds have
-- changed: rebuilds last_seq, grants_total, next_expiry, the head grant and
-- holds_due_at of each account from the ledger, grant_store and the open holds.
CREATE FUNCTION billing.refresh_accounts(users text[])
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE billing.accounts AS a
       SET last_seq = coalesce((SELECT max(l.seq) FROM billing.account_log AS l WHERE l.user_id = a.user_id), 0),
           grants_total = s.total, next_expiry = s.next_expiry,
           head_grant_id = s.head[1], head_remaining = s.head_remaining[1],
           holds_due_at = (SELECT min(h.expires_at) FROM billing.holds AS h
                            WHERE h.user_id = a.user_id AND h.status = 'held'),
           updated_at = now()
      FROM (SELECT u.user_id, coalesce(sum(g.remaining), 0) AS total,
                   min(g.expire_at) FILTER (WHERE g.remaining > 0) AS next_expiry,
                   array_agg(g.id ORDER BY g.expire_at, g.id)
                     FILTER (WHERE g.remaining > 0 AND g.expire_at > now()) AS head,
                   array_agg(g.remaining ORDER BY g.expire_at, g.id)
                     FILTER (WHERE g.remaining > 0 AND g.expire_at > now()) AS head_remaining
              FROM unnest(users) AS u(user_id)
              LEFT JOIN billing.grant_store AS g ON g.user_id = u.user_id
             GROUP BY u.user_id) AS s
     WHERE a.user_id = s.user_id;
$$;
COMMENT ON FUNCTION billing.refresh_accounts(text[]) IS
    'Internal: with the accounts locked, rebuilds each account row''s caches from the ledger, grant_store and open holds';

-- Power each user can spend now, from grant_store (after write_back_heads).
CREATE FUNCTION billing.available_now(users text[])
    RETURNS TABLE (user_id text, available numeric)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.user_id,
           a.permanent + coalesce((SELECT sum(g.remaining) FROM billing.grant_store AS g
                                    WHERE g.user_id = a.user_id AND g.expire_at > now()), 0)
      FROM billing.accounts AS a
     WHERE a.user_id = ANY (users);
$$;
COMMENT ON FUNCTION billing.available_now(text[]) IS
    'Internal: the power each user can spend now, read from grant_store (call after write_back_heads)';

-- The low-balance notification, as the Rust functions send it (src/notify.rs).
CREATE FUNCTION billing.notify_low_balance(user_id text, threshold numeric, available numeric)
    RETURNS void
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_notify('billing_low_balance',
                     jsonb_build_object('user_id', user_id, 'threshold', trim_scale(threshold),
                                       'available', trim_scale(available))::text);
$$;
COMMENT ON FUNCTION billing.notify_low_balance(text, numeric, numeric) IS
    'Internal: NOTIFY billing_low_balance with {"user_id", "threshold", "available"}';

CREATE FUNCTION @extschema@.billing_set_low_balance(user_id text, threshold numeric)
    RETURNS numeric
    LANGUAGE plpgsql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM billing.check_key('user_id', billing_set_low_balance.user_id);
    IF threshold < 0 OR threshold = 'NaN' OR threshold > 1000000000000 THEN
        RAISE EXCEPTION 'threshold must be between 0 and 1000000000000, got %', threshold USING ERRCODE = '22023';
    END IF;
    IF scale(trim_scale(threshold)) > 8 THEN
        RAISE EXCEPTION 'threshold has more than 8 decimal places: %', threshold USING ERRCODE = '22023';
    END IF;
    -- the account row is where the threshold lives (and what every write locks)
    INSERT INTO billing.accounts AS a (user_id, low_balance_at)
    VALUES (billing_set_low_balance.user_id, trim_scale(threshold))
    ON CONFLICT (user_id) DO UPDATE SET low_balance_at = EXCLUDED.low_balance_at;
    RETURN trim_scale(threshold);
END
$$;
COMMENT ON FUNCTION @extschema@.billing_set_low_balance(text, numeric) IS
    'Sets the user''s low-balance threshold (NULL removes it): a change that takes available power from at or above it to below it sends NOTIFY billing_low_balance. Returns the threshold.';

-- Called with the accounts of users locked (and their heads written back): gives
-- back what their holds past the ttl reserved, to the grants and the permanent
-- balance it came from, and marks those holds expired. No ledger entry: a hold
-- was never a charge. Returns how many holds it ended.
CREATE FUNCTION billing.return_due_holds(users text[])
    RETURNS bigint
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        UPDATE billing.holds AS h
           SET status = 'expired', closed_at = now(), closed_after_seq = a.last_seq
          FROM billing.accounts AS a
         WHERE h.user_id = ANY (users) AND a.user_id = h.user_id
           AND h.status = 'held' AND h.expires_at <= now()
        RETURNING h.user_id, h.funding
    ), back AS (
        SELECT due.user_id, (g ->> 'id')::bigint AS id, sum((g ->> 'amount')::numeric) AS amount
          FROM due, jsonb_array_elements(coalesce(due.funding -> 'grants', '[]')) AS g
         GROUP BY 1, 2
    ), moved AS (
        UPDATE billing.grant_store AS s
           SET remaining = trim_scale(s.remaining + back.amount)
          FROM back
         WHERE s.user_id = back.user_id AND s.id = back.id
    ), permanent AS (
        SELECT due.user_id, sum(coalesce((due.funding ->> 'permanent')::numeric, 0)) AS amount, count(*) AS holds
          FROM due GROUP BY due.user_id
    ), credited AS (
        UPDATE billing.accounts AS a
           SET permanent = trim_scale(a.permanent + permanent.amount)
          FROM permanent
         WHERE a.user_id = permanent.user_id
    )
    SELECT coalesce(sum(permanent.holds), 0)::bigint FROM permanent;
$$;
COMMENT ON FUNCTION billing.return_due_holds(text[]) IS
    'Internal: with the accounts locked and heads written back, gives back what lapsed holds reserved and marks them expired; returns how many';

CREATE FUNCTION @extschema@.billing_expire(as_of timestamptz DEFAULT pg_catalog.now(), batch_size integer DEFAULT 10000)
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

CREATE FUNCTION @extschema@.billing_revoke_subscription(subscription_id text, remark text DEFAULT NULL)
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
        SELECT av.available INTO before FROM billing.available_now(ARRAY[owner]) AS av;
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
        PERFORM billing.refresh_accounts(ARRAY[owner]);
        SELECT av.available INTO after FROM billing.available_now(ARRAY[owner]) AS av;
        IF before >= threshold AND after < threshold THEN
            PERFORM billing.notify_low_balance(owner, threshold, after);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_revoke_subscription(text, text) IS
    'Ends every live grant of a subscription now: one MEMBERSHIP_GIFT_DEC entry per grant with power left. Returns the entries.';

CREATE FUNCTION @extschema@.billing_adjust(user_id text, delta numeric, remark text, operator text DEFAULT current_user)
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
        entry := @extschema@.billing_add(target, delta, 'SYSTEM_MANUAL_INC', 'SYSTEM', 'manual',
                                         remark => remark, association_user_id => billing_adjust.operator);
    ELSE
        entry := @extschema@.billing_deduct(target, -delta, 'SYSTEM_MANUAL_DEC', 'SYSTEM', 'manual',
                                            remark => remark, association_user_id => billing_adjust.operator);
    END IF;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) IS
    'A manual correction by staff: SYSTEM_MANUAL_INC for a positive delta, SYSTEM_MANUAL_DEC (PB001 if not there) for a negative one, with association_user_id = operator. Returns the ledger entry.';

CREATE VIEW billing.balances AS
SELECT a.user_id,
       a.permanent,
       coalesce(live.remaining, 0) AS grants_live,
       coalesce(held.amount, 0) AS held,
       a.permanent OPERATOR(pg_catalog.+) coalesce(live.remaining, 0)
                   OPERATOR(pg_catalog.+) coalesce(lapsed.amount, 0) AS available,
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
        SELECT pg_catalog.sum(p.amount) AS amount
          FROM billing.holds AS h,
               LATERAL (SELECT (h.funding OPERATOR(pg_catalog.->>) 'permanent')::numeric AS amount
                        UNION ALL
                        SELECT (e.value OPERATOR(pg_catalog.->>) 'amount')::numeric
                          FROM pg_catalog.jsonb_array_elements(
                                 coalesce(h.funding OPERATOR(pg_catalog.->) 'grants', '[]'::pg_catalog.jsonb)) AS e
                          JOIN billing.grant_store AS g
                            ON g.user_id OPERATOR(pg_catalog.=) h.user_id
                           AND g.id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'id')::bigint
                         WHERE g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS p
         WHERE h.user_id OPERATOR(pg_catalog.=) a.user_id
           AND h.status OPERATOR(pg_catalog.=) 'held'
           AND h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) AS lapsed ON true;
COMMENT ON VIEW billing.balances IS 'Each user''s power as it stands: permanent balance, live grants, power held by open holds, and what can be spent now';
COMMENT ON COLUMN billing.balances.user_id IS 'The user';
COMMENT ON COLUMN billing.balances.permanent IS 'Power that never expires (negative while a debt is open)';
COMMENT ON COLUMN billing.balances.grants_live IS 'Remaining of the grants not yet expired';
COMMENT ON COLUMN billing.balances.held IS 'Power reserved by open holds (already taken out of permanent and grants_live)';
COMMENT ON COLUMN billing.balances.available IS 'What billing_power returns: what can be spent now';
COMMENT ON COLUMN billing.balances.next_expiry IS 'When the next live grant with power left expires';

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

-- privileges and dump registration of the new objects
REVOKE ALL ON ALL TABLES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA billing FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_add(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_deduct(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold(text, numeric, text, text, text, text, text, text, interval, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_settle(bigint, numeric, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_release(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_refund(bigint, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.check_key(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_history(text, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_by_association(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_statement(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_price(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.write_back_heads(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.refresh_accounts(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.available_now(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.return_due_holds(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.notify_low_balance(text, numeric, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_set_low_balance(text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_expire(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_revoke_subscription(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_adjust(text, numeric, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_column(record, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_amount(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_config(text, name, text, text, text, name, name, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_identity(jsonb, record, name, name) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_require(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_keep_identity(jsonb, text[], text[], boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION billing.trigger_refund(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_charge() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.billing_hold_charge() FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('billing.holds', '');
SELECT pg_catalog.pg_extension_config_dump('billing.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('billing.pricing_rules', '');
