//! Accounts and grants: billing_add and billing_deduct.
//!
//! Every write locks the user's `billing.accounts` row first (creating it for
//! a credit). The row caches `grants_total` (the remaining of every grant not
//! yet swept), `next_expiry` (the soonest expiry among them) and the head
//! grant, spent next, with its live remaining. A deduct that the head grant
//! covers, or the permanent balance of a user without grants, is one
//! statement (statements::FAST_DEBIT). Anything else locks the row, reads the live
//! grants with a fresh snapshot, plans the draw-down in Rust, and writes the
//! grants, the cached totals and one ledger entry in a single statement.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use rust_decimal::Decimal;

use crate::amounts::{checked_add, checked_sub};
use crate::drawdown::{self, LiveGrant};
use crate::errors::{BillingError, BillingResult, Reveals, SqlState};
use crate::fmgr::{sql_function, Args, Returned, MAX_REMARK_CHARS};
use crate::general_path;
use crate::limits;
use crate::notify;
use crate::ledger::{self, decimal, Direction, Movement, Totals};
use crate::statements::{self, Plans};

/// The locked account row.
pub struct Account {
    pub permanent: Decimal,
    grants_total: Decimal,
    next_expiry: Option<pg_sys::TimestampTz>,
    pub last_seq: i64,
    /// A grant with remaining > 0 has expired and not been swept yet.
    pub has_expired: bool,
    /// An open hold has passed its ttl: what it reserved is due back.
    pub holds_due: bool,
    /// The low-balance notification's threshold, if the user has one.
    pub low_balance_at: Option<Decimal>,
    /// The debt floor, if the user has one: a settle with allow_debt never takes
    /// the permanent balance below -max_debt.
    pub max_debt: Option<Decimal>,
    /// The user has spending limits: every charge counts against them (src/limits.rs).
    pub limited: bool,
    /// The head grant (spent next as of the last write) and its live remaining, which
    /// grant_store holds only as of the last write-back. Exact as the spending order
    /// while !has_expired; its remaining is always the truth.
    pub head: Option<(i64, Decimal)>,
}

/// A live grant with its expiry, in spending order.
struct Grant {
    live: LiveGrant,
    expire_at: pg_sys::TimestampTz,
}

fn lock(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str) -> BillingResult<Option<Account>> {
    let table = client.update(&plans.lock_account, None, &[user_id.into()])?;
    if table.is_empty() {
        if crate::power::created_after_snapshot(user_id)? {
            return Err(BillingError::new(
                SqlState::SerializationFailure,
                "could not serialize access due to concurrent update",
            )
            .with_detail("The user's account was created by a transaction that committed after this one's snapshot.")
            .with_hint("Retry the transaction."));
        }
        return Ok(None);
    }
    let row = table.first();
    Ok(Some(Account {
        permanent: decimal(&row, 1, "permanent")?,
        grants_total: decimal(&row, 2, "grants_total")?,
        next_expiry: row.get::<TimestampWithTimeZone>(3)?.map(Into::into),
        last_seq: row.get::<i64>(4)?.unwrap_or(0),
        has_expired: row.get::<bool>(5)?.unwrap_or(false),
        head: match row.get::<i64>(6)? {
            Some(id) => Some((id, decimal(&row, 7, "head_remaining")?)),
            None => None,
        },
        holds_due: row.get::<bool>(8)?.unwrap_or(false),
        low_balance_at: ledger::optional_decimal(&row, 9, "low_balance_at")?,
        max_debt: ledger::optional_decimal(&row, 10, "max_debt")?,
        limited: row.get::<bool>(11)?.unwrap_or(false),
    }))
}

/// Locks the user's account row; if holds have lapsed, gives back what they
/// reserved first and returns the row as it is then.
pub fn lock_current(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str) -> BillingResult<Option<Account>> {
    match lock(client, plans, user_id)? {
        Some(account) if account.holds_due => {
            general_path::open(client, plans, user_id, true)?;
            general_path::refresh(client, plans, user_id, Decimal::ZERO, 0)?;
            lock(client, plans, user_id)
        }
        other => Ok(other),
    }
}

fn lock_or_create(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str) -> BillingResult<Account> {
    if let Some(account) = lock_current(client, plans, user_id)? {
        return Ok(account);
    }
    client.update(&plans.create_account, None, &[user_id.into()])?;
    lock(client, plans, user_id)?.ok_or_else(|| BillingError::internal("account row vanished after insert"))
}

/// The user's live grants in spending order, the first `limit` of them (None: all).
fn live_grants(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    user_id: &str,
    account: &Account,
    limit: Option<i64>,
) -> BillingResult<Vec<Grant>> {
    if account.grants_total.is_zero() {
        return Ok(Vec::new());
    }
    let table = client.update(&plans.live_grants, None, &[user_id.into(), limit.into()])?;
    let mut grants = Vec::with_capacity(table.len());
    for row in table {
        let id = row.get::<i64>(1)?.ok_or_else(|| BillingError::internal("grant id is NULL"))?;
        let remaining = row.get::<AnyNumeric>(2)?.ok_or_else(|| BillingError::internal("remaining is NULL"))?;
        let expire_at = row.get::<TimestampWithTimeZone>(3)?.ok_or_else(|| BillingError::internal("expire_at is NULL"))?;
        // the live remaining, the head grant's included (the statement reads billing.grants)
        let remaining = crate::amounts::parse_stored("remaining", &remaining.to_string())?;
        grants.push(Grant { live: LiveGrant { id, remaining }, expire_at: expire_at.into() });
    }
    Ok(grants)
}

/// How many grants a deduct reads first: enough for any deduct that spans a
/// few grants; one that needs more reads them all.
const GRANTS_FIRST_READ: i64 = 16;

/// Power the user can spend now, given the locked row (and its live grants when needed).
fn available(account: &Account, grants: &[Grant]) -> BillingResult<Decimal> {
    if account.has_expired {
        let live: Vec<LiveGrant> = grants.iter().map(|g| g.live.clone()).collect();
        Ok(drawdown::available(account.permanent, &live))
    } else {
        checked_add(account.permanent, account.grants_total)
    }
}

pub fn insufficient_power(movement: &Movement, available: Decimal) -> BillingError {
    BillingError::new(
        SqlState::InsufficientPower,
        format!("insufficient power for user {:?}", movement.user_id),
    )
    .with_private_detail(
        Reveals::Balance,
        format!("Requested {}, available {}.", movement.amount, available.normalize()),
        format!("Requested {}; the available power is shown to roles that may execute billing_power.", movement.amount),
    )
    .with_hint("Add power with billing_add, or deduct less.")
}

/// The arguments billing_add and billing_deduct share, in the same positions.
pub fn movement(args: &Args, direction: Direction) -> BillingResult<Movement> {
    Ok(Movement {
        direction,
        user_id: args.key(0, "user_id")?,
        amount: args.amount(1, "amount")?,
        account_type: args.key(2, "account_type")?,
        source_type: args.key(3, "source_type")?,
        source: args.key(4, "source")?,
        remark: args.text(5, "remark", MAX_REMARK_CHARS)?,
        association_no: args.optional_key(6, "association_no")?,
        association_user_id: args.optional_key(7, "association_user_id")?,
        subscription_id: None,
        expire_at: None,
        idempotency_key: None,
        scopes: None,
    })
}

/// billing_add(user_id, amount, account_type, source_type, source, remark, association_no,
///             association_user_id, expire_at, subscription_id, idempotency_key)
fn add(args: &Args) -> Returned {
    let mut movement = movement(args, Direction::Credit)?;
    movement.expire_at = args.timestamptz(8).map(Into::into);
    movement.subscription_id = args.optional_key(9, "subscription_id")?;
    movement.idempotency_key = args.optional_key(10, "idempotency_key")?;
    add_movement(movement)
}
sql_function!(pg_finfo_billing_add, billing_add => add);

/// Records a credit: to the permanent balance, or as a grant when it has an expiry.
pub fn add_movement(movement: Movement) -> Returned {
    if movement.idempotency_key.is_none() {
        check_expiry(&movement)?;
    }
    Spi::connect_mut(|client| {
        let plans = statements::get(client)?;
        ledger::check_types(client, plans, &movement)?;
        let account = lock_or_create(client, plans, &movement.user_id)?;
        if let Some(original) = ledger::replay(client, plans, &movement)? {
            return Ok(Some(original));
        }
        // A repeat of a gift returns its entry even after the gift's expiry has passed.
        check_expiry(&movement)?;
        if movement.expire_at.is_some() && account.permanent < Decimal::ZERO {
            return add_grant_paying_debt(client, plans, &movement, &account).map(Some);
        }
        let grants =
            if account.has_expired { live_grants(client, plans, &movement.user_id, &account, None)? } else { Vec::new() };
        let balance_after = checked_add(available(&account, &grants)?, movement.amount)?;
        let seq = account.last_seq + 1;
        let entry = match movement.expire_at {
            None => {
                let head = head_now(&account, &grants);
                let totals = Totals {
                    permanent: checked_add(account.permanent, movement.amount)?,
                    grants_total: account.grants_total,
                    next_expiry: account.next_expiry,
                    head,
                };
                let detail = ledger::detail_json(movement.amount, &[]);
                let writes: Vec<(i64, Decimal)> = old_head_write_back(&account, head.map(|(id, _)| id)).into_iter().collect();
                ledger::write_entry(client, plans, &movement, seq, balance_after, &detail, &totals, &writes)?
            }
            Some(expire_at) => {
                // The new grant is spent next if it expires before the current head
                // (on a tie the older grant goes first).
                let head = head_now(&account, &grants);
                let head_expiry = if account.has_expired { grants.first().map(|g| g.expire_at) } else { account.next_expiry };
                let new_is_head = head.is_none() || head_expiry.is_some_and(|h| expire_at < h);
                let totals = Totals {
                    permanent: account.permanent,
                    grants_total: checked_add(account.grants_total, movement.amount)?,
                    next_expiry: Some(account.next_expiry.map_or(expire_at, |next| next.min(expire_at))),
                    head: if new_is_head { None } else { head },
                };
                let write_back = old_head_write_back(&account, if new_is_head { None } else { head.map(|(id, _)| id) });
                ledger::write_grant(client, plans, &movement, seq, balance_after, &totals, write_back)?
            }
        };
        Ok(Some(entry))
    })
}

/// A gift to a user in debt (a settle with allow_debt left the permanent balance
/// below zero): the gift pays the debt first, and only the rest stays a grant.
fn add_grant_paying_debt(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    movement: &Movement,
    account: &Account,
) -> BillingResult<pg_sys::Datum> {
    let user_id = movement.user_id.as_str();
    general_path::open(client, plans, user_id, account.holds_due)?;
    let pays_debt = movement.amount.min(-account.permanent);
    let (grant_id, log_id) = general_path::insert_grant(client, plans, movement, movement.amount - pays_debt)?;
    let after = general_path::refresh(client, plans, user_id, pays_debt, 1)?;
    let detail = ledger::detail_json(pays_debt, &[(grant_id, movement.amount - pays_debt)]);
    general_path::insert_entry(
        client,
        plans,
        &general_path::Entry {
            movement,
            seq: after.last_seq,
            balance_after: after.available,
            detail,
            refund_of: None,
            id: Some(log_id),
        },
    )
    .map(|(row, _)| row)
}

/// A grant's expire_at must be finite and in the future.
fn check_expiry(movement: &Movement) -> BillingResult<()> {
    let Some(expire_at) = movement.expire_at else {
        return Ok(());
    };
    let infinite = expire_at == i64::MAX || expire_at == i64::MIN;
    if infinite {
        return Err(BillingError::invalid_argument("expire_at", "must be a finite time")
            .with_hint("Omit expire_at for credits that never expire."));
    }
    let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    if expire_at <= now {
        return Err(BillingError::invalid_argument("expire_at", "must be in the future")
            .with_detail("Credits that have already expired could never be spent."));
    }
    Ok(())
}

/// billing_deduct(user_id, amount, account_type, source_type, source, remark, association_no,
///                association_user_id, idempotency_key, scopes)
fn deduct(args: &Args) -> Returned {
    let mut movement = debit(args)?;
    movement.scopes = Some(limits::scopes("scopes", args.text_array(9))?);
    deduct_movement(movement)
}
sql_function!(pg_finfo_billing_deduct, billing_deduct => deduct);

/// billing.deduct_uncounted(the first nine arguments of billing_deduct): billing_adjust's
/// debit, a correction, which is not a charge and counts against no limit.
fn deduct_uncounted(args: &Args) -> Returned {
    deduct_movement(debit(args)?)
}

/// The first nine arguments of billing_deduct: a debit, not yet a charge.
fn debit(args: &Args) -> BillingResult<Movement> {
    let mut movement = movement(args, Direction::Debit)?;
    movement.idempotency_key = args.optional_key(8, "idempotency_key")?;
    Ok(movement)
}
sql_function!(pg_finfo_billing_deduct_uncounted, billing_deduct_uncounted => deduct_uncounted);

/// Records a debit: soonest-expiring grants first, then the permanent balance.
pub fn deduct_movement(movement: Movement) -> Returned {
    Spi::connect_mut(|client| {
        let plans = statements::get(client)?;
        ledger::check_types(client, plans, &movement)?;
        // With a key, lock first and look for an earlier call with it.
        let locked = match movement.idempotency_key {
            Some(_) => {
                let account = lock_current(client, plans, &movement.user_id)?;
                if let Some(original) = ledger::replay(client, plans, &movement)? {
                    return Ok(Some(original));
                }
                Some(account)
            }
            None => None,
        };
        if let Some(entry) = ledger::fast_debit(client, plans, &movement)? {
            return Ok(Some(entry));
        }
        let account = match locked {
            Some(account) => account,
            None => lock_current(client, plans, &movement.user_id)?,
        };
        let Some(account) = account else {
            return Err(insufficient_power(&movement, Decimal::ZERO));
        };
        limits::count_new(client, plans, &account, &movement, movement.amount, Decimal::ZERO)?;
        // Read the first few grants; read them all if the deduct (or finding the
        // next head) needs more, or if expired grants make the cached total unusable.
        let mut grants = live_grants(client, plans, &movement.user_id, &account, Some(GRANTS_FIRST_READ))?;
        let mut plan = plan_debit(&movement, &account, &grants);
        let read_them_all = grants.len() as i64 == GRANTS_FIRST_READ
            && plan.as_ref().map_or(true, |p| first_unspent(&grants, &p.from_grants).is_none());
        if account.has_expired || read_them_all {
            grants = live_grants(client, plans, &movement.user_id, &account, None)?;
            plan = plan_debit(&movement, &account, &grants);
        }
        let plan = plan?;
        let balance_after = checked_sub(available(&account, &grants)?, movement.amount)?;
        let head = first_unspent(&grants, &plan.from_grants).map(|(g, left)| (g.live.id, left));
        let totals = Totals {
            permanent: checked_sub(account.permanent, plan.from_permanent)?,
            grants_total: checked_sub(account.grants_total, plan.grants_total())?,
            next_expiry: next_expiry_after(&account, &grants, &plan.from_grants),
            head,
        };
        // Store the new remaining of every grant spent from, and the old head's when the head moves.
        let mut writes: Vec<(i64, Decimal)> = plan
            .from_grants
            .iter()
            .map(|(id, take)| {
                let grant = grants.iter().find(|g| g.live.id == *id).expect("planned from these grants");
                (*id, grant.live.remaining - *take)
            })
            .collect();
        if let Some(back) = old_head_write_back(&account, head.map(|(id, _)| id)) {
            if !writes.iter().any(|(id, _)| *id == back.0) {
                writes.push(back);
            }
        }
        let detail = ledger::detail_json(plan.from_permanent, &plan.from_grants);
        let entry = ledger::write_entry(
            client,
            plans,
            &movement,
            account.last_seq + 1,
            balance_after,
            &detail,
            &totals,
            &writes,
        )?;
        notify::if_crossed(client, &movement.user_id, account.low_balance_at, available(&account, &grants)?, balance_after)?;
        Ok(Some(entry))
    })
}

/// How `movement` is funded from these grants (in spending order) and the permanent balance.
fn plan_debit(movement: &Movement, account: &Account, grants: &[Grant]) -> BillingResult<drawdown::Drawdown> {
    let live: Vec<LiveGrant> = grants.iter().map(|g| g.live.clone()).collect();
    drawdown::plan(movement.amount, account.permanent, &live).map_err(|available| insufficient_power(movement, available))
}

/// The soonest expiry among grants with remaining > 0 once `taken` is spent.
/// An expired, unswept grant keeps the old (past) value until a sweep clears it.
fn next_expiry_after(account: &Account, grants: &[Grant], taken: &[(i64, Decimal)]) -> Option<pg_sys::TimestampTz> {
    if account.has_expired {
        return account.next_expiry;
    }
    first_unspent(grants, taken).map(|(g, _)| g.expire_at)
}

/// The first live grant (in spending order) with something left once `taken` is spent, and what is left.
fn first_unspent<'g>(grants: &'g [Grant], taken: &[(i64, Decimal)]) -> Option<(&'g Grant, Decimal)> {
    grants.iter().find_map(|g| {
        let take = taken.iter().find(|(id, _)| *id == g.live.id).map_or(Decimal::ZERO, |(_, t)| *t);
        let left = g.live.remaining - take;
        (left > Decimal::ZERO).then_some((g, left))
    })
}

/// The old head grant and its live remaining, to write back to grant_store, when the
/// head moves to `new_head_id` (another grant, or none).
fn old_head_write_back(account: &Account, new_head_id: Option<i64>) -> Option<(i64, Decimal)> {
    account.head.filter(|(old_id, _)| new_head_id != Some(*old_id))
}

/// The live grant spent next, before this write: the cache when it is exact, else the first live grant.
fn head_now(account: &Account, grants: &[Grant]) -> Option<(i64, Decimal)> {
    if account.has_expired {
        grants.first().map(|g| (g.live.id, g.live.remaining))
    } else {
        account.head
    }
}
