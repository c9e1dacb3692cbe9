//! The Citus suite (issue 13): the extension on a three-node loopback cluster,
//! a coordinator and two workers that scripts/with-citus.sh starts and always
//! stops (`make citus`, part of `make test` whenever Citus is installed).
//!
//! One test, `suite`, runs the steps below in order (each step names itself
//! when it fails). It prepares the `postgres` database of the coordinator: it
//! creates the extension, fills it (balances, grants, an open hold, deducts, a
//! refund, and a charging trigger's charges on an application table) and only
//! then calls billing_distribute(), so the steps also check that distributing
//! keeps what a database held. Each step works with users of its own. A second
//! database on the coordinator, `single_node`, has the extension without Citus:
//! the scenario runs in both and must give the same rows. The steps run first
//! without delegation, then with it (billing_distribute(delegate => true), which
//! stays on). The normal integration run skips this test (`--skip citus::`).

mod common;

mod citus {
    use super::common::*;
    use std::collections::HashMap;

    /// Through the coordinator.
    const CITUS_DB: &str = "postgres";
    /// The same PostgreSQL, a database without the citus extension.
    const SINGLE_DB: &str = "single_node";

    struct Prepared {
        /// The seeded users' power before billing_distribute().
        power_before: HashMap<String, String>,
        /// What billing_distribute() reported, the first time and the second.
        first_report: Vec<(String, String)>,
        second_report: Vec<(String, String)>,
    }

    fn report_with(c: &mut Client, delegate: bool) -> Vec<(String, String)> {
        c.query("SELECT object, distribution FROM billing_distribute(delegate => $1)", &[&delegate])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The user functions Citus sends to the user's node now.
    fn delegated_functions(c: &mut Client) -> Vec<String> {
        c.query(
            "SELECT p.oid::regprocedure::text FROM pg_dist_object o JOIN pg_proc p ON p.oid = o.objid
              WHERE o.classid = 'pg_proc'::regclass AND o.distribution_argument_index = 0 AND o.force_delegation
                AND p.pronamespace = 'public'::regnamespace ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    fn workers() -> Vec<(String, u16)> {
        let workers = std::env::var("BILLING_CITUS_WORKERS")
            .expect("BILLING_CITUS_WORKERS is not set: run the Citus suite through scripts/with-citus.sh (make citus)");
        workers
            .split_whitespace()
            .map(|w| {
                let (host, port) = w.rsplit_once(':').expect("host:port");
                (host.to_owned(), port.parse().expect("a port"))
            })
            .collect()
    }

    fn connect_worker(host: &str, port: u16) -> Client {
        let dsn = format!("host={host} port={port} user={} dbname={CITUS_DB} application_name=billing-tests{}", superuser(), password());
        Client::connect(&dsn, NoTls).unwrap_or_else(|e| panic!("connect to the worker {host}:{port}: {e}"))
    }

    fn report(c: &mut Client) -> Vec<(String, String)> {
        c.query("SELECT object, distribution FROM billing_distribute()", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// The application's table with a charging trigger, in `db`.
    const TASKS: &str = "
        CREATE TABLE public.tasks (user_id text NOT NULL, task_no text NOT NULL, status text NOT NULL DEFAULT 'running',
                                   PRIMARY KEY (user_id, task_no));
        CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.tasks FOR EACH ROW
            EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC',
                'source_type=CHAT', 'source=tasks', 'association_column=task_no', 'status_column=status',
                'failed_status=failed');";

    fn prepare() -> Prepared {
        let mut c = connect(CITUS_DB);
        c.batch_execute("CREATE EXTENSION billing").unwrap();
        // a database that already holds balances, grants, holds, ledger rows and charges
        c.batch_execute(
            "SELECT billing_add('seed-' || n, 100, 'RECHARGE_INC', 'RECHARGE', 'shop') FROM generate_series(1, 40) AS n;
             SELECT billing_add('seed-' || n, 30, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip',
                                expire_at => now() + interval '30 days') FROM generate_series(1, 40) AS n;
             SELECT billing_deduct('seed-' || n, 7 + n, 'CHAT_DEC', 'CHAT', 'chat', idempotency_key => 'seed-chat')
               FROM generate_series(1, 40) AS n;
             SELECT billing_hold('seed-' || n, 3, 'CHAT_DEC', 'CHAT', 'gpt', ttl => interval '1 hour', idempotency_key => 'seed-hold')
               FROM generate_series(1, 40) AS n;
             SELECT billing_refund(l.id, 2) FROM billing.account_log AS l WHERE l.idempotency_key = 'seed-chat';",
        )
        .unwrap();
        c.batch_execute(TASKS).unwrap();
        c.batch_execute(
            "INSERT INTO public.tasks (user_id, task_no) SELECT 'seed-' || n, 'pre-' || n FROM generate_series(1, 40) AS n",
        )
        .unwrap();
        let mut power_before = HashMap::new();
        for row in c.query("SELECT a.user_id, billing_power(a.user_id)::text FROM billing.accounts AS a", &[]).unwrap() {
            power_before.insert(row.get(0), row.get(1));
        }
        assert_eq!(power_before.len(), 40);
        let first_report = report(&mut c);
        let second_report = report(&mut c);
        // the application distributes its own table, co-located with the billing
        // tables, as docs/citus.md says: its trigger off while Citus copies the rows
        // into the shards (the copy would fire it on every shard)
        for statement in [
            "SET citus.enable_unsafe_triggers = on",
            "ALTER TABLE public.tasks DISABLE TRIGGER charge",
            "SELECT create_distributed_table('public.tasks', 'user_id', colocate_with => 'billing.accounts')",
            "SELECT truncate_local_data_after_distributing_table('public.tasks')",
            "ALTER TABLE public.tasks ENABLE TRIGGER charge",
            "RESET citus.enable_unsafe_triggers",
        ] {
            c.batch_execute(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
        }

        let mut admin = connect("postgres");
        admin.batch_execute(&format!("CREATE DATABASE {SINGLE_DB}")).unwrap();
        connect(SINGLE_DB).batch_execute("CREATE EXTENSION billing").unwrap();
        Prepared { power_before, first_report, second_report }
    }

    /// The steps, in order.
    #[test]
    fn suite() {
        let p = prepare();
        let steps: &[(&str, &dyn Fn())] = &[
            ("distributing keeps what the database held", &|| distributing_keeps_what_the_database_held(&p)),
            ("billing_distribute refuses on a worker", &billing_distribute_refuses_on_a_worker),
            ("every function gives what one node gives", &every_function_gives_what_one_node_gives),
            ("a charging trigger on a distributed table", &a_charging_trigger_on_a_distributed_table),
            ("low-balance events are read through the coordinator", &low_balance_events_are_read_through_the_coordinator),
            ("a transaction may charge users on both workers", &|| a_transaction_may_charge_users_on_both_workers("tx")),
            ("a storm through the coordinator", &|| storm("st")),
            ("delegation is opt-in, and stays on", &delegation_is_opt_in),
            ("with delegation: a transaction may charge users on both workers", &|| a_transaction_may_charge_users_on_both_workers("dtx")),
            ("with delegation: ids are unique across the cluster", &ids_are_unique_across_the_cluster),
            ("with delegation: a charging trigger", &charging_trigger_with_delegation),
            ("with delegation: a storm", &|| storm("dst")),
            ("billing_verify() on every node", &verify_on_every_node),
        ];
        for (name, step) in steps {
            eprintln!("citus suite: {name}");
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
                eprintln!("citus suite: FAILED: {name}");
                std::panic::resume_unwind(panic);
            }
        }
    }

    fn distributing_keeps_what_the_database_held(p: &Prepared) {
        let mut c = connect(CITUS_DB);
        // every table of the extension: those with a user_id by it, the others as reference tables
        let tables: Vec<(String, String)> = c
            .query(
                "SELECT logicalrelid::text, partmethod::text FROM pg_dist_partition
                  WHERE logicalrelid::text LIKE 'billing.%' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let expected: Vec<(String, String)> = [
            ("billing.account_log", "h"),
            ("billing.account_types", "n"),
            ("billing.accounts", "h"),
            ("billing.grant_store", "h"),
            ("billing.holds", "h"),
            ("billing.limits", "h"),
            ("billing.low_balance_events", "h"),
            ("billing.pricing_rules", "n"),
            ("billing.source_types", "n"),
            ("billing.trigger_charges", "h"),
        ]
        .iter()
        .map(|(t, m)| (t.to_string(), m.to_string()))
        .collect();
        assert_eq!(tables, expected);
        assert_eq!(
            text(&mut c, "SELECT count(DISTINCT colocationid)::text FROM pg_dist_partition WHERE logicalrelid::text LIKE 'billing.%' AND partmethod = 'h'"),
            "1",
            "the user tables are co-located"
        );
        // the report: each table, the id ranges, then the delegated functions
        assert!(p.first_report.iter().any(|(o, d)| o == "billing.accounts" && d == "distributed by user_id"), "{:?}", p.first_report);
        assert!(p.first_report.iter().any(|(o, d)| o == "billing.account_types" && d == "reference table"));
        assert!(p.first_report.iter().any(|(o, d)| o.starts_with("public.billing_deduct(") && d.starts_with("not delegated")));
        // the second call changes nothing: every table and function is "(already)"
        assert_eq!(p.first_report.len(), p.second_report.len());
        for (object, distribution) in &p.second_report {
            assert!(object == "id sequences" || distribution.ends_with("(already)"), "{object}: {distribution}");
        }
        // balances, grants, holds, ledger and charges kept: the same power, and the ledger replays
        for (user, power) in &p.power_before {
            assert_eq!(&super::common::power(&mut c, user), power, "{user}");
        }
        assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.account_log WHERE user_id LIKE 'seed-%'"), "200");
        assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.holds WHERE user_id LIKE 'seed-%' AND status = 'held'"), "40");
        assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_verify() WHERE user_id LIKE 'seed-%'"), "0");
    }

    /// Delegation is off unless asked for (Citus 13.2 crashes the coordinator on
    /// a delegated call wrapped in a subquery), and on with delegate => true,
    /// where it stays (false then leaves it, and says so).
    fn delegation_is_opt_in() {
        let mut c = connect(CITUS_DB);
        assert_eq!(delegated_functions(&mut c), Vec::<String>::new());
        let on = report_with(&mut c, true);
        assert!(on.iter().any(|(o, d)| o.starts_with("public.billing_deduct(") && d == "delegated by user_id"), "{on:?}");
        let delegated = delegated_functions(&mut c);
        for f in [
            "billing_add(text,numeric,text,text,text,text,text,text,timestamp with time zone,text,text)",
            "billing_deduct(text,numeric,text,text,text,text,text,text,text,text[])",
            "billing_hold(text,numeric,text,text,text,text,text,text,interval,text,text[])",
            "billing_user_settle(text,bigint,numeric,text,boolean)",
            "billing_user_release(text,bigint,text)",
            "billing_user_refund(text,bigint,numeric,text,text)",
            "billing_power(text)",
            "billing_has_power(text,numeric)",
            "billing_adjust(text,numeric,text,text)",
            "billing_set_limit(text,text,numeric,text,text)",
            "billing_limits(text)",
            "billing_history(text,integer,bigint)",
        ] {
            assert!(delegated.contains(&f.to_string()), "{f} is not delegated: {delegated:?}");
        }
        // the id-only forms and billing_verify (whose user may be NULL) run where called
        for f in ["billing_settle(bigint,numeric,text,boolean)", "billing_refund(bigint,numeric,text,text)", "billing_verify(text)"] {
            assert!(!delegated.contains(&f.to_string()), "{f} must not be delegated");
        }
        // again, and with false: nothing changes
        for delegate in [true, false] {
            for (object, distribution) in report_with(&mut c, delegate) {
                assert!(object == "id sequences" || distribution.contains("(already"), "{object}: {distribution}");
            }
        }
        assert_eq!(delegated_functions(&mut c), delegated);
        // a delegated call goes to the user's node and works there
        c.query("SELECT id FROM billing_add('dl-1', 5, 'RECHARGE_INC', 'RECHARGE', 'shop')", &[]).unwrap();
        assert_eq!(text(&mut c, "SELECT billing_power('dl-1')::text"), "5");
    }

    fn billing_distribute_refuses_on_a_worker() {
        let (host, port) = workers().remove(0);
        let mut w = connect_worker(&host, port);
        let error = w.query("SELECT * FROM billing_distribute()", &[]).unwrap_err();
        assert_eq!(error.code().map(|c| c.code()), Some("PB009"), "{error}");
    }

    /// The scenario: every function, run in a database on Citus and in one
    /// without; the rows (without ids, times and roles) must be the same.
    const SCENARIO: &[&str] = &[
        "SELECT seq, amount, balance_after, account_type FROM billing_add('s-a', 100, 'RECHARGE_INC', 'RECHARGE', 'shop', idempotency_key => 'k-1')",
        "SELECT seq, amount, balance_after FROM billing_add('s-a', 100, 'RECHARGE_INC', 'RECHARGE', 'shop', idempotency_key => 'k-1')",
        "SELECT seq, amount, balance_after FROM billing_add('s-a', 30, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '30 days', subscription_id => 'sub-s')",
        "SELECT seq, amount, balance_after FROM billing_add('s-a', 4, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'daily', expire_at => now() + interval '1 second')",
        "SELECT seq, amount, balance_after FROM billing_add('{\"userId\": \"s-b\", \"amount\": 50, \"accountType\": \"RECHARGE_INC\", \"source\": {\"type\": \"RECHARGE\", \"source\": \"shop\"}}')",
        "SELECT billing_power('s-a'), billing_has_power('s-a', 134), billing_has_power('s-a', 135), billing_power('nobody')",
        "SELECT billing_set_low_balance('s-a', 100)",
        "SELECT seq, amount, balance_after, scopes FROM billing_deduct('s-a', 40, 'CHAT_DEC', 'CHAT', 'chat', association_no => 'task-1', idempotency_key => 'k-2')",
        "SELECT seq, amount, balance_after FROM billing_deduct('s-a', 40, 'CHAT_DEC', 'CHAT', 'chat', association_no => 'task-1', idempotency_key => 'k-2')",
        "SELECT seq, amount, balance_after FROM billing_deduct('{\"userId\": \"s-b\", \"amount\": 5, \"accountType\": \"CHAT_DEC\", \"source\": {\"type\": \"CHAT\", \"source\": \"x\"}}')",
        "SELECT user_id, threshold, available FROM billing_low_balance_events(0) WHERE user_id LIKE 's-%'",
        "SELECT status, amount FROM billing_hold('s-a', 20, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h-1')",
        "SELECT seq, amount, balance_after FROM billing_settle(<<hold s-a h-1>>, 12.5)",
        "SELECT status, amount FROM billing_hold('s-a', 10, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h-2')",
        "SELECT status, reason FROM billing_release(<<hold s-a h-2>>, 'timeout')",
        "SELECT status, amount FROM billing_hold('s-b', 10, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h-3')",
        "SELECT seq, amount, balance_after FROM billing_user_settle('s-b', <<hold s-b h-3>>, 4)",
        "SELECT status, amount FROM billing_hold('s-b', 6, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h-4')",
        "SELECT status, reason FROM billing_user_release('s-b', <<hold s-b h-4>>, 'cancelled')",
        "SELECT seq, amount, balance_after, refund_of IS NOT NULL FROM billing_refund(<<entry s-a k-2>>, 5, 'partial', idempotency_key => 'r-1')",
        "SELECT seq, amount, balance_after FROM billing_user_refund('s-b', <<last-debit s-b>>, 1)",
        "SELECT seq, amount, balance_after FROM billing_adjust('s-a', -3, 'correction', 'staff')",
        "SELECT seq, amount, balance_after FROM billing_adjust('s-a', 2, 'goodwill', 'staff')",
        "SELECT scope, cap, period, spent, held, remaining FROM billing_set_limit('s-a', 'key:a', 10, 'month', 'UTC')",
        "SELECT seq, amount, scopes FROM billing_deduct('s-a', 6, 'CHAT_DEC', 'CHAT', 'chat', scopes => ARRAY['key:a'])",
        "SELECT scope, cap, spent, held, remaining FROM billing_limits('s-a')",
        "SELECT billing_set_debt_limit('s-b', 10)",
        "SELECT status, amount FROM billing_hold('s-b', 5, 'CHAT_DEC', 'CHAT', 'gpt', idempotency_key => 'h-5')",
        "SELECT seq, amount, balance_after FROM billing_settle(<<hold s-b h-5>>, 44, NULL, true)",
        "SELECT pg_sleep(1.2)",
        "SELECT billing_expire()",
        "SELECT seq, account_type, amount, balance_after FROM billing_revoke_subscription('sub-s', 'cancelled')",
        "SELECT seq, account_type, amount, balance_after, association_no FROM billing_history('s-a', 100, NULL)",
        "SELECT seq, account_type, amount FROM billing_by_association('s-a', 'task-1')",
        "SELECT account_type, entries, credited, debited, net, opening_balance, closing_balance FROM billing_statement('s-a', '-infinity', 'infinity')",
        "SELECT billing_price('scenario-model', 2500)",
        "SELECT user_id, permanent, grants_live, held, available FROM billing.balances WHERE user_id LIKE 's-%' ORDER BY user_id",
        "SELECT user_id, remaining FROM billing.grants WHERE user_id LIKE 's-%' ORDER BY user_id, expire_at",
        "SELECT user_id, seq, account_type, amount, balance_after FROM billing.account_log WHERE user_id LIKE 's-%' ORDER BY user_id, seq",
        "SELECT user_id, status, amount, settled_amount FROM billing.holds WHERE user_id LIKE 's-%' ORDER BY user_id, created_at",
        "SELECT count(*) FROM billing_verify('s-a')",
        "SELECT count(*) FROM billing_verify('s-b')",
    ];

    /// `<<hold USER KEY>>`, `<<entry USER KEY>>` and `<<last-debit USER>>` in a step: the
    /// id, read first. (An argument that is a subquery of the billing tables
    /// would let Citus push the whole call to a worker, where the function may
    /// not run statements of its own: docs/citus.md.)
    fn with_ids(c: &mut Client, step: &str) -> String {
        let mut step = step.to_owned();
        while let Some(start) = step.find("<<") {
            let end = start + step[start..].find(">>").expect("a closing >>") + 1;
            let words: Vec<&str> = step[start + 2..end - 1].split(' ').collect();
            let query = match words.as_slice() {
                ["hold", user, key] => format!("SELECT hold_id FROM billing.holds WHERE user_id = '{user}' AND idempotency_key = '{key}'"),
                ["entry", user, key] => format!("SELECT id FROM billing.account_log WHERE user_id = '{user}' AND idempotency_key = '{key}'"),
                ["last-debit", user] => format!("SELECT max(id) FROM billing.account_log WHERE user_id = '{user}' AND account_type = 'CHAT_DEC'"),
                _ => panic!("unknown placeholder in {step}"),
            };
            let id: i64 = c.query_one(&query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).get(0);
            step.replace_range(start..=end, &id.to_string());
        }
        step
    }

    fn run_scenario(db: &str) -> Vec<String> {
        let mut c = connect(db);
        SCENARIO
            .iter()
            .map(|q| {
                let step = with_ids(&mut c, q);
                let wrapped = format!("SELECT coalesce(string_agg(t::text, ' | ' ORDER BY t::text), '') FROM ({step}) AS t");
                match c.query_one(&wrapped, &[]) {
                    Ok(row) => format!("{q}\n  {}", row.get::<_, String>(0)),
                    Err(e) => format!(
                        "{q}\n  ERROR {:?} {}",
                        e.code().map(|c| c.code().to_owned()),
                        e.as_db_error().map_or(e.to_string(), |d| d.message().to_owned())
                    ),
                }
            })
            .collect()
    }

    fn every_function_gives_what_one_node_gives() {
        // the pricing rule the scenario prices with, in both
        for db in [CITUS_DB, SINGLE_DB] {
            connect(db)
                .batch_execute("INSERT INTO billing.pricing_rules (code, tokens, power, description) VALUES ('scenario-model', 1000, 0.6, 'scenario')")
                .unwrap();
        }
        let on_citus = run_scenario(CITUS_DB);
        let on_one_node = run_scenario(SINGLE_DB);
        for (citus, single) in on_citus.iter().zip(&on_one_node) {
            assert!(!single.contains("\n  ERROR"), "fails on one node: {single}");
            assert_eq!(citus, single, "Citus and one node differ");
        }
    }

    fn a_charging_trigger_on_a_distributed_table() {
        let mut c = connect(CITUS_DB);
        // a row charged before the table was distributed is refunded after
        c.batch_execute("UPDATE public.tasks SET status = 'failed' WHERE user_id = 'seed-1' AND task_no = 'pre-1'").unwrap();
        c.batch_execute("DELETE FROM public.tasks WHERE user_id = 'seed-2' AND task_no = 'pre-2'").unwrap();
        for user in ["seed-1", "seed-2"] {
            assert_eq!(
                text(&mut c, &format!("SELECT count(*)::text FROM billing.account_log WHERE user_id = '{user}' AND account_type = 'REFUND_INC' AND remark LIKE 'trigger charge on public.tasks:%'")),
                "1",
                "{user}'s task refunded once"
            );
        }
        // new rows charge, fail and refund on the shards
        c.batch_execute(
            "INSERT INTO public.tasks (user_id, task_no) SELECT 't-' || n, 'post-' || n FROM generate_series(1, 20) AS n",
        )
        .unwrap_err(); // nobody has power yet: PB001 undoes the whole INSERT
        c.batch_execute("SELECT billing_add('t-' || n, 20, 'RECHARGE_INC', 'RECHARGE', 'shop') FROM generate_series(1, 20) AS n").unwrap();
        c.batch_execute(
            "INSERT INTO public.tasks (user_id, task_no) SELECT 't-' || n, 'post-' || n FROM generate_series(1, 20) AS n;
             UPDATE public.tasks SET status = 'failed' WHERE user_id IN ('t-1', 't-2', 't-3');
             DELETE FROM public.tasks WHERE user_id IN ('t-4', 't-5');",
        )
        .unwrap();
        assert_eq!(text(&mut c, "SELECT sum(billing_power('t-' || n))::text FROM generate_series(1, 20) AS n"), (20 * 20 - 15 * 5).to_string());
        // the keys and the charges name the table, never a shard
        assert_eq!(
            text(&mut c, "SELECT string_agg(DISTINCT table_name, ',') FROM billing.trigger_charges"),
            "public.tasks"
        );
        assert_eq!(
            text(&mut c, "SELECT count(*)::text FROM billing.account_log WHERE idempotency_key ~ '^trigger:public\\.tasks_[0-9]'"),
            "0"
        );
        assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_verify() WHERE user_id LIKE 't-%' OR user_id LIKE 'seed-%'"), "0");
    }

    fn low_balance_events_are_read_through_the_coordinator() {
        let mut c = connect(CITUS_DB);
        // users on both workers cross their threshold, each call sent to the user's node
        for n in 1..=8 {
            let user = format!("lb-{n}");
            c.query("SELECT id FROM billing_add($1, 10, 'RECHARGE_INC', 'RECHARGE', 'shop')", &[&user]).unwrap();
            c.query("SELECT billing_set_low_balance($1, 5)", &[&user]).unwrap();
            c.query("SELECT id FROM billing_deduct($1, 6, 'CHAT_DEC', 'CHAT', 'chat')", &[&user]).unwrap();
        }
        assert_eq!(
            text(&mut c, "SELECT count(DISTINCT n.nodeport)::text FROM pg_dist_placement AS p JOIN pg_dist_node AS n ON n.groupid = p.groupid WHERE p.shardid IN (SELECT get_shard_id_for_distribution_column('billing.accounts', 'lb-' || g) FROM generate_series(1, 8) AS g)"),
            "2",
            "the users live on both workers"
        );
        let events: Vec<String> = c
            .query("SELECT user_id FROM billing_low_balance_events(0) WHERE user_id LIKE 'lb-%' ORDER BY user_id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(events, (1..=8).map(|n| format!("lb-{n}")).collect::<Vec<_>>());
    }

    fn ids_are_unique_across_the_cluster() {
        let mut c = connect(CITUS_DB);
        // each call sent to the user's node, which draws the ids
        for n in 1..=30 {
            let user = format!("id-{n}");
            c.query(
                "SELECT id FROM billing_add($1, 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day')",
                &[&user],
            )
            .unwrap();
            c.query("SELECT hold_id FROM billing_hold($1, 1, 'CHAT_DEC', 'CHAT', 'gpt')", &[&user]).unwrap();
        }
        for (table, id) in [("billing.account_log", "id"), ("billing.grant_store", "id"), ("billing.holds", "hold_id")] {
            assert_eq!(
                text(&mut c, &format!("SELECT count(*)::text FROM (SELECT {id} FROM {table} GROUP BY {id} HAVING count(*) > 1) AS d")),
                "0",
                "{table}.{id} repeats"
            );
            // drawn on the coordinator (the seed) and on both workers: three ranges
            assert_eq!(
                text(&mut c, &format!("SELECT count(DISTINCT {id} >> 48)::text FROM {table}")),
                "3",
                "{table}.{id}: every node draws from its own range"
            );
        }
    }

    fn a_transaction_may_charge_users_on_both_workers(prefix: &str) {
        let mut c = connect(CITUS_DB);
        c.batch_execute(&format!("SELECT billing_add('{prefix}-' || n, 10, 'RECHARGE_INC', 'RECHARGE', 'shop') FROM generate_series(1, 6) AS n"))
            .unwrap();
        let mut tx = c.transaction().unwrap();
        for n in 1..=6 {
            tx.query_one("SELECT seq FROM billing_deduct($1, 4, 'CHAT_DEC', 'CHAT', 'chat')", &[&format!("{prefix}-{n}")]).unwrap();
        }
        tx.rollback().unwrap();
        assert_eq!(text(&mut c, &format!("SELECT sum(billing_power('{prefix}-' || n))::text FROM generate_series(1, 6) AS n")), "60");
        let mut tx = c.transaction().unwrap();
        for n in 1..=6 {
            tx.query_one("SELECT seq FROM billing_deduct($1, 4, 'CHAT_DEC', 'CHAT', 'chat')", &[&format!("{prefix}-{n}")]).unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(text(&mut c, &format!("SELECT sum(billing_power('{prefix}-' || n))::text FROM generate_series(1, 6) AS n")), "36");
    }

    /// 16 connections through the coordinator, over one hot user and 1,000
    /// others: deducts, holds settled or released, refunds, adds. Afterwards the
    /// ledger holds one row per call that writes one, the ledger replays on
    /// every node, and no balance is negative.
    fn storm(prefix: &'static str) {
        let mut c = connect(CITUS_DB);
        c.batch_execute(&format!(
            "SELECT billing_add('{prefix}-hot', 2000, 'RECHARGE_INC', 'RECHARGE', 'shop');
             SELECT billing_add('{prefix}-' || n, 50, 'RECHARGE_INC', 'RECHARGE', 'shop') FROM generate_series(0, 999) AS n;
             SELECT billing_add('{prefix}-' || n, 20, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day')
               FROM generate_series(0, 999, 3) AS n;"
        ))
        .unwrap();
        let users = format!("user_id LIKE '{prefix}-%'");
        let before: i64 = c
            .query_one(&format!("SELECT count(*) FROM billing.account_log WHERE {users}"), &[])
            .unwrap()
            .get(0);
        const ROUNDS: usize = 60;
        let written = on_connections(CITUS_DB, 16, move |c, n| {
            let mut entries = 0i64;
            let mut seed = (n as u64 + 1) * 2_654_435_761;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            for round in 0..ROUNDS {
                let user = if round % 3 == 0 { format!("{prefix}-hot") } else { format!("{prefix}-{}", next() % 1000) };
                let ok = |r: Result<Vec<postgres::Row>, postgres::Error>| -> bool {
                    match r {
                        Ok(_) => true,
                        Err(e) if e.code().map(|c| c.code()) == Some("PB001") => false,
                        Err(e) => panic!("connection {n}, round {round}, user {user}: {e}"),
                    }
                };
                match next() % 5 {
                    0 | 1 => {
                        if ok(c.query("SELECT id FROM billing_deduct($1, 3, 'CHAT_DEC', 'CHAT', 'storm')", &[&user])) {
                            entries += 1;
                        }
                    }
                    2 => {
                        // hold, then settle for less (one entry)
                        if let Ok(rows) = c.query("SELECT hold_id FROM billing_hold($1, 4, 'CHAT_DEC', 'CHAT', 'storm')", &[&user]) {
                            let hold: i64 = rows[0].get(0);
                            c.query("SELECT id FROM billing_user_settle($1, $2, 2.5)", &[&user, &hold]).unwrap();
                            entries += 1;
                        }
                    }
                    3 => {
                        // hold, then release through the id-only form (no entry)
                        if let Ok(rows) = c.query("SELECT hold_id FROM billing_hold($1, 2, 'CHAT_DEC', 'CHAT', 'storm')", &[&user]) {
                            let hold: i64 = rows[0].get(0);
                            c.query("SELECT hold_id FROM billing_release($1)", &[&hold]).unwrap();
                        }
                    }
                    _ => {
                        // a deduct refunded in part, by the id-only form or the user's
                        if let Ok(rows) = c.query("SELECT id FROM billing_deduct($1, 2, 'CHAT_DEC', 'CHAT', 'storm')", &[&user]) {
                            let id: i64 = rows[0].get(0);
                            if round % 2 == 0 {
                                c.query("SELECT id FROM billing_refund($1, 1)", &[&id]).unwrap();
                            } else {
                                c.query("SELECT id FROM billing_user_refund($1, $2, 1)", &[&user, &id]).unwrap();
                            }
                            entries += 2;
                        }
                    }
                }
            }
            entries
        });
        let expected = before + written.iter().sum::<i64>();
        assert_eq!(
            c.query_one(&format!("SELECT count(*) FROM billing.account_log WHERE {users}"), &[])
                .unwrap()
                .get::<_, i64>(0),
            expected,
            "one ledger row per successful call that writes one"
        );
        assert_eq!(text(&mut c, &format!("SELECT count(*)::text FROM billing.balances WHERE available < 0 AND {users}")), "0");
        assert_eq!(text(&mut c, &format!("SELECT count(*)::text FROM billing.accounts WHERE (permanent < 0 OR grants_total < 0) AND {users}")), "0");
        assert_eq!(text(&mut c, &format!("SELECT count(*)::text FROM billing_verify() WHERE {users}")), "0");
    }

    /// After every step: the ledger replays, checked from the coordinator and
    /// from each worker, and no balance is negative but the one the scenario took
    /// into debt (within its floor).
    fn verify_on_every_node() {
        let mut c = connect(CITUS_DB);
        assert_eq!(ledger_disagreements(&mut c), 0);
        for (host, port) in workers() {
            let mut w = connect_worker(&host, port);
            assert_eq!(ledger_disagreements(&mut w), 0, "billing_verify() on {host}:{port}");
        }
        // below zero only where a settle with allow_debt took it, and never past the floor
        assert_eq!(
            text(&mut c, "SELECT string_agg(b.user_id, ',') FROM billing.balances AS b JOIN billing.accounts AS a USING (user_id)
                           WHERE b.available < 0"),
            "s-b"
        );
        assert_eq!(
            text(&mut c, "SELECT count(*)::text FROM billing.accounts WHERE permanent < -coalesce(max_debt, 0)"),
            "0"
        );
    }

    /// With delegation, the charging trigger's calls on the shard are local ones.
    fn charging_trigger_with_delegation() {
        let mut c = connect(CITUS_DB);
        c.batch_execute(
            "SELECT billing_add('dt-' || n, 20, 'RECHARGE_INC', 'RECHARGE', 'shop') FROM generate_series(1, 10) AS n;
             INSERT INTO public.tasks (user_id, task_no) SELECT 'dt-' || n, 'd-' || n FROM generate_series(1, 10) AS n;
             UPDATE public.tasks SET status = 'failed' WHERE user_id IN ('dt-1', 'dt-2');
             DELETE FROM public.tasks WHERE user_id = 'dt-3';",
        )
        .unwrap();
        assert_eq!(text(&mut c, "SELECT sum(billing_power('dt-' || n))::text FROM generate_series(1, 10) AS n"), (7 * 15 + 3 * 20).to_string());
        assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_verify() WHERE user_id LIKE 'dt-%'"), "0");
    }
}
