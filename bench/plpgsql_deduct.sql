-- What a DBA would otherwise write: billing_deduct's semantics in plain PL/pgSQL
-- (lock the account row, spend grants by soonest expiry, then the permanent
-- balance, one ledger entry with balance_after and detail), on tables of its own
-- shaped like the extension's, with no caches. bench/run.py copies the seeded
-- balances into them. Loaded by bench/run.py only; not part of the extension.
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE bench.accounts (LIKE billing.accounts INCLUDING ALL);
CREATE TABLE bench.grants (LIKE billing.grant_store INCLUDING ALL);
CREATE TABLE bench.account_log (LIKE billing.account_log INCLUDING ALL);

CREATE OR REPLACE FUNCTION bench.plpgsql_deduct(p_user_id text, p_amount numeric, p_account_type text,
                                                p_source_type text, p_source text)
RETURNS bench.account_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acc bench.accounts;
    g record;
    live numeric := 0;
    left_to_take numeric := p_amount;
    take numeric;
    grants jsonb := '[]';
    taken_from_grants numeric := 0;
    entry bench.account_log;
BEGIN
    IF NOT EXISTS (SELECT FROM billing.account_types WHERE code = p_account_type AND direction = -1) THEN
        RAISE EXCEPTION 'bad account_type %', p_account_type USING ERRCODE = 'PB002';
    END IF;
    SELECT * INTO acc FROM bench.accounts WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'insufficient power' USING ERRCODE = 'PB001';
    END IF;
    SELECT coalesce(sum(remaining), 0) INTO live FROM bench.grants
     WHERE user_id = p_user_id AND remaining > 0 AND expire_at > now();
    IF acc.permanent + live < p_amount THEN
        RAISE EXCEPTION 'insufficient power' USING ERRCODE = 'PB001';
    END IF;
    FOR g IN SELECT id, remaining FROM bench.grants
              WHERE user_id = p_user_id AND remaining > 0 AND expire_at > now()
              ORDER BY expire_at, id
    LOOP
        EXIT WHEN left_to_take = 0;
        take := least(left_to_take, g.remaining);
        UPDATE bench.grants SET remaining = remaining - take WHERE user_id = p_user_id AND id = g.id;
        grants := grants || jsonb_build_object('id', g.id, 'amount', take);
        left_to_take := left_to_take - take;
        taken_from_grants := taken_from_grants + take;
    END LOOP;
    UPDATE bench.accounts
       SET permanent = permanent - left_to_take, grants_total = grants_total - taken_from_grants,
           last_seq = last_seq + 1, updated_at = now()
     WHERE user_id = p_user_id;
    INSERT INTO bench.account_log (user_id, seq, direction, amount, balance_after, account_type,
                                     source_type, source, detail)
    VALUES (p_user_id, acc.last_seq + 1, -1, p_amount, acc.permanent + live - p_amount, p_account_type,
            p_source_type, p_source,
            jsonb_strip_nulls(jsonb_build_object('grants', nullif(grants, '[]'),
                                                 'permanent', nullif(left_to_take, 0))))
    RETURNING * INTO entry;
    RETURN entry;
END
$$;

-- The floor: the least any design can do per deduct, one balance update and one
-- insert of a ledger row with the columns the ledger must carry (account_log's
-- shape and indexes, no trigger, no caches, no checks).
CREATE TABLE bench.floor_accounts (user_id text PRIMARY KEY, balance numeric NOT NULL, seq bigint NOT NULL DEFAULT 0);
CREATE TABLE bench.floor_log (LIKE billing.account_log INCLUDING ALL);
-- For comparison only: a skinny ledger row with nothing but amount and balance.
CREATE TABLE bench.skinny_log (
    user_id text NOT NULL,
    id bigserial,
    amount numeric NOT NULL,
    balance_after numeric NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
