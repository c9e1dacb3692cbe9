//! In-database tests (#[pg_test]) of the charging triggers (sql/triggers.sql):
//! billing_charge and billing_hold_charge on a sample tasks table. Each runs
//! in its own transaction, rolled back after, and ends with billing_verify
//! finding nothing.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::pgrx_tests::support::*;

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn verified() {
        assert_eq!(text("SELECT count(*)::text FROM billing_verify()"), "0", "billing_verify finds nothing");
    }

    /// A tasks table, and user u with 100 power (permanent).
    fn tasks() {
        run("CREATE TABLE public.tasks (
                 task_no text PRIMARY KEY,
                 user_id text,
                 cost    numeric,
                 status  text NOT NULL DEFAULT 'running',
                 request text,
                 note    text);
             SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');");
    }

    const CHARGE: &str = "'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', \
                          'source=report', 'association_column=task_no', 'status_column=status', 'failed_status=failed'";

    /// billing_charge(args) AFTER INSERT OR UPDATE OR DELETE on tasks.
    fn charge_trigger(args: &str) {
        run(&format!(
            "CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.tasks
             FOR EACH ROW EXECUTE FUNCTION billing_charge({args})"
        ));
    }

    const HOLD: &str = "'user_column=user_id', 'amount=10', 'actual_column=cost', 'account_type=CHAT_DEC', \
                        'source_type=CHAT', 'source=agent', 'association_column=task_no', 'status_column=status', \
                        'failed_status=failed'";

    fn hold_trigger(args: &str) {
        run(&format!(
            "CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.tasks
             FOR EACH ROW EXECUTE FUNCTION billing_hold_charge({args})"
        ));
    }

    // ---- billing_charge ----

    #[pg_test]
    fn an_insert_is_charged_with_the_rows_key_and_association() {
        tasks();
        charge_trigger(&format!("{CHARGE}, 'remark=from a trigger'"));
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
        assert_eq!(power("u"), "95");
        assert_eq!(
            text("SELECT concat_ws(' ', direction, amount, account_type, source_type, source, remark, association_no, idempotency_key)
                    FROM billing.account_log WHERE user_id = 'u' AND seq = 2"),
            "-1 5 CHAT_DEC CHAT report from a trigger t1 trigger:public.tasks:t1"
        );
        // an UPDATE that does not change the status, and one to another status, charge and refund nothing
        run("UPDATE tasks SET note = 'x' WHERE task_no = 't1'; UPDATE tasks SET status = 'done' WHERE task_no = 't1'");
        assert_eq!(entries("u"), "2");
        assert_eq!(power("u"), "95");
        verified();
    }

    #[pg_test]
    fn the_amount_can_come_from_a_column_and_the_key_from_another() {
        tasks();
        charge_trigger(
            "'user_column=user_id', 'amount_column=cost', 'account_type=PLUGIN_DEC', 'source_type=PLUGIN', \
             'source=tools', 'key_column=request', 'association_column=task_no'",
        );
        run("INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t1', 'u', 7.25, 'req-1'), ('t2', 'u', 0.5, 'req-2')");
        assert_eq!(power("u"), "92.25");
        assert_eq!(
            text("SELECT string_agg(idempotency_key || '/' || association_no || '/' || amount, ',' ORDER BY seq)
                    FROM billing.account_log WHERE direction = -1"),
            "req-1/t1/7.25,req-2/t2/0.5"
        );
        // the key is an idempotency key: a charge the application already made with it is not made twice
        run("SELECT billing_deduct('u', 3, 'PLUGIN_DEC', 'PLUGIN', 'tools', idempotency_key => 'req-3');
             INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t3', 'u', 3, 'req-3')");
        assert_eq!(power("u"), "89.25");
        assert_eq!(entries("u"), "4");
        // bad amounts in the row name the argument and its column
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t4', 'u', NULL, 'r4')"),
            ("22004".into(), "amount_column cost must not be NULL".into())
        );
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t4', 'u', -1, 'r4')"),
            ("22023".into(), "amount_column cost must be greater than zero, got -1".into())
        );
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t4', 'u', 0.000000001, 'r4')").0,
            "22023"
        );
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t4', 'u', 'NaN', 'r4')"),
            ("22023".into(), "amount_column cost is not a number: NaN".into())
        );
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id, cost, request) VALUES ('t4', 'u', 1, NULL)"),
            ("22004".into(), "key_column \"request\" must not be NULL in a new row".into())
        );
        assert_eq!(text("SELECT count(*)::text FROM tasks"), "3");
        verified();
    }

    #[pg_test]
    fn a_multi_row_insert_charges_every_row() {
        tasks();
        charge_trigger(CHARGE);
        run("INSERT INTO tasks (task_no, user_id) SELECT 'task-' || n, 'u' FROM generate_series(1, 12) AS n");
        assert_eq!(power("u"), "40");
        assert_eq!(text("SELECT count(DISTINCT association_no)::text FROM billing.account_log WHERE direction = -1"), "12");
        verified();
    }

    #[pg_test]
    fn too_little_power_fails_the_insert_with_pb001_and_inserts_nothing() {
        tasks();
        charge_trigger(CHARGE);
        run("INSERT INTO tasks (task_no, user_id) SELECT 'task-' || n, 'u' FROM generate_series(1, 19) AS n");
        assert_eq!(power("u"), "5");
        // two rows need 10: the whole statement fails, the first row too
        assert_eq!(failure("INSERT INTO tasks (task_no, user_id) VALUES ('a', 'u'), ('b', 'u')").0, "PB001");
        assert_eq!(text("SELECT count(*)::text FROM tasks"), "19");
        assert_eq!(power("u"), "5");
        assert_eq!(failure("INSERT INTO tasks (task_no, user_id) VALUES ('c', 'nobody')").0, "PB001");
        assert_eq!(text("SELECT count(*)::text FROM tasks"), "19");
        verified();
    }

    #[pg_test]
    fn a_failing_statement_rolls_back_the_charge_with_the_row() {
        tasks();
        charge_trigger(CHARGE);
        assert_eq!(
            failure("DO $$ BEGIN INSERT INTO public.tasks (task_no, user_id) VALUES ('t1', 'u'); PERFORM 1 / 0; END $$").0,
            "22012"
        );
        assert_eq!(text("SELECT count(*)::text FROM tasks"), "0");
        assert_eq!(power("u"), "100");
        assert_eq!(entries("u"), "1");
        // a later AFTER trigger of the same statement fails after the charge: nothing stays either
        run("CREATE FUNCTION public.refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.note = 'boom' THEN RAISE EXCEPTION 'boom' USING ERRCODE = '23514'; END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER zz_refuse_boom AFTER INSERT ON public.tasks FOR EACH ROW EXECUTE FUNCTION public.refuse_boom()");
        assert_eq!(failure("INSERT INTO tasks (task_no, user_id, note) VALUES ('t2', 'u', 'fine'), ('t3', 'u', 'boom')").0, "23514");
        assert_eq!(text("SELECT count(*)::text FROM tasks"), "0");
        assert_eq!(power("u"), "100");
        assert_eq!(entries("u"), "1");
        verified();
    }

    #[pg_test]
    fn a_delete_refunds_to_the_same_grants_once() {
        tasks();
        run("SELECT billing_add('u', 3, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day')");
        charge_trigger(CHARGE);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
        assert_eq!(text("SELECT remaining::text FROM billing.grants WHERE user_id = 'u'"), "0");
        assert_eq!(text("SELECT permanent::text FROM billing.accounts WHERE user_id = 'u'"), "98");
        run("DELETE FROM tasks WHERE task_no = 't1'");
        assert_eq!(text("SELECT remaining::text FROM billing.grants WHERE user_id = 'u'"), "3");
        assert_eq!(text("SELECT permanent::text FROM billing.accounts WHERE user_id = 'u'"), "100");
        assert_eq!(
            text("SELECT concat_ws(' ', account_type, amount, refund_of = (SELECT id FROM billing.account_log WHERE seq = 3 AND user_id = 'u'),
                                  idempotency_key LIKE 'trigger-refund:%', association_no)
                    FROM billing.account_log WHERE user_id = 'u' AND seq = 4"),
            "REFUND_INC 5 t t t1"
        );
        assert_eq!(power("u"), "103");
        // the same task number again: its key charged once already
        assert_eq!(failure("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')").0, "PB003");
        assert_eq!(entries("u"), "4");
        verified();
    }

    #[pg_test]
    fn the_change_into_the_failed_status_refunds_once() {
        tasks();
        charge_trigger(CHARGE);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u'), ('t2', 'u')");
        assert_eq!(power("u"), "90");
        run("UPDATE tasks SET status = 'failed' WHERE task_no = 't1'");
        assert_eq!(power("u"), "95");
        assert_eq!(entries("u"), "4");
        // failed again, another column, back and failed again, then deleted: nothing more
        run("UPDATE tasks SET status = 'failed' WHERE task_no = 't1';
             UPDATE tasks SET note = 'retry' WHERE task_no = 't1';
             UPDATE tasks SET status = 'running' WHERE task_no = 't1';
             UPDATE tasks SET status = 'failed' WHERE task_no = 't1';
             DELETE FROM tasks WHERE task_no = 't1'");
        assert_eq!(power("u"), "95");
        assert_eq!(entries("u"), "4");
        // a row inserted as failed is not charged, and its deletion refunds nothing
        run("INSERT INTO tasks (task_no, user_id, status) VALUES ('t3', 'u', 'failed'); DELETE FROM tasks WHERE task_no = 't3'");
        assert_eq!(entries("u"), "4");
        // a charge the application refunded in full itself is left alone
        run("SELECT billing_refund(id) FROM billing.account_log WHERE association_no = 't2' AND direction = -1;
             UPDATE tasks SET status = 'failed' WHERE task_no = 't2'");
        assert_eq!(power("u"), "100");
        assert_eq!(entries("u"), "5");
        verified();
    }

    #[pg_test]
    fn a_charged_row_keeps_its_user_and_key() {
        tasks();
        charge_trigger(CHARGE);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
        let (state, message) = failure("UPDATE tasks SET task_no = 't9' WHERE task_no = 't1'");
        assert_eq!((state.as_str(), message.as_str()), ("22023", "association_column \"task_no\" must not change in a row that was charged"));
        let (state, message) = failure("UPDATE tasks SET user_id = 'v' WHERE task_no = 't1'");
        assert_eq!((state.as_str(), message.as_str()), ("22023", "user_column \"user_id\" must not change in a row that was charged"));
        // a row that was never charged may change
        run("ALTER TABLE tasks DISABLE TRIGGER charge;
             INSERT INTO tasks (task_no, user_id) VALUES ('old', 'u');
             ALTER TABLE tasks ENABLE TRIGGER charge;
             UPDATE tasks SET task_no = 'old-2' WHERE task_no = 'old';
             DELETE FROM tasks WHERE task_no = 'old-2'");
        assert_eq!(power("u"), "95");
        verified();
    }

    #[pg_test]
    fn rows_need_a_user_and_a_key() {
        tasks();
        charge_trigger(CHARGE);
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id) VALUES ('t1', NULL)"),
            ("22004".into(), "user_column \"user_id\" must not be NULL in a new row".into())
        );
        run("ALTER TABLE tasks DROP CONSTRAINT tasks_pkey, ALTER COLUMN task_no DROP NOT NULL");
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id) VALUES (NULL, 'u')"),
            ("22004".into(), "association_column \"task_no\" must not be NULL in a new row".into())
        );
        assert_eq!(
            failure("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u'), ('t2', '')"),
            ("22023".into(), "user_id must not be empty".into())
        );
        assert_eq!(entries("u"), "1");
        verified();
    }

    /// Each misconfiguration fails the first firing with its SQLSTATE and a message naming the argument.
    #[pg_test]
    fn misconfigured_triggers_fail_at_the_first_firing_naming_the_argument() {
        tasks();
        let base = "'user_column=user_id', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=s', 'association_column=task_no'";
        let cases: &[(&str, &str, &str)] = &[
            ("'user_column=usr', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=s', 'association_column=task_no'",
             "42703", "user_column names column \"usr\", which public.tasks does not have"),
            (&format!("{base}, 'amount_column=price'"), "42703", "amount_column names column \"price\", which public.tasks does not have"),
            (&format!("{base}, 'amount=5', 'status_column=state', 'failed_status=failed'"), "42703", "status_column names column \"state\""),
            (&format!("{base}, 'amount=five'"), "22023", "amount is not a number: five"),
            (&format!("{base}, 'amount=0'"), "22023", "amount must be greater than zero"),
            (&format!("{base}, 'amount=-2'"), "22023", "amount must be greater than zero, got -2"),
            (&format!("{base}, 'amount=1.000000001'"), "22023", "amount has more than 8 decimal places"),
            (&format!("{base}, 'amount=5', 'amount_column=cost'"), "22023", "amount and amount_column cannot both be given"),
            (base, "22023", "amount or amount_column is required"),
            ("'user_column=user_id', 'amount=5', 'source_type=CHAT', 'source=s', 'association_column=task_no'",
             "22023", "account_type is required"),
            ("'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=s', 'association_column=task_no'",
             "22023", "user_column is required"),
            ("'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=s'",
             "22023", "association_column or key_column is required"),
            (&format!("{base}, 'amont=5'"), "22023", "unknown trigger argument \"amont\""),
            (&format!("{base}, 'amount'"), "22023", "trigger argument \"amount\" is not of the form name=value"),
            (&format!("{base}, 'amount=5', 'amount=6'"), "22023", "amount is given twice"),
            (&format!("{base}, 'amount=5', 'remark= '"), "22023", "remark must not be empty"),
            (&format!("{base}, 'amount=5', 'status_column=status'"), "22023", "failed_status is required with status_column"),
            (&format!("{base}, 'amount=5', 'ttl=1 hour'"), "22023", "unknown trigger argument \"ttl\""),
            (&format!("{base}, 'amount=5', 'account_type=CHAT_DEC'"), "22023", "account_type is given twice"),
            ("'user_column=user_id', 'amount=5', 'account_type=GIFT_DEC', 'source_type=CHAT', 'source=s', 'association_column=task_no'",
             "PB002", "GIFT_DEC"),
            ("", "22023", "user_column is required"),
        ];
        for (args, state, message) in cases {
            run(&format!(
                "CREATE TRIGGER charge AFTER INSERT OR DELETE ON public.tasks FOR EACH ROW EXECUTE FUNCTION billing_charge({args})"
            ));
            let (got_state, got_message) = failure("INSERT INTO tasks (task_no, user_id, cost) VALUES ('t1', 'u', 1)");
            assert_eq!(&got_state, state, "{args}: {got_message}");
            assert!(got_message.contains(message), "{args}: {got_message:?} should contain {message:?}");
            run("DROP TRIGGER charge ON public.tasks");
        }
        // a misconfigured trigger fails its first DELETE as well
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u');
             CREATE TRIGGER charge AFTER INSERT OR DELETE ON public.tasks FOR EACH ROW
             EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC',
                                             'source_type=CHAT', 'source=s', 'key_column=ref')");
        let (state, message) = failure("DELETE FROM tasks");
        assert_eq!((state.as_str(), message.as_str()), ("42703", "key_column names column \"ref\", which public.tasks does not have"));
        run("DROP TRIGGER charge ON public.tasks");
        assert_eq!(entries("u"), "1");
        verified();
    }

    #[pg_test]
    fn the_trigger_must_be_a_row_trigger_fired_after_the_right_events() {
        tasks();
        let cases: &[(&str, &str, &str)] = &[
            ("AFTER INSERT ON public.tasks FOR EACH STATEMENT", "39P01", "billing_charge must be fired FOR EACH ROW, not FOR EACH STATEMENT"),
            ("BEFORE INSERT ON public.tasks FOR EACH ROW", "39P01", "billing_charge must be fired AFTER the row is written, not BEFORE"),
        ];
        for (how, state, message) in cases {
            run(&format!("CREATE TRIGGER charge {how} EXECUTE FUNCTION billing_charge({CHARGE})"));
            assert_eq!(
                failure("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')"),
                (state.to_string(), message.to_string()),
                "{how}"
            );
            run("DROP TRIGGER charge ON public.tasks");
        }
        // UPDATE without a failed status to watch is the wrong event for billing_charge
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u');
             CREATE TRIGGER charge AFTER UPDATE ON public.tasks FOR EACH ROW EXECUTE FUNCTION billing_charge(
                 'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=s',
                 'association_column=task_no')");
        assert_eq!(
            failure("UPDATE tasks SET note = 'x'"),
            ("22023".into(), "status_column is required when billing_charge fires on UPDATE".into())
        );
        run("DROP TRIGGER charge ON public.tasks");
        // a TRUNCATE trigger is a statement trigger
        run("CREATE TRIGGER charge AFTER TRUNCATE ON public.tasks EXECUTE FUNCTION billing_hold_charge()");
        assert_eq!(failure("TRUNCATE tasks").0, "39P01");
        run("DROP TRIGGER charge ON public.tasks");
        verified();
    }

    #[pg_test]
    fn the_role_that_fires_the_trigger_needs_no_billing_privileges() {
        tasks();
        charge_trigger(CHARGE);
        run("CREATE ROLE billing_trigger_writer;
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.tasks TO billing_trigger_writer;
             SET LOCAL ROLE billing_trigger_writer;
             INSERT INTO public.tasks (task_no, user_id) VALUES ('t1', 'u');
             UPDATE public.tasks SET status = 'failed' WHERE task_no = 't1';
             INSERT INTO public.tasks (task_no, user_id) VALUES ('t2', 'u');
             RESET ROLE");
        assert_eq!(power("u"), "95");
        assert_eq!(entries("u"), "4");
        // but creating such a trigger needs EXECUTE on the function
        run("CREATE TABLE public.own_tasks (task_no text, user_id text);
             ALTER TABLE public.own_tasks OWNER TO billing_trigger_writer;
             SET LOCAL ROLE billing_trigger_writer");
        let (state, _) = failure(&format!(
            "CREATE TRIGGER charge AFTER INSERT ON public.own_tasks FOR EACH ROW EXECUTE FUNCTION billing_charge({CHARGE})"
        ));
        run("RESET ROLE");
        assert_eq!(state, "42501");
        verified();
    }

    // ---- billing_hold_charge ----

    #[pg_test]
    fn a_hold_is_settled_when_the_actual_cost_is_written() {
        tasks();
        hold_trigger(&format!("{HOLD}, 'ttl=2 hours'"));
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
        assert_eq!(power("u"), "90");
        assert_eq!(entries("u"), "1", "a hold writes no ledger entry");
        assert_eq!(
            text("SELECT concat_ws(' ', status, amount, idempotency_key, association_no, expires_at - created_at)
                    FROM billing.holds WHERE user_id = 'u'"),
            "held 10 trigger:public.tasks:t1 t1 02:00:00"
        );
        run("UPDATE tasks SET note = 'working' WHERE task_no = 't1'");
        assert_eq!(power("u"), "90");
        run("UPDATE tasks SET cost = 7, status = 'done' WHERE task_no = 't1'");
        assert_eq!(power("u"), "93");
        assert_eq!(
            text("SELECT concat_ws(' ', direction, amount, account_type, source, association_no)
                    FROM billing.account_log WHERE user_id = 'u' AND seq = 2"),
            "-1 7 CHAT_DEC agent t1"
        );
        assert_eq!(text("SELECT status || ' ' || settled_amount FROM billing.holds WHERE user_id = 'u'"), "settled 7");
        // the same cost again, or another column: nothing; another cost: the hold is settled already
        run("UPDATE tasks SET note = 'done', cost = 7.00 WHERE task_no = 't1'");
        assert_eq!(entries("u"), "2");
        assert_eq!(failure("UPDATE tasks SET cost = 8 WHERE task_no = 't1'").0, "PB004");
        // a settled charge is refunded when the row is deleted
        run("DELETE FROM tasks WHERE task_no = 't1'");
        assert_eq!(power("u"), "100");
        assert_eq!(entries("u"), "3");
        verified();
    }

    #[pg_test]
    fn a_hold_is_released_when_the_row_fails_or_is_deleted() {
        tasks();
        hold_trigger(HOLD);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u'), ('t2', 'u'), ('t3', 'u')");
        assert_eq!(power("u"), "70");
        run("UPDATE tasks SET status = 'failed' WHERE task_no = 't1'");
        assert_eq!(power("u"), "80");
        assert_eq!(text("SELECT status || ' ' || reason FROM billing.holds WHERE association_no = 't1'"),
                   "released trigger charge on public.tasks: status became failed");
        // failed wins over a cost written with it; the deleted row gives its hold back
        run("UPDATE tasks SET status = 'failed', cost = 4 WHERE task_no = 't2'; DELETE FROM tasks WHERE task_no = 't3'");
        assert_eq!(power("u"), "100");
        assert_eq!(entries("u"), "1", "nothing was charged");
        // failed again and deleted: nothing more
        run("UPDATE tasks SET status = 'failed', note = 'x'; DELETE FROM tasks");
        assert_eq!(power("u"), "100");
        assert_eq!(text("SELECT string_agg(status, ',') FROM billing.holds"), "released,released,released");
        // a failed row that is retried and then writes a cost is not charged again
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t4', 'u');
             UPDATE tasks SET status = 'failed' WHERE task_no = 't4';
             UPDATE tasks SET status = 'running' WHERE task_no = 't4';
             UPDATE tasks SET status = 'done', cost = 3 WHERE task_no = 't4'");
        assert_eq!(power("u"), "100");
        assert_eq!(entries("u"), "1");
        // a new row under a key whose hold is closed is refused
        assert_eq!(failure("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')").0, "PB003");
        verified();
    }

    #[pg_test]
    fn a_hold_with_the_cost_already_known_is_settled_at_once() {
        tasks();
        hold_trigger(&format!("{HOLD}, 'allow_debt=true'"));
        run("INSERT INTO tasks (task_no, user_id, cost) VALUES ('t1', 'u', 2.5), ('t2', 'u', 0)");
        assert_eq!(power("u"), "97.5");
        assert_eq!(text("SELECT string_agg(status, ',' ORDER BY hold_id) FROM billing.holds"), "settled,released");
        // more than held, with allow_debt, may take the balance below zero
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t3', 'u'); UPDATE tasks SET cost = 100 WHERE task_no = 't3'");
        assert_eq!(power("u"), "-2.5");
        verified();
    }

    #[pg_test]
    fn a_hold_charge_trigger_is_checked_like_a_charge_trigger() {
        tasks();
        let base = "'user_column=user_id', 'amount=10', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=s', 'association_column=task_no'";
        let cases: &[(&str, &str, &str)] = &[
            (base, "22023", "actual_column is required"),
            (&format!("{base}, 'actual_column=price'"), "42703", "actual_column names column \"price\""),
            (&format!("{base}, 'actual_column=cost', 'ttl=soon'"), "22023", "ttl is not an interval: soon"),
            (&format!("{base}, 'actual_column=cost', 'ttl=31 days'"), "22023", "ttl must be longer than zero and at most 30 days"),
            (&format!("{base}, 'actual_column=cost', 'allow_debt=maybe'"), "22023", "allow_debt must be true or false, got maybe"),
        ];
        for (args, state, message) in cases {
            hold_trigger(args);
            let (got_state, got_message) = failure("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
            assert_eq!(&got_state, state, "{args}: {got_message}");
            assert!(got_message.contains(message), "{args}: {got_message:?} should contain {message:?}");
            run("DROP TRIGGER charge ON public.tasks");
        }
        // the actual cost is checked like an amount (0 allowed)
        hold_trigger(HOLD);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
        assert_eq!(
            failure("UPDATE tasks SET cost = -1"),
            ("22023".into(), "actual_column cost must not be negative, got -1".into())
        );
        assert_eq!(failure("INSERT INTO tasks (task_no, user_id) SELECT 'x' || n, 'u' FROM generate_series(1, 10) n").0, "PB001");
        verified();
    }

    // ---- whose privileges a trigger acts with, and what it gives back (issue 11) ----

    /// A role that owns public.owned_tasks (a copy of tasks' columns) and may create
    /// charging triggers on it; `grants` are the functions it may also execute.
    fn owned_table(role: &str, grants: &[&str]) {
        run(&format!(
            "CREATE ROLE {role};
             CREATE TABLE public.owned_tasks (LIKE public.tasks INCLUDING DEFAULTS);
             ALTER TABLE public.owned_tasks OWNER TO {role};
             GRANT EXECUTE ON FUNCTION billing_charge(), billing_hold_charge() TO {role};"
        ));
        for function in grants {
            run(&format!("GRANT EXECUTE ON FUNCTION {function} TO {role}"));
        }
    }

    const DEDUCT: &str = "billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])";
    const REFUND: &str = "billing_refund(bigint, numeric, text, text)";
    const HOLD_FN: &str = "billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[])";
    const SETTLE: &str = "billing_settle(bigint, numeric, text, boolean)";
    const RELEASE: &str = "billing_release(bigint, text)";

    fn owned_trigger(function: &str, args: &str) {
        run(&format!(
            "CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.owned_tasks
             FOR EACH ROW EXECUTE FUNCTION {function}({args})"
        ));
    }

    #[pg_test]
    fn billing_charge_charges_and_refunds_only_as_far_as_the_table_owner_may() {
        tasks();
        owned_table("billing_owner_a", &[]);
        owned_trigger("billing_charge", CHARGE);
        // the owner may execute billing_charge but not billing_deduct: whoever inserts, nothing is charged
        let (state, message, _, hint) = outcome("INSERT INTO public.owned_tasks (task_no, user_id) VALUES ('t1', 'u')");
        assert_eq!(state, "42501");
        assert_eq!(
            message,
            "permission denied for function billing_deduct: billing_charge on table public.owned_tasks acts for the table's owner billing_owner_a, who may not execute it"
        );
        assert!(hint.contains("GRANT EXECUTE ON FUNCTION billing_deduct"), "{hint}");
        assert_eq!(entries("u"), "1");
        // EXECUTE on billing_deduct lets it charge; a refund needs billing_refund
        run(&format!("GRANT EXECUTE ON FUNCTION {DEDUCT} TO billing_owner_a"));
        run("INSERT INTO public.owned_tasks (task_no, user_id) VALUES ('t1', 'u'), ('t2', 'u')");
        assert_eq!(power("u"), "90");
        let (state, message) = failure("DELETE FROM public.owned_tasks WHERE task_no = 't1'");
        assert_eq!(state, "42501");
        assert!(message.starts_with("permission denied for function billing_refund:"), "{message}");
        assert_eq!(failure("UPDATE public.owned_tasks SET status = 'failed' WHERE task_no = 't1'").0, "42501");
        run(&format!("GRANT EXECUTE ON FUNCTION {REFUND} TO billing_owner_a"));
        run("DELETE FROM public.owned_tasks WHERE task_no = 't1'; UPDATE public.owned_tasks SET status = 'failed' WHERE task_no = 't2'");
        assert_eq!(power("u"), "100");
        // the grant is checked as the trigger fires: revoked, it charges no more
        run(&format!("REVOKE EXECUTE ON FUNCTION {DEDUCT} FROM billing_owner_a"));
        assert_eq!(failure("INSERT INTO public.owned_tasks (task_no, user_id) VALUES ('t3', 'u')").0, "42501");
        // EXECUTE on the copy in schema billing counts as on the documented function
        run(&format!("GRANT EXECUTE ON FUNCTION billing.{DEDUCT} TO billing_owner_a"));
        run("INSERT INTO public.owned_tasks (task_no, user_id) VALUES ('t3', 'u')");
        assert_eq!(power("u"), "95");
        // a role granted billing_deduct through a role it is a member of may too
        run(&format!(
            "REVOKE EXECUTE ON FUNCTION billing.{DEDUCT} FROM billing_owner_a;
             CREATE ROLE billing_chargers; GRANT EXECUTE ON FUNCTION {DEDUCT} TO billing_chargers;
             GRANT billing_chargers TO billing_owner_a"
        ));
        run("INSERT INTO public.owned_tasks (task_no, user_id) VALUES ('t4', 'u')");
        assert_eq!(power("u"), "90");
        verified();
    }

    #[pg_test]
    fn billing_hold_charge_holds_settles_releases_and_refunds_only_as_far_as_the_table_owner_may() {
        tasks();
        owned_table("billing_owner_b", &[]);
        owned_trigger("billing_hold_charge", &format!("{HOLD}, 'allow_debt=true'"));
        let insert = "INSERT INTO public.owned_tasks (task_no, user_id) VALUES ('t1', 'u'), ('t2', 'u'), ('t3', 'u')";
        let (state, message) = failure(insert);
        assert_eq!(state, "42501");
        assert!(message.starts_with("permission denied for function billing_hold:"), "{message}");
        run(&format!("GRANT EXECUTE ON FUNCTION {HOLD_FN} TO billing_owner_b"));
        run(insert);
        assert_eq!(power("u"), "70");
        // 3(d) of issue 11: a debt needs billing_settle, as when called directly
        let (state, message) = failure("UPDATE public.owned_tasks SET cost = 1000000000000 WHERE task_no = 't1'");
        assert_eq!(state, "42501");
        assert!(message.starts_with("permission denied for function billing_settle:"), "{message}");
        assert_eq!(failure("INSERT INTO public.owned_tasks (task_no, user_id, cost) VALUES ('t4', 'u', 3)").0, "42501");
        let (state, message) = failure("DELETE FROM public.owned_tasks WHERE task_no = 't2'");
        assert_eq!(state, "42501");
        assert!(message.starts_with("permission denied for function billing_release:"), "{message}");
        run(&format!("GRANT EXECUTE ON FUNCTION {SETTLE}, {RELEASE} TO billing_owner_b"));
        run("UPDATE public.owned_tasks SET cost = 4 WHERE task_no = 't1'; DELETE FROM public.owned_tasks WHERE task_no = 't2'");
        assert_eq!(power("u"), "86");
        // a settled row's failure is a refund
        let (state, message) = failure("UPDATE public.owned_tasks SET status = 'failed' WHERE task_no = 't1'");
        assert_eq!(state, "42501");
        assert!(message.starts_with("permission denied for function billing_refund:"), "{message}");
        run(&format!("GRANT EXECUTE ON FUNCTION {REFUND} TO billing_owner_b"));
        run("UPDATE public.owned_tasks SET status = 'failed' WHERE task_no = 't1'");
        assert_eq!(power("u"), "90");
        verified();
    }

    /// Issue 11, 3(c): a row under the key of the application's own charge replays that
    /// charge, and the row's DELETE or failure does not refund it.
    #[pg_test]
    fn a_row_that_replays_an_applications_charge_does_not_refund_it() {
        tasks();
        owned_table("billing_owner_c", &[DEDUCT, REFUND]);
        owned_trigger(
            "billing_charge",
            "'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=report', \
             'key_column=request', 'status_column=status', 'failed_status=failed'",
        );
        run("SELECT billing_deduct('u', 5, 'CHAT_DEC', 'CHAT', 'app', idempotency_key => 'order-1')");
        run("INSERT INTO public.owned_tasks (task_no, user_id, request) VALUES ('t1', 'u', 'order-1')");
        assert_eq!(power("u"), "95", "the key replays the application's charge");
        run("UPDATE public.owned_tasks SET status = 'failed' WHERE task_no = 't1'; DELETE FROM public.owned_tasks");
        assert_eq!(power("u"), "95", "and its failure or deletion refunds nothing");
        assert_eq!(entries("u"), "2");
        // the same for a charge another table's trigger made: only that table's rows refund it
        run("INSERT INTO public.owned_tasks (task_no, user_id, request) VALUES ('t2', 'u', 'req-2')");
        assert_eq!(power("u"), "90");
        run("CREATE TABLE public.other_tasks (LIKE public.owned_tasks INCLUDING DEFAULTS);
             CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON public.other_tasks
             FOR EACH ROW EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC',
                 'source_type=CHAT', 'source=report', 'key_column=request');
             INSERT INTO public.other_tasks (task_no, user_id, request) VALUES ('x', 'u', 'req-2');
             DELETE FROM public.other_tasks");
        assert_eq!(power("u"), "90");
        run("DELETE FROM public.owned_tasks WHERE task_no = 't2'");
        assert_eq!(power("u"), "95", "the row that was charged is refunded");
        // a key whose charge is not this table's is not refused as 'charged and refunded already':
        // it replays (the application's charge was never this table's)
        run("SELECT billing_refund(id) FROM billing.account_log WHERE idempotency_key = 'order-1'");
        run("INSERT INTO public.owned_tasks (task_no, user_id, request) VALUES ('t3', 'u', 'order-1'); DELETE FROM public.owned_tasks");
        assert_eq!(power("u"), "100");
        verified();
    }

    #[pg_test]
    fn a_row_that_replays_an_applications_hold_neither_settles_nor_releases_it() {
        tasks();
        owned_table("billing_owner_d", &[HOLD_FN, SETTLE, RELEASE, REFUND]);
        owned_trigger(
            "billing_hold_charge",
            "'user_column=user_id', 'amount=10', 'actual_column=cost', 'account_type=CHAT_DEC', 'source_type=CHAT', \
             'source=agent', 'key_column=request', 'status_column=status', 'failed_status=failed', 'allow_debt=true'",
        );
        run("SELECT billing_hold('u', 10, 'CHAT_DEC', 'CHAT', 'app', idempotency_key => 'job-1')");
        run("INSERT INTO public.owned_tasks (task_no, user_id, request, cost) VALUES ('t1', 'u', 'job-1', 500)");
        assert_eq!(power("u"), "90");
        run("UPDATE public.owned_tasks SET cost = 1000; UPDATE public.owned_tasks SET status = 'failed'; DELETE FROM public.owned_tasks");
        assert_eq!(power("u"), "90");
        assert_eq!(text("SELECT status FROM billing.holds WHERE idempotency_key = 'job-1'"), "held");
        verified();
    }

    /// Issue 11, 3(a) and 3(b): DETAILs tell a role only what the functions it was granted would.
    #[pg_test]
    fn details_show_balances_and_other_charges_only_to_roles_that_may_read_them() {
        tasks();
        recharge("rich", "1000");
        run("SELECT billing_deduct('rich', 7, 'CHAT_DEC', 'CHAT', 'app', idempotency_key => 'secret-order')");
        owned_table("billing_owner_e", &[DEDUCT]);
        owned_trigger(
            "billing_charge",
            "'user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC', 'source_type=CHAT', \
             'source=report', 'key_column=request'",
        );
        run("GRANT INSERT ON public.owned_tasks TO billing_owner_e; SET LOCAL ROLE billing_owner_e");
        let (state, _, detail, _) = outcome("INSERT INTO public.owned_tasks (task_no, user_id, cost, request) VALUES ('t1', 'rich', 1000000, 'r1')");
        let (state_b, _, detail_b, _) =
            outcome("INSERT INTO public.owned_tasks (task_no, user_id, cost, request) VALUES ('t1', 'rich', 1, 'secret-order')");
        let (state_c, _, detail_c, _) = outcome("SELECT billing_deduct('rich', 1000000, 'CHAT_DEC', 'CHAT', 'x')");
        run("RESET ROLE");
        assert_eq!(state, "PB001");
        assert_eq!(detail, "Requested 1000000; the available power is shown to roles that may execute billing_power.");
        assert!(!detail.contains("993"), "{detail}");
        assert_eq!(state_b, "PB003");
        assert_eq!(
            detail_b,
            "This call asks for a debit of 1 as CHAT_DEC; the earlier entry is shown to roles that may execute billing_history."
        );
        assert_eq!(state_c, "PB001");
        assert!(!detail_c.contains("993"), "{detail_c}");
        // a role that may read balances and history sees them, through the trigger too
        run("GRANT EXECUTE ON FUNCTION billing_power(text), billing_history(text, integer, bigint) TO billing_owner_e;
             SET LOCAL ROLE billing_owner_e");
        let (_, _, detail, _) = outcome("INSERT INTO public.owned_tasks (task_no, user_id, cost, request) VALUES ('t1', 'rich', 1000000, 'r1')");
        let (_, _, detail_b, _) =
            outcome("INSERT INTO public.owned_tasks (task_no, user_id, cost, request) VALUES ('t1', 'rich', 1, 'secret-order')");
        run("RESET ROLE");
        assert_eq!(detail, "Requested 1000000, available 993.");
        assert_eq!(detail_b, "The earlier entry is a debit of 7 as CHAT_DEC; this call asks for a debit of 1 as CHAT_DEC.");
        // a spending limit's cap and counters (PB008) only to a role that may execute billing_limits
        run("SELECT * FROM billing_set_limit('rich', '*', 1); SET LOCAL ROLE billing_owner_e");
        let (state, _, detail, _) = outcome("INSERT INTO public.owned_tasks (task_no, user_id, cost, request) VALUES ('t1', 'rich', 2, 'r1')");
        run("RESET ROLE; GRANT EXECUTE ON FUNCTION billing_limits(text) TO billing_owner_e; SET LOCAL ROLE billing_owner_e");
        let (_, _, detail_b, _) = outcome("INSERT INTO public.owned_tasks (task_no, user_id, cost, request) VALUES ('t1', 'rich', 2, 'r1')");
        run("RESET ROLE");
        assert_eq!((state.as_str(), detail.as_str()), ("PB008", "requested=2"));
        assert_eq!(detail_b, "cap=1 spent=0 held=0 requested=2 period_end=never");
        verified();
    }

    #[pg_test]
    fn a_closed_hold_or_refunded_charge_is_refused_without_saying_whose() {
        tasks();
        charge_trigger(CHARGE);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u'); DELETE FROM tasks");
        let (state, _, detail, _) = outcome("INSERT INTO tasks (task_no, user_id) VALUES ('t1', 'u')");
        assert_eq!(state, "PB003");
        assert_eq!(detail, "A row of this table with this key was charged, and that charge has been refunded.");
        run("DROP TRIGGER charge ON public.tasks");
        hold_trigger(HOLD);
        run("INSERT INTO tasks (task_no, user_id) VALUES ('h1', 'u'); DELETE FROM tasks");
        let (state, _, detail, _) = outcome("INSERT INTO tasks (task_no, user_id) VALUES ('h1', 'u')");
        assert_eq!(state, "PB003");
        assert_eq!(detail, "A row of this table with this key was held for, and that hold is closed.");
        verified();
    }

    /// Issue 11, item 6: a key derived from a timestamptz (or bytea, float, interval) column
    /// is the same under any TimeZone, DateStyle, bytea_output or extra_float_digits.
    #[pg_test]
    fn keys_from_dates_bytes_and_floats_do_not_depend_on_session_settings() {
        tasks();
        run("CREATE TABLE public.events (at timestamptz, day date, blob bytea, ratio float8, span interval, user_id text);");
        for column in ["at", "day", "blob", "ratio", "span"] {
            run(&format!(
                "CREATE TRIGGER charge_{column} AFTER INSERT OR DELETE ON public.events FOR EACH ROW
                 EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=1', 'account_type=CHAT_DEC',
                     'source_type=CHAT', 'source=events', 'key_column={column}')"
            ));
        }
        run("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; SET LOCAL bytea_output = 'hex';
             SET LOCAL extra_float_digits = 1; SET LOCAL IntervalStyle = 'postgres';
             INSERT INTO public.events VALUES ('2026-03-01 10:00:00+00', '2026-03-01', '\\x0102', 0.1, '1 day 2 hours', 'u')");
        assert_eq!(power("u"), "95");
        assert_eq!(
            text("SELECT string_agg(idempotency_key, ' | ' ORDER BY seq) FROM billing.account_log WHERE direction = -1"),
            "2026-03-01 10:00:00+00 | \\x0102 | 2026-03-01 | 0.1 | 1 day 02:00:00"
        );
        run("SET LOCAL TimeZone = 'Asia/Tokyo'; SET LOCAL DateStyle = 'German, DMY'; SET LOCAL bytea_output = 'escape';
             SET LOCAL extra_float_digits = 3; SET LOCAL IntervalStyle = 'iso_8601';
             DELETE FROM public.events");
        assert_eq!(power("u"), "100", "every charge was found and refunded");
        // the session's settings are as they were
        assert_eq!(text("SELECT current_setting('TimeZone') || ' ' || current_setting('DateStyle')"), "Asia/Tokyo German, DMY");
        // text, integer, uuid and numeric values are written as before (the keys of 0.2.0)
        run("CREATE TABLE public.plain (k_text text, k_int bigint, k_uuid uuid, k_num numeric, user_id text);
             CREATE TRIGGER charge AFTER INSERT ON public.plain FOR EACH ROW
             EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=1', 'account_type=CHAT_DEC',
                 'source_type=CHAT', 'source=plain', 'association_column=k_text', 'key_column=k_num');
             INSERT INTO public.plain VALUES ('Ab c', 42, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.50, 'u')");
        assert_eq!(text("SELECT association_no || '/' || idempotency_key FROM billing.account_log WHERE source = 'plain'"), "Ab c/1.50");
        for (t, value) in [("k_int", "42"), ("k_uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")] {
            assert_eq!(
                text(&format!(
                    "SELECT billing.trigger_column(p, 'key_column', '{t}') FROM public.plain AS p"
                )),
                value
            );
        }
        verified();
    }

    /// A row charged by 0.2.0 under a key its session's settings wrote (and recorded as
    /// the upgrade records 0.2.0's trigger charges) is refunded under the same settings.
    #[pg_test]
    fn a_row_charged_before_the_upgrade_is_found_under_its_old_key() {
        tasks();
        run("CREATE TABLE public.events (at timestamptz, user_id text);
             CREATE TRIGGER charge AFTER INSERT OR DELETE ON public.events FOR EACH ROW
             EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=2', 'account_type=CHAT_DEC',
                 'source_type=CHAT', 'source=events', 'association_column=at');
             ALTER TABLE public.events DISABLE TRIGGER charge;
             SET LOCAL TimeZone = 'Asia/Tokyo';
             INSERT INTO public.events VALUES ('2026-03-01 10:00:00+00', 'u');
             SELECT billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'events', NULL, at::text, NULL, 'trigger:public.events:' || at::text)
               FROM public.events;
             INSERT INTO billing.trigger_charges (user_id, is_hold, id, table_name)
             SELECT 'u', false, id, 'public.events' FROM billing.account_log WHERE source = 'events';
             ALTER TABLE public.events ENABLE TRIGGER charge");
        assert_eq!(text("SELECT idempotency_key FROM billing.account_log WHERE source = 'events'"), "trigger:public.events:2026-03-01 19:00:00+09");
        assert_eq!(power("u"), "98");
        run("DELETE FROM public.events");
        assert_eq!(power("u"), "100");
        verified();
    }

    /// billing.may_execute: EXECUTE on the documented function or on its copy in schema
    /// billing, directly or through membership; a superuser may everything.
    #[pg_test]
    fn may_execute_is_execute_on_the_documented_function_or_its_copy() {
        run("CREATE ROLE billing_may_a; CREATE ROLE billing_may_group;");
        let may = |function: &str| {
            text(&format!("SELECT billing.may_execute('billing_may_a'::regrole, '{function}')::text"))
        };
        assert_eq!(may("billing_deduct"), "false");
        run(&format!("GRANT EXECUTE ON FUNCTION {DEDUCT} TO billing_may_a"));
        assert_eq!(may("billing_deduct"), "true");
        assert_eq!(may("billing_refund"), "false");
        // the other billing_deduct (the options object) is not the documented signature
        run("REVOKE EXECUTE ON FUNCTION billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]) FROM billing_may_a;
             GRANT EXECUTE ON FUNCTION billing_deduct(jsonb) TO billing_may_a");
        assert_eq!(may("billing_deduct"), "false");
        run(&format!("GRANT EXECUTE ON FUNCTION billing.{REFUND} TO billing_may_group; GRANT billing_may_group TO billing_may_a"));
        assert_eq!(may("billing_refund"), "true");
        assert_eq!(text("SELECT billing.may_execute('postgres'::regrole, 'billing_verify')::text"), "true");
        assert_eq!(failure("SELECT billing.may_execute('billing_may_a'::regrole, 'billing_nothing')").0, "22023");
        // a look-alike in public with a text-typed signature counts for nothing
        run("CREATE FUNCTION public.billing_settle(text, text, text, text) RETURNS text LANGUAGE sql AS 'SELECT 1::text';
             GRANT EXECUTE ON FUNCTION public.billing_settle(text, text, text, text) TO billing_may_a");
        assert_eq!(may("billing_settle"), "false");
    }
}
