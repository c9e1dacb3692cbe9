//! The SQL the functions run, prepared once per backend and kept.
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
       coalesce(next_expiry <= pg_catalog.now(), false) AS has_expired
  FROM billing.accounts
 WHERE user_id OPERATOR(pg_catalog.=) $1
   FOR UPDATE";

const CREATE_ACCOUNT: &str = "\
INSERT INTO billing.accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING";

/// Grants that can be spent now, in spending order.
const LIVE_GRANTS: &str = "\
SELECT id, remaining, expire_at
  FROM billing.grants
 WHERE user_id OPERATOR(pg_catalog.=) $1
   AND remaining OPERATOR(pg_catalog.>) 0
   AND expire_at OPERATOR(pg_catalog.>) pg_catalog.now()
 ORDER BY expire_at, id";

const TYPES: &str = "\
SELECT (SELECT direction FROM billing.account_types WHERE code OPERATOR(pg_catalog.=) $1),
       EXISTS (SELECT FROM billing.source_types WHERE code OPERATOR(pg_catalog.=) $2)";

const IDEMPOTENT_ENTRY: &str = "\
SELECT l, l.direction, l.amount, l.account_type
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1
   AND l.idempotency_key OPERATOR(pg_catalog.=) $2";

/// Available power without a lock: the cached totals, or the grants when one has expired unswept.
const POWER: &str = "\
SELECT a.permanent OPERATOR(pg_catalog.+) CASE
         WHEN a.next_expiry IS NULL OR a.next_expiry OPERATOR(pg_catalog.>) pg_catalog.now() THEN a.grants_total
         ELSE (SELECT coalesce(pg_catalog.sum(g.remaining), 0)
                 FROM billing.grants AS g
                WHERE g.user_id OPERATOR(pg_catalog.=) a.user_id
                  AND g.remaining OPERATOR(pg_catalog.>) 0
                  AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now())
       END
  FROM billing.accounts AS a
 WHERE a.user_id OPERATOR(pg_catalog.=) $1";

/// One ledger entry that moves the permanent balance and/or spends grants,
/// with the account's new cached totals, in one statement.
///  $1 user_id, $2 seq, $3 direction, $4 amount, $5 balance_after, $6 account_type,
///  $7 source_type, $8 source, $9 remark, $10 association_no, $11 association_user_id,
///  $12 subscription_id, $13 detail, $14 idempotency_key, $15 permanent, $16 grants_total,
///  $17 next_expiry, $18 grant ids, $19 amounts taken from those grants
const WRITE_ENTRY: &str = "\
WITH spent AS (
  UPDATE billing.grants AS g
     SET remaining = g.remaining OPERATOR(pg_catalog.-) t.take
    FROM ROWS FROM (pg_catalog.unnest($18::bigint[]), pg_catalog.unnest($19::numeric[])) AS t(id, take)
   WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) t.id
), account AS (
  UPDATE billing.accounts
     SET permanent = $15, grants_total = $16, next_expiry = $17, last_seq = $2,
         updated_at = pg_catalog.now()
   WHERE user_id OPERATOR(pg_catalog.=) $1
)
INSERT INTO billing.account_log AS l
       (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, detail, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14)
RETURNING l";

/// One ledger entry that creates a grant, with the account's new cached totals.
///  $1..$12, $14 as in WRITE_ENTRY; $13 expire_at, $15 grants_total, $16 next_expiry
const WRITE_GRANT: &str = "\
WITH ids AS MATERIALIZED (
  SELECT pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass) AS log_id,
         pg_catalog.nextval('billing.grants_id_seq'::pg_catalog.regclass) AS grant_id
), granted AS (
  INSERT INTO billing.grants (user_id, id, amount, remaining, expire_at, subscription_id, log_id)
  SELECT $1, ids.grant_id, $4, $4, $13, $12, ids.log_id FROM ids
), account AS (
  UPDATE billing.accounts
     SET grants_total = $15, next_expiry = $16, last_seq = $2, updated_at = pg_catalog.now()
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

/// Every prepared statement, kept for the life of the backend.
pub struct Plans {
    pub lock_account: OwnedPreparedStatement,
    pub create_account: OwnedPreparedStatement,
    pub live_grants: OwnedPreparedStatement,
    pub types: OwnedPreparedStatement,
    pub idempotent_entry: OwnedPreparedStatement,
    pub power: OwnedPreparedStatement,
    pub write_entry: OwnedPreparedStatement,
    pub write_grant: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: Cell<Option<&'static Plans>> = const { Cell::new(None) };
}

const TEXT: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID);
const INT8: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID);
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
        NUMERIC, NUMERIC, TIMESTAMPTZ, INT8_ARRAY, NUMERIC_ARRAY,
    ];
    let grant_args = [
        TEXT, INT8, INT2, NUMERIC, NUMERIC, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TIMESTAMPTZ,
        TEXT, NUMERIC, TIMESTAMPTZ,
    ];
    let plans = Plans {
        lock_account: client.prepare_mut(LOCK_ACCOUNT, &[TEXT])?.keep(),
        create_account: client.prepare_mut(CREATE_ACCOUNT, &[TEXT])?.keep(),
        live_grants: client.prepare_mut(LIVE_GRANTS, &[TEXT])?.keep(),
        types: client.prepare(TYPES, &[TEXT, TEXT])?.keep(),
        idempotent_entry: client.prepare_mut(IDEMPOTENT_ENTRY, &[TEXT, TEXT])?.keep(),
        power: client.prepare(POWER, &[TEXT])?.keep(),
        write_entry: client.prepare_mut(WRITE_ENTRY, &entry_args)?.keep(),
        write_grant: client.prepare_mut(WRITE_GRANT, &grant_args)?.keep(),
    };
    let plans: &'static Plans = Box::leak(Box::new(plans));
    PLANS.set(Some(plans));
    Ok(plans)
}
