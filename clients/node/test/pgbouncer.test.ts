// The basic calls through pgbouncer in transaction pooling
// (scripts/with-cluster.sh scripts/with-pgbouncer.sh): each transaction may
// run on another of its 4 server connections.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { Billing, InsufficientPower, holding, retryTransaction } from "pgbilling";
import { behindBouncer, eqDec, freshDatabase, poolFor, thrown, withDirect } from "./helpers.js";

let pool: pg.Pool;
let b: Billing;
let db: string;

const recharge = { accountType: "RECHARGE_INC", sourceType: "RECHARGE" } as const;
const chat = { accountType: "CHAT_DEC", sourceType: "CHAT" } as const;

before(async () => {
  if (process.env["PGBILLING_REQUIRE_BOUNCER"] === "1") {
    assert.ok(behindBouncer, "run under scripts/with-pgbouncer.sh: BILLING_DIRECT_PGHOST is not set");
  }
  db = await freshDatabase("bouncer");
  pool = poolFor(db, 12); // more clients than pgbouncer's 4 server connections
  b = new Billing(pool);
});
after(async () => {
  await pool?.end();
});

test("we are talking to pgbouncer, not to the server", async () => {
  if (!behindBouncer) return;
  assert.notEqual(`${process.env["PGHOST"]}:${process.env["PGPORT"]}`, `${process.env["BILLING_DIRECT_PGHOST"]}:${process.env["BILLING_DIRECT_PGPORT"]}`);
  // the server sees our calls coming from pgbouncer's connections, at most 4 of them
  await Promise.all(Array.from({ length: 12 }, () => b.power("nobody")));
  const backends = await withDirect(db, (c) => c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [db]));
  assert.ok(backends.rows[0].n <= 4, `at most pgbouncer's 4 server connections, saw ${backends.rows[0].n}`);
});

test("power, add, deduct, hold, settle, release, refund and an error, through pgbouncer", async () => {
  eqDec(await b.power("alice"), "0");
  const added = await b.add({ userId: "alice", amount: "100", ...recharge, source: "o", idempotencyKey: "o-1" });
  eqDec(added.balanceAfter, "100");
  const spent = await b.deduct({ userId: "alice", amount: "10", ...chat, source: "s" });
  eqDec(spent.balanceAfter, "90");
  const hold = await b.hold({ userId: "alice", amount: "20", ...chat, source: "s" });
  eqDec(await b.power("alice"), "70");
  const settled = await b.settle(hold.holdId, "5");
  eqDec(settled?.amount, "5");
  const other = await b.hold({ userId: "alice", amount: "20", ...chat, source: "s" });
  assert.equal((await b.release(other.holdId)).status, "released");
  const refund = await b.refund(spent.id);
  eqDec(refund.balanceAfter, "95");
  const err = await thrown(() => b.deduct({ userId: "alice", amount: "1000", ...chat, source: "s" }));
  assert.ok(err instanceof InsufficientPower, String(err));
  eqDec(err.available, "95");
  eqDec(await b.power("alice"), "95");
  assert.deepEqual(await b.verify(), []);
});

test("a transaction on one PoolClient stays on one server connection: rollback undoes the charge", async () => {
  const c = await pool.connect();
  try {
    await c.query("BEGIN");
    const inTx = new Billing(c);
    await inTx.deduct({ userId: "alice", amount: "20", ...chat, source: "s" });
    eqDec(await inTx.power("alice"), "75", "the transaction sees its own charge");
    await c.query("ROLLBACK");
  } finally {
    c.release();
  }
  eqDec(await b.power("alice"), "95");
});

test("many concurrent charges through 4 server connections add up exactly", async () => {
  await b.add({ userId: "many", amount: "100", ...recharge, source: "o" });
  await Promise.all(Array.from({ length: 40 }, (_, i) => b.deduct({ userId: "many", amount: "0.25", ...chat, source: `s-${i}` })));
  eqDec(await b.power("many"), "90");
});

test("low-balance events are polled (LISTEN does not work through transaction pooling)", async () => {
  await b.setLowBalance("low", "10");
  await b.add({ userId: "low", amount: "20", ...recharge, source: "o" });
  await b.deduct({ userId: "low", amount: "15", ...chat, source: "s" });
  const events = (await b.lowBalanceEvents({ afterId: 0 })).filter((e) => e.userId === "low");
  assert.equal(events.length, 1);
  eqDec(events[0]?.available, "5");
});

test("holding() and retryTransaction through pgbouncer", async () => {
  const r = await holding(pool, { userId: "alice", amount: "30", ...chat, source: "agent" }, async (h) => {
    eqDec(await b.power("alice"), "65");
    h.actual = "3";
  });
  eqDec(r.entry?.amount, "3");
  let attempts = 0;
  await retryTransaction(async (attempt) => {
    attempts = attempt;
    const c = await pool.connect();
    try {
      await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await new Billing(c).power("alice");
      if (attempt === 1) await b.deduct({ userId: "alice", amount: "1", ...chat, source: "interloper" });
      await new Billing(c).deduct({ userId: "alice", amount: "1", ...chat, source: "ours" });
      await c.query("COMMIT");
    } catch (err) {
      await c.query("ROLLBACK");
      throw err;
    } finally {
      c.release();
    }
  });
  assert.equal(attempts, 2);
  eqDec(await b.power("alice"), "90");
});
