//! Model-based test: a pure-Rust model of the billing rules and the real
//! extension run the same random operation sequences (credits, gifts that
//! expire, deducts, idempotent repeats and reused keys, bad input, time moving
//! past expiries) and must agree on every result, error code and balance.
//! Sequences come from fixed seeds, so a failure replays exactly.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;

/// Amounts in hundredths of a unit of power.
type Cents = i64;

struct Grant {
    remaining: Cents,
    expires_at_hour: i64,
}

#[derive(Default)]
struct User {
    permanent: Cents,
    grants: Vec<Grant>,
    /// idempotency key -> (direction, amount, account_type, balance_after of the entry)
    keys: HashMap<String, (i16, Cents, String, Cents)>,
}

#[derive(Default)]
struct Model {
    now_hour: i64,
    users: BTreeMap<String, User>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The entry's balance_after.
    Ok(Cents),
    Err(String),
}

fn err(code: &str) -> Outcome {
    Outcome::Err(code.to_owned())
}

impl Model {
    fn available(&self, user: &str) -> Cents {
        self.users.get(user).map_or(0, |u| {
            u.permanent + u.grants.iter().filter(|g| g.expires_at_hour > self.now_hour).map(|g| g.remaining).sum::<Cents>()
        })
    }

    fn replay(&self, user: &str, key: Option<&str>, direction: i16, amount: Cents, account_type: &str) -> Option<Outcome> {
        let (d, a, t, balance_after) = self.users.get(user)?.keys.get(key?)?;
        Some(if (*d, *a, t.as_str()) == (direction, amount, account_type) { Outcome::Ok(*balance_after) } else { err("PB003") })
    }

    fn add(&mut self, user: &str, amount: Cents, gift_hours: Option<i64>, key: Option<&str>) -> Outcome {
        let account_type = if gift_hours.is_some() { "MEMBERSHIP_GIFT_INC" } else { "RECHARGE_INC" };
        if amount <= 0 {
            return err("22023");
        }
        if let Some(replayed) = self.replay(user, key, 1, amount, account_type) {
            return replayed;
        }
        let balance_after = self.available(user) + amount;
        let now = self.now_hour;
        let u = self.users.entry(user.to_owned()).or_default();
        match gift_hours {
            Some(hours) => u.grants.push(Grant { remaining: amount, expires_at_hour: now + hours }),
            None => u.permanent += amount,
        }
        if let Some(key) = key {
            u.keys.insert(key.to_owned(), (1, amount, account_type.to_owned(), balance_after));
        }
        Outcome::Ok(balance_after)
    }

    fn deduct(&mut self, user: &str, amount: Cents, account_type: &str, key: Option<&str>) -> Outcome {
        if amount <= 0 {
            return err("22023");
        }
        if account_type != "CHAT_DEC" && account_type != "PLUGIN_DEC" {
            return err("PB002");
        }
        if let Some(replayed) = self.replay(user, key, -1, amount, account_type) {
            return replayed;
        }
        let available = self.available(user);
        if amount > available {
            return err("PB001");
        }
        let now = self.now_hour;
        let u = self.users.get_mut(user).expect("power above zero means an account");
        let mut order: Vec<usize> = (0..u.grants.len()).filter(|&i| u.grants[i].expires_at_hour > now && u.grants[i].remaining > 0).collect();
        order.sort_by_key(|&i| (u.grants[i].expires_at_hour, i));
        let mut left = amount;
        for i in order {
            let take = left.min(u.grants[i].remaining);
            u.grants[i].remaining -= take;
            left -= take;
        }
        u.permanent -= left;
        if let Some(key) = key {
            u.keys.insert(key.to_owned(), (-1, amount, account_type.to_owned(), available - amount));
        }
        Outcome::Ok(available - amount)
    }
}

fn cents(text: &str) -> Cents {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = format!("{:0<2}", fraction.trim_end_matches('0'));
    assert!(fraction.len() == 2, "more than 2 decimals: {text}");
    whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap() * if whole.starts_with('-') { -1 } else { 1 }
}

fn amount_text(c: Cents) -> String {
    format!("{}.{:02}", c / 100, (c % 100).abs())
}

fn run(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Outcome {
    match client.query_one(sql, params) {
        Ok(row) => Outcome::Ok(cents(&row.get::<_, String>(0))),
        Err(e) => Outcome::Err(e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("{e}"))),
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn check_sequence(seed: u64, operations: usize) {
    let db = fresh_database(&format!("model{seed}"));
    let mut c = connect(&db);
    let mut model = Model::default();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let users = ["ann", "bob", "cid", "dee"];
    for step in 0..operations {
        let r = xorshift(&mut state);
        let user = users[(r % 4) as usize];
        let amount: Cents = [25, 50, 100, 125, 200, 375, 500, 1000][((r >> 8) % 8) as usize];
        let key = ((r >> 16) % 3 == 0).then(|| format!("k{}", (r >> 20) % 30));
        let key = key.as_deref();
        let what = (r >> 28) % 20;
        let (description, expected, actual) = match what {
            0..=3 => (
                format!("add {user} {amount} key {key:?}"),
                model.add(user, amount, None, key),
                run(&mut c, "SELECT balance_after::text FROM billing_add($1, $2::text::numeric, 'RECHARGE_INC', 'RECHARGE', 'model', idempotency_key => $3)",
                    &[&user, &amount_text(amount), &key]),
            ),
            4..=6 => {
                let hours = 1 + ((r >> 32) % 48) as i64;
                (
                    format!("gift {user} {amount} for {hours}h key {key:?}"),
                    model.add(user, amount, Some(hours), key),
                    run(&mut c, "SELECT balance_after::text FROM billing_add($1, $2::text::numeric, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'model',
                                        expire_at => now() + make_interval(hours => $3), idempotency_key => $4)",
                        &[&user, &amount_text(amount), &(hours as i32), &key]),
                )
            }
            7..=15 => {
                let account_type = if what == 15 { "PLUGIN_DEC" } else { "CHAT_DEC" };
                (
                    format!("deduct {user} {amount} as {account_type} key {key:?}"),
                    model.deduct(user, amount, account_type, key),
                    run(&mut c, "SELECT balance_after::text FROM billing_deduct($1, $2::text::numeric, $3, 'CHAT', 'model', idempotency_key => $4)",
                        &[&user, &amount_text(amount), &account_type, &key]),
                )
            }
            16 => (
                format!("deduct {user} 0"),
                model.deduct(user, 0, "CHAT_DEC", None),
                run(&mut c, "SELECT balance_after::text FROM billing_deduct($1, 0, 'CHAT_DEC', 'CHAT', 'model')", &[&user]),
            ),
            17 => (
                format!("deduct {user} {amount} as RECHARGE_INC"),
                model.deduct(user, amount, "RECHARGE_INC", key),
                run(&mut c, "SELECT balance_after::text FROM billing_deduct($1, $2::text::numeric, 'RECHARGE_INC', 'CHAT', 'model', idempotency_key => $3)",
                    &[&user, &amount_text(amount), &key]),
            ),
            _ => {
                // time passes: every grant's expiry moves that many hours closer
                let hours = 1 + ((r >> 32) % 12) as i32;
                model.now_hour += hours as i64;
                c.execute("UPDATE billing.grant_store SET expire_at = expire_at - make_interval(hours => $1)", &[&hours]).unwrap();
                c.execute("UPDATE billing.accounts SET next_expiry = next_expiry - make_interval(hours => $1)", &[&hours]).unwrap();
                continue;
            }
        };
        assert_eq!(actual, expected, "seed {seed}, step {step}: {description}");
        let power = run(&mut c, "SELECT billing_power($1)::text", &[&user]);
        assert_eq!(power, Outcome::Ok(model.available(user)), "seed {seed}, step {step}: power of {user} after {description}");
    }
    // every grant and permanent balance as the model has them
    for (name, user) in &model.users {
        let grants: Vec<Cents> = c
            .query("SELECT remaining::text FROM billing.grants WHERE user_id = $1 ORDER BY id", &[name])
            .unwrap()
            .iter()
            .map(|row| cents(&row.get::<_, String>(0)))
            .collect();
        assert_eq!(grants, user.grants.iter().map(|g| g.remaining).collect::<Vec<_>>(), "seed {seed}: grants of {name}");
        let permanent = run(&mut c, "SELECT permanent::text FROM billing.accounts WHERE user_id = $1", &[name]);
        assert_eq!(permanent, Outcome::Ok(user.permanent), "seed {seed}: permanent of {name}");
        // one entry after the last time travel, so that balance_after is checked against today's grants
        c.execute("SELECT billing_add($1, 1, 'RECHARGE_INC', 'RECHARGE', 'model')", &[name]).unwrap();
    }
    assert_eq!(text(&mut c, "SELECT count(*)::text FROM billing_verify()"), "0", "seed {seed}");
}

#[test]
fn the_extension_agrees_with_the_model() {
    for seed in 1..=8 {
        check_sequence(seed, 500);
    }
}
