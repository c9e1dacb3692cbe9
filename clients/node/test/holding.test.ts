// holding(): the hold committed before the work, settled or released after it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { Billing, InsufficientPower, holding } from "pgbilling";
import { clientFor, eqDec, freshDatabase, poolFor, thrown } from "./helpers.js";

let pool: pg.Pool;
let b: Billing;
let db: string;

const agent = { accountType: "AGENT_CHAT_DEC", sourceType: "AGENT_CHAT", source: "gpt-4" } as const;

before(async () => {
  db = await freshDatabase("holding");
  pool = poolFor(db);
  b = new Billing(pool);
});
after(async () => {
  await pool?.end();
});

async function holdRow(holdId: string): Promise<{ status: string; reason: string | null; log_id: string | null }> {
  const r = await pool.query("SELECT status, reason, log_id::text FROM billing.holds WHERE hold_id = $1::bigint", [holdId]);
  return r.rows[0];
}

test("success: the hold is committed before the work, no lock is held during it, the actual amount is settled", async () => {
  await b.add({ userId: "ok", amount: "100", accountType: "RECHARGE_INC", sourceType: "RECHARGE", source: "o" });
  const result = await holding(pool, { userId: "ok", amount: "50", ...agent, ttl: "5 minutes", associationNo: "task-1" }, async (h) => {
    // another connection sees the hold (it was committed) and can charge the user (the row is not locked)
    eqDec(await b.power("ok"), "50");
    await b.deduct({ userId: "ok", amount: "1", accountType: "CHAT_DEC", sourceType: "CHAT", source: "meanwhile" });
    assert.equal((await holdRow(h.hold.holdId)).status, "held");
    h.actual = "12.5";
    return "done";
  });
  assert.equal(result.value, "done");
  assert.ok(result.entry);
  eqDec(result.entry.amount, "12.5");
  assert.equal(result.entry.detail.hold, result.hold.holdId);
  assert.equal(result.entry.associationNo, "task-1");
  assert.equal((await holdRow(result.hold.holdId)).status, "settled");
  eqDec(await b.power("ok"), "86.5");
});

test("an exception in the work: the hold is released, the exception propagates, the ledger shows no charge", async () => {
  await b.add({ userId: "fail", amount: "100", accountType: "RECHARGE_INC", sourceType: "RECHARGE", source: "o" });
  const boom = new Error("upstream failed");
  let holdId = "";
  const err = await thrown(() =>
    holding(pool, { userId: "fail", amount: "40", ...agent }, async (h) => {
      holdId = h.hold.holdId;
      h.actual = "10"; // set, but the work fails after it
      throw boom;
    }),
  );
  assert.equal(err, boom, "the work's own error, unchanged");
  const row = await holdRow(holdId);
  assert.equal(row.status, "released");
  assert.match(row.reason ?? "", /upstream failed/);
  assert.equal(row.log_id, null);
  const history = await b.history("fail");
  assert.deepEqual(history.map((e) => e.accountType), ["RECHARGE_INC"], "no charge in the ledger");
  eqDec(await b.power("fail"), "100");
});

test("no actual amount set: released; a JS number as the actual amount: a TypeError in the work, released", async () => {
  await b.add({ userId: "none", amount: "10", accountType: "RECHARGE_INC", sourceType: "RECHARGE", source: "o" });
  const unset = await holding(pool, { userId: "none", amount: "5", ...agent }, async () => 42);
  assert.equal(unset.value, 42);
  assert.equal(unset.entry, null);
  assert.equal((await holdRow(unset.hold.holdId)).status, "released");
  let holdId = "";
  const err = await thrown(() =>
    holding(pool, { userId: "none", amount: "5", ...agent }, async (h) => {
      holdId = h.hold.holdId;
      (h as { actual: unknown }).actual = 2.5;
    }),
  );
  assert.ok(err instanceof TypeError && /JS number/.test(err.message), String(err));
  assert.equal((await holdRow(holdId)).status, "released");
  eqDec(await b.power("none"), "10");
});

test("a failing settle propagates and leaves the hold open", async () => {
  await b.add({ userId: "short", amount: "10", accountType: "RECHARGE_INC", sourceType: "RECHARGE", source: "o" });
  let holdId = "";
  const err = await thrown(() =>
    holding(pool, { userId: "short", amount: "5", ...agent }, async (h) => {
      holdId = h.hold.holdId;
      h.actual = "30";
    }),
  );
  assert.ok(err instanceof InsufficientPower);
  assert.equal((await holdRow(holdId)).status, "held");
  await b.release(holdId);
  const debt = await holding(pool, { userId: "short", amount: "5", ...agent, allowDebt: true, settleRemark: "over" }, async (h) => {
    h.actual = "30";
  });
  eqDec(debt.entry?.amount, "30");
  assert.equal(debt.entry?.remark, "over");
  eqDec(await b.power("short"), "-20");
});

test("a single connection outside a transaction works; one inside a transaction is refused", async () => {
  const c = await clientFor(db);
  try {
    await new Billing(c).add({ userId: "one", amount: "10", accountType: "RECHARGE_INC", sourceType: "RECHARGE", source: "o" });
    const r = await holding(c, { userId: "one", amount: "5", ...agent }, async (h) => {
      h.actual = "1";
    });
    eqDec(r.entry?.amount, "1");
    await c.query("BEGIN");
    await assert.rejects(
      () => holding(c, { userId: "one", amount: "5", ...agent }, async () => assert.fail("the work must not run")),
      /not inside a transaction/,
    );
    await c.query("ROLLBACK");
    eqDec(await b.power("one"), "9", "no hold was made");
  } finally {
    await c.end();
  }
});
