//! Operations over real connections: the low-balance NOTIFY reaches a listener
//! (and only after a commit), billing_expire runs alongside deducts on the same
//! users, and pg_cron runs billing_expire on a schedule.

mod common;

use std::time::{Duration, Instant};

use common::*;
use postgres::fallible_iterator::FallibleIterator;

fn notifications(listener: &mut Client) -> Vec<String> {
    // a round trip makes the client read what the server has sent meanwhile
    listener.batch_execute("SELECT 1").unwrap();
    let mut heard = Vec::new();
    let mut notifications = listener.notifications();
    let mut pending = notifications.iter();
    while let Some(n) = pending.next().unwrap() {
        heard.push(n.payload().to_owned());
    }
    heard
}

#[test]
fn a_listener_hears_the_low_balance_notification_after_commit_only() {
    let db = fresh_database("notify");
    // a role with no grants at all may LISTEN too: the notification must tell it nothing
    let stranger = format!("{db}_stranger");
    connect(&db).batch_execute(&format!("CREATE ROLE {stranger} LOGIN")).unwrap();
    let mut listener = connect_as(&db, &stranger);
    listener.batch_execute("LISTEN billing_low_balance").unwrap();
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_set_low_balance('u', 20);
         SELECT billing_deduct('u', 50, 'CHAT_DEC', 'CHAT', 'x');",
    )
    .unwrap();
    assert!(notifications(&mut listener).is_empty(), "still above the threshold");
    // crossing it in a transaction that rolls back says nothing, and records nothing
    c.batch_execute("BEGIN; SELECT billing_deduct('u', 40, 'CHAT_DEC', 'CHAT', 'x'); ROLLBACK;").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(notifications(&mut listener).is_empty(), "a rolled-back change notifies no one");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_low_balance_events()"), "0");
    c.batch_execute("SELECT billing_deduct('u', 40, 'CHAT_DEC', 'CHAT', 'x')").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut heard = Vec::new();
    while heard.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        heard = notifications(&mut listener);
    }
    assert_eq!(heard, vec![String::new()], "one notification, with no payload");
    // the facts are read through the events function, which the stranger may not call
    assert_eq!(
        text(&mut c, "SELECT string_agg(user_id || ' ' || threshold || ' ' || available, ',') FROM billing_low_balance_events()"),
        "u 20 10"
    );
    let last = text(&mut c, "SELECT max(event_id)::text FROM billing_low_balance_events()");
    assert_eq!(text(&mut c, &format!("SELECT count(*)::text FROM billing_low_balance_events({last})")), "0");
    for query in [
        "SELECT * FROM billing_low_balance_events()",
        "SELECT * FROM billing.billing_low_balance_events(0)",
        "SELECT * FROM billing.low_balance_events",
        "SELECT billing_power('u')",
    ] {
        assert_eq!(sqlstate(listener.batch_execute(query)), "42501", "{query}");
    }
    // already below: the next deduct does not notify again
    c.batch_execute("SELECT billing_deduct('u', 1, 'CHAT_DEC', 'CHAT', 'x')").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(notifications(&mut listener).is_empty());
    // an application role granted billing_power is granted the events as well
    let app = format!("{db}_app");
    c.batch_execute(&format!(
        "CREATE ROLE {app} LOGIN;
         GRANT EXECUTE ON FUNCTION billing_power(text), billing_low_balance_events(bigint) TO {app};"
    ))
    .unwrap();
    let mut app = connect_as(&db, &app);
    assert_eq!(text(&mut app, "SELECT string_agg(user_id || ' ' || available, ',') FROM billing_low_balance_events()"), "u 10");
}

#[test]
fn low_balance_events_older_than_a_week_are_swept() {
    let db = fresh_database("notify_sweep");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_set_low_balance('u', 20);
         SELECT billing_deduct('u', 90, 'CHAT_DEC', 'CHAT', 'x');
         SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_deduct('u', 105, 'CHAT_DEC', 'CHAT', 'x');
         UPDATE billing.low_balance_events SET at = now() - interval '8 days' WHERE available = 10;
         SELECT billing_expire();",
    )
    .unwrap();
    assert_eq!(text(&mut c, "SELECT string_agg(available::text, ',') FROM billing_low_balance_events()"), "5");
}

#[test]
fn billing_expire_runs_alongside_deducts_on_the_same_users() {
    let db = fresh_database("expire_race");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u' || n, 100, 'RECHARGE_INC', 'RECHARGE', 'shop') FROM generate_series(1, 300) AS n;
         SELECT billing_add('u' || n, 7, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day')
           FROM generate_series(1, 300) AS n;
         SELECT billing_add('u' || n, 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '10 days')
           FROM generate_series(1, 300) AS n;
         -- time passes for the first gift of every user
         UPDATE billing.grant_store SET expire_at = now() - interval '1 hour' WHERE amount = 7;
         UPDATE billing.accounts SET next_expiry = now() - interval '1 hour';",
    )
    .unwrap();
    let outcomes = on_connections(&db, 6, |c, n| {
        let mut expired = 0i64;
        if n < 2 {
            // two sweepers: each call takes what the other is not holding
            loop {
                let got: i64 = c.query_one("SELECT billing_expire(batch_size => 25)", &[]).unwrap().get(0);
                expired += got;
                let left: i64 = c
                    .query_one("SELECT count(*) FROM billing.accounts WHERE next_expiry <= now()", &[])
                    .unwrap()
                    .get(0);
                if got == 0 && left == 0 {
                    break;
                }
            }
        } else {
            for i in 0..150 {
                let user = format!("u{}", 1 + (i * 7 + n * 13) % 300);
                c.query_one("SELECT seq FROM billing_deduct($1, 1, 'CHAT_DEC', 'CHAT', 'load')", &[&user]).unwrap();
            }
        }
        expired
    });
    assert_eq!(outcomes.iter().sum::<i64>(), 300, "each expired gift is swept exactly once");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.account_log WHERE account_type = 'MEMBERSHIP_GIFT_EXPIRED'"), "300");
    // every deduct took from the live gift, so every balance is 105 less what it spent
    assert_eq!(text(&mut c, "SELECT sum(billing_power(user_id))::text FROM billing.accounts"), (300 * 105 - 4 * 150).to_string());
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn pg_cron_runs_billing_expire_on_a_schedule() {
    let db = fresh_database("cron");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 10, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 5, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day');
         UPDATE billing.grant_store SET expire_at = now() - interval '1 hour';
         UPDATE billing.accounts SET next_expiry = now() - interval '1 hour';",
    )
    .unwrap();
    let mut admin = connect("postgres");
    let preloaded = text(&mut admin, "SELECT current_setting('shared_preload_libraries')");
    assert!(preloaded.contains("pg_cron"), "run through `make integration`, whose cluster preloads pg_cron");
    admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    // README's schedule, as a DBA would write it (pg_cron 1.4 schedules by the minute)
    let job: i64 = admin
        .query_one("SELECT cron.schedule_in_database('billing-expire-' || $1::text, '* * * * *', 'SELECT billing_expire()', $1::text)", &[&db])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut swept = String::new();
    while Instant::now() < deadline {
        swept = text(&mut c, "SELECT count(*)::text FROM billing.account_log WHERE account_type = 'MEMBERSHIP_GIFT_EXPIRED'");
        if swept == "1" {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let runs = text(&mut admin, &format!("SELECT string_agg(status || ': ' || return_message, '; ') FROM cron.job_run_details WHERE jobid = {job}"));
    admin.execute("SELECT cron.unschedule($1::bigint)", &[&job]).unwrap();
    assert_eq!(swept, "1", "pg_cron ran billing_expire within two minutes (runs: {runs})");
    assert_eq!(power(&mut c, "u"), "10");
    assert_eq!(ledger_disagreements(&mut c), 0);
}
