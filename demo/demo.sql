-- billing demo: run with `make demo` (a throwaway cluster, connected as superuser).
\set QUIET on
\pset footer off
\set QUIET off
CREATE EXTENSION billing;
\echo ''

\echo '== 1. alice buys 100 power (permanent, never expires)'
SELECT id, seq, balance_after, detail
  FROM billing_add(user_id => 'alice', amount => 100, account_type => 'RECHARGE_INC',
                   source_type => 'RECHARGE', source => 'order-1001');

\echo '== 2. her membership gives 30 that expire in 7 days, and 10 that expire in 2 seconds'
SELECT id, seq, balance_after, detail, expire_at::timestamp(0) AS expire_at
  FROM billing_add(user_id => 'alice', amount => 30, account_type => 'MEMBERSHIP_GIFT_INC',
                   source_type => 'MEMBERSHIP_GIFT', source => 'vip-monthly',
                   expire_at => now() + interval '7 days', subscription_id => 'sub-42');
SELECT id, seq, balance_after, detail
  FROM billing_add(user_id => 'alice', amount => 10, account_type => 'MEMBERSHIP_GIFT_INC',
                   source_type => 'MEMBERSHIP_GIFT', source => 'vip-trial',
                   expire_at => now() + interval '2 seconds', subscription_id => 'sub-42');

\echo '== 3. wait until the 10 has expired: power is 100 + 30, the expired 10 does not count'
SELECT pg_sleep(2.5);
SELECT billing_power('alice') AS power, billing_has_power('alice', 140) AS "has 140?";

\echo '== 4. a chat costs 40: the live gift (30) is spent first, then 10 from the permanent balance'
SELECT id, seq, balance_after, detail
  FROM billing_deduct(user_id => 'alice', amount => 40, account_type => 'CHAT_DEC',
                      source_type => 'CHAT', source => 'chat-7', idempotency_key => 'chat-7-msg-1');

\echo '== 5. the client retries the same call: same entry id, nothing charged twice'
SELECT id, seq, balance_after, detail
  FROM billing_deduct(user_id => 'alice', amount => 40, account_type => 'CHAT_DEC',
                      source_type => 'CHAT', source => 'chat-7', idempotency_key => 'chat-7-msg-1');
SELECT billing_power('alice') AS power;

\echo '== 6. the ledger: one immutable entry per change, seq without gaps'
SELECT seq, direction, amount, balance_after, account_type, source_type, detail
  FROM billing.account_log WHERE user_id = 'alice' ORDER BY seq;

\echo '== 7. the account row and her grants: the cached grants_total still includes the expired 10'
\echo '   and next_expiry is in the past, which tells every read to check expire_at'
SELECT user_id, permanent, grants_total, next_expiry::timestamp(0), last_seq
  FROM billing.accounts WHERE user_id = 'alice';
SELECT id, amount, remaining, expire_at::timestamp(0), expire_at > now() AS live, subscription_id
  FROM billing.grants WHERE user_id = 'alice' ORDER BY id;

\echo '== 8. asking for 1000 fails with SQLSTATE PB001 and changes nothing'
\set VERBOSITY verbose
SELECT id, seq, balance_after, detail
  FROM billing_deduct(user_id => 'alice', amount => 1000, account_type => 'CHAT_DEC',
                      source_type => 'CHAT', source => 'chat-8');
\set VERBOSITY default
SELECT billing_power('alice') AS power;
