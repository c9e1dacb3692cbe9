// Every SQLSTATE of docs/errors.md provoked for real and mapped to its class;
// any other error passes through unchanged.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import {
  Billing,
  BillingError,
  CitusUnavailable,
  DeadlockDetected,
  DependentObjects,
  HoldStateError,
  IdempotencyConflict,
  InsufficientPower,
  InsufficientPrivilege,
  InvalidArgument,
  LedgerAppendOnly,
  LimitExceeded,
  NullArgument,
  OutOfRange,
  OverRefund,
  SerializationFailure,
  TransactionConflict,
  TriggerProtocolViolated,
  TypeCodeFixed,
  UndefinedColumn,
  UnknownType,
  isRetryable,
  mapError,
} from "pgbilling";
import { eqDec, freshDatabase, poolFor, thrown, withDirect } from "./helpers.js";

let pool: pg.Pool;
let b: Billing;
let db: string;

const recharge = { accountType: "RECHARGE_INC", sourceType: "RECHARGE" } as const;
const chat = { accountType: "CHAT_DEC", sourceType: "CHAT" } as const;
const DEDUCT_SIGNATURE = "billing_deduct(text, numeric, text, text, text, text, text, text, text, text[])";

before(async () => {
  db = await freshDatabase("errors");
  await withDirect(db, (c) =>
    c.query(`
      CREATE ROLE pgb_app NOLOGIN;
      GRANT EXECUTE ON FUNCTION ${DEDUCT_SIGNATURE}, billing_metrics_reset() TO pgb_app;
      CREATE ROLE pgb_nothing NOLOGIN;
      CREATE ROLE pgb_owner NOLOGIN;
      GRANT EXECUTE ON FUNCTION billing_charge() TO pgb_owner;
      GRANT CREATE ON SCHEMA public TO pgb_owner;`),
  );
  pool = poolFor(db);
  b = new Billing(pool);
  await b.add({ userId: "u", amount: "100", ...recharge, source: "o" });
});
after(async () => {
  await pool?.end();
});

/** Runs fn on a client inside a transaction as `role` (SET LOCAL ROLE), then rolls back. */
async function asRole<T>(role: string, fn: (b: Billing) => Promise<T>): Promise<unknown> {
  const c = await pool.connect();
  try {
    await c.query("BEGIN");
    await c.query(`SET LOCAL ROLE ${role}`);
    return await thrown(() => fn(new Billing(c)));
  } finally {
    await c.query("ROLLBACK");
    c.release();
  }
}

/** The error of one of our own statements, through mapError. */
async function ownStatement(sql: string): Promise<unknown> {
  return mapError(await thrown(() => pool.query(sql)));
}

function check<T extends BillingError>(err: unknown, cls: new (...args: never[]) => T, sqlstate: string): T {
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)} (${(err as { code?: string })?.code})`);
  assert.ok(err instanceof BillingError);
  assert.ok(err instanceof Error);
  assert.equal(err.sqlstate, sqlstate);
  assert.equal(err.name, cls.name);
  assert.equal((err.cause as { code?: string }).code, sqlstate, "the driver's error is the cause");
  assert.ok(err.message.length > 0);
  return err;
}

test("PB001 InsufficientPower, with requested and available parsed", async () => {
  const err = check(await thrown(() => b.deduct({ userId: "nobody", amount: "3", ...chat, source: "s" })), InsufficientPower, "PB001");
  assert.equal(err.detail, "Requested 3, available 0.");
  assert.match(err.hint ?? "", /billing_add/);
  assert.equal(err.userId, "nobody");
  eqDec(err.requested, "3");
  eqDec(err.available, "0");
  assert.equal(err.held, undefined);
  assert.equal(err.retryable, false);
  const onHold = check(await thrown(() => b.hold({ userId: "u", amount: "100.5", ...chat, source: "s" })), InsufficientPower, "PB001");
  eqDec(onHold.requested, "100.5");
  eqDec(onHold.available, "100");
});

test("PB001 of a settle above its hold: held, requested (the part above) and available", async () => {
  await b.add({ userId: "s1", amount: "10", ...recharge, source: "o" });
  const h = await b.hold({ userId: "s1", amount: "4", ...chat, source: "s" });
  const err = check(await thrown(() => b.settle(h.holdId, "20.5")), InsufficientPower, "PB001");
  eqDec(err.held, "4");
  eqDec(err.requested, "16.5");
  eqDec(err.available, "6");
  await b.setDebtLimit("s1", "1");
  const floor = check(await thrown(() => b.settle(h.holdId, "20.5", { allowDebt: true })), InsufficientPower, "PB001");
  eqDec(floor.held, "4");
  eqDec(floor.requested, "16.5");
  eqDec(floor.available, "7", "the grants, the balance and the floor leave 6 + 1");
  assert.equal((await b.release(h.holdId)).status, "released", "the hold stayed as it was");
});

test("PB001 to a role that may not read balances: available is not shown", async () => {
  const err = check(await asRole("pgb_app", (a) => a.deduct({ userId: "u", amount: "1000", ...chat, source: "s" })), InsufficientPower, "PB001");
  eqDec(err.requested, "1000");
  assert.equal(err.available, undefined);
  assert.match(err.detail ?? "", /shown to roles that may execute billing_power/);
});

test("PB002 UnknownType", async () => {
  check(await thrown(() => b.add({ userId: "u", amount: "1", accountType: "CHAT_DEC", sourceType: "CHAT", source: "s" })), UnknownType, "PB002");
  check(await thrown(() => b.price("nope", 1)), UnknownType, "PB002");
});

test("PB003 IdempotencyConflict", async () => {
  await b.deduct({ userId: "u", amount: "1", ...chat, source: "s", idempotencyKey: "used" });
  check(await thrown(() => b.deduct({ userId: "u", amount: "2", ...chat, source: "s", idempotencyKey: "used" })), IdempotencyConflict, "PB003");
});

test("PB004 HoldStateError", async () => {
  const h = await b.hold({ userId: "u", amount: "1", ...chat, source: "s" });
  await b.release(h.holdId);
  check(await thrown(() => b.settle(h.holdId, "1")), HoldStateError, "PB004");
});

test("PB005 OverRefund", async () => {
  const e = await b.deduct({ userId: "u", amount: "2", ...chat, source: "s" });
  await b.refund(e.id);
  const err = check(await thrown(() => b.refund(e.id)), OverRefund, "PB005");
  assert.ok(err.detail);
});

test("PB006 LedgerAppendOnly (our own UPDATE of the ledger, through mapError)", async () => {
  check(await ownStatement("UPDATE billing.account_log SET remark = 'x'"), LedgerAppendOnly, "PB006");
  check(await ownStatement("DELETE FROM billing.account_log"), LedgerAppendOnly, "PB006");
});

test("PB007 TypeCodeFixed (renaming a type code, through mapError)", async () => {
  check(await ownStatement("UPDATE billing.account_types SET code = 'CHAT2_DEC' WHERE code = 'CHAT_DEC'"), TypeCodeFixed, "PB007");
  check(await ownStatement("UPDATE billing.account_types SET direction = 1 WHERE code = 'CHAT_DEC'"), TypeCodeFixed, "PB007");
});

test("PB008 LimitExceeded with the scope and the DETAIL parsed", async () => {
  await b.add({ userId: "lim", amount: "100", ...recharge, source: "o" });
  await b.setLimit("lim", 'key:"q"', "10");
  await b.deduct({ userId: "lim", amount: "8", ...chat, source: "s", scopes: ['key:"q"'] });
  await b.hold({ userId: "lim", amount: "0.5", ...chat, source: "s", scopes: ['key:"q"'] });
  const err = check(await thrown(() => b.deduct({ userId: "lim", amount: "5", ...chat, source: "s", scopes: ['key:"q"'] })), LimitExceeded, "PB008");
  assert.equal(err.scope, 'key:"q"', "Rust's quoting is undone");
  assert.equal(err.userId, "lim");
  eqDec(err.cap, "10");
  eqDec(err.spent, "8");
  eqDec(err.held, "0.5");
  eqDec(err.requested, "5");
  assert.equal(err.periodEnd, null, "a lifetime cap never ends");
  await b.setLimit("lim", "*", "20", { period: "day" });
  // spend before a limit is set does not count against it: the new daily * limit starts at 0
  const daily = check(await thrown(() => b.deduct({ userId: "lim", amount: "25", ...chat, source: "s" })), LimitExceeded, "PB008");
  assert.equal(daily.scope, "*");
  assert.ok(daily.periodEnd instanceof Date && !Number.isNaN(daily.periodEnd.getTime()));
  eqDec(daily.spent, "0");
  eqDec(daily.cap, "20");
  const hidden = check(await asRole("pgb_app", (a) => a.deduct({ userId: "lim", amount: "25", ...chat, source: "s" })), LimitExceeded, "PB008");
  eqDec(hidden.requested, "25");
  assert.equal(hidden.cap, undefined);
  assert.equal(hidden.spent, undefined);
  assert.equal(hidden.periodEnd, undefined);
  assert.equal(hidden.scope, "*");
});

test("PB009 CitusUnavailable: billing_distribute without the citus extension changes nothing", async () => {
  // what billing_distribute would change: extensions, the billing relations and their kinds, the id sequences
  const state = async () =>
    (
      await pool.query(`
        SELECT (SELECT pg_catalog.json_agg(e.extname ORDER BY e.extname) FROM pg_catalog.pg_extension AS e)::text AS extensions,
               (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(c.relname, c.relkind, c.relpersistence) ORDER BY c.relname)
                  FROM pg_catalog.pg_class AS c WHERE c.relnamespace = 'billing'::pg_catalog.regnamespace)::text AS relations,
               (SELECT pg_catalog.json_agg(s ORDER BY s.sequencename) FROM pg_catalog.pg_sequences AS s
                 WHERE s.schemaname = 'billing')::text AS sequences,
               (SELECT pg_catalog.count(*) FROM billing.account_log)::text AS entries`)
    ).rows[0];
  const before = await state();
  assert.doesNotMatch(before.extensions, /"citus"/, "this database has no citus extension");
  const err = check(await thrown(() => b.distribute()), CitusUnavailable, "PB009");
  assert.equal(err.message, "billing_distribute needs Citus, and the citus extension is not installed in this database");
  assert.match(err.hint ?? "", /CREATE EXTENSION citus/);
  assert.equal(err.retryable, false);
  assert.deepEqual(await state(), before, "nothing was distributed, no sequence moved");
  // and PUBLIC may not execute it
  check(await asRole("pgb_nothing", (a) => a.distribute()), InsufficientPrivilege, "42501");
});

test("22023 InvalidArgument: the user forms given another user's hold or entry change nothing", async () => {
  await b.add({ userId: "holder", amount: "50", ...recharge, source: "o" });
  await b.add({ userId: "stranger", amount: "50", ...recharge, source: "o" });
  const h = await b.hold({ userId: "holder", amount: "20", ...chat, source: "s" });
  const e = await b.deduct({ userId: "holder", amount: "5", ...chat, source: "s" });
  const state = async () =>
    (
      await pool.query(`
        SELECT (SELECT pg_catalog.json_agg(a ORDER BY a.user_id) FROM billing.accounts AS a WHERE a.user_id IN ('holder', 'stranger'))::text AS accounts,
               (SELECT pg_catalog.json_agg(h ORDER BY h.hold_id) FROM billing.holds AS h WHERE h.user_id IN ('holder', 'stranger'))::text AS holds,
               (SELECT pg_catalog.json_agg(l ORDER BY l.id) FROM billing.account_log AS l WHERE l.user_id IN ('holder', 'stranger'))::text AS ledger`)
    ).rows[0];
  const before = await state();
  const notHold = `hold_id ${h.holdId} is not a hold of user "stranger"`;
  const notEntry = `log_id ${e.id} is not an entry of user "stranger"`;
  assert.equal(check(await thrown(() => b.userSettle("stranger", h.holdId, "10")), InvalidArgument, "22023").message, notHold);
  assert.equal(check(await thrown(() => b.userSettle("stranger", h.holdId, "0")), InvalidArgument, "22023").message, notHold);
  assert.equal(check(await thrown(() => b.userSettle("stranger", h.holdId, "30", { allowDebt: true })), InvalidArgument, "22023").message, notHold);
  assert.equal(check(await thrown(() => b.userRelease("stranger", h.holdId, { reason: "r" })), InvalidArgument, "22023").message, notHold);
  assert.equal(check(await thrown(() => b.userRefund("stranger", e.id)), InvalidArgument, "22023").message, notEntry);
  assert.equal(check(await thrown(() => b.userRefund("stranger", e.id, { amount: "1", idempotencyKey: "k" })), InvalidArgument, "22023").message, notEntry);
  assert.deepEqual(await state(), before, "no account, hold or ledger row changed");
  eqDec(await b.power("holder"), "25");
  eqDec(await b.power("stranger"), "50");
  // the hold is still open and the entry still whole: their user's own calls take them
  const released = await b.userRelease("holder", h.holdId);
  assert.equal(released.status, "released");
  assert.equal(released.reason, null);
  eqDec((await b.userRefund("holder", e.id)).amount, "5");
  eqDec(await b.power("holder"), "50");
  assert.deepEqual(await b.verify("holder"), []);
  assert.deepEqual(await b.verify("stranger"), []);
});

test("22023 InvalidArgument", async () => {
  const err = check(await thrown(() => b.deduct({ userId: "u", amount: "0", ...chat, source: "s" })), InvalidArgument, "22023");
  assert.match(err.message, /^amount /);
  check(await thrown(() => b.add({ userId: "u", amount: "NaN", ...recharge, source: "s" })), InvalidArgument, "22023");
  check(await thrown(() => b.history("u", { pageSize: 1001 })), InvalidArgument, "22023");
});

test("22004 NullArgument (a required argument left out is sent as NULL)", async () => {
  const err = check(await thrown(() => b.deduct({ userId: "u", amount: "1", ...chat, source: undefined as unknown as string })), NullArgument, "22004");
  assert.match(err.message, /^source must not be NULL/);
  check(await thrown(() => b.setLimit("u", "key:a", "1", { timeZone: null as unknown as string })), NullArgument, "22004");
});

test("22003 OutOfRange: a balance beyond what billing computes in", async () => {
  await b.add({ userId: "huge", amount: "1", ...recharge, source: "o" });
  // as a superuser, put the balance at rust_decimal's maximum: the next credit cannot be computed
  await pool.query("UPDATE billing.accounts SET permanent = 79228162514264337593543950335 WHERE user_id = 'huge'");
  check(await thrown(() => b.add({ userId: "huge", amount: "1", ...recharge, source: "o" })), OutOfRange, "22003");
});

test("42703 UndefinedColumn and 39P01 TriggerProtocolViolated: charging triggers misused", async () => {
  await pool.query(`
    CREATE TABLE tasks (task_no text PRIMARY KEY, user_id text NOT NULL);
    CREATE TRIGGER charge AFTER INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION billing_charge(
      'user_column=usr', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=t', 'association_column=task_no');
    CREATE TABLE jobs (job_no text PRIMARY KEY, user_id text NOT NULL);
    CREATE TRIGGER charge BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION billing_charge(
      'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=t', 'association_column=job_no');`);
  const col = check(await ownStatement("INSERT INTO tasks VALUES ('t-1', 'u')"), UndefinedColumn, "42703");
  assert.match(col.message, /usr/);
  check(await ownStatement("INSERT INTO jobs VALUES ('j-1', 'u')"), TriggerProtocolViolated, "39P01");
});

test("42501 InsufficientPrivilege: no EXECUTE, metricsReset by a non-superuser, a trigger owner without the grant", async () => {
  check(await asRole("pgb_nothing", (a) => a.power("u")), InsufficientPrivilege, "42501");
  check(await asRole("pgb_app", (a) => a.metricsReset()), InsufficientPrivilege, "42501");
  await withDirect(db, (c) =>
    c.query(`
      SET ROLE pgb_owner;
      CREATE TABLE owned (task_no text PRIMARY KEY, user_id text NOT NULL);
      CREATE TRIGGER charge AFTER INSERT ON owned FOR EACH ROW EXECUTE FUNCTION billing_charge(
        'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT', 'source=t', 'association_column=task_no');`),
  );
  const err = check(await ownStatement("INSERT INTO owned VALUES ('t-1', 'u')"), InsufficientPrivilege, "42501");
  assert.match(err.message, /billing_deduct/);
});

test("40001 SerializationFailure: a write for an account created after the snapshot (docs/errors.md)", async () => {
  const a = await pool.connect();
  try {
    await a.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
    await a.query("SELECT count(*) FROM billing.accounts");
    await b.add({ userId: "late", amount: "10", ...recharge, source: "o" });
    const err = check(await thrown(() => new Billing(a).deduct({ userId: "late", amount: "5", ...chat, source: "s" })), SerializationFailure, "40001");
    assert.ok(err instanceof TransactionConflict);
    assert.equal(err.retryable, true);
    assert.equal(isRetryable(err), true);
    assert.equal(isRetryable(err.cause), true, "the driver's error is retryable too");
  } finally {
    await a.query("ROLLBACK");
    a.release();
  }
});

test("40P01 DeadlockDetected: two transactions taking two users in opposite order", async () => {
  await b.add({ userId: "d1", amount: "10", ...recharge, source: "o" });
  await b.add({ userId: "d2", amount: "10", ...recharge, source: "o" });
  const c1 = await pool.connect();
  const c2 = await pool.connect();
  try {
    await c1.query("BEGIN");
    await c2.query("BEGIN");
    await new Billing(c1).deduct({ userId: "d1", amount: "1", ...chat, source: "s" });
    await new Billing(c2).deduct({ userId: "d2", amount: "1", ...chat, source: "s" });
    // each now waits for the other's row; the loser rolls back at once so that the other goes on
    const cross = async (c: pg.PoolClient, user: string) => {
      try {
        return await new Billing(c).deduct({ userId: user, amount: "1", ...chat, source: "s" });
      } catch (err) {
        await c.query("ROLLBACK");
        throw err;
      }
    };
    const results = await Promise.allSettled([cross(c1, "d2"), cross(c2, "d1")]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(failed.length, 1, "exactly one transaction is the deadlock's victim");
    const err = check(failed[0]!.reason, DeadlockDetected, "40P01");
    assert.ok(err instanceof TransactionConflict);
    assert.equal(err.retryable, true);
  } finally {
    await c1.query("ROLLBACK");
    await c2.query("ROLLBACK");
    c1.release();
    c2.release();
  }
});

test("2BP01 DependentObjects: DROP EXTENSION while the ledger holds entries", async () => {
  const other = await freshDatabase("drop");
  await withDirect(other, async (c) => {
    await new Billing(c).add({ userId: "u", amount: "1", ...recharge, source: "o" });
    const err = check(mapError(await thrown(() => c.query("DROP EXTENSION billing"))), DependentObjects, "2BP01");
    assert.ok(err.hint || err.detail || err.message);
  });
});

test("any other error passes through unchanged", async () => {
  const bad = await thrown(() => b.statement("u", "not a date", "infinity"));
  assert.ok(bad instanceof pg.DatabaseError, `the driver's own error: ${String(bad)}`);
  assert.ok(!(bad instanceof BillingError));
  assert.equal(bad.code, "22007");
  assert.equal(mapError(bad), bad);
  const plain = new Error("not a database error");
  assert.equal(mapError(plain), plain);
  const socket = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
  assert.equal(mapError(socket), socket);
});
