-- A select-list item of a one-statement charge (after the `account` CTE has
-- locked the account row): when the user has limits and the call is a charge
-- ({scopes} not NULL), the charge (spent {spent} now, or held {held} while a
-- hold is open) counted against the user's limits of {scopes} and '*'; the
-- first limit it takes above its cap, or NULL (billing.count_limits). A user
-- without limits pays for nothing but this test.
CASE WHEN account.limited AND {scopes} IS NOT NULL
     THEN billing.count_limits(account.user_id, {scopes}, {spent}, {held},
                               NULL::pg_catalog.timestamptz, NULL::pg_catalog.int8)
END
