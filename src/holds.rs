//! Holds: billing_hold, billing_settle and billing_release.
//!
//! A hold takes its amount out of the user's grants and permanent balance at
//! once, in billing_deduct's order, and remembers where it came from. It
//! writes no ledger entry: it is a reservation, not a charge. billing_settle
//! charges the actual cost in one entry (funded from what the hold reserved,
//! in the order it reserved it, plus available power if the cost is higher)
//! and gives the rest back; billing_release and a passing ttl give everything
//! back. A hold is closed once; an identical repeat returns the same result.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use rust_decimal::Decimal;

use crate::accounts::{self, Account};
use crate::drawdown::{self, Drawdown};
use crate::errors::{BillingError, BillingResult, Reveals, SqlState};
use crate::fmgr::{sql_function, Args, Returned, MAX_REMARK_CHARS};
use crate::general_path;
use crate::limits;
use crate::ledger::{self, decimal, Direction, Movement};
use crate::notify;
use crate::statements::{self, Plans};

/// The longest ttl a hold may have.
const MAX_TTL_DAYS: i64 = 30;

/// A hold as read under the account lock.
struct Hold {
    id: i64,
    row: pg_sys::Datum,
    funding: Drawdown,
    status: String,
    amount: Decimal,
    lapsed: bool,
    settled_amount: Option<Decimal>,
    log_id: Option<i64>,
    closed_at: Option<String>,
    /// When it was made: the period of the limits it counted against.
    created_at: pg_sys::TimestampTz,
    /// What the settle's entry says (the hold's account_type, source, ...).
    charge: Movement,
}

fn read_hold(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, by: HoldBy<'_>) -> BillingResult<Option<Hold>> {
    let table = match by {
        HoldBy::Id(id) => client.update(&plans.hold, None, &[user_id.into(), id.into()])?,
        HoldBy::Key(key) => client.update(&plans.hold_by_key, None, &[user_id.into(), key.into()])?,
    };
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    let text = |n: usize| -> BillingResult<Option<String>> { Ok(row.get::<String>(n)?) };
    let required = |n: usize, what: &str| -> BillingResult<String> {
        text(n)?.ok_or_else(|| BillingError::internal(format!("hold {what} is NULL")))
    };
    let amount = decimal(&row, 6, "hold amount")?;
    let charge = Movement {
        direction: Direction::Debit,
        user_id: user_id.to_owned(),
        amount,
        account_type: required(10, "account_type")?,
        source_type: required(11, "source_type")?,
        source: required(12, "source")?,
        remark: text(13)?,
        association_no: text(14)?,
        association_user_id: text(15)?,
        subscription_id: None,
        expire_at: None,
        idempotency_key: None,
        // a hold made before 0.3.0 named no scopes
        scopes: Some(row.get::<Vec<Option<String>>>(18)?.map(|s| s.into_iter().flatten().collect()).unwrap_or_default()),
    };
    let settled_amount = ledger::optional_decimal(&row, 8, "settled_amount")?;
    let funding = general_path::funding(&row, 2)?;
    Ok(Some(Hold {
        id: row.get::<i64>(17)?.ok_or_else(|| BillingError::internal("hold_id is NULL"))?,
        row: ledger::whole_row(&row, 1)?,
        funding,
        status: required(5, "status")?,
        amount,
        lapsed: row.get::<bool>(7)?.unwrap_or(false),
        settled_amount,
        log_id: row.get::<i64>(9)?,
        closed_at: text(16)?,
        created_at: row
            .get::<pgrx::datum::TimestampWithTimeZone>(19)?
            .ok_or_else(|| BillingError::internal("hold created_at is NULL"))?
            .into(),
        charge,
    }))
}

enum HoldBy<'k> {
    Id(i64),
    Key(&'k str),
}

/// The user a hold belongs to; 22023 if there is no such hold.
fn hold_owner(client: &mut SpiClient<'_>, plans: &Plans, hold_id: i64) -> BillingResult<String> {
    let table = client.select(&plans.hold_owner, None, &[hold_id.into()])?;
    if table.is_empty() {
        return Err(BillingError::invalid_argument("hold_id", format!("{hold_id} does not exist"))
            .with_hint("Use the hold_id that billing_hold returned."));
    }
    table.first().get::<String>(1)?.ok_or_else(|| BillingError::internal("hold user_id is NULL"))
}

/// Locks the hold's account (giving back lapsed holds first) and reads the hold.
/// `user_id` is the user the caller names (billing_user_settle and
/// billing_user_release, which Citus runs on the node holding the user), or None
/// to find the user by the hold's id (billing_settle and billing_release).
fn lock_hold(client: &mut SpiClient<'_>, plans: &Plans, user_id: Option<String>, hold_id: i64) -> BillingResult<(Account, Hold)> {
    let named = user_id.is_some();
    let user_id = match user_id {
        Some(user_id) => user_id,
        None => hold_owner(client, plans, hold_id)?,
    };
    let not_theirs = || {
        BillingError::invalid_argument("hold_id", format!("{hold_id} is not a hold of user {user_id:?}"))
            .with_hint("Use the hold_id that billing_hold returned for this user.")
    };
    let Some(account) = accounts::lock_current(client, plans, &user_id)? else {
        return Err(if named { not_theirs() } else { BillingError::internal("a hold's account row is missing") });
    };
    let Some(hold) = read_hold(client, plans, &user_id, HoldBy::Id(hold_id))? else {
        return Err(if named { not_theirs() } else { BillingError::internal("a hold vanished under the account lock") });
    };
    Ok((account, hold))
}

/// PB004: the hold was closed another way.
fn closed(hold: &Hold, attempt: &str) -> BillingError {
    let how = match (hold.status.as_str(), hold.settled_amount) {
        ("settled", Some(amount)) => format!("settled for {}", amount.normalize()),
        ("expired", _) => "expired (its ttl passed)".to_owned(),
        (status, _) => status.to_owned(),
    };
    let message = if hold.status == "held" {
        format!("hold {} has expired and can no longer be {attempt}", hold.id)
    } else {
        format!("hold {} was already {how} and cannot be {attempt}", hold.id)
    };
    let mut error = BillingError::new(SqlState::HoldClosed, message);
    if let Some(at) = &hold.closed_at {
        error = error.with_detail(format!("It was closed at {at}."));
    }
    error.with_hint("A hold is settled or released once. Make a new hold, or charge with billing_deduct.")
}

/// billing_hold(user_id, amount, account_type, source_type, source, remark, association_no,
///              association_user_id, ttl, idempotency_key, scopes)
fn hold(args: &Args) -> Returned {
    let mut movement = accounts::movement(args, Direction::Debit)?;
    let ttl = args.duration(8, "ttl", MAX_TTL_DAYS)?;
    movement.idempotency_key = args.optional_key(9, "idempotency_key")?;
    movement.scopes = Some(limits::scopes("scopes", args.text_array(10))?);
    Spi::connect_mut(|client| {
        let plans = statements::get(client)?;
        ledger::check_types(client, plans, &movement)?;
        let user_id = movement.user_id.as_str();
        // With a key, lock first and look for an earlier hold with it.
        let locked = match movement.idempotency_key.as_deref() {
            Some(key) => {
                let account = accounts::lock_current(client, plans, user_id)?;
                if let Some(earlier) = read_hold(client, plans, user_id, HoldBy::Key(key))? {
                    if earlier.amount == movement.amount && earlier.charge.account_type == movement.account_type {
                        return Ok(Some(earlier.row));
                    }
                    return Err(BillingError::new(
                        SqlState::IdempotencyConflict,
                        format!("idempotency_key {key:?} was already used for a different hold"),
                    )
                    .with_private_detail(
                        Reveals::OtherOperation,
                        format!(
                            "The earlier hold reserves {} as {}; this call asks for {} as {}.",
                            earlier.amount, earlier.charge.account_type, movement.amount, movement.account_type
                        ),
                        format!(
                            "This call asks for {} as {}; the earlier hold is shown to roles that may execute billing_history.",
                            movement.amount, movement.account_type
                        ),
                    )
                    .with_hint("Use a new idempotency key for a new hold."));
                }
                Some(account)
            }
            None => None,
        };
        if let Some(row) = fast_hold(client, plans, &movement, &ttl)? {
            return Ok(Some(row));
        }
        let account = match locked {
            Some(account) => account,
            None => accounts::lock_current(client, plans, user_id)?,
        };
        let Some(account) = account else {
            return Err(accounts::insufficient_power(&movement, Decimal::ZERO));
        };
        limits::count_new(client, plans, &account, &movement, Decimal::ZERO, movement.amount)?;
        general_path::open(client, plans, user_id, false)?;
        let live = general_path::exact_live_grants(client, plans, user_id)?;
        let plan = drawdown::plan(movement.amount, account.permanent, &live)
            .map_err(|available| accounts::insufficient_power(&movement, available))?;
        let taken: Vec<(i64, Decimal)> = plan.from_grants.iter().map(|(id, take)| (*id, -*take)).collect();
        general_path::move_grants(client, plans, user_id, &taken)?;
        let funding = ledger::detail_json(plan.from_permanent, &plan.from_grants);
        let table = client.update(
            &plans.insert_hold,
            None,
            &[
                user_id.into(),
                ledger::numeric(movement.amount).into(),
                funding.into(),
                ttl.into(),
                movement.account_type.as_str().into(),
                movement.source_type.as_str().into(),
                movement.source.as_str().into(),
                movement.remark.as_deref().into(),
                movement.association_no.as_deref().into(),
                movement.association_user_id.as_deref().into(),
                movement.idempotency_key.as_deref().into(),
                account.last_seq.into(),
                movement.scopes.clone().into(),
            ],
        )?;
        let row = ledger::whole_row(&table.first(), 1)?;
        let after = general_path::refresh(client, plans, user_id, -plan.from_permanent, 0)?;
        let before = drawdown::available(account.permanent, &live);
        notify::if_crossed(client, user_id, account.low_balance_at, before, after.available)?;
        Ok(Some(row))
    })
}
sql_function!(pg_finfo_billing_hold, billing_hold => hold);

/// The common hold in one statement (see statements::FAST_HOLD); None when it does not apply,
/// and always where Citus is installed (see crate::citus).
fn fast_hold(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    movement: &Movement,
    ttl: &pgrx::datum::Interval,
) -> BillingResult<Option<pg_sys::Datum>> {
    if crate::citus::installed() {
        return Ok(None);
    }
    let table = client.update(
        &plans.fast_hold,
        None,
        &[
            movement.user_id.as_str().into(),
            ledger::numeric(movement.amount).into(),
            (*ttl).into(),
            movement.account_type.as_str().into(),
            movement.source_type.as_str().into(),
            movement.source.as_str().into(),
            movement.remark.as_deref().into(),
            movement.association_no.as_deref().into(),
            movement.association_user_id.as_deref().into(),
            movement.idempotency_key.as_deref().into(),
            movement.scopes.clone().into(),
            ledger::now(),
        ],
    )?;
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    if let Some(error) = limits::over_cap(&row, 4, &movement.user_id)? {
        return Err(error);
    }
    ledger::notify_after_one_statement_debit(client, &row, movement)?;
    ledger::whole_row(&row, 1).map(Some)
}

/// billing_settle(hold_id, actual_amount, remark, allow_debt)
fn settle(args: &Args) -> Returned {
    settle_hold(None, args, 0)
}
sql_function!(pg_finfo_billing_settle, billing_settle => settle);

/// billing_user_settle(user_id, hold_id, actual_amount, remark, allow_debt): the
/// same, keyed by the user as well.
fn user_settle(args: &Args) -> Returned {
    settle_hold(Some(args.key(0, "user_id")?), args, 1)
}
sql_function!(pg_finfo_billing_user_settle, billing_user_settle => user_settle);

/// Settles the hold whose arguments (hold_id, actual_amount, remark, allow_debt)
/// begin at position `first`.
fn settle_hold(user_id: Option<String>, args: &Args, first: usize) -> Returned {
    let hold_id = args.id(first, "hold_id")?;
    let actual = args.cost(first + 1, "actual_amount")?;
    let remark = args.text(first + 2, "remark", MAX_REMARK_CHARS)?;
    let allow_debt = args.flag(first + 3, "allow_debt")?;
    Spi::connect_mut(|client| {
        let plans = statements::get(client)?;
        let (account, hold) = lock_hold(client, plans, user_id, hold_id)?;
        let user_id = hold.charge.user_id.clone();
        match hold.status.as_str() {
            "held" if !hold.lapsed => {}
            "settled" if hold.settled_amount == Some(actual) => {
                let log_id = hold.log_id.ok_or_else(|| BillingError::internal("a settled hold has no log_id"))?;
                let table = client.update(&plans.entry_row, None, &[user_id.as_str().into(), log_id.into()])?;
                return ledger::whole_row(&table.first(), 1).map(Some);
            }
            "released" if actual.is_zero() => return Ok(None),
            _ => return Err(closed(&hold, "settled")),
        }
        if actual.is_zero() {
            give_back(client, plans, &account, &hold, "released", None)?;
            return Ok(None);
        }
        // the actual amount counts now; the hold stops counting as held
        count_closing(client, plans, &account, &hold, actual)?;
        let held = drawdown::total(&hold.funding);
        let (mut charged, rest) = drawdown::split(&hold.funding, actual.min(held));
        if let Some(entry) = fast_settle(client, plans, &account, &hold, actual, remark.as_deref(), &charged, &rest)? {
            return Ok(Some(entry));
        }
        general_path::open(client, plans, &user_id, false)?;
        // Give back what was not used; take what was used beyond the hold from available power.
        let mut deltas = rest.from_grants.clone();
        let mut permanent_delta = rest.from_permanent;
        let charge = Movement { amount: actual, remark: remark.or_else(|| hold.charge.remark.clone()), ..hold.charge.clone() };
        let mut before = None;
        if actual > held {
            let extra = actual - held;
            let live = general_path::exact_live_grants(client, plans, &user_id)?;
            before = Some(drawdown::available(account.permanent, &live));
            let plan = if allow_debt {
                let plan = drawdown::plan_allowing_debt(extra, &live);
                drawdown::within_debt_floor(account.permanent, &live, &plan, account.max_debt)
                    .map_err(|room| below_debt_floor(&hold, actual, held, room))?;
                plan
            } else {
                drawdown::plan(extra, account.permanent, &live).map_err(|available| {
                    insufficient_for_settle(&hold, actual, held, available)
                })?
            };
            deltas.extend(plan.from_grants.iter().map(|(id, take)| (*id, -*take)));
            permanent_delta -= plan.from_permanent;
            charged.from_grants.extend(plan.from_grants);
            charged.from_permanent += plan.from_permanent;
        }
        general_path::move_grants(client, plans, &user_id, &deltas)?;
        let seq = account.last_seq + 1;
        let (_, log_id) = close(client, plans, &hold, "settled", Some(actual), None, seq)?;
        let after = general_path::refresh(client, plans, &user_id, permanent_delta, 1)?;
        if let Some(before) = before {
            // only a settle above the hold lowers available power
            notify::if_crossed(client, &user_id, account.low_balance_at, before, after.available)?;
        }
        let detail = ledger::detail_json_for_hold(charged.from_permanent, &general_path::merge(&charged.from_grants), hold.id);
        let (entry, _) = general_path::insert_entry(
            client,
            plans,
            &general_path::Entry {
                movement: &charge,
                seq: after.last_seq,
                balance_after: after.available,
                detail,
                refund_of: None,
                id: log_id,
            },
        )?;
        Ok(Some(entry))
    })
}

/// A settle within the hold whose unused part goes back only to the permanent balance
/// and/or the head grant, in one statement (see statements::FAST_SETTLE); None when it does
/// not apply (always where Citus is installed: crate::citus). Call with the account locked.
#[allow(clippy::too_many_arguments)]
fn fast_settle(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    account: &Account,
    hold: &Hold,
    actual: Decimal,
    remark: Option<&str>,
    charged: &Drawdown,
    rest: &Drawdown,
) -> BillingResult<Option<pg_sys::Datum>> {
    if crate::citus::installed() {
        return Ok(None);
    }
    let to_head = match rest.from_grants.as_slice() {
        [] => Decimal::ZERO,
        [(id, amount)] if account.head.is_some_and(|(head, _)| head == *id) => *amount,
        _ => return Ok(None),
    };
    if actual > drawdown::total(&hold.funding) || account.has_expired || account.holds_due {
        return Ok(None);
    }
    let detail = ledger::detail_json_for_hold(charged.from_permanent, &charged.from_grants, hold.id);
    let charge = &hold.charge;
    let table = client.update(
        &plans.fast_settle,
        None,
        &[
            charge.user_id.as_str().into(),
            hold.id.into(),
            ledger::numeric(actual).into(),
            ledger::numeric(rest.from_permanent).into(),
            ledger::numeric(to_head).into(),
            charge.account_type.as_str().into(),
            charge.source_type.as_str().into(),
            charge.source.as_str().into(),
            remark.or(charge.remark.as_deref()).into(),
            charge.association_no.as_deref().into(),
            charge.association_user_id.as_deref().into(),
            detail.into(),
        ],
    )?;
    ledger::whole_row(&table.first(), 1).map(Some)
}

fn insufficient_for_settle(hold: &Hold, actual: Decimal, held: Decimal, available: Decimal) -> BillingError {
    BillingError::new(
        SqlState::InsufficientPower,
        format!("insufficient power for user {:?} to settle hold {} for {}", hold.charge.user_id, hold.id, actual.normalize()),
    )
    .with_private_detail(
        Reveals::Balance,
        format!(
            "The hold reserved {}; the other {} must come from available power, which is {}.",
            held.normalize(),
            (actual - held).normalize(),
            available.normalize()
        ),
        format!(
            "The hold reserved {}; the other {} must come from available power, which is shown to roles that may execute billing_power.",
            held.normalize(),
            (actual - held).normalize()
        ),
    )
    .with_hint("Settle for at most what is available, or pass allow_debt => true to let the balance go negative.")
}

/// PB001 for a settle with allow_debt that would take the permanent balance below
/// the user's debt floor (billing_set_debt_limit); `room` is the most that the live
/// grants, the balance and the floor leave for the part above the hold.
fn below_debt_floor(hold: &Hold, actual: Decimal, held: Decimal, room: Decimal) -> BillingError {
    BillingError::new(
        SqlState::InsufficientPower,
        format!(
            "insufficient power for user {:?} to settle hold {} for {}: the debt limit would be exceeded",
            hold.charge.user_id,
            hold.id,
            actual.normalize()
        ),
    )
    .with_private_detail(
        Reveals::Balance,
        format!(
            "The hold reserved {}; the other {} must come from available power and the debt the user's limit allows, which leave {}.",
            held.normalize(),
            (actual - held).normalize(),
            room.normalize()
        ),
        format!(
            "The hold reserved {}; the other {} must come from available power and the debt the user's limit allows, shown to roles that may execute billing_power.",
            held.normalize(),
            (actual - held).normalize()
        ),
    )
    .with_hint("Settle for less, or raise the user's limit with billing_set_debt_limit.")
}

/// billing_release(hold_id, reason)
fn release(args: &Args) -> Returned {
    release_hold(None, args, 0)
}
sql_function!(pg_finfo_billing_release, billing_release => release);

/// billing_user_release(user_id, hold_id, reason): the same, keyed by the user as well.
fn user_release(args: &Args) -> Returned {
    release_hold(Some(args.key(0, "user_id")?), args, 1)
}
sql_function!(pg_finfo_billing_user_release, billing_user_release => user_release);

/// Releases the hold whose arguments (hold_id, reason) begin at position `first`.
fn release_hold(user_id: Option<String>, args: &Args, first: usize) -> Returned {
    let hold_id = args.id(first, "hold_id")?;
    let reason = args.text(first + 1, "reason", MAX_REMARK_CHARS)?;
    Spi::connect_mut(|client| {
        let plans = statements::get(client)?;
        let (account, hold) = lock_hold(client, plans, user_id, hold_id)?;
        match hold.status.as_str() {
            "held" if !hold.lapsed => give_back(client, plans, &account, &hold, "released", reason).map(Some),
            "released" | "expired" => Ok(Some(hold.row)),
            _ => Err(closed(&hold, "released")),
        }
    })
}

/// Gives everything an open hold reserved back to where it came from and closes it;
/// returns the closed hold.
fn give_back(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    account: &Account,
    hold: &Hold,
    status: &str,
    reason: Option<String>,
) -> BillingResult<pg_sys::Datum> {
    let user_id = hold.charge.user_id.as_str();
    count_closing(client, plans, account, hold, Decimal::ZERO)?;
    general_path::open(client, plans, user_id, false)?;
    general_path::move_grants(client, plans, user_id, &hold.funding.from_grants)?;
    let (row, _) = close(client, plans, hold, status, None, reason, account.last_seq)?;
    general_path::refresh(client, plans, user_id, hold.funding.from_permanent, 0)?;
    Ok(row)
}

/// Counts closing an open hold against the user's limits: `spent` (a settle's actual
/// amount, or 0) counts now, and the hold no longer counts as held in the period it
/// was made in (PB008 if the settle takes a limit above its cap).
fn count_closing(client: &mut SpiClient<'_>, plans: &Plans, account: &Account, hold: &Hold, spent: Decimal) -> BillingResult<()> {
    if !account.limited {
        return Ok(());
    }
    let count = limits::Count {
        scopes: hold.charge.scopes.as_deref().unwrap_or_default(),
        spent,
        held: -hold.amount,
        counted_at: Some(hold.created_at),
        counted_seq: None,
    };
    limits::count(client, plans, &hold.charge.user_id, count)
}

/// Closes an open hold; with `settled_amount`, reserves the id of the entry that settles it.
fn close(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    hold: &Hold,
    status: &str,
    settled_amount: Option<Decimal>,
    reason: Option<String>,
    closed_after_seq: i64,
) -> BillingResult<(pg_sys::Datum, Option<i64>)> {
    let table = client.update(
        &plans.close_hold,
        None,
        &[
            hold.charge.user_id.as_str().into(),
            hold.id.into(),
            status.into(),
            settled_amount.map(ledger::numeric).into(),
            settled_amount.is_some().into(),
            reason.into(),
            closed_after_seq.into(),
        ],
    )?;
    let row = table.first();
    Ok((ledger::whole_row(&row, 1)?, row.get::<i64>(2)?))
}
