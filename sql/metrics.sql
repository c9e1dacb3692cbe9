-- Metrics for the people who run it (docs/production.md): billing_metrics()
-- returns rows an operator can graph, billing_metrics_reset() zeroes the counters.
--
-- The counters (calls and errors per C entry point and SQLSTATE) live in shared
-- memory, counted by every C entry point (src/metrics.rs, src/fmgr.rs); they are
-- on only when the library is in shared_preload_libraries, and a row says which.
-- The gauges are read from the tables, each through an index that holds only
-- what it counts, so a scrape costs what is due or open, not the size of the
-- tables; the one exception is accounts in debt (a scan of billing.accounts:
-- an index on permanent would cost every deduct its HOT update).

-- The counters' rows, as a JSON array of {metric, kind, labels, value}.
CREATE FUNCTION billing.metric_counters()
    RETURNS jsonb
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'billing_metric_counters';
COMMENT ON FUNCTION billing.metric_counters() IS
    'Internal: the counters of calls and errors per C entry point and SQLSTATE from shared memory, as a JSON array of {metric, kind, labels, value} (only billing_counters_active 0 when the library was not preloaded)';

CREATE FUNCTION @extschema@.billing_metrics()
    RETURNS TABLE (metric text, kind text, labels jsonb, value numeric)
    LANGUAGE sql VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH counters AS (
        SELECT c.metric, c.kind, c.labels, c.value
          FROM jsonb_to_recordset(billing.metric_counters()) AS c (metric text, kind text, labels jsonb, value numeric)
    ), overdue_holds AS (
        -- the accounts whose soonest open hold is due (accounts_holds_due), then
        -- their open holds that are due (holds_open)
        SELECT count(*) AS n, min(h.expires_at) AS oldest
          FROM billing.accounts AS a
          JOIN billing.holds AS h
            ON h.user_id = a.user_id AND h.status = 'held' AND h.expires_at <= now()
         WHERE a.holds_due_at <= now()
    ), unswept AS (
        -- the accounts whose soonest grant with power left has expired
        -- (accounts_next_expiry), then their expired grants with power left
        -- (grant_store_by_expiry; the head grant's live remaining is on its account row)
        SELECT count(*) AS n, min(g.expire_at) AS oldest
          FROM billing.accounts AS a
          JOIN billing.grant_store AS g
            ON g.user_id = a.user_id AND g.expire_at <= now()
         WHERE a.next_expiry <= now()
           AND CASE WHEN g.id = a.head_grant_id THEN a.head_remaining ELSE g.remaining END > 0
    ), ledger AS (
        -- the planner's estimate: rows per page at the last VACUUM or ANALYZE, times the pages now
        SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                    THEN round(c.reltuples::numeric / c.relpages
                               * (pg_relation_size(c.oid) / current_setting('block_size')::numeric))
                    ELSE greatest(c.reltuples, 0)::numeric END AS rows
          FROM pg_class AS c
         WHERE c.oid = 'billing.account_log'::regclass
    )
    SELECT counters.metric, counters.kind, counters.labels, counters.value FROM counters
    UNION ALL
    SELECT 'billing_holds_open', 'gauge', '{}'::jsonb,
           (SELECT count(*) FROM billing.holds AS h WHERE h.status = 'held')::numeric
    UNION ALL
    SELECT 'billing_holds_overdue', 'gauge', '{}'::jsonb, overdue_holds.n::numeric FROM overdue_holds
    UNION ALL
    SELECT 'billing_holds_overdue_oldest_seconds', 'gauge', '{}'::jsonb,
           coalesce(floor(extract(epoch FROM now() - overdue_holds.oldest)), 0) FROM overdue_holds
    UNION ALL
    SELECT 'billing_grants_unswept', 'gauge', '{}'::jsonb, unswept.n::numeric FROM unswept
    UNION ALL
    SELECT 'billing_grants_unswept_oldest_seconds', 'gauge', '{}'::jsonb,
           coalesce(floor(extract(epoch FROM now() - unswept.oldest)), 0) FROM unswept
    UNION ALL
    SELECT 'billing_accounts_in_debt', 'gauge', '{}'::jsonb,
           (SELECT count(*) FROM billing.accounts AS a WHERE a.permanent < 0)::numeric
    UNION ALL
    SELECT 'billing_ledger_rows_estimate', 'gauge', '{}'::jsonb, ledger.rows FROM ledger;
$$;
COMMENT ON FUNCTION @extschema@.billing_metrics() IS
    'Metrics for monitoring: counters of calls and errors per C entry point and SQLSTATE since the server started (when the library is in shared_preload_libraries; billing_counters_active says), and gauges of open and overdue holds, unswept expired grants, accounts in debt and the ledger''s estimated rows. Counts only: no balance, no user id.';

CREATE FUNCTION @extschema@.billing_metrics_reset()
    RETURNS void
    LANGUAGE c VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'billing_metrics_reset';
COMMENT ON FUNCTION @extschema@.billing_metrics_reset() IS
    'Zeroes the counters of billing_metrics() for the whole server. Superusers only (42501 for any other calling role, even with EXECUTE).';
