//! Spending limits over real connections: periods that end in real time (fixed
//! windows of a second), what a refund, a release and a settle give back once
//! the period the charge counted in is over, and many connections charging one
//! capped user at once.

mod common;

use std::time::Duration;

use common::*;

/// Sleeps until the user's limit of `scope` is in a later period than now.
fn wait_for_next_period(c: &mut Client, user: &str, scope: &str) {
    let left: f64 = c
        .query_one(
            "SELECT extract(epoch FROM period_end - clock_timestamp())::float8 FROM billing_limits($1) WHERE scope = $2",
            &[&user, &scope],
        )
        .unwrap()
        .get(0);
    std::thread::sleep(Duration::from_secs_f64(left.max(0.0) + 0.05));
}

/// spent/held/remaining of the user's limit of `scope` now.
fn counters(c: &mut Client, user: &str, scope: &str) -> String {
    text(
        c,
        &format!("SELECT concat_ws('/', spent, held, remaining) FROM billing_limits('{user}') WHERE scope = '{scope}'"),
    )
}

fn deduct(c: &mut Client, amount: i64) -> Result<i64, postgres::Error> {
    c.query_one(
        "SELECT id FROM billing_deduct('u', $1::bigint::numeric, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])",
        &[&amount],
    )
    .map(|row| row.get(0))
}

#[test]
fn a_new_window_starts_its_counters_at_zero() {
    let db = fresh_database("limit_windows");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT * FROM billing_set_limit('u', 'key:a', 5, '2 seconds');",
    )
    .unwrap();
    // fill one window (retrying if the window ends between the calls)
    loop {
        wait_for_next_period(&mut c, "u", "key:a");
        let start = text(&mut c, "SELECT period_start::text FROM billing_limits('u')");
        deduct(&mut c, 5).unwrap();
        let refused = sqlstate(deduct(&mut c, 1));
        if text(&mut c, "SELECT period_start::text FROM billing_limits('u')") == start {
            assert_eq!(refused, "PB008");
            break;
        }
    }
    wait_for_next_period(&mut c, "u", "key:a");
    assert_eq!(counters(&mut c, "u", "key:a"), "0/0/5");
    deduct(&mut c, 5).unwrap();
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn once_the_period_is_over_refunds_releases_and_settles_give_nothing_back_to_it() {
    let db = fresh_database("limit_after_period");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 100, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT * FROM billing_set_limit('u', 'key:a', 10, '2 seconds');",
    )
    .unwrap();
    wait_for_next_period(&mut c, "u", "key:a");
    let charge = deduct(&mut c, 4).unwrap();
    let hold = |c: &mut Client, amount: i64| -> i64 {
        c.query_one(
            "SELECT hold_id FROM billing_hold('u', $1::bigint::numeric, 'CHAT_DEC', 'CHAT', 'gpt', scopes => ARRAY['key:a'])",
            &[&amount],
        )
        .unwrap()
        .get(0)
    };
    let released = hold(&mut c, 2);
    let settled = hold(&mut c, 3);
    assert_eq!(counters(&mut c, "u", "key:a"), "4/5/1");
    wait_for_next_period(&mut c, "u", "key:a");
    // the new period starts empty; what happens now to the old period's charges gives nothing back
    assert_eq!(counters(&mut c, "u", "key:a"), "0/0/10");
    c.execute("SELECT billing_refund($1, 1)", &[&charge]).unwrap();
    c.execute("SELECT billing_release($1)", &[&released]).unwrap();
    assert_eq!(counters(&mut c, "u", "key:a"), "0/0/10");
    assert_eq!(ledger_disagreements(&mut c), 0);
    // a settle counts its actual amount in the period it is made in
    c.execute("SELECT billing_settle($1, 7)", &[&settled]).unwrap();
    let now = counters(&mut c, "u", "key:a");
    // (unless that period ended too on a slow machine: then it counted in the one before)
    assert!(now == "7/0/3" || now == "0/0/10", "{now}");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn many_connections_charging_one_capped_user_never_pass_the_cap() {
    let db = fresh_database("limit_storm");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('u', 1000, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('u', 50, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day');
         SELECT * FROM billing_set_limit('u', 'key:a', 100, 'month');
         SELECT * FROM billing_set_limit('u', '*', 130, NULL);",
    )
    .unwrap();
    let outcomes = on_connections(&db, 16, |c, n| {
        let mut done = Vec::new();
        for i in 0..8 {
            let keyed = (n + i) % 3 == 0;
            let result = if (n + i) % 4 == 0 {
                // a hold, settled for less
                c.query_one(
                    "SELECT billing_settle(hold_id, 1)::text FROM billing_hold('u', 2, 'CHAT_DEC', 'CHAT', 'gpt',
                            scopes => CASE WHEN $1 THEN ARRAY['key:a'] END)",
                    &[&keyed],
                )
                .map(|_| 1i64)
            } else {
                c.query_one(
                    "SELECT amount::bigint FROM billing_deduct('u', 3, 'CHAT_DEC', 'CHAT', 'gpt',
                            scopes => CASE WHEN $1 THEN ARRAY['key:a'] END)",
                    &[&keyed],
                )
                .map(|row| row.get::<_, i64>(0))
            };
            match result {
                Ok(amount) => done.push(("ok".to_owned(), amount)),
                Err(e) => done.push((sqlstate(Err::<(), _>(e)), 0)),
            }
        }
        done
    });
    let all: Vec<(String, i64)> = outcomes.into_iter().flatten().collect();
    assert!(all.iter().all(|(state, _)| state == "ok" || state == "PB008"), "{all:?}");
    let charged: i64 = all.iter().map(|(_, amount)| amount).sum();
    assert!(all.iter().any(|(state, _)| state == "PB008"), "the caps were reached");
    let star: i64 = c.query_one("SELECT spent::bigint FROM billing_limits('u') WHERE scope = '*'", &[]).unwrap().get(0);
    assert_eq!(star, charged);
    assert!(star <= 130);
    let key: i64 = c.query_one("SELECT spent::bigint FROM billing_limits('u') WHERE scope = 'key:a'", &[]).unwrap().get(0);
    assert!(key <= 100);
    let ledger: i64 = c
        .query_one("SELECT coalesce(sum(amount), 0)::bigint FROM billing.account_log WHERE direction = -1", &[])
        .unwrap()
        .get(0);
    assert_eq!(ledger, charged);
    assert_eq!(ledger_disagreements(&mut c), 0);
}
