-- Quickstart: add power, a gift that expires, deduct, read power and history.
-- Run it in a scratch database as a superuser: psql -X -f examples/quickstart.sql
-- (make demo runs every example in a throwaway cluster; make test checks each
-- against examples/NAME.out).
CREATE EXTENSION billing;

-- alice buys 100 power: permanent, it never expires.
SELECT seq, direction, amount, balance_after, detail
  FROM billing_add(user_id => 'alice', amount => 100, account_type => 'RECHARGE_INC',
                   source_type => 'RECHARGE', source => 'order-1001');

-- Her membership gives 30 that expire in 7 days, and a trial 10 that expires in one second.
SELECT seq, amount, balance_after, detail, expire_at > now() AS live
  FROM billing_add(user_id => 'alice', amount => 30, account_type => 'MEMBERSHIP_GIFT_INC',
                   source_type => 'MEMBERSHIP_GIFT', source => 'vip-monthly',
                   expire_at => now() + interval '7 days', subscription_id => 'sub-42');
SELECT seq, amount, balance_after, detail
  FROM billing_add(user_id => 'alice', amount => 10, account_type => 'MEMBERSHIP_GIFT_INC',
                   source_type => 'MEMBERSHIP_GIFT', source => 'vip-trial',
                   expire_at => now() + interval '1 second', subscription_id => 'sub-42');

-- Once the trial's second has passed, its 10 no longer counts: power is 100 + 30.
SELECT pg_sleep(1.5);
SELECT billing_power('alice') AS power, billing_has_power('alice', 130) AS "has 130?",
       billing_has_power('alice', 131) AS "has 131?";

-- A chat costs 40: the live gift (30) is spent first, then 10 from the permanent balance.
SELECT seq, amount, balance_after, detail
  FROM billing_deduct(user_id => 'alice', amount => 40, account_type => 'CHAT_DEC',
                      source_type => 'CHAT', source => 'chat-7', idempotency_key => 'chat-7-msg-1');

-- The client retries the same call: the same entry comes back, nothing is charged twice.
SELECT seq, amount, balance_after, detail
  FROM billing_deduct(user_id => 'alice', amount => 40, account_type => 'CHAT_DEC',
                      source_type => 'CHAT', source => 'chat-7', idempotency_key => 'chat-7-msg-1');
SELECT billing_power('alice') AS power;

-- Asking for more than she has fails with SQLSTATE PB001 and changes nothing.
SELECT billing_deduct(user_id => 'alice', amount => 1000, account_type => 'CHAT_DEC',
                      source_type => 'CHAT', source => 'chat-8');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_power('alice') AS power;

-- The ledger, newest first: one immutable entry per change, seq without gaps.
SELECT seq, direction, amount, balance_after, account_type, source_type, source, detail
  FROM billing_history('alice');

-- The grants: the expired trial keeps its remaining 10 until billing_expire writes it off
-- (examples/operations.sql).
SELECT id, amount, remaining, expire_at > now() AS live, subscription_id
  FROM billing.grants WHERE user_id = 'alice' ORDER BY id;
SELECT count(*) AS findings FROM billing_verify();
