-- billing: a readable walk through the rules, checked against expected output.
CREATE EXTENSION billing;
\set VERBOSITY default

-- A recharge, and two membership gifts with different expiry.
SELECT seq, direction, amount, balance_after, detail
  FROM billing_add('alice', 100, 'RECHARGE_INC', 'RECHARGE', 'order-1001', remark => 'first purchase');
SELECT seq, amount, balance_after, detail, subscription_id
  FROM billing_add('alice', 30, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip-month',
                   expire_at => now() + interval '30 days', subscription_id => 'sub-1');
SELECT seq, amount, balance_after, detail
  FROM billing_add('alice', 10, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip-bonus',
                   expire_at => now() + interval '3 days');
SELECT billing_power('alice'), billing_has_power('alice', 140), billing_has_power('alice', 140.00000001);

-- A deduct spends the soonest-expiring gift first, then the next, then the permanent balance.
SELECT seq, amount, balance_after, detail
  FROM billing_deduct('alice', 45, 'CHAT_DEC', 'CHAT', 'report', association_no => 'task-1');
SELECT id, amount, remaining FROM billing.grants WHERE user_id = 'alice' ORDER BY id;
SELECT permanent, grants_total FROM billing.accounts WHERE user_id = 'alice';

-- An idempotent repeat returns the original entry and changes nothing.
SELECT seq, balance_after FROM billing_deduct('alice', 5, 'PLUGIN_DEC', 'PLUGIN', 'search', idempotency_key => 'req-1');
SELECT seq, balance_after FROM billing_deduct('alice', 5, 'PLUGIN_DEC', 'PLUGIN', 'search', idempotency_key => 'req-1');
SELECT billing_power('alice');

-- Errors carry stable SQLSTATEs (printed after each error).
SELECT billing_deduct('alice', 1000, 'CHAT_DEC', 'CHAT', 'report');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_deduct('alice', 1, 'RECHARGE_INC', 'CHAT', 'report');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_deduct('alice', 5, 'CHAT_DEC', 'CHAT', 'report', idempotency_key => 'req-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_add('alice', -5, 'RECHARGE_INC', 'RECHARGE', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_add('alice', 1.123456789, 'RECHARGE_INC', 'RECHARGE', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_add(NULL, 1, 'RECHARGE_INC', 'RECHARGE', 'x');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT billing_add('alice', 1, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'x', expire_at => now() - interval '1 day');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
UPDATE billing.account_log SET amount = 0;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
DELETE FROM billing.account_log;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
TRUNCATE billing.account_log;
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- The ledger: every change, in order, with its funding.
SELECT seq, direction, amount, balance_after, account_type, source_type, source, detail
  FROM billing.account_log WHERE user_id = 'alice' ORDER BY seq;
