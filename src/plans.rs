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
       head_grant_id, head_remaining,
       coalesce(holds_due_at OPERATOR(pg_catalog.<=) pg_catalog.now(), false) AS holds_due,
       low_balance_at
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
SELECT l, l.direction, l.amount, l.account_type, l.refund_of
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

// The one-statement debit (FAST_DEBIT) and hold (FAST_HOLD) follow one rule, so
// they share its three pieces: which accounts it applies to, how it takes $2,
// and how the taken power is described.

/// SET items that take $2 from the head grant, whose live remaining is on the
/// account row `a`, or, for a user without grants, from the permanent balance.
macro_rules! take_from_head {
    () => {
        "permanent = CASE WHEN a.grants_total OPERATOR(pg_catalog.=) 0
                          THEN a.permanent OPERATOR(pg_catalog.-) $2 ELSE a.permanent END,
         grants_total = CASE WHEN a.grants_total OPERATOR(pg_catalog.=) 0
                             THEN a.grants_total ELSE a.grants_total OPERATOR(pg_catalog.-) $2 END,
         head_remaining = a.head_remaining OPERATOR(pg_catalog.-) $2,"
    };
}

/// The account row `a` of user $1 can pay $2 that way: no expired grant or lapsed
/// hold waits to be swept, no debt, and either no grants at all (the permanent
/// balance covers $2) or a head grant that covers $2 and keeps something left.
macro_rules! head_covers {
    () => {
        "a.user_id OPERATOR(pg_catalog.=) $1
     AND (a.next_expiry IS NULL OR a.next_expiry OPERATOR(pg_catalog.>) pg_catalog.now())
     AND (a.holds_due_at IS NULL OR a.holds_due_at OPERATOR(pg_catalog.>) pg_catalog.now())
     AND ((a.grants_total OPERATOR(pg_catalog.=) 0 AND a.permanent OPERATOR(pg_catalog.>=) $2)
          OR (a.head_remaining OPERATOR(pg_catalog.>) $2 AND a.permanent OPERATOR(pg_catalog.>=) 0))"
    };
}

/// Where $2 taken that way came from, in the ledger's detail format, given the
/// `account` CTE's head_grant_id.
macro_rules! head_funding {
    () => {
        "CASE WHEN account.head_grant_id IS NULL
            THEN pg_catalog.jsonb_build_object('permanent', $2)
            ELSE pg_catalog.jsonb_build_object('grants', pg_catalog.jsonb_build_array(
                   pg_catalog.jsonb_build_object('id', account.head_grant_id, 'amount', $2)))
       END"
    };
}

/// The common deduct in one statement: no idempotency key to check (or already
/// checked under the lock), no expired grant or lapsed hold waiting to be
/// swept, no debt, and either no
/// grants at all or a head grant that covers the amount. It changes only the
/// account row (which it locks by updating it; the head grant's live remaining
/// lives there) and appends the ledger entry: the same work as the floor.
/// Returns no row when those conditions do not hold; the caller then takes the
/// general path.
///  $1 user_id, $2 amount, $3 account_type, $4 source_type, $5 source, $6 remark,
///  $7 association_no, $8 association_user_id, $9 idempotency_key
const FAST_DEBIT: &str = concat!(
    "WITH account AS (
  UPDATE billing.accounts AS a
     SET ", take_from_head!(), "
         last_seq = a.last_seq OPERATOR(pg_catalog.+) 1,
         updated_at = pg_catalog.now()
   WHERE ", head_covers!(), "
  RETURNING a.user_id, a.last_seq, a.permanent OPERATOR(pg_catalog.+) a.grants_total AS balance_after,
            a.head_grant_id, a.low_balance_at
), logged AS (
INSERT INTO billing.account_log AS l
       (user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, detail, idempotency_key)
SELECT account.user_id, account.last_seq, -1, $2, account.balance_after, $3, $4, $5, $6, $7, $8,
       ", head_funding!(), ",
       $9
  FROM account
RETURNING l
)
SELECT logged.l, account.low_balance_at, account.balance_after FROM logged, account"
);

// ---- The general path: holds, refunds and whatever moves power back into grants ----
//
// These calls first write the head grant's live remaining back to grant_store
// (WRITE_BACK_HEAD), so grant_store is exact, then change grants and holds
// with plain statements, and finally rebuild every cache on the account row
// from grant_store and the open holds (REFRESH_ACCOUNT).

/// Makes grant_store exact: the head grant's remaining comes from the account row
/// (the same function billing_expire and billing_revoke_subscription use, sql/operations.sql).
const WRITE_BACK_HEAD: &str = "SELECT billing.write_back_heads(ARRAY[$1])";

/// Gives back what the user's open holds past their ttl reserved, to the grants and
/// the permanent balance it came from, and marks them expired (sql/operations.sql).
const RETURN_DUE_HOLDS: &str = "SELECT billing.return_due_holds(ARRAY[$1])";

/// Every grant the user has with remaining > 0 that has not expired, in spending
/// order, as grant_store holds it (call after WRITE_BACK_HEAD).
const EXACT_LIVE_GRANTS: &str = "\
SELECT id, remaining, expire_at
  FROM billing.grant_store
 WHERE user_id OPERATOR(pg_catalog.=) $1
   AND remaining OPERATOR(pg_catalog.>) 0
   AND expire_at OPERATOR(pg_catalog.>) pg_catalog.now()
 ORDER BY expire_at, id";

/// Adds $3[i] (negative to take) to the remaining of grant $2[i]; each id once.
const MOVE_GRANTS: &str = "\
UPDATE billing.grant_store AS g
   SET remaining = pg_catalog.trim_scale(g.remaining OPERATOR(pg_catalog.+) t.delta)
  FROM ROWS FROM (pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::numeric[])) AS t(id, delta)
 WHERE g.user_id OPERATOR(pg_catalog.=) $1 AND g.id OPERATOR(pg_catalog.=) t.id";

/// The expiry of some of the user's grants.
const GRANT_EXPIRIES: &str = "\
SELECT id, expire_at, expire_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS expired
  FROM billing.grant_store
 WHERE user_id OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.=) ANY ($2::bigint[])";

/// Rebuilds the account row's caches from grant_store and the open holds, after
/// adding $2 to the permanent balance and $3 to last_seq. Returns the new
/// last_seq and the power available now.
const REFRESH_ACCOUNT: &str = "\
UPDATE billing.accounts AS a
   SET permanent = pg_catalog.trim_scale(a.permanent OPERATOR(pg_catalog.+) $2),
       last_seq = a.last_seq OPERATOR(pg_catalog.+) $3,
       grants_total = s.total, next_expiry = s.next_expiry,
       head_grant_id = s.head[1], head_remaining = s.head_remaining[1],
       holds_due_at = (SELECT pg_catalog.min(h.expires_at) FROM billing.holds AS h
                        WHERE h.user_id OPERATOR(pg_catalog.=) $1
                          AND h.status OPERATOR(pg_catalog.=) 'held'),
       updated_at = pg_catalog.now()
  FROM (SELECT coalesce(pg_catalog.sum(g.remaining), 0) AS total,
               pg_catalog.min(g.expire_at) FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0) AS next_expiry,
               coalesce(pg_catalog.sum(g.remaining)
                 FILTER (WHERE g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()), 0) AS live,
               pg_catalog.array_agg(g.id ORDER BY g.expire_at, g.id)
                 FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0
                           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS head,
               pg_catalog.array_agg(g.remaining ORDER BY g.expire_at, g.id)
                 FILTER (WHERE g.remaining OPERATOR(pg_catalog.>) 0
                           AND g.expire_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS head_remaining
          FROM billing.grant_store AS g
         WHERE g.user_id OPERATOR(pg_catalog.=) $1) AS s
 WHERE a.user_id OPERATOR(pg_catalog.=) $1
RETURNING a.last_seq, a.permanent OPERATOR(pg_catalog.+) s.live AS available";

/// One ledger entry, written on its own (the general path).
///  $1 user_id, $2 seq, $3 direction, $4 amount, $5 balance_after, $6 account_type,
///  $7 source_type, $8 source, $9 remark, $10 association_no, $11 association_user_id,
///  $12 subscription_id, $13 detail, $14 idempotency_key, $15 refund_of, $16 expire_at,
///  $17 id (NULL: the next from the sequence)
const INSERT_ENTRY: &str = "\
INSERT INTO billing.account_log AS l
       (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, subscription_id, detail, idempotency_key,
        refund_of, expire_at)
VALUES (coalesce($17, pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass)),
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16)
RETURNING l, l.id";

/// A new grant, created with `remaining` (less than amount when it first pays a debt),
/// and the id of the ledger entry that will record it.
const INSERT_GRANT: &str = "\
INSERT INTO billing.grant_store (user_id, amount, remaining, expire_at, subscription_id, log_id)
VALUES ($1, $2, $3, $4, $5, pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass))
RETURNING id, log_id";

/// The user an entry belongs to, found by its id alone (before any lock).
const ENTRY_OWNER: &str = "\
SELECT user_id FROM billing.account_log WHERE id OPERATOR(pg_catalog.=) $1";

/// An entry, read after the lock.
/// Columns 1-3 of FUNDING: the permanent part, then the grants' ids and amounts in order.
fn funding(column: &str) -> String {
    let grants = format!(
        "pg_catalog.jsonb_array_elements(coalesce({column} OPERATOR(pg_catalog.->) 'grants', '[]'::jsonb)) \
         WITH ORDINALITY AS g(value, n)"
    );
    format!(
        "coalesce(({column} OPERATOR(pg_catalog.->>) 'permanent')::numeric, 0), \
         ARRAY(SELECT (g.value OPERATOR(pg_catalog.->>) 'id')::bigint FROM {grants} ORDER BY g.n), \
         ARRAY(SELECT (g.value OPERATOR(pg_catalog.->>) 'amount')::numeric FROM {grants} ORDER BY g.n)"
    )
}

/// An entry, read after the lock: the row, its funding (see `funding`), and what it was.
const ENTRY: &str = "\
SELECT l, {funding}, l.direction, l.amount, l.account_type, l.refund_of, l.source_type, l.source,
       l.association_no, l.association_user_id
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.id OPERATOR(pg_catalog.=) $2";

/// What the refunds already made of an entry gave back, per grant (NULL: the permanent balance).
const REFUNDED: &str = "\
SELECT NULL::bigint AS grant_id, pg_catalog.sum((l.detail OPERATOR(pg_catalog.->>) 'permanent')::numeric)
  FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.refund_of OPERATOR(pg_catalog.=) $2
HAVING pg_catalog.count(l.detail OPERATOR(pg_catalog.->>) 'permanent') OPERATOR(pg_catalog.>) 0
UNION ALL
SELECT (g.value OPERATOR(pg_catalog.->>) 'id')::bigint, pg_catalog.sum((g.value OPERATOR(pg_catalog.->>) 'amount')::numeric)
  FROM billing.account_log AS l,
       pg_catalog.jsonb_array_elements(coalesce(l.detail OPERATOR(pg_catalog.->) 'grants', '[]'::jsonb)) AS g
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.refund_of OPERATOR(pg_catalog.=) $2
 GROUP BY 1";

/// The user a hold belongs to, found by its id alone (before any lock).
const HOLD_OWNER: &str = "\
SELECT user_id FROM billing.holds WHERE hold_id OPERATOR(pg_catalog.=) $1";

/// A hold read after the lock (by id, or by the caller's key): the row, then its parts.
const HOLD_COLUMNS: &str = "h, {funding}, h.status, h.amount, \
h.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now() AS lapsed, h.settled_amount, h.log_id, \
h.account_type, h.source_type, h.source, h.remark, h.association_no, h.association_user_id, h.closed_at::text, \
h.hold_id";

const HOLD_WHERE: &str = "\
  FROM billing.holds AS h
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2";

const HOLD_BY_KEY_WHERE: &str = "\
  FROM billing.holds AS h
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.idempotency_key OPERATOR(pg_catalog.=) $2";

/// A new hold. $4 is the ttl.
const INSERT_HOLD: &str = "\
INSERT INTO billing.holds AS h
       (user_id, amount, funding, expires_at, account_type, source_type, source, remark,
        association_no, association_user_id, idempotency_key, reserved_after_seq)
VALUES ($1, $2, $3::jsonb, pg_catalog.now() OPERATOR(pg_catalog.+) $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING h";

/// Closes an open hold: $3 status, $4 settled_amount, $5 whether to reserve the id of the
/// ledger entry that settles it (returned), $6 reason, $7 closed_after_seq.
const CLOSE_HOLD: &str = "\
UPDATE billing.holds AS h
   SET status = $3, settled_amount = $4, reason = $6, closed_after_seq = $7, closed_at = pg_catalog.now(),
       log_id = CASE WHEN $5 THEN pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass) END
 WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2
RETURNING h, h.log_id";

/// An entry of the user by id, as a row (a settled hold's entry).
const ENTRY_ROW: &str = "\
SELECT l FROM billing.account_log AS l
 WHERE l.user_id OPERATOR(pg_catalog.=) $1 AND l.id OPERATOR(pg_catalog.=) $2";

/// The common hold in one statement, on the same conditions as FAST_DEBIT: it
/// takes the amount from the head grant (or, for a user without grants, the
/// permanent balance) on the account row and inserts the hold. Returns no row
/// when the conditions do not hold; the caller then takes the general path.
///  $1 user_id, $2 amount, $3 ttl, $4 account_type, $5 source_type, $6 source, $7 remark,
///  $8 association_no, $9 association_user_id, $10 idempotency_key
const FAST_HOLD: &str = concat!(
    "WITH account AS (
  UPDATE billing.accounts AS a
     SET ", take_from_head!(), "
         holds_due_at = least(a.holds_due_at, pg_catalog.now() OPERATOR(pg_catalog.+) $3),
         updated_at = pg_catalog.now()
   WHERE ", head_covers!(), "
  RETURNING a.user_id, a.last_seq, a.head_grant_id, a.low_balance_at,
            a.permanent OPERATOR(pg_catalog.+) a.grants_total AS available
), held AS (
  INSERT INTO billing.holds AS h
         (user_id, amount, funding, expires_at, account_type, source_type, source, remark,
          association_no, association_user_id, idempotency_key, reserved_after_seq)
  SELECT account.user_id, $2,
         ", head_funding!(), ",
         pg_catalog.now() OPERATOR(pg_catalog.+) $3, $4, $5, $6, $7, $8, $9, $10, account.last_seq
    FROM account
  RETURNING h
)
SELECT held.h, account.low_balance_at, account.available FROM held, account"
);

/// A settle that gives back nothing, or gives back only to the permanent balance
/// and/or the head grant (whose live remaining is on the account row), in one
/// statement: the account row (already locked), the hold, and the entry.
///  $1 user_id, $2 hold_id, $3 actual, $4 given back to the permanent balance,
///  $5 given back to the head grant, $6 account_type, $7 source_type, $8 source,
///  $9 remark, $10 association_no, $11 association_user_id, $12 detail
const FAST_SETTLE: &str = "\
WITH account AS (
  UPDATE billing.accounts AS a
     SET permanent = a.permanent OPERATOR(pg_catalog.+) $4,
         grants_total = a.grants_total OPERATOR(pg_catalog.+) $5,
         head_remaining = a.head_remaining OPERATOR(pg_catalog.+) $5,
         last_seq = a.last_seq OPERATOR(pg_catalog.+) 1,
         holds_due_at = (SELECT pg_catalog.min(h.expires_at) FROM billing.holds AS h
                          WHERE h.user_id OPERATOR(pg_catalog.=) $1
                            AND h.status OPERATOR(pg_catalog.=) 'held'
                            AND h.hold_id OPERATOR(pg_catalog.<>) $2),
         updated_at = pg_catalog.now()
   WHERE a.user_id OPERATOR(pg_catalog.=) $1
  RETURNING a.user_id, a.last_seq, a.permanent OPERATOR(pg_catalog.+) a.grants_total AS available
), closed AS (
  UPDATE billing.holds AS h
     SET status = 'settled', settled_amount = $3, closed_at = pg_catalog.now(),
         closed_after_seq = account.last_seq,
         log_id = pg_catalog.nextval('billing.account_log_id_seq'::pg_catalog.regclass)
    FROM account
   WHERE h.user_id OPERATOR(pg_catalog.=) $1 AND h.hold_id OPERATOR(pg_catalog.=) $2
  RETURNING h.log_id
)
INSERT INTO billing.account_log AS l
       (id, user_id, seq, direction, amount, balance_after, account_type, source_type, source,
        remark, association_no, association_user_id, detail)
SELECT closed.log_id, account.user_id, account.last_seq, -1, $3, account.available, $6, $7, $8,
       $9, $10, $11, $12::jsonb
  FROM account, closed
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
    pub write_back_head: OwnedPreparedStatement,
    pub return_due_holds: OwnedPreparedStatement,
    pub exact_live_grants: OwnedPreparedStatement,
    pub move_grants: OwnedPreparedStatement,
    pub grant_expiries: OwnedPreparedStatement,
    pub refresh_account: OwnedPreparedStatement,
    pub insert_entry: OwnedPreparedStatement,
    pub insert_grant: OwnedPreparedStatement,
    pub entry_owner: OwnedPreparedStatement,
    pub entry: OwnedPreparedStatement,
    pub refunded: OwnedPreparedStatement,
    pub hold_owner: OwnedPreparedStatement,
    pub hold: OwnedPreparedStatement,
    pub hold_by_key: OwnedPreparedStatement,
    pub insert_hold: OwnedPreparedStatement,
    pub close_hold: OwnedPreparedStatement,
    pub entry_row: OwnedPreparedStatement,
    pub fast_hold: OwnedPreparedStatement,
    pub fast_settle: OwnedPreparedStatement,
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
const INTERVAL: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INTERVALOID);

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
    let insert_entry_args = [
        TEXT, INT8, INT2, NUMERIC, NUMERIC, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT,
        INT8, TIMESTAMPTZ, INT8,
    ];
    let hold_columns = HOLD_COLUMNS.replace("{funding}", &funding("h.funding"));
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
        write_back_head: client.prepare_mut(WRITE_BACK_HEAD, &[TEXT])?.keep(),
        return_due_holds: client.prepare_mut(RETURN_DUE_HOLDS, &[TEXT])?.keep(),
        exact_live_grants: client.prepare_mut(EXACT_LIVE_GRANTS, &[TEXT])?.keep(),
        move_grants: client.prepare_mut(MOVE_GRANTS, &[TEXT, INT8_ARRAY, NUMERIC_ARRAY])?.keep(),
        grant_expiries: client.prepare_mut(GRANT_EXPIRIES, &[TEXT, INT8_ARRAY])?.keep(),
        refresh_account: client.prepare_mut(REFRESH_ACCOUNT, &[TEXT, NUMERIC, INT8])?.keep(),
        insert_entry: client.prepare_mut(INSERT_ENTRY, &insert_entry_args)?.keep(),
        insert_grant: client.prepare_mut(INSERT_GRANT, &[TEXT, NUMERIC, NUMERIC, TIMESTAMPTZ, TEXT])?.keep(),
        entry_owner: client.prepare(ENTRY_OWNER, &[INT8])?.keep(),
        entry: client.prepare_mut(&ENTRY.replace("{funding}", &funding("l.detail")), &[TEXT, INT8])?.keep(),
        refunded: client.prepare_mut(REFUNDED, &[TEXT, INT8])?.keep(),
        hold_owner: client.prepare(HOLD_OWNER, &[INT8])?.keep(),
        hold: client.prepare_mut(&format!("SELECT {hold_columns}\n{HOLD_WHERE}"), &[TEXT, INT8])?.keep(),
        hold_by_key: client.prepare_mut(&format!("SELECT {hold_columns}\n{HOLD_BY_KEY_WHERE}"), &[TEXT, TEXT])?.keep(),
        insert_hold: client
            .prepare_mut(INSERT_HOLD, &[TEXT, NUMERIC, TEXT, INTERVAL, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, INT8])?
            .keep(),
        close_hold: client.prepare_mut(CLOSE_HOLD, &[TEXT, INT8, TEXT, NUMERIC, BOOL, TEXT, INT8])?.keep(),
        entry_row: client.prepare_mut(ENTRY_ROW, &[TEXT, INT8])?.keep(),
        fast_hold: client
            .prepare_mut(FAST_HOLD, &[TEXT, NUMERIC, INTERVAL, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT])?
            .keep(),
        fast_settle: client
            .prepare_mut(FAST_SETTLE, &[TEXT, INT8, NUMERIC, NUMERIC, NUMERIC, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT])?
            .keep(),
    };
    let plans: &'static Plans = Box::leak(Box::new(plans));
    PLANS.set(Some(plans));
    Ok(plans)
}
