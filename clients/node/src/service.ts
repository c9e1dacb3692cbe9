// BillingService: the shape a NestJS or TypeORM service already has
// (getUserPower, hasSufficientPower, deductUserPower, addUserPower with the
// options object applications build), mapped onto the SQL arguments.
import type { Decimal } from "decimal.js";
import { Billing } from "./billing.js";
import type { Queryable } from "./sql.js";
import type { LedgerEntry } from "./types.js";
import type { Amount, Key, Timestamp } from "./values.js";

/** The options object applications pass, as in billing_deduct(jsonb) (docs/functions.md). */
export interface PowerChangeOptions {
  userId: Key;
  amount: Amount;
  accountType: string;
  source: { type: string; source: string };
  remark?: string | null;
  associationNo?: Key | null;
  associationUserId?: Key | null;
  idempotencyKey?: string | null;
}
export interface AddUserPowerOptions extends PowerChangeOptions {
  /** A grant that expires then; without it the permanent balance. */
  expireAt?: Timestamp | null;
  subscriptionId?: Key | null;
}
export interface DeductUserPowerOptions extends PowerChangeOptions {
  /** Scopes of spending limits (docs/limits.md). */
  scopes?: string[] | null;
}

const COMMON = ["userId", "amount", "accountType", "source", "remark", "associationNo", "associationUserId", "idempotencyKey"];
const ADD_KEYS = new Set([...COMMON, "expireAt", "subscriptionId"]);
const DEDUCT_KEYS = new Set([...COMMON, "scopes"]);

/**
 * Drop-in billing for an application service: construct it on the EntityManager of your
 * `dataSource.transaction(async (manager) => ...)` (or a pg client inside BEGIN ... COMMIT) and the
 * charge commits or rolls back with your own writes. Null optional fields are the same as absent ones;
 * a key the SQL function does not take is a TypeError (as billing_deduct(jsonb) refuses it with 22023).
 */
export class BillingService {
  readonly billing: Billing;

  constructor(db: Queryable) {
    this.billing = new Billing(db);
  }

  /** The user's available power. */
  getUserPower(userId: Key): Promise<Decimal> {
    return this.billing.power(userId);
  }

  /** Advisory: whether the user has at least `amount` now (deductUserPower is the authoritative check). */
  hasSufficientPower(userId: Key, amount: Amount): Promise<boolean> {
    return this.billing.hasPower(userId, amount);
  }

  /** billing_deduct with the options object; throws InsufficientPower (PB001), LimitExceeded (PB008), ... */
  async deductUserPower(options: DeductUserPowerOptions): Promise<LedgerEntry> {
    const o = checked(options, DEDUCT_KEYS, "deductUserPower");
    return this.billing.deduct({ ...common(o), scopes: o.scopes ?? undefined });
  }

  /** billing_add with the options object. */
  async addUserPower(options: AddUserPowerOptions): Promise<LedgerEntry> {
    const o = checked(options, ADD_KEYS, "addUserPower");
    return this.billing.add({ ...common(o), expireAt: o.expireAt ?? undefined, subscriptionId: o.subscriptionId ?? undefined });
  }
}

function checked<T extends PowerChangeOptions>(options: T, allowed: Set<string>, method: string): T {
  if (options === null || typeof options !== "object") throw new TypeError(`pgbilling: ${method} takes an options object`);
  for (const key of Object.keys(options)) {
    if (!allowed.has(key) && (options as Record<string, unknown>)[key] !== undefined) {
      throw new TypeError(`pgbilling: ${method} has no option ${key} (it takes ${[...allowed].join(", ")})`);
    }
  }
  const source = options.source as unknown;
  if (source === null || typeof source !== "object") {
    throw new TypeError(`pgbilling: ${method} needs source: { type, source }`);
  }
  return options;
}

function common(o: PowerChangeOptions) {
  return {
    userId: o.userId,
    amount: o.amount,
    accountType: o.accountType,
    sourceType: o.source.type,
    source: o.source.source,
    remark: o.remark ?? undefined,
    associationNo: o.associationNo ?? undefined,
    associationUserId: o.associationUserId ?? undefined,
    idempotencyKey: o.idempotencyKey ?? undefined,
  };
}
