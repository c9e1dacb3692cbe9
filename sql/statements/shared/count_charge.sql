-- A new charge of the `account` CTE's user (spent {spent} now, or held {held}
-- while a hold is open), counted against the user's limits of the scopes
-- {scopes} and '*' after the account row is locked, when the user has limits
-- and the call is a charge ({scopes} not NULL): the limits it takes above their
-- cap (billing.count_limits).
SELECT c.scope, c.cap, c.spent, c.held, c.requested, c.period_end
  FROM account,
       billing.count_limits(account.user_id, {scopes}, {spent}, {held},
                            NULL::pg_catalog.timestamptz, NULL::pg_catalog.int8) AS c
 WHERE account.limited AND {scopes} IS NOT NULL
