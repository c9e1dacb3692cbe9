-- billing schema: tables, seed data, the ledger's append-only guard and the drop guard.
-- Every table's primary key and unique keys begin with user_id (except the two
-- small reference tables of type codes), so the user tables can be
-- distributed by user_id.

CREATE SCHEMA billing;
COMMENT ON SCHEMA billing IS 'Credit billing: accounts, expiring grants and the append-only ledger';

CREATE TABLE billing.account_types (
    code        text PRIMARY KEY CHECK (code OPERATOR(pg_catalog.~) '^[A-Z][A-Z0-9_]*$'),
    direction   smallint NOT NULL CHECK (direction OPERATOR(pg_catalog.=) 1 OR direction OPERATOR(pg_catalog.=) -1),
    description text NOT NULL DEFAULT '',
    builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE billing.account_types IS 'Kinds of ledger entry; direction +1 credits, -1 debits. Add new ones with INSERT.';
COMMENT ON COLUMN billing.account_types.builtin IS 'Seeded by the extension (not dumped; CREATE EXTENSION recreates it)';
COMMENT ON COLUMN billing.account_types.code IS 'The type''s code, as the functions and the ledger name it (upper case, never renamed)';
COMMENT ON COLUMN billing.account_types.direction IS '+1: a credit type (billing_add), -1: a debit type (billing_deduct, billing_hold)';
COMMENT ON COLUMN billing.account_types.description IS 'What the type is for';

CREATE TABLE billing.source_types (
    code        text PRIMARY KEY CHECK (code OPERATOR(pg_catalog.~) '^[A-Z][A-Z0-9_]*$'),
    description text NOT NULL DEFAULT '',
    builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE billing.source_types IS 'Where a change comes from (RECHARGE, CHAT, ...). Add new ones with INSERT.';
COMMENT ON COLUMN billing.source_types.builtin IS 'Seeded by the extension (not dumped; CREATE EXTENSION recreates it)';
COMMENT ON COLUMN billing.source_types.code IS 'The source type''s code, as the functions and the ledger name it (upper case, never renamed)';
COMMENT ON COLUMN billing.source_types.description IS 'What the source type is for';

INSERT INTO billing.account_types (code, direction, description, builtin) VALUES
    ('RECHARGE_INC',            1, 'Purchased power',                              true),
    ('RECHARGE_GIVE_INC',       1, 'Bonus power given with a purchase',            true),
    ('RECHARGE_DEC',           -1, 'Purchased power taken back',                   true),
    ('SYSTEM_MANUAL_INC',       1, 'Manual correction by staff, credit',           true),
    ('SYSTEM_MANUAL_DEC',      -1, 'Manual correction by staff, debit',            true),
    ('CHAT_DEC',               -1, 'Chat usage',                                   true),
    ('AGENT_CHAT_DEC',         -1, 'Agent chat usage',                             true),
    ('AGENT_GUEST_CHAT_DEC',   -1, 'Agent chat usage by a guest of the user',      true),
    ('PLUGIN_DEC',             -1, 'Plugin usage',                                 true),
    ('MEMBERSHIP_GIFT_INC',     1, 'Power gifted with a membership',               true),
    ('MEMBERSHIP_GIFT_DEC',    -1, 'Membership gift taken back',                   true),
    ('MEMBERSHIP_GIFT_EXPIRED',-1, 'Membership gift expired unspent',              true),
    ('CARD_KEY_REDEEM_INC',     1, 'Power from a redeemed card key',               true),
    ('REFUND_INC',              1, 'Refund of an earlier debit, to where it came from', true);

INSERT INTO billing.source_types (code, description, builtin) VALUES
    ('RECHARGE',        'A purchase',              true),
    ('SYSTEM',          'Staff or the system',     true),
    ('CHAT',            'Chat',                    true),
    ('AGENT_CHAT',      'Agent chat',              true),
    ('PLUGIN',          'A plugin',                true),
    ('MEMBERSHIP_GIFT', 'A membership',            true),
    ('CARD_KEY_REDEEM', 'A card key',              true);

-- The ledger names these codes, and the functions remember codes they have
-- seen: a code can be added, and its description changed, but it is never
-- renamed, deleted or turned around. The trigger's arguments say what it
-- guards: the table's name for messages, then 'direction' if the rows have one
-- (never the name of the table it fires on: a Citus shard has another name).
CREATE FUNCTION billing.guard_type_codes() RETURNS trigger
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
CREATE TRIGGER account_types_guard BEFORE UPDATE OR DELETE ON billing.account_types
    FOR EACH ROW EXECUTE FUNCTION billing.guard_type_codes('account_types', 'direction');
CREATE TRIGGER source_types_guard BEFORE UPDATE OR DELETE ON billing.source_types
    FOR EACH ROW EXECUTE FUNCTION billing.guard_type_codes('source_types');

-- Each backend caches the codes it has found valid (src/ledger.rs). Any change
-- to a type table invalidates the table's relcache entry, through PostgreSQL's
-- own invalidation: at the end of the command in this backend, at ROLLBACK
-- (or ROLLBACK TO SAVEPOINT) in this backend again, and in every other backend
-- once the change commits; the cache is emptied each time. ENABLE ALWAYS: it
-- fires under session_replication_role = replica too (logical replication),
-- where the guard above does not.
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

-- accounts and account_log, the two tables every deduct writes, carry no CHECK
-- constraints: PostgreSQL reads each one back from its stored text at the start
-- of every statement, about a tenth of a deduct (BENCHMARKS.md). The functions,
-- their only writers, guarantee what the checks would say (amounts > 0,
-- direction +1 or -1, seq from 1 without gaps, balances never below zero), and
-- the tests replay the ledger against the balances after every scenario.
CREATE TABLE billing.accounts (
    user_id      text PRIMARY KEY,
    permanent    numeric NOT NULL DEFAULT 0,
    grants_total numeric NOT NULL DEFAULT 0,
    next_expiry  timestamptz,
    last_seq     bigint NOT NULL DEFAULT 0,
    head_grant_id  bigint,
    head_remaining numeric,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    holds_due_at timestamptz,
    low_balance_at numeric,
    max_debt     numeric,
    limited      boolean NOT NULL DEFAULT false
) WITH (fillfactor = 70);
COMMENT ON TABLE billing.accounts IS 'One row per user: the row every write locks, with cached totals. Change it only through the billing functions.';
COMMENT ON COLUMN billing.accounts.permanent IS 'Power that never expires';
COMMENT ON COLUMN billing.accounts.user_id IS 'The user (the application''s id); the key every table begins with';
COMMENT ON COLUMN billing.accounts.created_at IS 'When the user''s first credit (or threshold) created the row';
COMMENT ON COLUMN billing.accounts.updated_at IS 'When a function last changed the row';
COMMENT ON COLUMN billing.accounts.grants_total IS 'Sum of remaining over grants not yet swept (cache; includes grants that expired since)';
COMMENT ON COLUMN billing.accounts.next_expiry IS 'Soonest expire_at among grants with remaining > 0 (cache); at or before now() means a sweep is due';
COMMENT ON COLUMN billing.accounts.last_seq IS 'seq of the user''s latest ledger entry';
COMMENT ON COLUMN billing.accounts.head_grant_id IS 'The grant spent next (soonest expiry, then oldest) as of the last write';
COMMENT ON COLUMN billing.accounts.holds_due_at IS 'Soonest expires_at among the user''s open holds (cache); at or before now() means a hold''s reservation is due back';
COMMENT ON COLUMN billing.accounts.low_balance_at IS 'Threshold of the low-balance notification (billing_set_low_balance); NULL: none';
COMMENT ON COLUMN billing.accounts.max_debt IS 'The debt floor (billing_set_debt_limit): a settle with allow_debt never takes permanent below -max_debt; NULL: no floor';
COMMENT ON COLUMN billing.accounts.limited IS 'The user has spending limits (billing_set_limit): every charge counts against them';
COMMENT ON COLUMN billing.accounts.head_remaining IS 'The live remaining of head_grant_id: a deduct it covers changes only this row and the ledger';

CREATE SEQUENCE billing.grants_id_seq;
CREATE TABLE billing.grant_store (
    user_id         text NOT NULL,
    id              bigint NOT NULL DEFAULT pg_catalog.nextval('billing.grants_id_seq'::pg_catalog.regclass),
    amount          numeric NOT NULL CHECK (amount OPERATOR(pg_catalog.>) 0),
    remaining       numeric NOT NULL CHECK (remaining OPERATOR(pg_catalog.>=) 0 AND remaining OPERATOR(pg_catalog.<=) amount),
    expire_at       timestamptz NOT NULL,
    subscription_id text,
    log_id          bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (user_id, id)
) WITH (fillfactor = 80);
ALTER SEQUENCE billing.grants_id_seq OWNED BY billing.grant_store.id;
-- Deliberately no index mentions remaining, and rows leave room on their page:
-- writing a grant's remaining is then a HOT update that touches no index.
CREATE INDEX grant_store_by_expiry ON billing.grant_store (user_id, expire_at, id);
COMMENT ON TABLE billing.grant_store IS 'Storage behind billing.grants. remaining here is exact for every grant but the one the account row names as head_grant_id, whose live remaining is accounts.head_remaining (written back when the head changes). Read billing.grants.';
COMMENT ON COLUMN billing.grant_store.remaining IS 'What is left to spend, as of the last write-back for the head grant';
COMMENT ON COLUMN billing.grant_store.log_id IS 'id of the ledger entry that created the grant';
COMMENT ON COLUMN billing.grant_store.user_id IS 'The user the grant belongs to';
COMMENT ON COLUMN billing.grant_store.id IS 'The grant''s id, as the ledger''s detail names it';
COMMENT ON COLUMN billing.grant_store.amount IS 'Power granted';
COMMENT ON COLUMN billing.grant_store.expire_at IS 'When the grant expires; spent soonest-expiring first';
COMMENT ON COLUMN billing.grant_store.subscription_id IS 'The subscription that gave it (billing_revoke_subscription ends them)';
COMMENT ON COLUMN billing.grant_store.created_at IS 'When the grant was made';
COMMENT ON SEQUENCE billing.grants_id_seq IS 'Grant ids';

-- The grants as they stand: the head grant's remaining comes from its account row.
CREATE VIEW billing.grants AS
SELECT g.user_id, g.id, g.amount,
       CASE WHEN a.head_grant_id OPERATOR(pg_catalog.=) g.id THEN a.head_remaining ELSE g.remaining END AS remaining,
       g.expire_at, g.subscription_id, g.log_id, g.created_at
  FROM billing.grant_store AS g
  JOIN billing.accounts AS a ON a.user_id OPERATOR(pg_catalog.=) g.user_id;
COMMENT ON VIEW billing.grants IS 'Expiring credits (membership gifts and the like), spent soonest-expiring first, with their remaining as it stands';
COMMENT ON COLUMN billing.grants.remaining IS 'What is left to spend; 0 once spent';
COMMENT ON COLUMN billing.grants.log_id IS 'id of the ledger entry that created the grant';
COMMENT ON COLUMN billing.grants.user_id IS 'The user the grant belongs to';
COMMENT ON COLUMN billing.grants.id IS 'The grant''s id, as the ledger''s detail names it';
COMMENT ON COLUMN billing.grants.amount IS 'Power granted';
COMMENT ON COLUMN billing.grants.expire_at IS 'When the grant expires; spent soonest-expiring first';
COMMENT ON COLUMN billing.grants.subscription_id IS 'The subscription that gave it';
COMMENT ON COLUMN billing.grants.created_at IS 'When the grant was made';

-- Who made an entry: the role outside the security definer switch (src/roles.rs).
CREATE FUNCTION billing.calling_role()
    RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_calling_role';
COMMENT ON FUNCTION billing.calling_role() IS
    'The role that called the running function: the session user or the role set with SET ROLE, which SECURITY DEFINER does not change';

CREATE SEQUENCE billing.account_log_id_seq;
CREATE TABLE billing.account_log (
    id                  bigint NOT NULL DEFAULT pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass),
    user_id             text NOT NULL,
    seq                 bigint NOT NULL,
    direction           smallint NOT NULL,
    amount              numeric NOT NULL,
    balance_after       numeric NOT NULL,
    account_type        text NOT NULL,
    source_type         text NOT NULL,
    source              text NOT NULL,
    remark              text,
    association_no      text,
    association_user_id text,
    subscription_id     text,
    expire_at           timestamptz,
    detail              jsonb NOT NULL,
    idempotency_key     text,
    created_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    refund_of           bigint,
    session_role        text DEFAULT SESSION_USER,
    calling_role        text DEFAULT billing.calling_role(),
    scopes              text[],
    PRIMARY KEY (user_id, seq)
);
ALTER SEQUENCE billing.account_log_id_seq OWNED BY billing.account_log.id;
CREATE UNIQUE INDEX account_log_idempotency ON billing.account_log (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- billing_refund(log_id) finds an entry by its id alone, and the refunds already
-- made of it through refund_of (an index only refund entries enter).
CREATE INDEX account_log_by_id ON billing.account_log (id);
CREATE INDEX account_log_refunds ON billing.account_log (user_id, refund_of) WHERE refund_of IS NOT NULL;
COMMENT ON TABLE billing.account_log IS 'The ledger: one immutable entry per change of a balance. Append-only; corrections are new entries.';
COMMENT ON COLUMN billing.account_log.id IS 'Globally increasing entry id';
COMMENT ON COLUMN billing.account_log.seq IS 'Per-user entry number 1, 2, 3, ... without gaps';
COMMENT ON COLUMN billing.account_log.direction IS '+1 credit, -1 debit';
COMMENT ON COLUMN billing.account_log.amount IS 'Power moved, always > 0';
COMMENT ON COLUMN billing.account_log.balance_after IS 'The user''s available power right after this entry';
COMMENT ON COLUMN billing.account_log.detail IS 'Funding: {"permanent": x, "grants": [{"id": g, "amount": y}]}; amounts are positive, direction gives the sign';
COMMENT ON COLUMN billing.account_log.refund_of IS 'For a refund: id of the debit entry it gives back (part of)';
COMMENT ON COLUMN billing.account_log.idempotency_key IS 'Caller''s key: a repeat with the same key returns this entry';
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
COMMENT ON COLUMN billing.account_log.session_role IS 'The session user of the connection that made the entry (NULL: made before 0.3.0)';
COMMENT ON COLUMN billing.account_log.calling_role IS 'The role that called the function (after SET ROLE, before the SECURITY DEFINER switch) (NULL: made before 0.3.0)';
COMMENT ON COLUMN billing.account_log.scopes IS 'For a charge (a deduct or a settle): the scopes it named and counted against, sorted (the user''s ''*'' limit counts every charge); NULL for entries that are not charges, and for charges made before 0.3.0';
COMMENT ON SEQUENCE billing.account_log_id_seq IS 'Ledger entry ids';

CREATE FUNCTION billing.reject_ledger_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'billing.account_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'PB006',
              HINT = 'Record a correction as a new entry (billing_add or billing_deduct).';
END
$$;
COMMENT ON FUNCTION billing.reject_ledger_change() IS 'Trigger: rejects UPDATE, DELETE and TRUNCATE on the ledger';

CREATE TRIGGER account_log_append_only
    BEFORE UPDATE OR DELETE ON billing.account_log
    FOR EACH ROW EXECUTE FUNCTION billing.reject_ledger_change();
CREATE TRIGGER account_log_no_truncate
    BEFORE TRUNCATE ON billing.account_log
    FOR EACH STATEMENT EXECUTE FUNCTION billing.reject_ledger_change();

-- Dropping the extension deletes the ledger, and with CASCADE the charging
-- triggers of application tables: while billing.account_log holds a row, every
-- path that drops it (DROP EXTENSION [CASCADE], DROP SCHEMA ... CASCADE, DROP
-- OWNED) is refused with 2BP01 unless `SET LOCAL billing.allow_drop = on` ran in
-- the same transaction. The check is an object access hook of the library
-- (src/drop_guard.rs); this event trigger only makes sure the library is loaded
-- before the drop starts (a sql_drop trigger would fire too late, and would be
-- dropped itself).
CREATE FUNCTION billing.guard_drop() RETURNS event_trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'billing_guard_drop';
COMMENT ON FUNCTION billing.guard_drop() IS 'Event trigger: loads the library whose hook refuses to drop a ledger that holds entries (unless billing.allow_drop is on in the same transaction)';
CREATE EVENT TRIGGER billing_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION billing.guard_drop();
COMMENT ON EVENT TRIGGER billing_guard_drop IS 'Dropping the extension refuses while the ledger holds entries (billing.allow_drop)';
