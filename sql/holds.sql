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
    scopes              text[],
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
COMMENT ON COLUMN billing.holds.scopes IS 'The scopes the hold counts against while open, and its settle after (sorted; NULL: made before 0.3.0, counted as none)';
