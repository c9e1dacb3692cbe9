// Every SQL function called through its method at least once, results checked.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type pg from "pg";
import { Billing, Decimal, type LedgerEntry } from "pgbilling";
import { eqDec, freshDatabase, poolFor, sleep, withDirect } from "./helpers.js";

let pool: pg.Pool;
let b: Billing;
let db: string;

before(async () => {
  db = await freshDatabase("functions");
  await withDirect(db, (c) => c.query("INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('gpt', 1000, 3)"));
  pool = poolFor(db);
  b = new Billing(pool);
});
after(async () => {
  await pool?.end();
});

const recharge = { accountType: "RECHARGE_INC", sourceType: "RECHARGE" } as const;
const chat = { accountType: "CHAT_DEC", sourceType: "CHAT" } as const;

test("power of an unknown user is 0", async () => {
  eqDec(await b.power("nobody"), "0");
});

test("add, deduct, replay, hold, settle, release, refund, history: the README's tour", async () => {
  const first = await b.add({ userId: "alice", amount: "100", ...recharge, source: "order-1001", idempotencyKey: "order-1001" });
  assert.equal(first.seq, "1");
  assert.equal(first.direction, 1);
  eqDec(first.amount, "100");
  eqDec(first.balanceAfter, "100");
  eqDec(first.detail.permanent, "100");
  assert.equal(first.idempotencyKey, "order-1001");
  assert.ok(first.createdAt instanceof Date && !Number.isNaN(first.createdAt.getTime()));

  const expireAt = new Date(Date.now() + 30 * 86400_000);
  const gift = await b.add({
    userId: "alice",
    amount: new Decimal("30"),
    accountType: "MEMBERSHIP_GIFT_INC",
    sourceType: "MEMBERSHIP_GIFT",
    source: "vip-monthly",
    expireAt,
    subscriptionId: "sub-42",
  });
  eqDec(gift.balanceAfter, "130");
  assert.equal(gift.subscriptionId, "sub-42");
  assert.equal(gift.expireAt?.getTime(), expireAt.getTime());
  assert.equal(gift.detail.grants?.length, 1);
  eqDec(gift.detail.grants?.[0]?.amount, "30");
  assert.match(gift.detail.grants?.[0]?.id ?? "", /^\d+$/);

  assert.equal(await b.hasPower("alice", "130"), true);
  assert.equal(await b.hasPower("alice", new Decimal("130.00000001")), false);

  const chatEntry = await b.deduct({
    userId: "alice",
    amount: "40",
    ...chat,
    source: "chat-7",
    associationNo: "task-7",
    idempotencyKey: "chat-7-msg-1",
    scopes: ["model:gpt-4o", "key:sk-123"],
  });
  assert.equal(chatEntry.direction, -1);
  eqDec(chatEntry.balanceAfter, "90");
  eqDec(chatEntry.detail.grants?.[0]?.amount, "30", "the grant is spent first");
  eqDec(chatEntry.detail.permanent, "10");
  assert.deepEqual(chatEntry.scopes, ["key:sk-123", "model:gpt-4o"]);
  assert.equal(chatEntry.associationNo, "task-7");
  const replay = await b.deduct({ userId: "alice", amount: "40", ...chat, source: "chat-7", idempotencyKey: "chat-7-msg-1" });
  assert.equal(replay.id, chatEntry.id, "a replay returns the same entry");
  assert.equal(replay.seq, chatEntry.seq);

  const hold = await b.hold({ userId: "alice", amount: "50", accountType: "AGENT_CHAT_DEC", sourceType: "AGENT_CHAT", source: "gpt-4", ttl: "5 minutes" });
  assert.equal(hold.status, "held");
  eqDec(hold.amount, "50");
  eqDec(hold.funding.permanent, "50");
  assert.ok(hold.expiresAt > hold.createdAt);
  eqDec(await b.power("alice"), "40");

  const settled = await b.settle(hold.holdId, "12.5");
  assert.ok(settled);
  eqDec(settled.amount, "12.5");
  eqDec(settled.balanceAfter, "77.5");
  assert.equal(settled.detail.hold, hold.holdId);
  eqDec(settled.detail.permanent, "12.5");
  assert.equal(settled.accountType, "AGENT_CHAT_DEC");

  const refund = await b.refund(chatEntry.id);
  assert.equal(refund.refundOf, chatEntry.id);
  assert.equal(refund.accountType, "REFUND_INC");
  eqDec(refund.amount, "40");
  eqDec(refund.balanceAfter, "117.5");
  const partial = await b.refund(settled.id, { amount: "2.5", remark: "partial failure", idempotencyKey: "rf-1" });
  eqDec(partial.amount, "2.5");
  assert.equal(partial.remark, "partial failure");
  eqDec(await b.power("alice"), "120");

  const page1 = await b.history("alice", { pageSize: 2 });
  assert.deepEqual(page1.map((e) => e.seq), ["6", "5"]);
  const page2 = await b.history("alice", { pageSize: 10, beforeSeq: page1[1]!.seq });
  assert.deepEqual(page2.map((e) => e.seq), ["4", "3", "2", "1"]);
  assert.deepEqual((await b.history("alice")).map((e) => e.seq), ["6", "5", "4", "3", "2", "1"]);

  const byTask = await b.byAssociation("alice", "task-7");
  assert.deepEqual(byTask.map((e) => e.id), [chatEntry.id, refund.id], "the refund carries the original's association");

  const rows = await b.statement("alice", new Date(Date.now() - 86400_000), "infinity");
  const total = rows.at(-1)!;
  assert.equal(total.accountType, null);
  assert.equal(total.entries, 6);
  eqDec(total.credited, "172.5");
  eqDec(total.debited, "52.5");
  eqDec(total.openingBalance, "0");
  eqDec(total.closingBalance, "120");
  assert.ok(total.openingBalance.plus(total.net).equals(total.closingBalance));
  assert.deepEqual(
    rows.slice(0, -1).map((r) => r.accountType),
    ["AGENT_CHAT_DEC", "CHAT_DEC", "MEMBERSHIP_GIFT_INC", "RECHARGE_INC", "REFUND_INC"],
  );

  assert.deepEqual(await b.verify("alice"), []);
});

test("settle for 0 is a release and returns null; release returns the hold", async () => {
  await b.add({ userId: "hal", amount: "10", ...recharge, source: "o" });
  const h1 = await b.hold({ userId: "hal", amount: "5", ...chat, source: "s", associationNo: "job-1", idempotencyKey: "h1" });
  assert.equal(await b.settle(h1.holdId, "0"), null);
  const h2 = await b.hold({ userId: "hal", amount: "4", ...chat, source: "s" });
  eqDec(await b.power("hal"), "6");
  const released = await b.release(h2.holdId, { reason: "upstream timeout" });
  assert.equal(released.status, "released");
  assert.equal(released.reason, "upstream timeout");
  assert.equal(released.holdId, h2.holdId);
  eqDec(await b.power("hal"), "10");
  const again = await b.release(h2.holdId);
  assert.equal(again.status, "released", "a repeated release returns the hold");
});

test("settle above the hold into debt with allowDebt, under a debt limit", async () => {
  eqDec(await b.setDebtLimit("dave", "50"), "50");
  await b.add({ userId: "dave", amount: "10", ...recharge, source: "o" });
  const h = await b.hold({ userId: "dave", amount: "10", ...chat, source: "s" });
  const entry = await b.settle(h.holdId, "55", { allowDebt: true, remark: "long run" });
  eqDec(entry?.amount, "55");
  assert.equal(entry?.remark, "long run");
  eqDec(await b.power("dave"), "-45");
  assert.equal(await b.setDebtLimit("dave", null), null);
  const metrics = await b.metrics();
  const inDebt = metrics.find((m) => m.metric === "billing_accounts_in_debt");
  eqDec(inDebt?.value, "1");
});

test("userSettle, userRelease, userRefund: what the id-only forms give, keyed by the user", async () => {
  await b.add({ userId: "ursula", amount: "100", ...recharge, source: "o" });
  const h = await b.hold({ userId: "ursula", amount: "30", ...chat, source: "s", associationNo: "job-u" });
  eqDec(await b.power("ursula"), "70");
  const settled = await b.userSettle("ursula", h.holdId, "12.5", { remark: "metered" });
  assert.ok(settled);
  assert.equal(settled.userId, "ursula");
  assert.equal(settled.direction, -1);
  eqDec(settled.amount, "12.5");
  eqDec(settled.balanceAfter, "87.5");
  eqDec(settled.detail.permanent, "12.5");
  assert.equal(settled.detail.hold, h.holdId);
  assert.equal(settled.remark, "metered");
  assert.equal(settled.associationNo, "job-u");
  assert.equal(settled.accountType, "CHAT_DEC");
  eqDec(await b.power("ursula"), "87.5");
  assert.deepEqual(await b.settle(h.holdId, "12.5", { remark: "metered" }), settled, "the id-only form's repeat returns the same entry");
  assert.deepEqual(await b.userSettle("ursula", BigInt(h.holdId), new Decimal("12.5")), settled, "and so does the user form's");

  const zero = await b.hold({ userId: "ursula", amount: "5", ...chat, source: "s" });
  eqDec(await b.power("ursula"), "82.5");
  assert.equal(await b.userSettle("ursula", zero.holdId, "0"), null, "0 is a release, as for settle");
  eqDec(await b.power("ursula"), "87.5");
  assert.equal((await b.release(zero.holdId)).status, "released");

  const h2 = await b.hold({ userId: "ursula", amount: "20", ...chat, source: "s" });
  eqDec(await b.power("ursula"), "67.5");
  const released = await b.userRelease("ursula", h2.holdId, { reason: "upstream timeout" });
  assert.equal(released.status, "released");
  assert.equal(released.holdId, h2.holdId);
  assert.equal(released.userId, "ursula");
  assert.equal(released.reason, "upstream timeout");
  eqDec(released.amount, "20");
  eqDec(await b.power("ursula"), "87.5");
  assert.deepEqual(await b.release(h2.holdId), released, "the id-only form's repeat returns the same hold");
  assert.deepEqual(await b.userRelease("ursula", h2.holdId), released, "and so does the user form's");

  const spent = await b.deduct({ userId: "ursula", amount: "7.5", ...chat, source: "s" });
  eqDec(await b.power("ursula"), "80");
  const part = await b.userRefund("ursula", settled.id, { amount: "2.5", remark: "partial failure", idempotencyKey: "urf-1" });
  assert.equal(part.refundOf, settled.id);
  assert.equal(part.accountType, "REFUND_INC");
  assert.equal(part.direction, 1);
  eqDec(part.amount, "2.5");
  assert.equal(part.remark, "partial failure");
  assert.equal(part.associationNo, "job-u", "the refund carries the original's association");
  eqDec(await b.power("ursula"), "82.5");
  assert.deepEqual(await b.refund(settled.id, { amount: "2.5", remark: "partial failure", idempotencyKey: "urf-1" }), part, "the id-only form's replay");
  const all = await b.userRefund("ursula", Number(spent.id), { idempotencyKey: "urf-2" });
  eqDec(all.amount, "7.5", "amount omitted: all of it");
  eqDec(all.balanceAfter, "90");
  assert.deepEqual(await b.refund(spent.id, { idempotencyKey: "urf-2" }), all, "the id-only form's replay");
  eqDec(await b.power("ursula"), "90");

  // allowDebt and an integer user id go through as for settle
  await b.add({ userId: 4711, amount: "10", ...recharge, source: "o" });
  const deep = await b.hold({ userId: 4711, amount: "10", ...chat, source: "s" });
  const debt = await b.userSettle(4711, deep.holdId, "15", { allowDebt: true });
  assert.equal(debt?.userId, "4711");
  eqDec(debt?.amount, "15");
  eqDec(await b.power("4711"), "-5");
  assert.deepEqual(await b.settle(deep.holdId, "15", { allowDebt: true }), debt);

  assert.deepEqual(await b.verify("ursula"), []);
  assert.deepEqual(await b.verify("4711"), []);
});

test("the options-object forms: addWithOptions and deductWithOptions", async () => {
  const added = await b.addWithOptions({ userId: 7, amount: new Decimal("12.5"), accountType: "RECHARGE_INC", source: { type: "RECHARGE", source: "o-1" } });
  assert.equal(added.userId, "7");
  eqDec(added.amount, "12.5");
  const spent = await b.deductWithOptions({
    userId: "7",
    amount: "3",
    accountType: "CHAT_DEC",
    source: { type: "CHAT", source: "chat-7" },
    associationNo: 42,
    idempotencyKey: "k-1",
    scopes: ["key:a"],
  });
  eqDec(spent.amount, "3");
  eqDec(spent.balanceAfter, "9.5");
  assert.equal(spent.associationNo, "42");
  assert.deepEqual(spent.scopes, ["key:a"]);
  const gift = await b.addWithOptions({
    userId: "7",
    amount: "1",
    accountType: "MEMBERSHIP_GIFT_INC",
    source: { type: "MEMBERSHIP_GIFT", source: "m" },
    expireAt: new Date(Date.now() + 86400_000),
    subscriptionId: "sub-7",
  });
  assert.equal(gift.subscriptionId, "sub-7");
  assert.ok(gift.expireAt instanceof Date);
});

test("price", async () => {
  eqDec(await b.price("gpt", 12000), "36");
  eqDec(await b.price("gpt", "1001"), "4");
  eqDec(await b.price("gpt", 0n), "0");
});

test("expire sweeps a lapsed grant and a lapsed hold", async () => {
  await b.add({ userId: "eve", amount: "5", ...recharge, source: "o" });
  await b.add({ userId: "eve", amount: "7", accountType: "MEMBERSHIP_GIFT_INC", sourceType: "MEMBERSHIP_GIFT", source: "m", expireAt: new Date(Date.now() + 1000) });
  await b.hold({ userId: "eve", amount: "2", ...chat, source: "s", ttl: "1 second" });
  await sleep(1600); // let both lapse (no time is asserted)
  let swept = 0;
  for (let n = await b.expire({ batchSize: 100 }); n > 0; n = await b.expire()) swept += n;
  assert.equal(swept, 2, "one grant and one hold");
  assert.equal(await b.expire({ asOf: new Date(Date.now() - 1000) }), 0);
  const [last] = await b.history("eve", { pageSize: 1 });
  assert.equal(last?.accountType, "MEMBERSHIP_GIFT_EXPIRED");
  eqDec(last?.amount, "7");
  eqDec(await b.power("eve"), "5");
});

test("revokeSubscription ends the subscription's live grants", async () => {
  await b.add({ userId: "rita", amount: "20", accountType: "MEMBERSHIP_GIFT_INC", sourceType: "MEMBERSHIP_GIFT", source: "m", expireAt: new Date(Date.now() + 86400_000), subscriptionId: "sub-r" });
  await b.deduct({ userId: "rita", amount: "5", ...chat, source: "s" });
  const revoked = await b.revokeSubscription("sub-r", { remark: "cancelled" });
  assert.equal(revoked.length, 1);
  assert.equal(revoked[0]?.accountType, "MEMBERSHIP_GIFT_DEC");
  eqDec(revoked[0]?.amount, "15");
  assert.equal(revoked[0]?.remark, "cancelled");
  eqDec(await b.power("rita"), "0");
  assert.deepEqual(await b.revokeSubscription("sub-r"), [], "nothing left to take");
});

test("adjust up and down, with and without operator", async () => {
  const up: LedgerEntry = await b.adjust("adam", "12.5", "ticket 1");
  assert.equal(up.accountType, "SYSTEM_MANUAL_INC");
  assert.equal(up.associationUserId, "postgres");
  const down = await b.adjust("adam", new Decimal("-2.5"), "ticket 2", { operator: "support-jo" });
  assert.equal(down.accountType, "SYSTEM_MANUAL_DEC");
  assert.equal(down.direction, -1);
  eqDec(down.amount, "2.5");
  assert.equal(down.associationUserId, "support-jo");
  eqDec(await b.power("adam"), "10");
});

test("low-balance threshold and its events", async () => {
  eqDec(await b.setLowBalance("carol", "50"), "50");
  await b.add({ userId: "carol", amount: "100", ...recharge, source: "o" });
  await b.deduct({ userId: "carol", amount: "60", ...chat, source: "s" });
  const events = (await b.lowBalanceEvents()).filter((e) => e.userId === "carol");
  assert.equal(events.length, 1);
  eqDec(events[0]?.threshold, "50");
  eqDec(events[0]?.available, "40");
  assert.ok(events[0]?.at instanceof Date);
  const later = await b.lowBalanceEvents({ afterId: events[0]!.eventId });
  assert.deepEqual(later.filter((e) => e.userId === "carol"), []);
  assert.equal(await b.setLowBalance("carol", null), null);
});

test("spending limits: setLimit, limits, a scoped charge counted, removal", async () => {
  await b.add({ userId: "lena", amount: "100", ...recharge, source: "o" });
  const day = await b.setLimit("lena", "key:sk-1", "10", { period: "day", timeZone: "Europe/Berlin" });
  assert.ok(day);
  assert.equal(day.scope, "key:sk-1");
  eqDec(day.cap, "10");
  assert.equal(day.period, "day");
  assert.equal(day.timeZone, "Europe/Berlin");
  assert.ok(day.periodEnd instanceof Date && day.periodEnd > day.periodStart);
  const lifetime = await b.setLimit("lena", "*", "500");
  assert.equal(lifetime?.period, null);
  assert.equal(lifetime?.periodEnd, null);
  assert.equal(lifetime?.timeZone, "UTC");
  await b.deduct({ userId: "lena", amount: "3.5", ...chat, source: "s", scopes: ["key:sk-1"] });
  await b.hold({ userId: "lena", amount: "1", ...chat, source: "s", scopes: ["key:sk-1"] });
  const limits = await b.limits("lena");
  assert.deepEqual(limits.map((l) => l.scope), ["*", "key:sk-1"]);
  const key = limits[1]!;
  eqDec(key.spent, "3.5");
  eqDec(key.held, "1");
  eqDec(key.remaining, "5.5");
  eqDec(limits[0]?.spent, "3.5");
  assert.equal(await b.setLimit("lena", "key:sk-1", null), null);
  assert.deepEqual((await b.limits("lena")).map((l) => l.scope), ["*"]);
});

test("verify over everyone finds nothing wrong", async () => {
  assert.deepEqual(await b.verify(), []);
  assert.deepEqual(await b.verify(null), []);
});

test("metrics and metricsReset", async () => {
  const metrics = await b.metrics();
  const active = metrics.find((m) => m.metric === "billing_counters_active");
  assert.ok(active, "billing_counters_active is always there");
  assert.ok(metrics.every((m) => m.kind === "counter" || m.kind === "gauge"));
  assert.ok(metrics.every((m) => Decimal.isDecimal(m.value) && typeof m.labels === "object"));
  assert.ok(active.value.equals(1) || process.env["PGBILLING_REQUIRE_COUNTERS"] !== "1", "test.sh preloads the library");
  if (active.value.equals(1)) {
    // the library is preloaded (test.sh starts the cluster so): the counters count our calls
    await b.power("alice");
    const calls = (await b.metrics()).find((m) => m.metric === "billing_calls_total" && m.labels["function"] === "billing_power");
    assert.ok(calls && calls.value.greaterThan(0), "billing_power was counted");
  }
  assert.equal(await b.metricsReset(), undefined);
  if (active.value.equals(1)) {
    const calls = (await b.metrics()).find((m) => m.metric === "billing_calls_total" && m.labels["function"] === "billing_power");
    eqDec(calls?.value, "0", "reset zeroes the counters");
  }
});

test("amounts are exact both ways; JS numbers are refused before any SQL", async () => {
  const big = "999999999999.99999999"; // 20 significant digits: no JS number holds it
  const entry = await b.add({ userId: "exact", amount: big, ...recharge, source: "o" });
  assert.equal(entry.amount.toFixed(), big);
  assert.equal(entry.detail.permanent?.toFixed(), big, "jsonb numbers are read exactly too");
  const tenth = await b.deduct({ userId: "exact", amount: new Decimal("0.1"), ...chat, source: "s" });
  const fifth = await b.deduct({ userId: "exact", amount: "0.2", ...chat, source: "s" });
  assert.equal(tenth.detail.permanent?.plus(fifth.detail.permanent!).toFixed(), "0.3");
  assert.equal((await b.power("exact")).toFixed(), "999999999999.69999999");
  for (const call of [
    () => b.deduct({ userId: "exact", amount: 1 as unknown as string, ...chat, source: "s" }),
    () => b.hasPower("exact", 0.5 as unknown as string),
    () => b.settle("1", 2 as unknown as string),
    () => b.refund("1", { amount: 0.1 as unknown as string }),
    () => b.userSettle("exact", "1", 2 as unknown as string),
    () => b.userRefund("exact", "1", { amount: 0.1 as unknown as string }),
    () => b.addWithOptions({ userId: "exact", amount: 5 as unknown as string, accountType: "RECHARGE_INC", source: { type: "RECHARGE", source: "o" } }),
  ]) {
    await assert.rejects(call, (err: unknown) => err instanceof TypeError && /not a JS number/.test(err.message));
  }
  await assert.rejects(() => b.deduct({ userId: "exact", amount: "12,5", ...chat, source: "s" }), TypeError);
  await assert.rejects(() => b.deduct({ userId: "exact", amount: "1", ...chat, source: "s", expireAt: new Date() } as never), /has no argument expireAt/);
  assert.equal((await b.history("exact")).length, 3, "none of the refused calls reached the server");
});
