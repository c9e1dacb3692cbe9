//! In-database tests (#[pg_test]) of the charging triggers (sql/triggers.sql):
//! billing_charge and billing_hold_charge on a sample tasks table. Each runs
//! in its own transaction, rolled back after, and ends with billing_verify
//! finding nothing.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::test_support::*;

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
}
