-- The ledger entry {alias} as a value of type billing.account_log, built column by
-- column: on Citus the row variable of a shard has the shard's own row type,
-- which does not cast to billing.account_log, so a statement never returns the
-- whole-row variable itself. The columns in billing.account_log's order.
ROW({alias}.id, {alias}.user_id, {alias}.seq, {alias}.direction, {alias}.amount, {alias}.balance_after,
    {alias}.account_type, {alias}.source_type, {alias}.source, {alias}.remark, {alias}.association_no,
    {alias}.association_user_id, {alias}.subscription_id, {alias}.expire_at, {alias}.detail,
    {alias}.idempotency_key, {alias}.created_at, {alias}.refund_of, {alias}.session_role,
    {alias}.calling_role, {alias}.scopes)::billing.account_log
