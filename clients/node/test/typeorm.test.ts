// BillingService inside a TypeORM transaction, exactly as a NestJS/TypeORM
// service uses it: dataSource.transaction(async (manager) => ...), the charge
// committed or rolled back with the application's own write.
import "reflect-metadata";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Column, DataSource, Entity, PrimaryGeneratedColumn, QueryFailedError, type EntityManager } from "typeorm";
import { BillingService, Decimal, InsufficientPower, SerializationFailure, holding, retryTransaction } from "pgbilling";
import { eqDec, freshDatabase, thrown } from "./helpers.js";

@Entity("orders")
class Order {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column("text")
  userId!: string;

  @Column("numeric")
  price!: string;
}

/** An application service as it would be written with NestJS and TypeORM. */
class OrderService {
  constructor(private readonly dataSource: DataSource) {}

  placeOrder(userId: string, price: string, afterCharge?: (manager: EntityManager) => Promise<void>): Promise<Order> {
    return this.dataSource.transaction(async (manager) => {
      const order = await manager.save(Order, manager.create(Order, { userId, price }));
      const billing = new BillingService(manager);
      await billing.deductUserPower({
        userId,
        amount: price,
        accountType: "CHAT_DEC",
        source: { type: "CHAT", source: `order-${order.id}` },
        remark: "an order",
        associationNo: order.id,
        idempotencyKey: `order-${order.id}`,
      });
      await afterCharge?.(manager);
      return order;
    });
  }
}

let dataSource: DataSource;
let service: BillingService;

before(async () => {
  const database = await freshDatabase("typeorm");
  dataSource = new DataSource({
    type: "postgres",
    host: process.env["PGHOST"],
    port: Number(process.env["PGPORT"]),
    username: process.env["PGUSER"],
    database,
    entities: [Order],
    synchronize: true,
    logging: false,
  });
  await dataSource.initialize();
  service = new BillingService(dataSource);
  await service.addUserPower({ userId: "alice", amount: "100", accountType: "RECHARGE_INC", source: { type: "RECHARGE", source: "order-1001" } });
});
after(async () => {
  await dataSource?.destroy();
});

const orders = () => dataSource.getRepository(Order).count();

test("the charge commits with the order", async () => {
  const order = await new OrderService(dataSource).placeOrder("alice", "12.5");
  assert.equal(await orders(), 1);
  eqDec(await service.getUserPower("alice"), "87.5");
  const [entry] = await service.billing.byAssociation("alice", order.id);
  assert.equal(entry?.idempotencyKey, `order-${order.id}`);
  assert.equal(entry?.remark, "an order");
  assert.equal(entry?.source, `order-${order.id}`);
});

test("billing throws (PB001): the application's own write rolls back with it", async () => {
  const err = await thrown(() => new OrderService(dataSource).placeOrder("alice", "1000"));
  assert.ok(err instanceof InsufficientPower, String(err));
  eqDec(err.requested, "1000");
  eqDec(err.available, "87.5");
  assert.ok(err.cause instanceof QueryFailedError, "TypeORM's error is the cause");
  assert.equal(await orders(), 1, "the order was rolled back");
  eqDec(await service.getUserPower("alice"), "87.5");
});

test("the application throws after the charge: the charge rolls back with the order", async () => {
  const err = await thrown(() =>
    new OrderService(dataSource).placeOrder("alice", "7", async () => {
      throw new Error("the shipping service is down");
    }),
  );
  assert.match(String(err), /shipping service/);
  assert.equal(await orders(), 1);
  eqDec(await service.getUserPower("alice"), "87.5", "no charge stayed");
});

test("the service's four methods with the options object applications pass", async () => {
  assert.equal(await service.hasSufficientPower("alice", "87.5"), true);
  assert.equal(await service.hasSufficientPower("alice", new Decimal("87.50000001")), false);
  const gift = await dataSource.transaction((manager) =>
    new BillingService(manager).addUserPower({
      userId: "alice",
      amount: new Decimal("30"),
      accountType: "MEMBERSHIP_GIFT_INC",
      source: { type: "MEMBERSHIP_GIFT", source: "vip-monthly" },
      expireAt: new Date(Date.now() + 86400_000),
      subscriptionId: "sub-42",
      remark: null,
      idempotencyKey: "gift-1",
    }),
  );
  assert.equal(gift.subscriptionId, "sub-42");
  eqDec(gift.detail.grants?.[0]?.amount, "30");
  const spent = await service.deductUserPower({
    userId: "alice",
    amount: "3",
    accountType: "CHAT_DEC",
    source: { type: "CHAT", source: "chat-7" },
    associationUserId: 99,
    scopes: ["key:sk-1"],
  });
  assert.equal(spent.associationUserId, "99");
  assert.deepEqual(spent.scopes, ["key:sk-1"]);
  eqDec(spent.detail.grants?.[0]?.amount, "3", "the grant is spent first");
  eqDec(await service.getUserPower("alice"), "114.5");
});

test("the service refuses JS numbers and keys the SQL function does not take, before any SQL", async () => {
  const before = await service.getUserPower("alice");
  await assert.rejects(
    () => service.deductUserPower({ userId: "alice", amount: 12.5 as unknown as string, accountType: "CHAT_DEC", source: { type: "CHAT", source: "s" } }),
    (err: unknown) => err instanceof TypeError && /JS number/.test(err.message),
  );
  await assert.rejects(() => service.hasSufficientPower("alice", 1 as unknown as string), TypeError);
  await assert.rejects(
    () =>
      service.deductUserPower({
        userId: "alice",
        amount: "1",
        accountType: "CHAT_DEC",
        source: { type: "CHAT", source: "s" },
        expireAt: new Date(),
      } as unknown as Parameters<BillingService["deductUserPower"]>[0]),
    /no option expireAt/,
  );
  eqDec(await service.getUserPower("alice"), before.toString());
});

test("retryTransaction around dataSource.transaction under a real serialization failure", async () => {
  let attempts = 0;
  await retryTransaction(() =>
    dataSource.transaction("REPEATABLE READ", async (manager) => {
      attempts++;
      const billing = new BillingService(manager);
      await billing.getUserPower("alice");
      if (attempts === 1) await service.deductUserPower({ userId: "alice", amount: "1", accountType: "CHAT_DEC", source: { type: "CHAT", source: "interloper" } });
      await billing.deductUserPower({ userId: "alice", amount: "2", accountType: "CHAT_DEC", source: { type: "CHAT", source: "ours" } });
    }),
  );
  assert.equal(attempts, 2);
  eqDec(await service.getUserPower("alice"), "111.5");
  // the same conflict from the application's own statement: TypeORM's QueryFailedError, retryable as it is
  let own = 0;
  const err = await thrown(() =>
    retryTransaction(
      () =>
        dataSource.transaction("REPEATABLE READ", async (manager) => {
          own++;
          await manager.query("SELECT count(*) FROM orders");
          await dataSource.query("UPDATE orders SET price = price");
          await manager.query("UPDATE orders SET price = price + 1");
        }),
      { maxAttempts: 2 },
    ),
  );
  assert.equal(own, 2);
  assert.ok(err instanceof QueryFailedError && (err as unknown as { code: string }).code === "40001", String(err));
  assert.ok(!(err instanceof SerializationFailure), "the application's own error is passed through unchanged");
});

test("holding() on the DataSource works; on a transaction's EntityManager it is refused", async () => {
  const r = await holding(dataSource, { userId: "alice", amount: "10", accountType: "AGENT_CHAT_DEC", sourceType: "AGENT_CHAT", source: "agent" }, async (h) => {
    h.actual = new Decimal("2.25");
  });
  eqDec(r.entry?.amount, "2.25");
  await assert.rejects(
    () =>
      dataSource.transaction((manager) =>
        holding(manager, { userId: "alice", amount: "10", accountType: "AGENT_CHAT_DEC", sourceType: "AGENT_CHAT", source: "agent" }, async () => undefined),
      ),
    /not inside a transaction/,
  );
  eqDec(await service.getUserPower("alice"), "109.25");
});
