//! Refunds: billing_refund gives back all or part of an earlier debit.
//!
//! Whatever funded the debit (a deduct or a settle; grants, the permanent
//! balance, or both), the refund takes the one path back: the same grants,
//! keeping their expiry, and the same permanent balance, in the reverse of the
//! order they were spent (permanent first, then the latest-expiring grant). One
//! REFUND_INC entry names the original in refund_of; all refunds of an entry
//! together never exceed it (PB005). Power refunded into a grant that has
//! expired since expires again at once, with its own MEMBERSHIP_GIFT_EXPIRED entry.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use rust_decimal::Decimal;

use crate::accounts;
use crate::drawdown::{self, Drawdown};
use crate::errors::{BillingError, BillingResult, SqlState};
use crate::fmgr::{sql_function, Args, Returned, MAX_REMARK_CHARS};
use crate::general_path;
use crate::limits;
use crate::ledger::{self, decimal, Direction, Movement};
use crate::statements::{self, Plans};

/// The account type of every refund entry.
const REFUND_TYPE: &str = "REFUND_INC";
/// Expiry entries cannot be refunded: power that expired is not given back this way.
const EXPIRED_TYPE: &str = "MEMBERSHIP_GIFT_EXPIRED";

/// The debit being refunded, as read under the lock.
struct Original {
    funding: Drawdown,
    direction: i16,
    amount: Decimal,
    account_type: String,
    source_type: String,
    source: String,
    association_no: Option<String>,
    association_user_id: Option<String>,
    /// For a charge: its scopes (None: not a charge, or made before 0.3.0).
    scopes: Option<Vec<String>>,
    created_at: pg_sys::TimestampTz,
    seq: i64,
}

/// The user an entry belongs to; 22023 if there is no such entry.
fn entry_owner(client: &mut SpiClient<'_>, plans: &Plans, log_id: i64) -> BillingResult<String> {
    let table = client.select(&plans.entry_owner, None, &[log_id.into()])?;
    if table.is_empty() {
        return Err(BillingError::invalid_argument("log_id", format!("{log_id} does not exist"))
            .with_hint("Pass the id of a billing.account_log entry."));
    }
    table.first().get::<String>(1)?.ok_or_else(|| BillingError::internal("entry user_id is NULL"))
}

/// Whether the user has an entry of this id (read after the account lock).
fn entry_exists(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, log_id: i64) -> BillingResult<bool> {
    Ok(!client.update(&plans.entry_row, None, &[user_id.into(), log_id.into()])?.is_empty())
}

fn read_original(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, log_id: i64) -> BillingResult<Original> {
    let table = client.update(&plans.entry, None, &[user_id.into(), log_id.into()])?;
    if table.is_empty() {
        return Err(BillingError::internal("an entry vanished under the account lock"));
    }
    let row = table.first();
    let required = |n: usize| -> BillingResult<String> {
        row.get::<String>(n)?.ok_or_else(|| BillingError::internal("a required entry column is NULL"))
    };
    Ok(Original {
        funding: general_path::funding(&row, 2)?,
        direction: row.get::<i16>(5)?.unwrap_or(0),
        amount: decimal(&row, 6, "amount")?,
        account_type: required(7)?,
        source_type: required(9)?,
        source: required(10)?,
        association_no: row.get::<String>(11)?,
        association_user_id: row.get::<String>(12)?,
        scopes: row.get::<Vec<Option<String>>>(13)?.map(|s| s.into_iter().flatten().collect()),
        created_at: row
            .get::<pgrx::datum::TimestampWithTimeZone>(14)?
            .ok_or_else(|| BillingError::internal("entry created_at is NULL"))?
            .into(),
        seq: row.get::<i64>(15)?.ok_or_else(|| BillingError::internal("entry seq is NULL"))?,
    })
}

/// What earlier refunds of the entry gave back, per source.
fn refunded(client: &mut SpiClient<'_>, plans: &Plans, user_id: &str, log_id: i64) -> BillingResult<Drawdown> {
    let mut given = Drawdown::default();
    for row in client.update(&plans.refunded, None, &[user_id.into(), log_id.into()])? {
        let amount = row.get::<AnyNumeric>(2)?.ok_or_else(|| BillingError::internal("refunded is NULL"))?;
        let amount = crate::amounts::parse_stored("refunded", &amount.to_string())?;
        match row.get::<i64>(1)? {
            None => given.from_permanent += amount,
            Some(id) => given.from_grants.push((id, amount)),
        }
    }
    Ok(given)
}

/// With an idempotency key: the refund an earlier identical call wrote, or PB003.
fn replay(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    user_id: &str,
    key: &str,
    log_id: i64,
    amount: Option<Decimal>,
) -> BillingResult<Option<pg_sys::Datum>> {
    let table = client.update(&plans.idempotent_entry, None, &[user_id.into(), key.into()])?;
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    let earlier_amount = decimal(&row, 3, "amount")?;
    let same = row.get::<String>(4)?.as_deref() == Some(REFUND_TYPE)
        && row.get::<i64>(5)? == Some(log_id)
        && amount.is_none_or(|a| a == earlier_amount);
    if !same {
        return Err(BillingError::new(
            SqlState::IdempotencyConflict,
            format!("idempotency_key {key:?} was already used for a different operation"),
        )
        .with_detail(format!(
            "This call refunds {} of entry {log_id}; the key belongs to another entry.",
            amount.map_or("all that is left".to_owned(), |a| a.to_string())
        ))
        .with_hint("Use a new idempotency key for a new operation."));
    }
    ledger::whole_row(&row, 1).map(Some)
}

/// billing_refund(log_id, amount, remark, idempotency_key)
fn refund(args: &Args) -> Returned {
    refund_entry(None, args, 0)
}

/// billing_user_refund(user_id, log_id, amount, remark, idempotency_key): the
/// same, keyed by the user as well (Citus runs it on the node holding the user).
fn user_refund(args: &Args) -> Returned {
    refund_entry(Some(args.key(0, "user_id")?), args, 1)
}
sql_function!(pg_finfo_billing_user_refund, billing_user_refund => user_refund);

/// Refunds the entry whose arguments (log_id, amount, remark, idempotency_key)
/// begin at position `first`; `user_id` is the user the caller names, or None to
/// find the user by the entry's id.
fn refund_entry(user_id: Option<String>, args: &Args, first: usize) -> Returned {
    let log_id = args.id(first, "log_id")?;
    let amount = args.optional_amount(first + 1, "amount")?;
    let remark = args.text(first + 2, "remark", MAX_REMARK_CHARS)?;
    let idempotency_key = args.optional_key(first + 3, "idempotency_key")?;
    Spi::connect_mut(|client| {
        let plans = statements::get(client)?;
        let named = user_id.is_some();
        let user_id = match user_id {
            Some(user_id) => user_id,
            None => entry_owner(client, plans, log_id)?,
        };
        let not_theirs = || {
            BillingError::invalid_argument("log_id", format!("{log_id} is not an entry of user {user_id:?}"))
                .with_hint("Pass the id of one of this user's billing.account_log entries.")
        };
        let Some(account) = accounts::lock_current(client, plans, &user_id)? else {
            return Err(if named { not_theirs() } else { BillingError::internal("an entry's account row is missing") });
        };
        if named && !entry_exists(client, plans, &user_id, log_id)? {
            return Err(not_theirs());
        }
        if let Some(key) = idempotency_key.as_deref() {
            if let Some(earlier) = replay(client, plans, &user_id, key, log_id, amount)? {
                return Ok(Some(earlier));
            }
        }
        let original = read_original(client, plans, &user_id, log_id)?;
        if original.direction != Direction::Debit.sign() || original.account_type == EXPIRED_TYPE {
            return Err(BillingError::invalid_argument(
                "log_id",
                format!("{log_id} is a {} entry, which cannot be refunded", original.account_type),
            )
            .with_hint("Only debits (deducts and settles) can be refunded; correct a credit with a new entry."));
        }
        let before = refunded(client, plans, &user_id, log_id)?;
        let plan = drawdown::plan_refund(&original.funding, &before, amount).map_err(|refundable| {
            BillingError::new(
                SqlState::RefundExceeded,
                format!("refund of entry {log_id} would give back more than it took"),
            )
            .with_detail(format!(
                "Entry {log_id} took {}; {} can still be refunded{}.",
                original.amount.normalize(),
                refundable.normalize(),
                amount.map_or(String::new(), |a| format!(", and this call asks for {}", a.normalize()))
            ))
            .with_hint("Refunds of one entry never add up to more than it took.")
        })?;
        // a refund gives back to the limits and the period the charge was counted in
        if let (true, Some(scopes)) = (account.limited, &original.scopes) {
            limits::count(
                client,
                plans,
                &user_id,
                limits::Count {
                    scopes,
                    spent: -drawdown::total(&plan),
                    held: Decimal::ZERO,
                    counted_at: Some(original.created_at),
                    counted_seq: Some(original.seq),
                },
            )?;
        }
        general_path::open(client, plans, &user_id, false)?;
        let ids: Vec<i64> = plan.from_grants.iter().map(|(id, _)| *id).collect();
        let expired = general_path::expired_grants(client, plans, &user_id, &ids)?;
        let (into_expired, into_live): (Vec<(i64, Decimal)>, Vec<(i64, Decimal)>) =
            plan.from_grants.iter().copied().partition(|(id, _)| expired.contains(id));
        general_path::move_grants(client, plans, &user_id, &into_live)?;
        let after = general_path::refresh(client, plans, &user_id, plan.from_permanent, 1 + into_expired.len() as i64)?;
        let refund_seq = after.last_seq - into_expired.len() as i64;
        let credit = Movement {
            direction: Direction::Credit,
            user_id: user_id.clone(),
            amount: drawdown::total(&plan),
            account_type: REFUND_TYPE.to_owned(),
            source_type: original.source_type.clone(),
            source: original.source.clone(),
            remark,
            association_no: original.association_no.clone(),
            association_user_id: original.association_user_id.clone(),
            subscription_id: None,
            expire_at: None,
            idempotency_key,
            scopes: None,
        };
        let (entry, _) = general_path::insert_entry(
            client,
            plans,
            &general_path::Entry {
                movement: &credit,
                seq: refund_seq,
                balance_after: after.available,
                detail: ledger::detail_json(plan.from_permanent, &plan.from_grants),
                refund_of: Some(log_id),
                id: None,
            },
        )?;
        for (n, (grant_id, amount)) in into_expired.iter().enumerate() {
            let expiry = Movement {
                direction: Direction::Debit,
                user_id: user_id.clone(),
                amount: *amount,
                account_type: EXPIRED_TYPE.to_owned(),
                source_type: "MEMBERSHIP_GIFT".to_owned(),
                source: "expiry".to_owned(),
                remark: Some(format!("grant {grant_id} had expired when entry {log_id} was refunded into it")),
                association_no: None,
                association_user_id: None,
                subscription_id: None,
                expire_at: None,
                idempotency_key: None,
                scopes: None,
            };
            general_path::insert_entry(
                client,
                plans,
                &general_path::Entry {
                    movement: &expiry,
                    seq: refund_seq + 1 + n as i64,
                    balance_after: after.available,
                    detail: ledger::detail_json(Decimal::ZERO, &[(*grant_id, *amount)]),
                    refund_of: None,
                    id: None,
                },
            )?;
        }
        Ok(Some(entry))
    })
}
sql_function!(pg_finfo_billing_refund, billing_refund => refund);
