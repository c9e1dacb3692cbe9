-- Holds: reserve power for work of unknown cost, then settle (charge the actual
-- cost) or release it; and refunds. Run as a superuser in a scratch database.
CREATE EXTENSION billing;

-- bob has 50 permanent power and a gift of 20 that expires in 30 days.
SELECT balance_after FROM billing_add('bob', 50, 'RECHARGE_INC', 'RECHARGE', 'order-1');
SELECT balance_after, detail
  FROM billing_add('bob', 20, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                   expire_at => now() + interval '30 days');

-- A hold reserves at once, in deduct order (the gift first), and writes no ledger entry.
SELECT hold_id, status, amount, funding, expires_at > now() AS open
  FROM billing_hold('bob', 25, 'CHAT_DEC', 'CHAT', 'agent-run-1');
SELECT billing_power('bob') AS power;
SELECT user_id, permanent, grants_live, held, available FROM billing.balances WHERE user_id = 'bob';

-- Settling below the hold charges exactly the actual cost in one entry and frees the rest.
SELECT seq, amount, balance_after, detail FROM billing_settle(1, 12);
SELECT billing_power('bob') AS power;

-- Settling above the hold takes the difference from available power.
SELECT hold_id, amount, funding FROM billing_hold('bob', 5, 'CHAT_DEC', 'CHAT', 'agent-run-2');
SELECT seq, amount, balance_after, detail FROM billing_settle(2, 9);
SELECT billing_power('bob') AS power;

-- A hold is closed once: an identical repeat returns the same entry, and any
-- other settle (or a release) fails with PB004. (Terse: its detail says when the
-- hold was closed, which differs every run.)
SELECT seq, amount, balance_after FROM billing_settle(2, 9);
\set VERBOSITY terse
SELECT billing_settle(2, 3);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Releasing gives everything back and charges nothing.
SELECT hold_id, amount FROM billing_hold('bob', 30, 'CHAT_DEC', 'CHAT', 'agent-run-3');
SELECT billing_power('bob') AS power;
SELECT hold_id, status, amount FROM billing_release(3, 'the user cancelled');
SELECT billing_power('bob') AS power;

-- A refund gives back part (or all) of a debit, to where it came from, in its own entry.
SELECT seq, amount, balance_after, detail FROM billing_deduct('bob', 10, 'CHAT_DEC', 'CHAT', 'chat-1');
SELECT seq, direction, amount, balance_after, detail FROM billing_refund(5, 4, 'partly failed');
-- Never more than the entry took: 7 more would exceed the 10.
SELECT billing_refund(5, 7);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_power('bob') AS power;

SELECT seq, direction, amount, balance_after, account_type, detail
  FROM billing.account_log WHERE user_id = 'bob' ORDER BY seq;
SELECT count(*) AS findings FROM billing_verify();
