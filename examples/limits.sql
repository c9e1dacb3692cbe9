-- Spending limits: a quota per API key and a monthly budget, enforced in the
-- same transaction as each charge. Run as a superuser in a scratch database.
CREATE EXTENSION billing;

-- carol has 500 power. Her API key sk-123 may spend 20 in its lifetime; carol
-- may spend 50 a calendar month (in Berlin) whatever she charges it to.
SELECT balance_after FROM billing_add('carol', 500, 'RECHARGE_INC', 'RECHARGE', 'order-1');
SELECT scope, cap, period, time_zone, spent, held, remaining
  FROM billing_set_limit('carol', 'key:sk-123', 20);
SELECT scope, cap, period, time_zone, spent, held, remaining, period_end > now() AS open
  FROM billing_set_limit('carol', '*', 50, 'month', 'Europe/Berlin');

-- A charge names its scopes; the '*' limit counts every charge. The entry records the scopes.
SELECT seq, amount, scopes
  FROM billing_deduct('carol', 12, 'CHAT_DEC', 'CHAT', 'gpt-4o', scopes => ARRAY['key:sk-123', 'model:gpt-4o']);
SELECT seq, amount, scopes FROM billing_deduct('carol', 5, 'CHAT_DEC', 'CHAT', 'web');
SELECT scope, spent, held, remaining FROM billing_limits('carol');

-- 10 more through the key would take it to 22: PB008, and nothing is written
-- (limits are checked before power, under the user's lock). The DETAIL, for a
-- role that may read limits, is key=value pairs that clients parse.
SELECT billing_deduct('carol', 10, 'CHAT_DEC', 'CHAT', 'gpt-4o', scopes => ARRAY['key:sk-123']);
SELECT count(*) AS entries FROM billing.account_log WHERE user_id = 'carol';

-- A metered call through the key: the hold counts as held; the settle counts
-- the actual cost instead; a refund gives back to the period it was counted in.
SELECT hold_id, amount, scopes FROM billing_hold('carol', 6, 'CHAT_DEC', 'CHAT', 'agent-run', scopes => ARRAY['key:sk-123']);
SELECT scope, spent, held, remaining FROM billing_limits('carol') WHERE scope = 'key:sk-123';
SELECT seq, amount, scopes FROM billing_settle(1, 4);
SELECT seq, amount, refund_of FROM billing_refund(2, 2);
SELECT scope, spent, held, remaining FROM billing_limits('carol');

-- Corrections by staff are not charges and count against nothing.
SELECT seq, amount, scopes FROM billing_adjust('carol', -100, 'chargeback', 'staff');
SELECT scope, spent, held, remaining FROM billing_limits('carol') WHERE scope = '*';

-- Raising a cap keeps the counters; a NULL cap removes the limit.
SELECT scope, cap, spent, remaining FROM billing_set_limit('carol', 'key:sk-123', 40);
SELECT count(*) AS left FROM billing_set_limit('carol', 'key:sk-123', NULL);
SELECT scope FROM billing_limits('carol');

-- The ledger replays to every counter.
SELECT count(*) AS violations FROM billing_verify();
