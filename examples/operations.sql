-- Operations: low-balance events, writing off expired grants (billing_expire),
-- revoking a subscription, adjusting by hand, and checking every invariant
-- (billing_verify). Run as a superuser in a scratch database.
CREATE EXTENSION billing;

-- dave is told when his available power goes below 20.
SELECT balance_after FROM billing_add('dave', 50, 'RECHARGE_INC', 'RECHARGE', 'order-9');
SELECT billing_set_low_balance('dave', 20) AS threshold;

-- Crossing the threshold records one event (and sends NOTIFY billing_low_balance,
-- with no payload: LISTEN billing_low_balance, then read the events).
SELECT balance_after FROM billing_deduct('dave', 25, 'CHAT_DEC', 'CHAT', 'chat-1');
SELECT balance_after FROM billing_deduct('dave', 10, 'CHAT_DEC', 'CHAT', 'chat-2');
SELECT event_id, user_id, threshold, available FROM billing_low_balance_events();
-- Staying below it records nothing more; rising above and crossing again does.
SELECT balance_after FROM billing_deduct('dave', 1, 'CHAT_DEC', 'CHAT', 'chat-3');
SELECT balance_after FROM billing_add('dave', 30, 'RECHARGE_INC', 'RECHARGE', 'order-10');
SELECT balance_after FROM billing_deduct('dave', 30, 'CHAT_DEC', 'CHAT', 'chat-4');
SELECT event_id, user_id, threshold, available FROM billing_low_balance_events(after_id => 1);

-- A gift that expires: once expire_at has passed it no longer counts, and
-- billing_expire writes off what was left in one entry per grant (run it from cron).
-- (One transaction, so the deduct surely finds the one-second gift still live.)
BEGIN;
SELECT balance_after, detail
  FROM billing_add('erin', 8, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                   expire_at => now() + interval '1 second', subscription_id => 'sub-1');
SELECT balance_after, detail
  FROM billing_add('erin', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                   expire_at => now() + interval '30 days', subscription_id => 'sub-2');
SELECT balance_after, detail FROM billing_deduct('erin', 3, 'CHAT_DEC', 'CHAT', 'chat-1');
COMMIT;
SELECT pg_sleep(1.5);
SELECT billing_power('erin') AS power;
SELECT billing_expire() AS expired;
SELECT billing_expire() AS "expired again";
SELECT seq, direction, amount, balance_after, account_type, detail
  FROM billing.account_log WHERE user_id = 'erin' ORDER BY seq;

-- Revoking a subscription ends its live grants (refunds, chargebacks).
SELECT seq, user_id, direction, amount, balance_after, account_type, detail
  FROM billing_revoke_subscription('sub-2', 'chargeback');
SELECT billing_power('erin') AS power;

-- A hand adjustment credits or debits by its sign and names the operator.
SELECT seq, direction, amount, balance_after, account_type, remark
  FROM billing_adjust('erin', 4, 'goodwill after an outage', operator => 'support-ann');
SELECT seq, direction, amount, balance_after, account_type, remark
  FROM billing_adjust('erin', -1, 'correction', operator => 'support-ann');

-- Balances of every account, and the replay of the whole ledger: no findings.
SELECT user_id, permanent, grants_live, held, available FROM billing.balances ORDER BY user_id;
SELECT count(*) AS findings FROM billing_verify();

-- billing_verify catches a cache that disagrees with the ledger (here, changed by hand).
UPDATE billing.accounts SET permanent = permanent + 1 WHERE user_id = 'dave';
SELECT user_id, "check", expected, actual FROM billing_verify() ORDER BY "check";
UPDATE billing.accounts SET permanent = permanent - 1 WHERE user_id = 'dave';
SELECT count(*) AS findings FROM billing_verify();
