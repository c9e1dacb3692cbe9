-- The hold {alias} as a value of type billing.holds, built column by column (as
-- shared/log_row.sql builds an entry, for Citus). The columns in billing.holds' order.
ROW({alias}.user_id, {alias}.hold_id, {alias}.status, {alias}.amount, {alias}.expires_at,
    {alias}.account_type, {alias}.source_type, {alias}.source, {alias}.remark, {alias}.association_no,
    {alias}.association_user_id, {alias}.idempotency_key, {alias}.funding, {alias}.reserved_after_seq,
    {alias}.settled_amount, {alias}.log_id, {alias}.reason, {alias}.closed_after_seq, {alias}.created_at,
    {alias}.closed_at, {alias}.scopes)::billing.holds
