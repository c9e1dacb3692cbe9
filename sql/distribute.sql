-- Scaling out on Citus (docs/citus.md): billing_distribute(), the one call on
-- the coordinator that distributes the extension's tables by user_id and
-- delegates the per-user functions to the node that holds the user.
--
-- Every key begins with user_id, so the tables with a user_id column are
-- distributed by it and co-located with billing.accounts (a user's account
-- row, grants, ledger, holds, limits, low-balance events and trigger charges
-- live in one shard group, on one node); the type and pricing tables have no
-- user and become reference tables (a copy on every node). The functions whose
-- first argument is a required user_id are distributed functions with that
-- argument: Citus sends a call to the node that holds the user, where every
-- statement it runs is local. So are their protected copies in schema billing.

-- The ids that sequences draw must be unique across the cluster: each node
-- draws from its own range, group id * 2^48 upwards (the coordinator, group 0,
-- keeps 1 .. 2^48 - 1). Run on every node by billing_distribute() (on the
-- workers through run_command_on_workers, which calls this function there);
-- moves a sequence only forwards, so running it again is harmless. Returns how
-- many sequences it moved.
CREATE FUNCTION billing.claim_id_range(group_id integer)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    floor bigint := group_id::bigint * (2::bigint ^ 48)::bigint;
    seq regclass;
    moved integer := 0;
BEGIN
    IF group_id IS NULL OR group_id < 0 OR group_id >= 32767 THEN
        RAISE EXCEPTION 'group_id must be a Citus node group id (0 to 32766), not %', group_id
            USING ERRCODE = '22023';
    END IF;
    FOREACH seq IN ARRAY ARRAY['billing.account_log_id_seq', 'billing.grants_id_seq', 'billing.holds_id_seq',
                               'billing.low_balance_events_id_seq']::regclass[] LOOP
        -- a sequence below its node's range starts at the range's floor
        IF group_id > 0 AND coalesce(pg_catalog.pg_sequence_last_value(seq), 0) < floor THEN
            PERFORM pg_catalog.setval(seq, floor);
            moved := moved + 1;
        END IF;
    END LOOP;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION billing.claim_id_range(integer) IS
    'Internal (Citus): moves the id sequences of this node (group group_id) up to its range, group_id * 2^48 and up, so that ids are unique across the cluster; returns how many it moved';

CREATE FUNCTION @extschema@.billing_distribute(delegate boolean DEFAULT false)
    RETURNS TABLE (object text, distribution text)
    LANGUAGE plpgsql
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    billing_oid oid := (SELECT e.oid FROM pg_catalog.pg_extension AS e WHERE e.extname = 'billing');
    table_oid regclass;
    has_user boolean;
    fn regprocedure;
    delegated boolean;
    replica_role text;
BEGIN
    IF delegate IS NULL THEN
        RAISE EXCEPTION 'delegate must not be NULL' USING ERRCODE = '22004',
            HINT = 'delegate => true sends the calls to the users'' nodes; false (the default) does not.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension AS e WHERE e.extname = 'citus') THEN
        RAISE EXCEPTION 'billing_distribute needs Citus, and the citus extension is not installed in this database'
            USING ERRCODE = 'PB009',
                  HINT = 'Install Citus''s packages, add citus to shared_preload_libraries, CREATE EXTENSION citus, add the workers, then call billing_distribute() on the coordinator.';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'billing_distribute runs on the Citus coordinator, and this node is a worker'
            USING ERRCODE = 'PB009', HINT = 'Connect to the coordinator and call it there.';
    END IF;

    -- Citus may distribute a table that has triggers (the ledger's append-only
    -- guard, the type tables' guard) only with this setting; for this transaction.
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);

    -- the tables: without a user_id column a reference table; billing.accounts
    -- first, then the others with a user_id co-located with it
    FOR table_oid, has_user IN
        SELECT c.oid::regclass,
               EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                        WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped)
          FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_class AS c ON c.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = billing_oid
           AND c.relkind = 'r'
         ORDER BY c.relname <> 'accounts', c.relname
    LOOP
        object := table_oid::text;
        IF EXISTS (SELECT FROM pg_catalog.pg_dist_partition AS p WHERE p.logicalrelid = table_oid) THEN
            distribution := CASE WHEN has_user THEN 'distributed by user_id' ELSE 'reference table' END
                            || ' (already)';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF NOT has_user THEN
            PERFORM pg_catalog.create_reference_table(table_oid);
            distribution := 'reference table';
        ELSIF table_oid = 'billing.accounts'::pg_catalog.regclass THEN
            PERFORM pg_catalog.create_distributed_table(table_oid, 'user_id');
            distribution := 'distributed by user_id';
        ELSE
            PERFORM pg_catalog.create_distributed_table(table_oid, 'user_id',
                                                        colocate_with => 'billing.accounts');
            distribution := 'distributed by user_id';
        END IF;
        -- Citus copied the rows into the shards and left them in the local
        -- table, where nothing reads them any more but billing_power's direct
        -- index read would: empty it. The ledger refuses TRUNCATE to everyone
        -- (its append-only trigger), so triggers are off for this one step.
        replica_role := pg_catalog.current_setting('session_replication_role');
        PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
        PERFORM pg_catalog.truncate_local_data_after_distributing_table(table_oid);
        PERFORM pg_catalog.set_config('session_replication_role', replica_role, true);
        RETURN NEXT;
    END LOOP;

    -- ids unique across the cluster: each worker draws from its own range
    PERFORM billing.claim_id_range(0);
    PERFORM FROM pg_catalog.run_command_on_workers(
        'SELECT billing.claim_id_range(l.groupid) FROM pg_catalog.pg_dist_local_group AS l') AS r
     WHERE NOT r.success OR r.result IS NULL;
    IF FOUND THEN
        RAISE EXCEPTION 'billing_distribute could not give every worker its range of ids'
            USING ERRCODE = 'PB009',
                  DETAIL = (SELECT string_agg(r.nodename || ':' || r.nodeport || ': ' || r.result, '; ')
                              FROM pg_catalog.run_command_on_workers(
                                   'SELECT billing.claim_id_range(l.groupid) FROM pg_catalog.pg_dist_local_group AS l') AS r
                             WHERE NOT r.success),
                  HINT = 'Check that every worker is reachable and has the billing extension, then call billing_distribute() again.';
    END IF;
    object := 'id sequences';
    distribution := 'a range of ids per node (group id * 2^48 and up)';
    RETURN NEXT;

    -- the per-user functions: those whose first argument is a required user_id.
    -- Delegated (delegate => true), Citus sends each call to the user's node;
    -- otherwise they run where they are called and Citus routes each statement.
    -- Off by default: Citus 13.2 crashes the coordinator planning a query that
    -- wraps a call of a delegated function in a subquery (docs/citus.md). Once
    -- on it stays on: Citus refuses to keep an extension's function distributed
    -- without its distribution argument.
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_depend AS d
          JOIN pg_catalog.pg_proc AS p ON p.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = billing_oid
           AND p.prokind = 'f' AND p.proname LIKE 'billing\_%' AND p.pronargs > 0
           AND p.proargtypes[0] = 'pg_catalog.text'::pg_catalog.regtype
           AND p.proargnames[1] = 'user_id'
           AND p.pronargs - p.pronargdefaults > 0
         ORDER BY p.proname, p.oid
    LOOP
        object := fn::text;
        delegated := EXISTS (SELECT FROM pg_catalog.pg_dist_object AS o
                              WHERE o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND o.objid = fn
                                AND o.distribution_argument_index = 0 AND o.force_delegation);
        IF delegate AND delegated THEN
            distribution := 'delegated by user_id (already)';
        ELSIF delegate THEN
            PERFORM pg_catalog.create_distributed_function(fn, 'user_id', colocate_with => 'billing.accounts',
                                                           force_delegation => true);
            distribution := 'delegated by user_id';
        ELSIF delegated THEN
            -- Citus keeps it so: it refuses an extension's function without a distribution argument
            distribution := 'delegated by user_id (already; Citus cannot turn delegation off)';
        ELSE
            distribution := 'not delegated: runs where called, each statement routed (already)';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.billing_distribute(boolean) IS
    'Citus, on the coordinator: distributes the billing tables by user_id (co-located with billing.accounts) and the type and pricing tables as reference tables, gives each node its own range of ids, and with delegate true sends the calls of the functions whose first argument is user_id to the node holding the user (once on, it stays on); harmless to run again (after adding a worker, run it again); PB009 without Citus';
