//! The charging triggers over real connections: COPY charges every row, a
//! burst of concurrent inserts for one user stops exactly when the power runs
//! out, and a rolled-back INSERT takes its charge with it.

mod common;

use std::io::Write;

use common::*;

/// A tasks table charged by billing_charge, and user u with `power` power.
fn tasks(c: &mut Client, power: i64) {
    c.batch_execute(&format!(
        "CREATE TABLE tasks (task_no text PRIMARY KEY, user_id text NOT NULL, cost numeric NOT NULL,
                             status text NOT NULL DEFAULT 'running');
         CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON tasks FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount_column=cost', 'account_type=CHAT_DEC',
                                         'source_type=CHAT', 'source=tasks', 'association_column=task_no',
                                         'status_column=status', 'failed_status=failed');
         SELECT billing_add('u', {power}, 'RECHARGE_INC', 'RECHARGE', 'shop');"
    ))
    .unwrap();
}

fn count(c: &mut Client, query: &str) -> i64 {
    c.query_one(query, &[]).unwrap_or_else(|e| panic!("{query}: {e}")).get(0)
}

#[test]
fn copy_charges_every_row() {
    let db = fresh_database("trigger_copy");
    let mut c = connect(&db);
    tasks(&mut c, 10_000);
    let mut data = String::new();
    for n in 0..2_000 {
        data.push_str(&format!("task-{n}\tu\t{}.{}\n", n % 5 + 1, n % 100));
    }
    let mut writer = c.copy_in("COPY tasks (task_no, user_id, cost) FROM STDIN").unwrap();
    writer.write_all(data.as_bytes()).unwrap();
    assert_eq!(writer.finish().unwrap(), 2_000);
    let expected: i64 = count(&mut c, "SELECT sum(cost)::bigint * 100 FROM tasks");
    let charged: i64 = count(&mut c, "SELECT sum(amount)::bigint * 100 FROM billing.account_log WHERE direction = -1");
    assert_eq!(charged, expected);
    assert_eq!(count(&mut c, "SELECT count(*) FROM billing.account_log WHERE direction = -1"), 2_000);
    assert_eq!(
        text(&mut c, "SELECT (10000 - sum(cost))::text FROM tasks"),
        power(&mut c, "u"),
        "exactly the rows' costs were charged"
    );
    // a COPY that runs out of power halfway inserts and charges nothing
    let before = power(&mut c, "u");
    let mut big = String::new();
    for n in 0..500 {
        big.push_str(&format!("big-{n}\tu\t100\n"));
    }
    let mut writer = c.copy_in("COPY tasks (task_no, user_id, cost) FROM STDIN").unwrap();
    writer.write_all(big.as_bytes()).unwrap();
    assert_eq!(sqlstate(writer.finish()), "PB001");
    assert_eq!(count(&mut c, "SELECT count(*) FROM tasks WHERE task_no LIKE 'big-%'"), 0);
    assert_eq!(power(&mut c, "u"), before);
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn a_burst_of_inserts_stops_exactly_when_the_power_runs_out() {
    let db = fresh_database("trigger_burst");
    let mut c = connect(&db);
    tasks(&mut c, 150);
    let outcomes = on_connections(&db, 16, |c, n| {
        let mut states = Vec::new();
        for i in 0..20 {
            let insert = c.execute("INSERT INTO tasks (task_no, user_id, cost) VALUES ($1, 'u', 1)", &[&format!("t-{n}-{i}")]);
            states.push(sqlstate(insert));
        }
        states
    });
    let states: Vec<String> = outcomes.into_iter().flatten().collect();
    assert_eq!(states.len(), 320);
    assert_eq!(states.iter().filter(|s| *s == "00000").count(), 150, "{states:?}");
    assert!(states.iter().all(|s| s == "00000" || s == "PB001"), "{states:?}");
    assert_eq!(count(&mut c, "SELECT count(*) FROM tasks"), 150);
    assert_eq!(count(&mut c, "SELECT count(*) FROM billing.account_log WHERE direction = -1"), 150);
    assert_eq!(power(&mut c, "u"), "0");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn rolling_back_an_insert_rolls_back_its_charge() {
    let db = fresh_database("trigger_rollback");
    let mut c = connect(&db);
    tasks(&mut c, 100);
    let mut tx = c.transaction().unwrap();
    tx.execute("INSERT INTO tasks (task_no, user_id, cost) VALUES ('t1', 'u', 30)", &[]).unwrap();
    let inside: String = tx.query_one("SELECT billing_power('u')::text", &[]).unwrap().get(0);
    assert_eq!(inside, "70");
    tx.rollback().unwrap();
    assert_eq!(power(&mut c, "u"), "100");
    assert_eq!(count(&mut c, "SELECT count(*) FROM tasks"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM billing.account_log WHERE user_id = 'u'"), 1);
    // a savepoint rolled back takes only its own rows' charges
    let mut tx = c.transaction().unwrap();
    tx.execute("INSERT INTO tasks (task_no, user_id, cost) VALUES ('t1', 'u', 10)", &[]).unwrap();
    tx.batch_execute("SAVEPOINT more; INSERT INTO tasks (task_no, user_id, cost) VALUES ('t2', 'u', 20); ROLLBACK TO SAVEPOINT more")
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(power(&mut c, "u"), "90");
    // the charge is committed with the row, and refunded when the row fails
    c.batch_execute("UPDATE tasks SET status = 'failed' WHERE task_no = 't1'").unwrap();
    assert_eq!(power(&mut c, "u"), "100");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

/// Waits until a backend of `database` running a statement that starts with `query` waits for a lock.
fn wait_for_lock(c: &mut Client, database: &str, query: &str) {
    for _ in 0..500 {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE $2 || '%'",
                &[&database, &query],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("no backend waits on a lock running {query}");
}

/// Issue 11, item 5: a DELETE of a charged row that waits for a concurrent billing_refund of
/// the same charge (or billing_release of the same hold) gives back what is left, nothing,
/// instead of failing with PB005 (or PB004) once the other transaction commits.
#[test]
fn a_delete_that_waits_on_a_refund_of_the_same_charge_gives_back_what_is_left() {
    let db = fresh_database("trigger_refund_race");
    let mut c = connect(&db);
    tasks(&mut c, 100);
    c.batch_execute(
        "INSERT INTO tasks (task_no, user_id, cost) VALUES ('t1', 'u', 30);
         CREATE TABLE jobs (job_no text PRIMARY KEY, user_id text NOT NULL, cost numeric);
         CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW
         EXECUTE FUNCTION billing_hold_charge('user_column=user_id', 'amount=20', 'actual_column=cost',
             'account_type=CHAT_DEC', 'source_type=CHAT', 'source=jobs', 'association_column=job_no');
         INSERT INTO jobs (job_no, user_id) VALUES ('j1', 'u');",
    )
    .unwrap();
    assert_eq!(power(&mut c, "u"), "50");
    let charge: i64 =
        c.query_one("SELECT id FROM billing.account_log WHERE association_no = 't1' AND direction = -1", &[]).unwrap().get(0);
    let hold: i64 = c.query_one("SELECT hold_id FROM billing.holds WHERE association_no = 'j1'", &[]).unwrap().get(0);
    for (give_back, delete) in [
        (format!("SELECT billing_refund({charge})"), "DELETE FROM tasks WHERE task_no = 't1'"),
        (format!("SELECT billing_release({hold})"), "DELETE FROM jobs WHERE job_no = 'j1'"),
    ] {
        let mut other = connect(&db);
        let mut tx = other.transaction().unwrap();
        tx.batch_execute(&give_back).unwrap();
        let (database, statement) = (db.clone(), delete.to_string());
        let deleter = std::thread::spawn(move || sqlstate(connect(&database).batch_execute(&statement)));
        wait_for_lock(&mut c, &db, delete);
        tx.commit().unwrap();
        assert_eq!(deleter.join().unwrap(), "00000", "{delete} after {give_back} committed");
    }
    assert_eq!(power(&mut c, "u"), "100");
    assert_eq!(count(&mut c, &format!("SELECT count(*) FROM billing.account_log WHERE refund_of = {charge}")), 1);
    assert_eq!(count(&mut c, "SELECT count(*) FROM tasks"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM jobs"), 0);
    assert_eq!(ledger_disagreements(&mut c), 0);
}

/// Issue 11, item 6 over real sessions: a row inserted under UTC and deleted under
/// Asia/Tokyo (and another DateStyle) is refunded: its key does not depend on the session.
#[test]
fn a_row_inserted_under_one_time_zone_is_refunded_under_another() {
    let db = fresh_database("trigger_time_zone");
    let mut c = connect(&db);
    c.batch_execute(
        "CREATE TABLE readings (taken_at timestamptz PRIMARY KEY, user_id text NOT NULL);
         CREATE TRIGGER charge AFTER INSERT OR DELETE ON readings FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=3', 'account_type=CHAT_DEC',
             'source_type=CHAT', 'source=readings', 'association_column=taken_at');
         SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');",
    )
    .unwrap();
    let mut utc = connect(&db);
    utc.batch_execute("SET TimeZone = 'UTC'; INSERT INTO readings VALUES ('2026-06-01 12:00:00+00', 'u')").unwrap();
    assert_eq!(power(&mut c, "u"), "7");
    let mut tokyo = connect(&db);
    tokyo
        .batch_execute("SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'; DELETE FROM readings")
        .unwrap();
    assert_eq!(power(&mut c, "u"), "10");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

/// A row inserted while the application's charge under the same key is being made in
/// another transaction: the trigger looks for the key before that commits and finds
/// nothing, then billing_deduct waits for the account and replays the application's
/// charge. The trigger must still see that the charge is not its own (the entry was
/// not written by its transaction), so deleting the row refunds nothing.
#[test]
fn a_charge_committed_by_another_transaction_while_the_row_waited_is_not_the_triggers() {
    let db = fresh_database("trigger_replay_race");
    let mut c = connect(&db);
    c.batch_execute(
        "CREATE TABLE orders (order_no text PRIMARY KEY, user_id text NOT NULL, request text NOT NULL);
         CREATE TRIGGER charge AFTER INSERT OR DELETE ON orders FOR EACH ROW
         EXECUTE FUNCTION billing_charge('user_column=user_id', 'amount=5', 'account_type=CHAT_DEC',
             'source_type=CHAT', 'source=orders', 'key_column=request');
         SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');",
    )
    .unwrap();
    let mut app = connect(&db);
    let mut tx = app.transaction().unwrap();
    tx.batch_execute("SELECT billing_deduct('u', 5, 'CHAT_DEC', 'CHAT', 'app', idempotency_key => 'req-1')").unwrap();
    let database = db.clone();
    let insert = "INSERT INTO orders VALUES ('o1', 'u', 'req-1')";
    let inserter = std::thread::spawn(move || sqlstate(connect(&database).batch_execute(insert)));
    wait_for_lock(&mut c, &db, insert);
    tx.commit().unwrap();
    assert_eq!(inserter.join().unwrap(), "00000");
    assert_eq!(power(&mut c, "u"), "95", "the row replayed the application's charge");
    c.batch_execute("DELETE FROM orders").unwrap();
    assert_eq!(power(&mut c, "u"), "95", "and its DELETE refunds nothing");
    assert_eq!(count(&mut c, "SELECT count(*) FROM billing.trigger_charges"), 0);
    assert_eq!(ledger_disagreements(&mut c), 0);
}
