//! The SQL the functions run, prepared once per backend and kept.
//!
//! The account row holds the live remaining of one grant, the head (the one
//! spent next): `grant_store.remaining` of that grant is written back only when
//! the head moves. Whatever reads or writes a grant's remaining under the lock
//! must take the head's from the account row, and write it back when it moves
//! the head elsewhere; `billing.grants` (a view) shows every grant as it stands.
//!
//! Every statement names its tables and functions with their schema, so the
//! plans mean the same thing whatever search_path the caller has. Writes and
//! the reads that follow the account lock are prepared as mutating, so each
//! runs with a fresh snapshot and sees what a transaction we waited for wrote.

use std::cell::Cell;

use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

use crate::errors::BillingResult;

/// Locks the user's account row: the first thing every write does.
const LOCK_ACCOUNT: &str = "\
SELECT permanent, grants_total, next_expiry, last_seq,
       coalesce(next_expiry OPERATOR(pg_catalog.<=) pg_catalog.now(), false) AS has_expired,
       head_grant_id, head_remaining
  FROM billing.accounts
 WHERE user_id OPERATOR(pg_catalog.=) $1
   FOR UPDATE";

const CREATE_ACCOUNT: &str = "\
INSERT INTO billing.accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING";

/// Grants that can be spent now, in spending order, the first $2 of them (NULL: all).
/// The head grant's stored remaining may be behind: the caller overlays the
/// account row's head_remaining.
const LIVE_GRANTS: &str = "\
SELECT id, remaining, expire_at
  FROM billing.grant_store
 WHERE user_id OPERATOR(pg_catalog.=) $1
   AND remaining OPERATOR(pg_catalog.>) 0
   AND expire_at OPERATOR(pg_catalog.>) pg_catalog.now()
 ORDER BY expire_at, id
 LIMIT $2";

const TYPES: &str = "\
SELECT (SELECT direction FROM billing.account_types WHERE code OPERATOR(pg_catalog.=) $1),
       EXISTS (SELECT FROM billing.source_types WHERE code OPERATOR(pg_catalog.=) $2)";

const IDEMPOTENT_ENTRY: &str = "\
SELECT l, l.direction, l.amount, l.account_type
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1
   AND l.idempotency_key OPERATOR(pg_catalog.=) $2";

/// One ledger entry that moves the permanent balance and/or spends grants,
/// with the account's new cached totals, in one statement.
///  $1 user_id, $2 seq, $3 direction, $4 amount, $5 balance_after, $6 account_type,
///  $7 source_type, $8 source, $9 remark, $10 association_no, $11 association_user_id,
///  $12 subscription_id, $13 detail, $14 idempotency_key, $15 permanent, $16 grants_total,
///  $17 next_expiry, $18 grant ids, $19 the remaining to store for each of them
///  (grants spent from, and the old head grant written back), $20 head_grant_id, $21 head_remaining
const WRITE_ENTRY: &str = "\
WITH stored AS (
  UPDATE billing.grant_store AS g
     SET remaining = t.remaining
    FROM ROWS FROM (pg_catalog.unnest($18::bigint[]), pg_catalog.unnest($19::numeric[])) AS t(id, remaining)
   WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) t.id
), account AS (
  UPDATE billing.accounts
     SET permanent = $15, grants_total = $16, next_expiry = $17, last_seq = $2,
         head_grant_id = $20, head_remaining = $21, updated_at = pg_catalog.now()
   WHERE user_id OPERATOR(pg_catalog.=) $1
)
INSERT INTO billing.account_log AS l
       (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, detail, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14)
RETURNING l";

/// One ledger entry that creates a grant, with the account's new cached totals.
///  $1..$12, $14 as in WRITE_ENTRY; $13 expire_at, $15 grants_total, $16 next_expiry,
///  $17 whether the new grant is spent next, else $18/$19 are the head and its remaining;
///  $20/$21 a grant whose live remaining to write back (the old head, when the head moves)
const WRITE_GRANT: &str = "\
WITH ids AS MATERIALIZED (
  SELECT pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass) AS log_id,
         pg_catalog.nextval('billing.grants_id_seq'::pg_catalog.regclass) AS grant_id
), granted AS (
  INSERT INTO billing.grant_store (user_id, id, amount, remaining, expire_at, subscription_id, log_id)
  SELECT $1, ids.grant_id, $4, $4, $13, $12, ids.log_id FROM ids
), old_head AS (
  UPDATE billing.grant_store AS g
     SET remaining = $21
   WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) $20
), account AS (
  UPDATE billing.accounts
     SET grants_total = $15, next_expiry = $16, last_seq = $2, updated_at = pg_catalog.now(),
         head_grant_id = CASE WHEN $17 THEN ids.grant_id ELSE $18 END,
         head_remaining = CASE WHEN $17 THEN $4 ELSE $19 END
    FROM ids
   WHERE user_id OPERATOR(pg_catalog.=) $1
)
INSERT INTO billing.account_log AS l
       (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, expire_at, detail,
        idempotency_key)
SELECT ids.log_id, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
       pg_catalog.jsonb_build_object('grants', pg_catalog.jsonb_build_array(
         pg_catalog.jsonb_build_object('id', ids.grant_id, 'amount', $4))),
       $14
  FROM ids
RETURNING l";

/// The common deduct in one statement: no idempotency key to check (or already
/// checked under the lock), no expired grant waiting for a sweep, and either no
/// grants at all or a head grant that covers the amount. It changes only the
/// account row (which it locks by updating it; the head grant's live remaining
/// lives there) and appends the ledger entry: the same work as the floor.
/// Returns no row when those conditions do not hold; the caller then takes the
/// general path.
///  $1 user_id, $2 amount, $3 account_type, $4 source_type, $5 source, $6 remark,
///  $7 association_no, $8 association_user_id, $9 idempotency_key
const FAST_DEBIT: &str = "\
WITH account AS (
  UPDATE billing.accounts AS a
     SET permanent = CASE WHEN a.grants_total OPERATOR(pg_catalog.=) 0
                          THEN a.permanent OPERATOR(pg_catalog.-) $2 ELSE a.permanent END,
         grants_total = CASE WHEN a.grants_total OPERATOR(pg_catalog.=) 0
                             THEN a.grants_total ELSE a.grants_total OPERATOR(pg_catalog.-) $2 END,
         head_remaining = a.head_remaining OPERATOR(pg_catalog.-) $2,
         last_seq = a.last_seq OPERATOR(pg_catalog.+) 1,
         updated_at = pg_catalog.now()
   WHERE a.user_id OPERATOR(pg_catalog.=) $1
     AND (a.next_expiry IS NULL OR a.next_expiry OPERATOR(pg_catalog.>) pg_catalog.now())
     AND ((a.grants_total OPERATOR(pg_catalog.=) 0 AND a.permanent OPERATOR(pg_catalog.>=) $2)
          OR a.head_remaining OPERATOR(pg_catalog.>) $2)
  RETURNING a.user_id, a.last_seq, a.permanent OPERATOR(pg_catalog.+) a.grants_total AS balance_after,
            a.head_grant_id
)
INSERT INTO billing.account_log AS l
       (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, detail, idempotency_key)
SELECT account.user_id, account.last_seq, -1, $2, account.balance_after, $3, $4, $5, $6, $7, $8,
       CASE WHEN account.head_grant_id IS NULL
            THEN pg_catalog.jsonb_build_object('permanent', $2)
            ELSE pg_catalog.jsonb_build_object('grants', pg_catalog.jsonb_build_array(
                   pg_catalog.jsonb_build_object('id', account.head_grant_id, 'amount', $2)))
       END,
       $9
  FROM account
RETURNING l";

/// Every prepared statement, kept for the life of the backend.
pub struct Plans {
    pub lock_account: OwnedPreparedStatement,
    pub create_account: OwnedPreparedStatement,
    pub live_grants: OwnedPreparedStatement,
    pub types: OwnedPreparedStatement,
    pub idempotent_entry: OwnedPreparedStatement,
    pub write_entry: OwnedPreparedStatement,
    pub write_grant: OwnedPreparedStatement,
    pub fast_debit: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Cell<Option<&'static Plans>> = const { Cell::new(None) };
}

const TEXT: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID);
const INT8: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID);
const BOOL: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::BOOLOID);
const INT2: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT2OID);
const NUMERIC: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::NUMERICOID);
const TIMESTAMPTZ: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TIMESTAMPTZOID);
const INT8_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT8ARRAYOID);
const NUMERIC_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::NUMERICARRAYOID);

/// The backend's plans, prepared on first use.
pub fn get(client: &SpiClient<'_>) -> BillingResult<&'static Plans> {
    if let Some(plans) = PLANS.get() {
        return Ok(plans);
    }
    let entry_args = [
        TEXT, INT8, INT2, NUMERIC, NUMERIC, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT,
        NUMERIC, NUMERIC, TIMESTAMPTZ, INT8_ARRAY, NUMERIC_ARRAY, INT8, NUMERIC,
    ];
    let grant_args = [
        TEXT, INT8, INT2, NUMERIC, NUMERIC, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TIMESTAMPTZ,
        TEXT, NUMERIC, TIMESTAMPTZ, BOOL, INT8, NUMERIC, INT8, NUMERIC,
    ];
    let plans = Plans {
        lock_account: client.prepare_mut(LOCK_ACCOUNT, &[TEXT])?.keep(),
        create_account: client.prepare_mut(CREATE_ACCOUNT, &[TEXT])?.keep(),
        live_grants: client.prepare_mut(LIVE_GRANTS, &[TEXT, INT8])?.keep(),
        types: client.prepare(TYPES, &[TEXT, TEXT])?.keep(),
        idempotent_entry: client.prepare_mut(IDEMPOTENT_ENTRY, &[TEXT, TEXT])?.keep(),
        write_entry: client.prepare_mut(WRITE_ENTRY, &entry_args)?.keep(),
        write_grant: client.prepare_mut(WRITE_GRANT, &grant_args)?.keep(),
        fast_debit: client
            .prepare_mut(FAST_DEBIT, &[TEXT, NUMERIC, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT])?
            .keep(),
    };
    let plans: &'static Plans = Box::leak(Box::new(plans));
    PLANS.set(Some(plans));
    Ok(plans)
}
