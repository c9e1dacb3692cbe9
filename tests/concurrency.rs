//! Many connections charging the same user at once: no overspending, no lost
//! update, one ledger entry per successful call, and a ledger that replays.

mod common;

use common::*;

const CONNECTIONS: usize = 16;

#[test]
fn sixteen_connections_deducting_from_one_user_never_overspend() {
    let db = fresh_database("overspend");
    let mut c = connect(&db);
    c.batch_execute(
        "SELECT billing_add('hot', 500, 'RECHARGE_INC', 'RECHARGE', 'shop');
         SELECT billing_add('hot', 60, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '1 day');
         SELECT billing_add('hot', 40, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'vip', expire_at => now() + interval '2 days');",
    )
    .unwrap();
    let results = on_connections(&db, CONNECTIONS, |c, n| {
        let (mut spent, mut ok, mut refused) = (0i64, 0i64, 0i64);
        for i in 0..60 {
            // amounts 1, 2, 3: together the connections ask for far more than 600
            let amount = (1 + (n + i) % 3) as i64;
            let result = c.query_one(
                "SELECT seq FROM billing_deduct('hot', $1::bigint::numeric, 'CHAT_DEC', 'CHAT', 'load')",
                &[&amount],
            );
            match sqlstate(result).as_str() {
                "00000" => {
                    spent += amount;
                    ok += 1
                }
                "PB001" => refused += 1,
                other => panic!("unexpected SQLSTATE {other}"),
            }
        }
        (spent, ok, refused)
    });
    let spent: i64 = results.iter().map(|r| r.0).sum();
    let succeeded: i64 = results.iter().map(|r| r.1).sum();
    let refused: i64 = results.iter().map(|r| r.2).sum();

    let left: i64 = c.query_one("SELECT billing_power('hot')::bigint", &[]).unwrap().get(0);
    assert_eq!(spent + left, 600, "every credit is either spent once or still there");
    assert!(left >= 0 && left < 3, "refusals happened only when power ran out (left {left})");
    assert!(refused > 0, "demand exceeded supply, so some calls were refused");
    let debits: i64 = c.query_one("SELECT count(*) FROM billing.account_log WHERE direction = -1", &[]).unwrap().get(0);
    assert_eq!(debits, succeeded, "one ledger entry per successful call");
    assert_eq!(ledger_disagreements(&mut c), 0);
    assert_eq!(text(&mut c, "SELECT (balance_after = billing_power('hot'))::text FROM billing.account_log ORDER BY seq DESC LIMIT 1"), "true");
    // grants were spent before the permanent balance
    assert_eq!(text(&mut c, "SELECT sum(remaining)::text FROM billing.grants"), "0");
}

#[test]
fn concurrent_repeats_of_one_idempotency_key_charge_once() {
    let db = fresh_database("idem");
    connect(&db).batch_execute("SELECT billing_add('u', 1000, 'RECHARGE_INC', 'RECHARGE', 'shop')").unwrap();
    let ids: Vec<Vec<i64>> = on_connections(&db, 8, |c, _| {
        (0..40)
            .map(|k| {
                let key = format!("req-{k}");
                let row = c
                    .query_one("SELECT id FROM billing_deduct('u', 2, 'CHAT_DEC', 'CHAT', 'api', idempotency_key => $1)", &[&key])
                    .unwrap();
                row.get::<_, i64>(0)
            })
            .collect()
    });
    for other in &ids[1..] {
        assert_eq!(other, &ids[0], "every repeat returns the original entry");
    }
    let mut c = connect(&db);
    assert_eq!(text(&mut c, "SELECT (billing_power('u') = 920)::text"), "true");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.account_log WHERE direction = -1"), "40");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

#[test]
fn adds_for_a_new_user_from_many_connections_create_one_account() {
    let db = fresh_database("newuser");
    on_connections(&db, 8, |c, _| {
        for _ in 0..10 {
            c.execute("SELECT billing_add('fresh', 1.5, 'RECHARGE_INC', 'RECHARGE', 'shop')", &[]).unwrap();
        }
    });
    let mut c = connect(&db);
    assert_eq!(text(&mut c, "SELECT (billing_power('fresh') = 120)::text"), "true");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing.accounts"), "1");
    assert_eq!(ledger_disagreements(&mut c), 0);
}

/// A small deterministic generator (xorshift64*), so a failure replays the same way.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn thirty_two_connections_mixing_calls_over_a_hot_user_and_a_thousand_users_keep_the_books() {
    let db = fresh_database("mixed");
    connect(&db)
        .batch_execute(
            "SELECT count(billing_add('u' || n, 20, 'RECHARGE_INC', 'RECHARGE', 'seed')) FROM generate_series(0, 999) n;
             SELECT billing_add('hot', 100, 'RECHARGE_INC', 'RECHARGE', 'seed');",
        )
        .unwrap();
    let results = on_connections(&db, 32, |c, n| {
        let mut state = 0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1);
        let (mut written, mut refused) = (0i64, 0i64);
        let mut keys_charged = std::collections::BTreeSet::new();
        for _ in 0..120 {
            let r = next(&mut state);
            let user = if r % 4 == 0 { "hot".to_string() } else { format!("u{}", (r >> 4) % 1000) };
            let amount = (1 + (r >> 16) % 4) as i64;
            let outcome = match (r >> 24) % 6 {
                0 => c.execute("SELECT billing_add($1, $2::bigint::numeric, 'RECHARGE_INC', 'RECHARGE', 'load')", &[&user, &amount]),
                1 => c.execute(
                    "SELECT billing_add($1, $2::bigint::numeric, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'load',
                                        expire_at => now() + interval '1 day')",
                    &[&user, &amount],
                ),
                2 | 3 => c.execute("SELECT billing_deduct($1, $2::bigint::numeric, 'CHAT_DEC', 'CHAT', 'load')", &[&user, &amount]),
                _ => {
                    // a request id shared by every connection: the same key always means the same charge
                    let key = (r >> 32) % 40;
                    let keyed_amount = (1 + key % 3) as i64;
                    let result = c.execute(
                        "SELECT billing_deduct($1, $2::bigint::numeric, 'CHAT_DEC', 'CHAT', 'load', idempotency_key => $3)",
                        &[&user, &keyed_amount, &format!("req-{key}")],
                    );
                    if result.is_ok() {
                        keys_charged.insert((user.clone(), key));
                    }
                    match sqlstate(result).as_str() {
                        "00000" => continue,
                        "PB001" => {
                            refused += 1;
                            continue;
                        }
                        other => panic!("unexpected SQLSTATE {other} for a keyed deduct"),
                    }
                }
            };
            match sqlstate(outcome).as_str() {
                "00000" => written += 1,
                "PB001" => refused += 1,
                other => panic!("unexpected SQLSTATE {other} (a deadlock would be 40P01)"),
            }
        }
        (written, refused, keys_charged)
    });
    let written: i64 = results.iter().map(|r| r.0).sum();
    let keyed: std::collections::BTreeSet<_> = results.iter().flat_map(|r| r.2.iter().cloned()).collect();
    let mut c = connect(&db);
    let entries: i64 = c.query_one("SELECT count(*) FROM billing.account_log WHERE source = 'load'", &[]).unwrap().get(0);
    assert_eq!(entries, written + keyed.len() as i64, "one entry per successful call, one per charged key");
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_verify()"), "0");
    assert!(results.iter().map(|r| r.1).sum::<i64>() > 0, "the hot user ran out at some point");
}
