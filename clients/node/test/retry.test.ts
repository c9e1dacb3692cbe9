// retryTransaction under real conflicts between two connections.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { Billing, DeadlockDetected, InsufficientPower, SerializationFailure, retryTransaction, type LedgerEntry } from "pgbilling";
import { barrier, eqDec, freshDatabase, poolFor, thrown } from "./helpers.js";

let pool: pg.Pool;
let b: Billing;

const recharge = { accountType: "RECHARGE_INC", sourceType: "RECHARGE" } as const;
const chat = { accountType: "CHAT_DEC", sourceType: "CHAT" } as const;

before(async () => {
  pool = poolFor(await freshDatabase("retry"), 8);
  b = new Billing(pool);
});
after(async () => {
  await pool?.end();
});

/** The caller's whole transaction on a client of the pool: BEGIN, fn, COMMIT (ROLLBACK on error). */
async function transaction<T>(isolation: string, fn: (billing: Billing, c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query(`BEGIN ISOLATION LEVEL ${isolation}`);
    const result = await fn(new Billing(c), c);
    await c.query("COMMIT");
    return result;
  } catch (err) {
    await c.query("ROLLBACK");
    throw err;
  } finally {
    c.release();
  }
}

test("a real serialization failure: the whole transaction runs again and commits", async () => {
  await b.add({ userId: "ria", amount: "100", ...recharge, source: "o" });
  const attempts: number[] = [];
  const retried: unknown[] = [];
  const entry = await retryTransaction(
    (attempt) => {
      attempts.push(attempt);
      return transaction("SERIALIZABLE", async (billing) => {
        await billing.power("ria"); // the snapshot is taken here
        // another connection charges the same user and commits after our snapshot
        if (attempt === 1) await b.deduct({ userId: "ria", amount: "1", ...chat, source: "interloper" });
        return billing.deduct({ userId: "ria", amount: "2", ...chat, source: "ours" });
      });
    },
    { onRetry: (err) => retried.push(err) },
  );
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(retried.length, 1);
  assert.ok(retried[0] instanceof SerializationFailure, String(retried[0]));
  eqDec(entry.balanceAfter, "97");
  eqDec(await b.power("ria"), "97");
  assert.deepEqual(await b.verify("ria"), []);
});

test("two concurrent transactions on one user: one is retried, both commit", async () => {
  await b.add({ userId: "duo", amount: "100", ...recharge, source: "o" });
  const bothHaveSnapshots = barrier(2);
  const retried: unknown[] = [];
  let calls = 0;
  const one = (name: string) =>
    retryTransaction(
      (attempt) => {
        calls++;
        return transaction("REPEATABLE READ", async (billing) => {
          await billing.power("duo");
          if (attempt === 1) await bothHaveSnapshots();
          return billing.deduct({ userId: "duo", amount: "5", ...chat, source: name });
        });
      },
      { onRetry: (err) => retried.push(err) },
    );
  const entries: LedgerEntry[] = await Promise.all([one("a"), one("b")]);
  assert.equal(calls, 3, "one of the two ran twice");
  assert.equal(retried.length, 1);
  assert.ok(retried[0] instanceof SerializationFailure, String(retried[0]));
  assert.deepEqual(entries.map((e) => e.balanceAfter.toString()).sort(), ["90", "95"]);
  eqDec(await b.power("duo"), "90");
});

test("the attempt limit is respected: the last serialization failure propagates", async () => {
  await b.add({ userId: "limit", amount: "100", ...recharge, source: "o" });
  let attempts = 0;
  const delays: number[] = [];
  const err = await thrown(() =>
    retryTransaction(
      () => {
        attempts++;
        return transaction("REPEATABLE READ", async (billing) => {
          await billing.power("limit");
          await b.deduct({ userId: "limit", amount: "1", ...chat, source: "interloper" }); // every time
          return billing.deduct({ userId: "limit", amount: "2", ...chat, source: "ours" });
        });
      },
      { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20, onRetry: (_e, _a, delay) => delays.push(delay) },
    ),
  );
  assert.equal(attempts, 3);
  assert.ok(err instanceof SerializationFailure, String(err));
  assert.equal(delays.length, 2, "backed off between attempts, not after the last");
  assert.ok(delays.every((d) => d >= 0 && d <= 20), `delays within the bounds: ${delays}`);
  eqDec(await b.power("limit"), "97", "only the interlopers' charges committed");
});

test("an error that is not retryable propagates at once", async () => {
  let attempts = 0;
  const err = await thrown(() =>
    retryTransaction(() => {
      attempts++;
      return transaction("READ COMMITTED", (billing) => billing.deduct({ userId: "nobody", amount: "1", ...chat, source: "s" }));
    }),
  );
  assert.equal(attempts, 1);
  assert.ok(err instanceof InsufficientPower);
  await assert.rejects(() => retryTransaction(async () => 1, { maxAttempts: 0 }), RangeError);
});

test("a real deadlock is retried too, and both transactions commit", async () => {
  await b.add({ userId: "x1", amount: "10", ...recharge, source: "o" });
  await b.add({ userId: "x2", amount: "10", ...recharge, source: "o" });
  const bothHoldOne = barrier(2);
  const retried: unknown[] = [];
  const crossing = (first: string, second: string) =>
    retryTransaction(
      (attempt) =>
        transaction("READ COMMITTED", async (billing) => {
          await billing.deduct({ userId: first, amount: "1", ...chat, source: "s" });
          if (attempt === 1) await bothHoldOne();
          return billing.deduct({ userId: second, amount: "1", ...chat, source: "s" });
        }),
      { onRetry: (err) => retried.push(err) },
    );
  await Promise.all([crossing("x1", "x2"), crossing("x2", "x1")]);
  assert.equal(retried.length, 1);
  assert.ok(retried[0] instanceof DeadlockDetected, String(retried[0]));
  eqDec(await b.power("x1"), "8");
  eqDec(await b.power("x2"), "8");
});
