-- Spending limits: the debt floor (billing_set_debt_limit). A settle with
-- allow_debt never takes the permanent balance below -max_debt
-- (src/holds.rs, with the rule in src/drawdown.rs, within_debt_floor).

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
