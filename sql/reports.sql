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

-- The checks every required text argument passes: not NULL (22004), not empty
-- or only white space, at most 255 characters (22023); the message starts with
-- the argument's name. The PL/pgSQL functions call the Rust functions' own rule
-- (src/fmgr.rs, required_key).
CREATE FUNCTION billing.check_key(argument text, value text)
    RETURNS void
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_check_key';
COMMENT ON FUNCTION billing.check_key(text, text) IS
    'Raises 22004 for a NULL, 22023 for an empty or over-255-character required text argument, naming it';

-- The amount rule of the Rust functions (src/amounts.rs) for the PL/pgSQL
-- functions and the charging triggers, which read amounts as text (a trigger
-- argument, a row's column): a plain decimal number, greater than zero (or zero
-- when zero_allowed), at most 8 decimal places, at most 10^12.
CREATE FUNCTION billing.check_amount(argument text, value text, zero_allowed boolean)
    RETURNS numeric
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'billing_check_amount';
COMMENT ON FUNCTION billing.check_amount(text, text, boolean) IS
    'Checks an amount given as text like the functions'' amounts (22004, 22023 naming the argument) and returns it';

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
