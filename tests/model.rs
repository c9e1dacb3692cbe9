//! Model-based test: a pure-Rust model of the billing rules and the real
//! extension run the same random operation sequences (credits, gifts that
//! expire, deducts, idempotent repeats and reused keys, bad input, time moving
//! past expiries, holds settled above and below what they held, with and
//! without debt, releases, repeated and conflicting closes, full and partial
//! refunds, refunds into expired grants) and must agree on every result,
//! error code and balance.
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

/// Where power came from: (grant index, amount) in order, and the permanent part.
#[derive(Clone, Default, Debug)]
struct Funding {
    grants: Vec<(usize, Cents)>,
    permanent: Cents,
}

impl Funding {
    fn total(&self) -> Cents {
        self.permanent + self.grants.iter().map(|(_, a)| a).sum::<Cents>()
    }
}

struct Hold {
    funding: Funding,
    /// None while open; Some((actual, balance_after of its entry)) once settled, Some((0, 0)) once released.
    closed: Option<(Cents, Cents)>,
}

/// A debit entry that can be refunded: what it took, and what refunds gave back so far.
struct Debit {
    funding: Funding,
    refunded: Funding,
}

#[derive(Default)]
struct User {
    permanent: Cents,
    grants: Vec<Grant>,
    holds: Vec<Hold>,
    debits: Vec<Debit>,
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
            Some(hours) => {
                // a gift to a user in debt pays the debt first
                let pays_debt = amount.min((-u.permanent).max(0));
                u.permanent += pays_debt;
                u.grants.push(Grant { remaining: amount - pays_debt, expires_at_hour: now + hours })
            }
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
        let u = self.users.get_mut(user).expect("power above zero means an account");
        let funding = take(u, self.now_hour, amount, false);
        u.debits.push(Debit { funding, refunded: Funding::default() });
        if let Some(key) = key {
            u.keys.insert(key.to_owned(), (-1, amount, account_type.to_owned(), available - amount));
        }
        Outcome::Ok(available - amount)
    }
}

/// Takes `amount` in deduct order (live grants by expiry, then age; then the permanent
/// balance, below zero only if `debt`); the caller has checked it is there unless `debt`.
fn take(u: &mut User, now: i64, amount: Cents, debt: bool) -> Funding {
    let mut order: Vec<usize> = (0..u.grants.len()).filter(|&i| u.grants[i].expires_at_hour > now && u.grants[i].remaining > 0).collect();
    order.sort_by_key(|&i| (u.grants[i].expires_at_hour, i));
    let mut left = amount;
    let mut funding = Funding::default();
    for i in order {
        let take = left.min(u.grants[i].remaining);
        if take > 0 {
            u.grants[i].remaining -= take;
            funding.grants.push((i, take));
            left -= take;
        }
    }
    assert!(debt || left <= u.permanent, "the caller checked the power is there");
    u.permanent -= left;
    funding.permanent = left;
    funding
}

/// Sums the parts of each grant, keeping the order grants first appear in.
fn merge(parts: Vec<(usize, Cents)>) -> Vec<(usize, Cents)> {
    let mut merged: Vec<(usize, Cents)> = Vec::new();
    for (i, a) in parts {
        match merged.iter_mut().find(|(m, _)| *m == i) {
            Some((_, total)) => *total += a,
            None => merged.push((i, a)),
        }
    }
    merged.retain(|(_, a)| *a != 0);
    merged
}

impl Model {
    fn hold(&mut self, user: &str, amount: Cents) -> Outcome {
        if amount > self.available(user) || !self.users.contains_key(user) {
            return err("PB001");
        }
        let u = self.users.get_mut(user).unwrap();
        let funding = take(u, self.now_hour, amount, false);
        u.holds.push(Hold { funding, closed: None });
        Outcome::Ok(0) // the hold row; the power after it is compared after every step
    }

    fn settle(&mut self, user: &str, n: usize, actual: Cents, debt: bool) -> Outcome {
        let available = self.available(user);
        let now = self.now_hour;
        let u = self.users.get_mut(user).unwrap();
        match u.holds[n].closed {
            Some((settled, balance_after)) if settled == actual && settled > 0 => return Outcome::Ok(balance_after),
            Some(_) => return err("PB004"),
            None => {}
        }
        let funding = u.holds[n].funding.clone();
        let held = funding.total();
        // charge in the order the hold took it, give back the rest
        let mut left = actual.min(held);
        let mut charged = Funding::default();
        for (i, reserved) in &funding.grants {
            let c = left.min(*reserved);
            left -= c;
            if c > 0 {
                charged.grants.push((*i, c));
            }
            u.grants[*i].remaining += reserved - c;
        }
        charged.permanent = left.min(funding.permanent);
        u.permanent += funding.permanent - charged.permanent;
        if actual > held {
            let extra = actual - held;
            if extra > available && !debt {
                // PB001: undo the give-back, the hold stays as it was
                for (i, reserved) in &funding.grants {
                    let c = charged.grants.iter().find(|(g, _)| g == i).map_or(0, |(_, c)| *c);
                    u.grants[*i].remaining -= reserved - c;
                }
                u.permanent -= funding.permanent - charged.permanent;
                return err("PB001");
            }
            let more = take(u, now, extra, true);
            charged.grants.extend(more.grants);
            charged.permanent += more.permanent;
        }
        charged.grants = merge(charged.grants);
        let balance_after = self.available(user);
        let u = self.users.get_mut(user).unwrap();
        u.holds[n].closed = Some((actual, balance_after));
        u.debits.push(Debit { funding: charged, refunded: Funding::default() });
        Outcome::Ok(balance_after)
    }

    fn release(&mut self, user: &str, n: usize) -> Outcome {
        let u = self.users.get_mut(user).unwrap();
        match u.holds[n].closed {
            Some((0, _)) => return Outcome::Ok(0),
            Some(_) => return err("PB004"),
            None => {}
        }
        let funding = u.holds[n].funding.clone();
        for (i, reserved) in &funding.grants {
            u.grants[*i].remaining += reserved;
        }
        u.permanent += funding.permanent;
        u.holds[n].closed = Some((0, 0));
        Outcome::Ok(0)
    }

    fn refund(&mut self, user: &str, n: usize, amount: Option<Cents>) -> Outcome {
        let now = self.now_hour;
        let u = self.users.get_mut(user).unwrap();
        let debit = &u.debits[n];
        let refunded_from = |i: usize| debit.refunded.grants.iter().filter(|(g, _)| *g == i).map(|(_, a)| *a).sum::<Cents>();
        let left_permanent = debit.funding.permanent - debit.refunded.permanent;
        let left_grants: Vec<(usize, Cents)> = debit.funding.grants.iter().map(|(i, took)| (*i, took - refunded_from(*i))).collect();
        let refundable = left_permanent + left_grants.iter().map(|(_, a)| a).sum::<Cents>();
        let amount = amount.unwrap_or(refundable);
        if refundable == 0 || amount > refundable {
            return err("PB005");
        }
        // permanent first, then the grants from the last spent back
        let mut left = amount;
        let to_permanent = left.min(left_permanent);
        left -= to_permanent;
        let mut back = Funding { permanent: to_permanent, grants: Vec::new() };
        for (i, can) in left_grants.iter().rev() {
            let give = left.min(*can);
            if give > 0 {
                back.grants.push((*i, give));
                left -= give;
            }
        }
        u.permanent += back.permanent;
        for (i, give) in &back.grants {
            // power refunded into an expired grant expires again at once
            if u.grants[*i].expires_at_hour > now {
                u.grants[*i].remaining += give;
            }
        }
        let debit = &mut u.debits[n];
        debit.refunded.permanent += back.permanent;
        debit.refunded.grants.extend(back.grants);
        Outcome::Ok(self.available(user))
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

/// Time passes: every grant's expiry moves some hours closer, in the model and in the database.
fn continue_time(model: &mut Model, c: &mut Client, r: u64) -> (String, Outcome, Outcome) {
    let hours = 1 + ((r >> 32) % 12) as i32;
    model.now_hour += hours as i64;
    c.execute("UPDATE billing.grant_store SET expire_at = expire_at - make_interval(hours => $1)", &[&hours]).unwrap();
    c.execute("UPDATE billing.accounts SET next_expiry = next_expiry - make_interval(hours => $1)", &[&hours]).unwrap();
    (format!("time passes {hours}h"), Outcome::Ok(0), Outcome::Ok(0))
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
        let what = (r >> 28) % 32;
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
            18 | 19 => continue_time(&mut model, &mut c, r),
            20..=23 => {
                // a hold of `amount`, then (maybe later) a settle or release of one of the user's holds
                (
                    format!("hold {user} {amount}"),
                    model.hold(user, amount),
                    run(&mut c, "SELECT '0'::text FROM billing_hold($1, $2::text::numeric, 'CHAT_DEC', 'CHAT', 'model')",
                        &[&user, &amount_text(amount)]),
                )
            }
            24..=28 => {
                let holds = model.users.get(user).map_or(0, |u| u.holds.len());
                if holds == 0 {
                    continue;
                }
                let n = ((r >> 36) as usize) % holds;
                let hold_id: i64 = c
                    .query_one("SELECT hold_id FROM billing.holds WHERE user_id = $1 ORDER BY hold_id OFFSET $2 LIMIT 1", &[&user, &(n as i64)])
                    .unwrap()
                    .get(0);
                if what == 28 {
                    (
                        format!("release {user} hold {n}"),
                        model.release(user, n),
                        run(&mut c, "SELECT '0'::text FROM billing_release($1)", &[&hold_id]),
                    )
                } else {
                    // settle below, at or above what was held; sometimes allowing a debt
                    let actual: Cents = [25, 100, 300, 600, 1500][((r >> 40) % 5) as usize];
                    let debt = what == 27;
                    (
                        format!("settle {user} hold {n} for {actual} debt {debt}"),
                        model.settle(user, n, actual, debt),
                        run(&mut c, "SELECT balance_after::text FROM billing_settle($1, $2::text::numeric, allow_debt => $3)",
                            &[&hold_id, &amount_text(actual), &debt]),
                    )
                }
            }
            _ => {
                let debits = model.users.get(user).map_or(0, |u| u.debits.len());
                if debits == 0 {
                    continue;
                }
                let n = ((r >> 36) as usize) % debits;
                let log_id: i64 = c
                    .query_one(
                        "SELECT id FROM billing.account_log WHERE user_id = $1 AND account_type IN ('CHAT_DEC', 'PLUGIN_DEC')
                          ORDER BY seq OFFSET $2 LIMIT 1",
                        &[&user, &(n as i64)],
                    )
                    .unwrap()
                    .get(0);
                let part = ((r >> 40) % 2 == 0).then_some(amount / 2);
                (
                    format!("refund {user} debit {n} amount {part:?}"),
                    model.refund(user, n, part),
                    run(&mut c, "SELECT balance_after::text FROM billing_refund($1, $2::text::numeric)",
                        &[&log_id, &part.map(amount_text)]),
                )
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
