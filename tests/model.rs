//! Model-based test: a pure-Rust model of the billing rules and the real
//! extension run the same random operation sequences and must agree on every
//! result, error code, balance, and on the funding `detail` of every ledger
//! entry (which grants and how much of the permanent balance it moved).
//!
//! The operations: credits, gifts that expire (some of a subscription), deducts,
//! idempotent repeats and keys reused across adds, deducts, holds and refunds,
//! bad input, time moving past the expiries of grants and the ttls of holds,
//! holds settled below, at and above what they held, with and without debt,
//! or for 0, releases, repeated and conflicting closes, full and partial refunds of
//! deducts, settles, manual corrections and revocations (also into expired
//! grants), billing_revoke_subscription, billing_expire and billing_adjust.
//! Spending limits: deducts and holds name scopes (some bad), limits of a scope or
//! '*' are set, changed and removed with lifetime caps and windows of 1 second,
//! 2 seconds and 1 hour, so periods end in real time during a run; each step runs
//! in its own transaction, whose now() (the time the limits see) the model is
//! given, as it is given amounts. PB008 and what settles, releases, lapsed holds and
//! refunds give back (nothing once the period is over) must agree, and at the end
//! every limit's counters.
//!
//! Sequences come from seeds, so a failure replays exactly. The seeds and the
//! number of operations come from the environment:
//!   BILLING_MODEL_SEEDS   seeds to run: "1-64" (default), "5001-5100", "7", "3,9,20-25"
//!   BILLING_MODEL_OPS     operations per seed (default 1000)
//!   BILLING_MODEL_JOBS    seeds run at once (default 2)
//! `make test-model` runs this test alone; `make test-long` runs 2,000 seeds.
//! A failure (a disagreement, or a panic inside the model) names its seed and step.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::*;

/// Amounts in hundredths of a unit of power.
type Cents = i64;

struct Grant {
    remaining: Cents,
    expires_at_hour: i64,
    /// The step that set expires_at: of two grants that expire in the same model hour,
    /// the one whose expiry was set earlier (in real time) expires first.
    expiry_set_at: usize,
    subscription: Option<String>,
}

/// Where power came from (or went): (grant index, amount) in order, and the permanent part.
#[derive(Clone, Default, Debug)]
struct Funding {
    grants: Vec<(usize, Cents)>,
    permanent: Cents,
}

impl Funding {
    fn total(&self) -> Cents {
        self.permanent + self.grants.iter().map(|(_, a)| a).sum::<Cents>()
    }

    /// As the test's SQL function model_funding renders an entry's detail: "p<cents>",
    /// then " g<grant index>:<cents>" per grant (summed, nonzero, by index), then
    /// " h<hold index>" for a settle.
    fn render(&self, hold: Option<usize>) -> String {
        let mut grants = merge(self.grants.clone());
        grants.sort();
        let mut out = format!("p{}", self.permanent);
        for (i, a) in grants {
            out.push_str(&format!(" g{i}:{a}"));
        }
        if let Some(h) = hold {
            out.push_str(&format!(" h{h}"));
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum HoldState {
    Open,
    /// settled for this amount, with this entry
    Settled(Cents),
    Released,
    /// its ttl passed while it was open
    Lapsed,
}

struct Hold {
    amount: Cents,
    /// the scopes it named, and when it was made (real time, microseconds)
    scopes: Vec<String>,
    made_us: i64,
    account_type: String,
    funding: Funding,
    expires_at_hour: i64,
    state: HoldState,
    /// the settle's entry, once settled
    entry: Option<Outcome>,
}

/// A debit entry that can be refunded: what it took, and what refunds gave back so far.
struct Debit {
    funding: Funding,
    refunded: Funding,
    /// a charge (deduct, settle): its scopes and when it was made; None for the others
    charge: Option<(Vec<String>, i64)>,
}

/// A spending limit, with the counters of its stored period (times in microseconds).
#[derive(Clone, Debug)]
struct Limit {
    cap: Cents,
    /// None: a lifetime cap
    window_us: Option<i64>,
    anchor_us: i64,
    period_start_us: i64,
    /// None: never ends
    period_end_us: Option<i64>,
    spent: Cents,
    held: Cents,
}

impl Limit {
    /// Starts the period that contains `now_us` when the stored one is over.
    fn roll(&mut self, now_us: i64) {
        if let (Some(window), Some(end)) = (self.window_us, self.period_end_us) {
            if now_us >= end {
                self.period_start_us = self.anchor_us + (now_us - self.anchor_us).div_euclid(window) * window;
                self.period_end_us = Some(self.period_start_us + window);
                self.spent = 0;
                self.held = 0;
            }
        }
    }

    /// Whether something counted at `made_us` was counted in the stored period.
    fn in_period(&self, made_us: i64) -> bool {
        made_us >= self.period_start_us && self.period_end_us.is_none_or(|end| made_us < end)
    }
}

/// What a ledger idempotency key was used for, and the entry it returns on a repeat.
struct KeyUse {
    direction: i16,
    amount: Cents,
    account_type: String,
    refund_of: Option<usize>,
    entry: Outcome,
}

#[derive(Default)]
struct User {
    permanent: Cents,
    grants: Vec<Grant>,
    holds: Vec<Hold>,
    debits: Vec<Debit>,
    /// ledger keys (billing_add, billing_deduct, billing_refund)
    keys: HashMap<String, KeyUse>,
    /// hold keys (billing_hold): a namespace of their own
    hold_keys: HashMap<String, usize>,
    /// the debt floor (billing_set_debt_limit)
    max_debt: Option<Cents>,
    /// spending limits by scope
    limits: BTreeMap<String, Limit>,
}

#[derive(Default)]
struct Model {
    now_hour: i64,
    /// now() of the step's transaction, in microseconds: the time limits count in
    now_us: i64,
    /// the step being run
    step: usize,
    users: BTreeMap<String, User>,
}

/// How often a run reached states that are rare but matter, printed with the result,
/// so that a run that never reached them is visible.
const SEEN: [&str; 12] = [
    "settles above the hold into a debt",
    "of them by a user already in debt beside a live grant",
    "holds lapsed",
    "hold key repeats",
    "refunds into an expired grant",
    "revocation entries",
    "expiry entries",
    "settles stopped by the debt limit",
    "charges stopped by a limit (PB008)",
    "periods that ended and started afresh",
    "give-backs to a period that was over",
    "settles and refunds that gave back to their period",
];
static SEEN_COUNTS: [AtomicUsize; 12] = [const { AtomicUsize::new(0) }; 12];

fn seen(what: usize) {
    SEEN_COUNTS[what].fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// A plain value: a hold's index, a release's status, a count.
    Ok(i64),
    /// A ledger entry: its balance_after and its funding, rendered.
    Entry(Cents, String),
    /// Several entries, each "user amount balance_after funding".
    Entries(Vec<String>),
    Err(String),
}

fn err(code: &str) -> Outcome {
    Outcome::Err(code.to_owned())
}

fn entry(balance_after: Cents, funding: &Funding, hold: Option<usize>) -> Outcome {
    Outcome::Entry(balance_after, funding.render(hold))
}

/// Checks a charge's scopes as billing_deduct and billing_hold do: None when fine, or
/// the SQLSTATE. `None` elements stand for NULL.
fn bad_scopes(scopes: &Option<Vec<Option<String>>>) -> Option<Outcome> {
    let scopes = scopes.as_ref()?;
    if scopes.iter().any(Option::is_none) {
        return Some(err("22004"));
    }
    scopes.iter().flatten().any(|s| s == "*").then(|| err("22023"))
}

fn scope_list(scopes: &Option<Vec<Option<String>>>) -> Vec<String> {
    let mut list: Vec<String> = scopes.iter().flatten().flatten().cloned().collect();
    list.sort();
    list.dedup();
    list
}

impl Model {
    /// Whether a charge that adds `spent` and `held` now, and gives back `given_back`
    /// (a hold made at that time that a settle closes), would take one of the user's
    /// limits of `scopes` or '*' above its cap. Rolls the limits to now.
    fn capped(&mut self, user: &str, scopes: &[String], spent: Cents, held: Cents, given_back: Option<(Cents, i64)>) -> bool {
        let now = self.now_us;
        let Some(u) = self.users.get_mut(user) else { return false };
        let mut capped = false;
        for (scope, limit) in u.limits.iter_mut() {
            if scope != "*" && !scopes.contains(scope) {
                continue;
            }
            let before = limit.period_end_us;
            limit.roll(now);
            if limit.period_end_us != before {
                seen(9);
            }
            let back = given_back.filter(|(_, made)| limit.in_period(*made)).map_or(0, |(amount, _)| amount);
            let net = spent + held - back;
            if net > 0 && limit.spent + limit.held + net > limit.cap {
                capped = true;
            }
        }
        if capped {
            seen(8);
        }
        capped
    }

    /// Counts a charge the caller found not capped: spent and held now, less a hold given back.
    fn count(&mut self, user: &str, scopes: &[String], spent: Cents, held: Cents, given_back: Option<(Cents, i64)>) {
        let now = self.now_us;
        let Some(u) = self.users.get_mut(user) else { return };
        for (scope, limit) in u.limits.iter_mut() {
            if scope != "*" && !scopes.contains(scope) {
                continue;
            }
            limit.roll(now);
            limit.spent += spent;
            limit.held += held;
            if let Some((amount, made)) = given_back {
                if limit.in_period(made) {
                    limit.held -= amount;
                } else {
                    seen(10);
                }
            }
        }
    }

    /// Gives back what a charge counted at `made_us` counted (spent or held), to the
    /// limits whose current period it was counted in. `roll`: as a write does (a
    /// refund, a release); a lapsed hold is given back as it stands.
    fn give_back_count(&mut self, user: &str, scopes: &[String], made_us: i64, spent: Cents, held: Cents, roll: bool) {
        let now = self.now_us;
        let Some(u) = self.users.get_mut(user) else { return };
        for (scope, limit) in u.limits.iter_mut() {
            if scope != "*" && !scopes.contains(scope) {
                continue;
            }
            if roll {
                limit.roll(now);
            }
            if limit.in_period(made_us) {
                limit.spent -= spent;
                limit.held -= held;
                seen(11);
            } else {
                seen(10);
            }
        }
    }

    /// billing_set_limit: Ok(remaining in cents), Ok(-1) once removed.
    fn set_limit(&mut self, user: &str, scope: &str, cap: Option<Cents>, window_us: Option<i64>) -> Outcome {
        let now = self.now_us;
        let u = match (self.users.get_mut(user), cap) {
            (None, None) => return Outcome::Ok(-1),
            (Some(u), _) => u,
            (None, Some(_)) => self.users.entry(user.to_owned()).or_default(),
        };
        let Some(cap) = cap else {
            u.limits.remove(scope);
            return Outcome::Ok(-1);
        };
        match u.limits.get_mut(scope) {
            Some(limit) if limit.window_us == window_us => limit.cap = cap,
            _ => {
                // open holds made in the new period: none, as it starts now
                let limit = Limit {
                    cap,
                    window_us,
                    anchor_us: now,
                    period_start_us: now,
                    period_end_us: window_us.map(|w| now + w),
                    spent: 0,
                    held: 0,
                };
                u.limits.insert(scope.to_owned(), limit);
            }
        }
        let limit = u.limits.get_mut(scope).unwrap();
        limit.roll(now);
        Outcome::Ok((limit.cap - limit.spent - limit.held).max(0))
    }

    /// (scope, spent, held) of every limit of the user as billing_limits shows it now.
    fn limits_now(&mut self, user: &str) -> Vec<String> {
        let now = self.now_us;
        let Some(u) = self.users.get_mut(user) else { return Vec::new() };
        u.limits
            .iter_mut()
            .map(|(scope, limit)| {
                limit.roll(now);
                format!("{scope} {} {}", limit.spent, limit.held)
            })
            .collect()
    }

    fn available(&self, user: &str) -> Cents {
        self.users.get(user).map_or(0, |u| {
            u.permanent + u.grants.iter().filter(|g| g.expires_at_hour > self.now_hour).map(|g| g.remaining).sum::<Cents>()
        })
    }

    fn replay(&self, user: &str, key: Option<&str>, direction: i16, amount: Cents, account_type: &str) -> Option<Outcome> {
        let used = self.users.get(user)?.keys.get(key?)?;
        Some(if (used.direction, used.amount, used.account_type.as_str()) == (direction, amount, account_type) {
            used.entry.clone()
        } else {
            err("PB003")
        })
    }

    fn remember(&mut self, user: &str, key: Option<&str>, used: KeyUse) {
        if let Some(key) = key {
            self.users.get_mut(user).unwrap().keys.insert(key.to_owned(), used);
        }
    }

    /// billing_add: a permanent credit (`gift_hours` None) or a gift that expires.
    fn add(&mut self, user: &str, amount: Cents, account_type: &str, gift: Option<(i64, Option<String>)>, key: Option<&str>) -> Outcome {
        if amount <= 0 {
            return err("22023");
        }
        if let Some(replayed) = self.replay(user, key, 1, amount, account_type) {
            return replayed;
        }
        let balance_after = self.available(user) + amount;
        let (now, step) = (self.now_hour, self.step);
        let u = self.users.entry(user.to_owned()).or_default();
        let funding = match gift {
            Some((hours, subscription)) => {
                // a gift to a user in debt pays the debt first
                let pays_debt = amount.min((-u.permanent).max(0));
                u.permanent += pays_debt;
                u.grants.push(Grant { remaining: amount - pays_debt, expires_at_hour: now + hours, expiry_set_at: step, subscription });
                Funding { permanent: pays_debt, grants: vec![(u.grants.len() - 1, amount - pays_debt)] }
            }
            None => {
                u.permanent += amount;
                Funding { permanent: amount, grants: Vec::new() }
            }
        };
        let result = entry(balance_after, &funding, None);
        let used = KeyUse { direction: 1, amount, account_type: account_type.to_owned(), refund_of: None, entry: result.clone() };
        self.remember(user, key, used);
        result
    }

    /// billing_deduct, or with `scopes` None billing_adjust's debit (not a charge).
    fn deduct(&mut self, user: &str, amount: Cents, account_type: &str, key: Option<&str>, scopes: Option<Vec<Option<String>>>, charge: bool) -> Outcome {
        if amount <= 0 {
            return err("22023");
        }
        if let Some(bad) = bad_scopes(&scopes) {
            return bad;
        }
        if !["CHAT_DEC", "PLUGIN_DEC", "SYSTEM_MANUAL_DEC"].contains(&account_type) {
            return err("PB002");
        }
        if let Some(replayed) = self.replay(user, key, -1, amount, account_type) {
            return replayed;
        }
        let scopes = scope_list(&scopes);
        if charge && self.capped(user, &scopes, amount, 0, None) {
            return err("PB008");
        }
        let available = self.available(user);
        if amount > available {
            return err("PB001");
        }
        if charge {
            self.count(user, &scopes, amount, 0, None);
        }
        let made = self.now_us;
        let u = self.users.get_mut(user).expect("power above zero means an account");
        let funding = take(u, self.now_hour, amount, false);
        let result = entry(available - amount, &funding, None);
        u.debits.push(Debit { funding, refunded: Funding::default(), charge: charge.then(|| (scopes, made)) });
        let used = KeyUse { direction: -1, amount, account_type: account_type.to_owned(), refund_of: None, entry: result.clone() };
        self.remember(user, key, used);
        result
    }
}

/// Takes `amount` in deduct order (live grants by expiry, then age; then the permanent
/// balance, below zero only if `debt`); the caller has checked it is there unless `debt`.
fn take(u: &mut User, now: i64, amount: Cents, debt: bool) -> Funding {
    let mut order: Vec<usize> = (0..u.grants.len()).filter(|&i| u.grants[i].expires_at_hour > now && u.grants[i].remaining > 0).collect();
    order.sort_by_key(|&i| expiry_order(u, i));
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
    // In debt, live grants can cover all of it (left is 0) while permanent is below zero.
    assert!(debt || left == 0 || left <= u.permanent, "the caller checked the power is there");
    u.permanent -= left;
    funding.permanent = left;
    funding
}

/// Grants in the order they expire (and are spent): expire_at, then id.
fn expiry_order(u: &User, i: usize) -> (i64, usize, usize) {
    (u.grants[i].expires_at_hour, u.grants[i].expiry_set_at, i)
}

/// Gives a funding back to where it came from (grants keep their expiry, expired or not).
fn give_back(u: &mut User, funding: &Funding) {
    for (i, reserved) in &funding.grants {
        u.grants[*i].remaining += reserved;
    }
    u.permanent += funding.permanent;
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
    /// billing_hold; Ok(the hold's index among the user's holds).
    fn hold(&mut self, user: &str, amount: Cents, account_type: &str, ttl_hours: i64, key: Option<&str>, scopes: Option<Vec<Option<String>>>) -> Outcome {
        if let Some(bad) = bad_scopes(&scopes) {
            return bad;
        }
        let scopes = scope_list(&scopes);
        if let Some(n) = key.and_then(|k| self.users.get(user)?.hold_keys.get(k).copied()) {
            let earlier = &self.users[user].holds[n];
            seen(3);
            return if earlier.amount == amount && earlier.account_type == account_type { Outcome::Ok(n as i64) } else { err("PB003") };
        }
        if self.capped(user, &scopes, 0, amount, None) {
            return err("PB008");
        }
        if amount > self.available(user) || !self.users.contains_key(user) {
            return err("PB001");
        }
        self.count(user, &scopes, 0, amount, None);
        let (now, made_us) = (self.now_hour, self.now_us);
        let u = self.users.get_mut(user).unwrap();
        let funding = take(u, now, amount, false);
        u.holds.push(Hold {
            amount,
            scopes,
            made_us,
            account_type: account_type.to_owned(),
            funding,
            expires_at_hour: now + ttl_hours,
            state: HoldState::Open,
            entry: None,
        });
        let n = u.holds.len() - 1;
        if let Some(key) = key {
            u.hold_keys.insert(key.to_owned(), n);
        }
        Outcome::Ok(n as i64)
    }

    fn settle(&mut self, user: &str, n: usize, actual: Cents, debt: bool) -> Outcome {
        if actual == 0 {
            // a release that returns no entry
            return match self.users[user].holds[n].state {
                HoldState::Open | HoldState::Released => {
                    self.release(user, n);
                    Outcome::Ok(0)
                }
                _ => err("PB004"),
            };
        }
        let available = self.available(user);
        let now = self.now_hour;
        let u = self.users.get_mut(user).unwrap();
        match u.holds[n].state {
            HoldState::Settled(settled) if settled == actual => return u.holds[n].entry.clone().unwrap(),
            HoldState::Open => {}
            _ => return err("PB004"),
        }
        let (hold_scopes, hold_amount, hold_made) = (u.holds[n].scopes.clone(), u.holds[n].amount, u.holds[n].made_us);
        if self.capped(user, &hold_scopes, actual, 0, Some((hold_amount, hold_made))) {
            return err("PB008");
        }
        let u = self.users.get_mut(user).unwrap();
        let funding = u.holds[n].funding.clone();
        let held = funding.total();
        if actual > held && actual - held > available && !debt {
            // PB001: the hold stays as it was
            return err("PB001");
        }
        if let (true, Some(max_debt)) = (debt && actual > held, u.max_debt) {
            // the debt floor: what live grants do not cover comes from the permanent
            // balance, which may not go below -max_debt (PB001, the hold as it was)
            let live: Cents = u.grants.iter().filter(|g| g.expires_at_hour > now).map(|g| g.remaining).sum();
            let from_permanent = (actual - held - live).max(0);
            if from_permanent > 0 && u.permanent - from_permanent < -max_debt {
                seen(7);
                return err("PB001");
            }
        }
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
            if actual - held > available {
                seen(0);
                if u.permanent < 0 && u.grants.iter().any(|g| g.expires_at_hour > now && g.remaining > 0) {
                    seen(1);
                }
            }
            // only the difference, in deduct order (below zero with allow_debt)
            let more = take(u, now, actual - held, true);
            charged.grants.extend(more.grants);
            charged.permanent += more.permanent;
        }
        charged.grants = merge(charged.grants);
        let balance_after = self.available(user);
        self.count(user, &hold_scopes, actual, 0, Some((hold_amount, hold_made)));
        let made = self.now_us;
        let u = self.users.get_mut(user).unwrap();
        let result = entry(balance_after, &charged, Some(n));
        u.holds[n].state = HoldState::Settled(actual);
        u.holds[n].entry = Some(result.clone());
        u.debits.push(Debit { funding: charged, refunded: Funding::default(), charge: Some((hold_scopes, made)) });
        result
    }

    /// billing_release; Ok(1) when the hold is (now) released, Ok(2) when its ttl had passed.
    fn release(&mut self, user: &str, n: usize) -> Outcome {
        let u = self.users.get_mut(user).unwrap();
        match u.holds[n].state {
            HoldState::Released => Outcome::Ok(1),
            HoldState::Lapsed => Outcome::Ok(2),
            HoldState::Settled(_) => err("PB004"),
            HoldState::Open => {
                let funding = u.holds[n].funding.clone();
                give_back(u, &funding);
                u.holds[n].state = HoldState::Released;
                let (scopes, amount, made) = (u.holds[n].scopes.clone(), u.holds[n].amount, u.holds[n].made_us);
                self.give_back_count(user, &scopes, made, 0, amount, true);
                Outcome::Ok(1)
            }
        }
    }

    fn refund(&mut self, user: &str, n: usize, amount: Option<Cents>, key: Option<&str>) -> Outcome {
        let now = self.now_hour;
        if let Some(used) = key.and_then(|k| self.users[user].keys.get(k)) {
            let same = used.account_type == "REFUND_INC" && used.refund_of == Some(n) && amount.is_none_or(|a| a == used.amount);
            return if same { used.entry.clone() } else { err("PB003") };
        }
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
            } else {
                seen(4);
            }
        }
        let debit = &mut u.debits[n];
        debit.refunded.permanent += back.permanent;
        debit.refunded.grants.extend(back.grants.iter().copied());
        if let Some((scopes, made)) = debit.charge.clone() {
            self.give_back_count(user, &scopes, made, back.total(), 0, true);
        }
        let result = entry(self.available(user), &back, None);
        let used = KeyUse { direction: 1, amount: back.total(), account_type: "REFUND_INC".to_owned(), refund_of: Some(n), entry: result.clone() };
        self.remember(user, key, used);
        result
    }

    /// Time passes: grants and holds come `hours` closer to their end; holds whose ttl
    /// passed give back what they reserved (billing_power counts it as available at once).
    fn pass(&mut self, hours: i64) {
        self.now_hour += hours;
        let now = self.now_hour;
        for u in self.users.values_mut() {
            for n in 0..u.holds.len() {
                if u.holds[n].state == HoldState::Open && u.holds[n].expires_at_hour <= now {
                    let funding = u.holds[n].funding.clone();
                    give_back(u, &funding);
                    u.holds[n].state = HoldState::Lapsed;
                    seen(2);
                    // the next write gives it back: to its period if that is still the current one,
                    // and if it is not, the limit's new period starts at zero all the same
                    let (amount, made, scopes) = (u.holds[n].amount, u.holds[n].made_us, u.holds[n].scopes.clone());
                    for (scope, limit) in u.limits.iter_mut() {
                        if (scope == "*" || scopes.contains(scope)) && limit.in_period(made) {
                            limit.held -= amount;
                        }
                    }
                }
            }
        }
    }

    /// billing_revoke_subscription: each owner (by name) loses its live grants of the
    /// subscription, one entry per grant with power left, soonest expiry first.
    fn revoke(&mut self, subscription: &str) -> Outcome {
        let (now, step) = (self.now_hour, self.step);
        let names: Vec<String> = self.users.keys().cloned().collect();
        let mut entries = Vec::new();
        for name in names {
            let mut before = self.available(&name);
            let u = self.users.get_mut(&name).unwrap();
            let mut live: Vec<usize> = (0..u.grants.len())
                .filter(|&i| u.grants[i].subscription.as_deref() == Some(subscription) && u.grants[i].expires_at_hour > now)
                .collect();
            live.sort_by_key(|&i| expiry_order(u, i));
            for i in live {
                let remaining = u.grants[i].remaining;
                if remaining > 0 {
                    before -= remaining;
                    seen(5);
                    let funding = Funding { permanent: 0, grants: vec![(i, remaining)] };
                    entries.push(format!("{name} {remaining} {before} {}", funding.render(None)));
                    u.debits.push(Debit { funding, refunded: Funding::default(), charge: None });
                }
                u.grants[i].remaining = 0;
                u.grants[i].expires_at_hour = now;
                u.grants[i].expiry_set_at = step;
            }
        }
        Outcome::Entries(entries)
    }

    /// billing_expire: one entry per expired grant with power left (lapsed holds were
    /// given back when time passed).
    fn expire(&mut self) -> Outcome {
        let now = self.now_hour;
        let names: Vec<String> = self.users.keys().cloned().collect();
        let mut entries = Vec::new();
        for name in names {
            let available = self.available(&name);
            let u = self.users.get_mut(&name).unwrap();
            let mut gone: Vec<usize> = (0..u.grants.len()).filter(|&i| u.grants[i].expires_at_hour <= now && u.grants[i].remaining > 0).collect();
            gone.sort_by_key(|&i| expiry_order(u, i));
            for i in gone {
                let remaining = u.grants[i].remaining;
                let funding = Funding { permanent: 0, grants: vec![(i, remaining)] };
                entries.push(format!("{name} {remaining} {available} {}", funding.render(None)));
                seen(6);
                u.grants[i].remaining = 0;
            }
        }
        Outcome::Entries(entries)
    }
}

fn cents(text: &str) -> Cents {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = format!("{:0<2}", fraction.trim_end_matches('0'));
    assert!(fraction.len() == 2, "more than 2 decimals: {text}");
    whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap() * if whole.starts_with('-') { -1 } else { 1 }
}

fn amount_text(c: Cents) -> String {
    format!("{}{}.{:02}", if c < 0 { "-" } else { "" }, c.abs() / 100, c.abs() % 100)
}

fn failed(e: postgres::Error) -> Outcome {
    Outcome::Err(e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| format!("{e}")))
}

/// A statement returning one ledger entry as (balance_after::text, model_funding(user_id, detail));
/// Ok(0) when it returns NULL (no entry).
fn run_entry(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Outcome {
    match client.query_one(sql, params) {
        Ok(row) => match row.get::<_, Option<String>>(0) {
            Some(balance_after) => Outcome::Entry(cents(&balance_after), row.get(1)),
            None => Outcome::Ok(0),
        },
        Err(e) => failed(e),
    }
}

/// A statement returning one bigint.
fn run_value(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Outcome {
    match client.query_one(sql, params) {
        Ok(row) => Outcome::Ok(row.get(0)),
        Err(e) => failed(e),
    }
}

/// A statement returning rows of text.
fn run_entries(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Outcome {
    match client.query(sql, params) {
        Ok(rows) => Outcome::Entries(rows.iter().map(|r| r.get(0)).collect()),
        Err(e) => failed(e),
    }
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Renders an entry's detail as Funding::render does, with grant and hold ids turned
/// into the user's indices (grants and holds in id order, as the model numbers them).
const MODEL_FUNDING: &str = "
CREATE FUNCTION public.model_funding(u text, d jsonb) RETURNS text LANGUAGE sql AS $$
SELECT 'p' || coalesce(round((d->>'permanent')::numeric * 100)::bigint, 0)
    || coalesce((SELECT string_agg(' g' || x.idx || ':' || x.c, '' ORDER BY x.idx)
                   FROM (SELECT (SELECT count(*) FROM billing.grant_store AS s
                                  WHERE s.user_id = u AND s.id < y.id) AS idx, y.c
                           FROM (SELECT (g->>'id')::bigint AS id, sum(round((g->>'amount')::numeric * 100))::bigint AS c
                                   FROM jsonb_array_elements(coalesce(d->'grants', '[]'::jsonb)) AS g
                                  GROUP BY 1) AS y
                          WHERE y.c <> 0) AS x), '')
    || CASE WHEN d ? 'hold'
            THEN ' h' || (SELECT count(*) FROM billing.holds AS h WHERE h.user_id = u AND h.hold_id < (d->>'hold')::bigint)
            ELSE '' END
$$";

/// "user amount balance_after funding" of an entry `e`, as Model::revoke and Model::expire write them.
const ENTRY_LINE: &str = "format('%s %s %s %s', e.user_id, round(e.amount * 100)::bigint, round(e.balance_after * 100)::bigint,
                                  model_funding(e.user_id, e.detail))";

const USERS: [&str; 4] = ["ann", "bob", "cid", "dee"];

thread_local! {
    /// The step being run, for the report of a panic.
    static STEP: Cell<usize> = const { Cell::new(0) };
}

/// billing_expire in the database: the entries it wrote; its result must count them
/// and the holds it ended, and a second call finds nothing left.
fn expire_in_database(c: &mut Client) -> Outcome {
    let last: i64 = c.query_one("SELECT coalesce(max(id), 0) FROM billing.account_log", &[]).unwrap().get(0);
    let holds_before: i64 = c.query_one("SELECT count(*) FROM billing.holds WHERE status = 'expired'", &[]).unwrap().get(0);
    let ended: i64 = match c.query_one("SELECT billing_expire()", &[]) {
        Ok(row) => row.get(0),
        Err(e) => return failed(e),
    };
    let holds_after: i64 = c.query_one("SELECT count(*) FROM billing.holds WHERE status = 'expired'", &[]).unwrap().get(0);
    let written = run_entries(
        c,
        &format!(
            "SELECT {ENTRY_LINE} FROM billing.account_log AS e
              WHERE e.id > $1 AND e.account_type = 'MEMBERSHIP_GIFT_EXPIRED' ORDER BY e.user_id, e.seq"
        ),
        &[&last],
    );
    let Outcome::Entries(lines) = &written else { return written };
    assert_eq!(ended, lines.len() as i64 + holds_after - holds_before, "billing_expire counts the grants and holds it ended");
    assert_eq!(c.query_one("SELECT billing_expire()", &[]).unwrap().get::<_, i64>(0), 0, "a second billing_expire finds nothing");
    written
}

fn check_sequence(seed: u64, operations: usize) {
    let db = fresh_database(&format!("model{seed}"));
    let mut c = connect(&db);
    c.batch_execute(MODEL_FUNDING).unwrap();
    let mut model = Model::default();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for step in 0..operations {
        STEP.with(|s| s.set(step));
        model.step = step;
        let r = xorshift(&mut state);
        let user = USERS[(r % 4) as usize];
        let amount: Cents = [25, 50, 100, 125, 200, 375, 500, 1000][((r >> 8) % 8) as usize];
        // one pool of keys for adds, deducts, holds and refunds
        let key = ((r >> 16) % 3 == 0).then(|| format!("k{}", (r >> 20) % 30));
        let key = key.as_deref();
        // the scopes a deduct or hold names (sometimes NULL, a duplicate, '*' or a NULL element)
        let scopes: Option<Vec<Option<String>>> = match (r >> 52) % 12 {
            0..=2 => None,
            3 => Some(vec![]),
            4 | 5 => Some(vec![Some("key:a".to_owned())]),
            6 => Some(vec![Some("key:b".to_owned()), Some("model:x".to_owned())]),
            7 => Some(vec![Some("model:x".to_owned()), Some("key:a".to_owned()), Some("model:x".to_owned())]),
            8 | 9 => Some(vec![Some("key:a".to_owned()), Some("key:b".to_owned())]),
            10 => Some(vec![Some("*".to_owned())]),
            _ => Some(vec![Some("key:a".to_owned()), None]),
        };
        let scopes = if (r >> 56) % 16 == 0 { scopes } else { scopes.filter(|s| s.iter().all(|x| x.as_deref().is_some_and(|x| x != "*"))) };
        // each step in its own transaction: its now() is the time the limits count in
        c.batch_execute("COMMIT; BEGIN").unwrap();
        model.now_us = c.query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[]).unwrap().get(0);
        let what = (r >> 28) % 46;
        let mut every_user = false;
        let (description, expected, actual) = match what {
            0..=3 => (
                format!("add {user} {amount} key {key:?}"),
                model.add(user, amount, "RECHARGE_INC", None, key),
                run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_add($1, $2::text::numeric, 'RECHARGE_INC', 'RECHARGE', 'model', idempotency_key => $3)",
                    &[&user, &amount_text(amount), &key]),
            ),
            4..=6 => {
                let hours = 1 + ((r >> 32) % 48) as i64;
                let subscription = ((r >> 44) % 4 != 0).then(|| format!("sub{}", (r >> 46) % 3));
                (
                    format!("gift {user} {amount} for {hours}h of {subscription:?} key {key:?}"),
                    model.add(user, amount, "MEMBERSHIP_GIFT_INC", Some((hours, subscription.clone())), key),
                    run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_add($1, $2::text::numeric, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'model',
                                        expire_at => now() + make_interval(hours => $3), idempotency_key => $4, subscription_id => $5)",
                        &[&user, &amount_text(amount), &(hours as i32), &key, &subscription]),
                )
            }
            7..=14 => {
                let account_type = if what == 14 { "PLUGIN_DEC" } else { "CHAT_DEC" };
                (
                    format!("deduct {user} {amount} as {account_type} key {key:?} scopes {scopes:?}"),
                    model.deduct(user, amount, account_type, key, scopes.clone(), true),
                    run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_deduct($1, $2::text::numeric, $3, 'CHAT', 'model', idempotency_key => $4, scopes => $5)",
                        &[&user, &amount_text(amount), &account_type, &key, &scopes]),
                )
            }
            15 => (
                format!("deduct {user} 0"),
                model.deduct(user, 0, "CHAT_DEC", None, None, true),
                run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_deduct($1, 0, 'CHAT_DEC', 'CHAT', 'model')", &[&user]),
            ),
            16 => (
                format!("deduct {user} {amount} as RECHARGE_INC"),
                model.deduct(user, amount, "RECHARGE_INC", key, None, true),
                run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_deduct($1, $2::text::numeric, 'RECHARGE_INC', 'CHAT', 'model', idempotency_key => $3)",
                    &[&user, &amount_text(amount), &key]),
            ),
            17 | 18 => {
                // time passes: every grant's expiry and every hold's ttl come closer
                let hours = 1 + ((r >> 32) % 12) as i32;
                model.pass(hours as i64);
                c.batch_execute(&format!(
                    "UPDATE billing.grant_store SET expire_at = expire_at - interval '{hours} hours';
                     UPDATE billing.accounts SET next_expiry = next_expiry - interval '{hours} hours',
                                                 holds_due_at = holds_due_at - interval '{hours} hours';
                     UPDATE billing.holds SET expires_at = expires_at - interval '{hours} hours';"
                ))
                .unwrap();
                every_user = true;
                (format!("time passes {hours}h"), Outcome::Ok(0), Outcome::Ok(0))
            }
            19..=23 => {
                let account_type = if what == 23 { "PLUGIN_DEC" } else { "CHAT_DEC" };
                let ttl = 1 + ((r >> 32) % 36) as i64;
                (
                    format!("hold {user} {amount} as {account_type} for {ttl}h key {key:?} scopes {scopes:?}"),
                    model.hold(user, amount, account_type, ttl, key, scopes.clone()),
                    run_value(&mut c, "SELECT (SELECT count(*) FROM billing.holds AS o WHERE o.user_id = h.user_id AND o.hold_id < h.hold_id)
                                         FROM billing_hold($1, $2::text::numeric, $3, 'CHAT', 'model', ttl => make_interval(hours => $4), idempotency_key => $5, scopes => $6) AS h",
                        &[&user, &amount_text(amount), &account_type, &(ttl as i32), &key, &scopes]),
                )
            }
            24..=28 | 38 | 39 => {
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
                        run_value(&mut c, "SELECT CASE status WHEN 'released' THEN 1 WHEN 'expired' THEN 2 ELSE 0 END::bigint FROM billing_release($1)", &[&hold_id]),
                    )
                } else {
                    // settle below, at or above what was held (or for 0: a release); sometimes allowing a debt
                    let debt = what == 27 || what == 39;
                    // with allow_debt, often far above: debts, and debts beside live grants, are common
                    let actual: Cents = if debt {
                        [25, 300, 600, 1500, 3000, 5000, 8000, 0][((r >> 40) % 8) as usize]
                    } else {
                        [25, 100, 300, 600, 1500, 25, 100, 0][((r >> 40) % 8) as usize]
                    };
                    (
                        format!("settle {user} hold {n} for {actual} debt {debt}"),
                        model.settle(user, n, actual, debt),
                        run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_settle($1, $2::text::numeric, allow_debt => $3)",
                            &[&hold_id, &amount_text(actual), &debt]),
                    )
                }
            }
            29..=32 => {
                // a refund of a debit: a deduct, a settle, a correction down or a revocation
                let debits = model.users.get(user).map_or(0, |u| u.debits.len());
                if debits == 0 {
                    continue;
                }
                let n = ((r >> 36) as usize) % debits;
                let log_id: i64 = c
                    .query_one(
                        "SELECT id FROM billing.account_log WHERE user_id = $1 AND direction = -1
                            AND account_type <> 'MEMBERSHIP_GIFT_EXPIRED'
                          ORDER BY seq OFFSET $2 LIMIT 1",
                        &[&user, &(n as i64)],
                    )
                    .unwrap()
                    .get(0);
                let part = ((r >> 40) % 2 == 0).then_some(amount / 2);
                (
                    format!("refund {user} debit {n} amount {part:?} key {key:?}"),
                    model.refund(user, n, part, key),
                    run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_refund($1, $2::text::numeric, idempotency_key => $3)",
                        &[&log_id, &part.map(amount_text), &key]),
                )
            }
            33 => {
                let subscription = format!("sub{}", (r >> 46) % 3);
                every_user = true;
                (
                    format!("revoke {subscription}"),
                    model.revoke(&subscription),
                    run_entries(&mut c, &format!("SELECT {ENTRY_LINE} FROM billing_revoke_subscription($1, 'model') AS e"), &[&subscription]),
                )
            }
            34 | 35 => {
                every_user = true;
                ("billing_expire".to_owned(), model.expire(), expire_in_database(&mut c))
            }
            40 | 41 => {
                // the debt floor: none, none at all (0), or some
                let max_debt = [None, Some(0), Some(500), Some(3000)][((r >> 40) % 4) as usize];
                model.users.entry(user.to_owned()).or_default().max_debt = max_debt;
                (
                    format!("debt limit {user} {max_debt:?}"),
                    Outcome::Ok(max_debt.unwrap_or(-1)),
                    run_value(&mut c, "SELECT coalesce((billing_set_debt_limit($1, $2::text::numeric) * 100)::bigint, -1)",
                        &[&user, &max_debt.map(amount_text)]),
                )
            }
            42..=45 => {
                // a spending limit: set (a lifetime cap or a window of 1 s, 2 s or 1 h), changed, removed;
                // only ann and bob have limits, so cid and dee still reach the states limits would stop
                let user = USERS[((r >> 44) % 2) as usize];
                let scope = ["*", "key:a", "key:b", "model:x"][((r >> 32) % 4) as usize];
                let cap: Option<Cents> = [None, Some(0), Some(300), Some(1000), Some(2500), Some(6000)][((r >> 36) % 6) as usize];
                let (period, window_us): (Option<&str>, Option<i64>) =
                    [(None, None), (Some("1 second"), Some(1_000_000)), (Some("2 seconds"), Some(2_000_000)), (Some("1 hour"), Some(3_600_000_000))]
                        [((r >> 40) % 4) as usize];
                (
                    format!("limit {user} {scope} cap {cap:?} period {period:?}"),
                    model.set_limit(user, scope, cap, window_us),
                    run_value(&mut c, "SELECT coalesce((SELECT (remaining * 100)::bigint FROM billing_set_limit($1, $2, $3::text::numeric, $4)), -1)",
                        &[&user, &scope, &cap.map(amount_text), &period]),
                )
            }
            _ => {
                // billing_adjust: up (a permanent credit) or down (a deduct, PB001 if not there)
                let delta = if what == 36 { amount } else { -amount };
                (
                    format!("adjust {user} {delta}"),
                    if delta > 0 {
                        model.add(user, delta, "SYSTEM_MANUAL_INC", None, None)
                    } else {
                        model.deduct(user, -delta, "SYSTEM_MANUAL_DEC", None, None, false)
                    },
                    run_entry(&mut c, "SELECT balance_after::text, model_funding(user_id, detail) FROM billing_adjust($1, $2::text::numeric, 'model')",
                        &[&user, &amount_text(delta)]),
                )
            }
        };
        c.batch_execute("COMMIT").unwrap();
        if std::env::var("BILLING_MODEL_TRACE").is_ok_and(|t| t == user) {
            let db: Vec<String> = c
                .query("SELECT format('%s/%s/%s', scope, spent, held) FROM billing.limits WHERE user_id = $1 ORDER BY scope", &[&user])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            let m: Vec<String> = model.users.get(user).map_or(Vec::new(), |u| u.limits.iter().map(|(s, l)| format!("{s}/{}/{}", l.spent, l.held)).collect());
            eprintln!("TRACE {step} {description} => {actual:?} (model {expected:?}) db {db:?} model {m:?}");
        }
        assert_eq!(actual, expected, "seed {seed}, step {step}: {description}");
        let checked: &[&str] = if every_user { &USERS } else { std::slice::from_ref(&user) };
        for &u in checked {
            let power = c.query_one("SELECT billing_power($1)::text", &[&u]).map(|row| cents(&row.get::<_, String>(0)));
            assert_eq!(power.ok(), Some(model.available(u)), "seed {seed}, step {step}: power of {u} after {description}");
        }
    }
    STEP.with(|s| s.set(operations));
    c.batch_execute("COMMIT").unwrap();
    // sweep what expired and what lapsed, then every grant and permanent balance as the model has them
    assert_eq!(expire_in_database(&mut c), model.expire(), "seed {seed}, end: billing_expire");
    for (name, user) in &model.users {
        let grants: Vec<Cents> = c
            .query("SELECT remaining::text FROM billing.grants WHERE user_id = $1 ORDER BY id", &[name])
            .unwrap()
            .iter()
            .map(|row| cents(&row.get::<_, String>(0)))
            .collect();
        assert_eq!(grants, user.grants.iter().map(|g| g.remaining).collect::<Vec<_>>(), "seed {seed}: grants of {name}");
        let permanent: String = c.query_one("SELECT permanent::text FROM billing.accounts WHERE user_id = $1", &[name]).unwrap().get(0);
        assert_eq!(cents(&permanent), user.permanent, "seed {seed}: permanent of {name}");
        let open: Vec<i64> = c
            .query("SELECT (SELECT count(*) FROM billing.holds AS o WHERE o.user_id = h.user_id AND o.hold_id < h.hold_id)
                      FROM billing.holds AS h WHERE h.user_id = $1 AND h.status = 'held' ORDER BY h.hold_id", &[name])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let model_open: Vec<i64> = (0..user.holds.len()).filter(|&n| user.holds[n].state == HoldState::Open).map(|n| n as i64).collect();
        assert_eq!(open, model_open, "seed {seed}: open holds of {name}");
        // one entry after the last time travel, so that balance_after is checked against today's grants
        c.execute("SELECT billing_add($1, 1, 'RECHARGE_INC', 'RECHARGE', 'model')", &[name]).unwrap();
    }
    // every limit's counters as billing_limits shows them now (lapsed holds swept above)
    c.batch_execute("BEGIN").unwrap();
    model.now_us = c.query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[]).unwrap().get(0);
    for name in USERS {
        let limits: Vec<String> = c
            .query("SELECT format('%s %s %s', scope, (spent * 100)::bigint, (held * 100)::bigint) FROM billing_limits($1)", &[&name])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(limits, model.limits_now(name), "seed {seed}: limits of {name}");
    }
    c.batch_execute("COMMIT").unwrap();
    let findings: Vec<String> = c
        .query("SELECT format('%s', f) FROM billing_verify() AS f", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(findings.is_empty(), "seed {seed}: billing_verify: {findings:?}");
    drop(c);
    connect("postgres").batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
}

/// "1-64", "5001-5100", "7", "3,9,20-25".
fn parse_seeds(text: &str) -> Vec<u64> {
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || panic!("BILLING_MODEL_SEEDS: {part:?} is not a seed or a range like 5001-5100");
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to): (u64, u64) = (from.trim().parse().unwrap_or_else(|_| bad()), to.trim().parse().unwrap_or_else(|_| bad()));
                if from > to {
                    bad();
                }
                seeds.extend(from..=to);
            }
            None => seeds.push(part.parse().unwrap_or_else(|_| bad())),
        }
    }
    assert!(!seeds.is_empty(), "BILLING_MODEL_SEEDS names no seed");
    seeds
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

#[test]
fn the_extension_agrees_with_the_model() {
    let seeds = parse_seeds(&setting("BILLING_MODEL_SEEDS", "1-64"));
    let operations: usize = setting("BILLING_MODEL_OPS", "1000").parse().expect("BILLING_MODEL_OPS: a number of operations");
    let jobs: usize = setting("BILLING_MODEL_JOBS", "2").parse().expect("BILLING_MODEL_JOBS: a number of seeds run at once");
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                // stop early once failures pile up: they are likely one defect
                if i >= seeds.len() || failures.lock().unwrap().len() >= 10 {
                    break;
                }
                let seed = seeds[i];
                if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| check_sequence(seed, operations))) {
                    let step = STEP.with(|s| s.get());
                    let at = if step >= operations { "after the last step".to_owned() } else { format!("step {step}") };
                    let failure = format!("seed {seed}, {at}: {}", panic_text(&*payload));
                    eprintln!("model test FAILED: {failure}\n  replay: BILLING_MODEL_SEEDS={seed} BILLING_MODEL_OPS={operations} make test-model");
                    failures.lock().unwrap().push(failure);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "model test: {} seeds x {operations} operations in {:.1}s, {} failed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    let counts: Vec<String> = SEEN.iter().zip(&SEEN_COUNTS).map(|(what, n)| format!("{what}: {}", n.load(Ordering::Relaxed))).collect();
    eprintln!("model test reached: {}", counts.join("; "));
    assert!(failures.is_empty(), "the extension and the model disagree:\n{}", failures.join("\n"));
}
