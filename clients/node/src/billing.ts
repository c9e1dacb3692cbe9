// Billing: one method per SQL function of docs/functions.md, on whatever
// Queryable the caller passes. Methods run one statement each on it, inside
// whatever transaction it is in, and never commit.
//
// Adding a function is one spec in FN and one method that calls it.
import type { Decimal } from "decimal.js";
import {
  DISTRIBUTED_OBJECT,
  HOLD,
  LEDGER_ENTRY,
  LOW_BALANCE_EVENT,
  METRIC,
  SPENDING_LIMIT,
  STATEMENT_ROW,
  VIOLATION,
  bool,
  call,
  count,
  decimal,
  decimalOrNull,
  opt,
  req,
  type FnSpec,
  type Queryable,
} from "./sql.js";
import type { DistributedObject, Hold, LedgerEntry, LowBalanceEvent, Metric, SpendingLimit, StatementRow, Violation } from "./types.js";
import {
  amountParam,
  boolParam,
  idParam,
  intParam,
  keyParam,
  textArrayParam,
  textParam,
  timestampParam,
  type Amount,
  type Id,
  type Key,
  type Timestamp,
} from "./values.js";

// ---- the arguments, named as in SQL (camelCase) ----

/** What billing_add, billing_deduct and billing_hold share. */
export interface ChargeArgs {
  userId: Key;
  amount: Amount;
  accountType: string;
  sourceType: string;
  source: string;
  remark?: string | null;
  associationNo?: Key | null;
  associationUserId?: Key | null;
  idempotencyKey?: string | null;
}
export interface AddArgs extends ChargeArgs {
  /** A grant that expires then; without it the permanent balance. */
  expireAt?: Timestamp | null;
  subscriptionId?: Key | null;
}
export interface DeductArgs extends ChargeArgs {
  /** Scopes of spending limits the charge counts against (docs/limits.md). */
  scopes?: string[] | null;
}
export interface HoldArgs extends ChargeArgs {
  /** An interval, e.g. "5 minutes" (SQL default 15 minutes). */
  ttl?: string;
  scopes?: string[] | null;
}
export interface SettleOptions {
  remark?: string | null;
  allowDebt?: boolean;
}
export interface DistributeOptions {
  /** true: Citus sends each per-user call to the user's node (docs/citus.md, "Delegation": read it first). */
  delegate?: boolean | null;
}
export interface ReleaseOptions {
  reason?: string | null;
}
export interface RefundOptions {
  /** Part of the entry; all that is left when omitted or null. */
  amount?: Amount | null;
  remark?: string | null;
  idempotencyKey?: string | null;
}
export interface HistoryOptions {
  /** 1 to 1000 (SQL default 50). */
  pageSize?: number;
  /** The seq of the last row of the page you have. */
  beforeSeq?: Id | null;
}
export interface ExpireOptions {
  asOf?: Timestamp;
  batchSize?: number;
}
export interface RevokeOptions {
  remark?: string | null;
}
export interface AdjustOptions {
  /** Recorded as association_user_id; SQL default current_user. */
  operator?: string;
}
export interface SetLimitOptions {
  /** null or omitted: a lifetime cap; "day", "week", "month", or an interval such as "1 hour". */
  period?: string | null;
  /** SQL default "UTC". */
  timeZone?: string;
}
export interface LowBalanceEventsOptions {
  afterId?: Id;
}

/** The options object of billing_add(jsonb) / billing_deduct(jsonb), as docs/functions.md shows it. */
export interface OptionsObject {
  userId: Key;
  amount: Amount;
  accountType: string;
  source: { type: string; source: string };
  remark?: string | null;
  associationNo?: Key | null;
  associationUserId?: Key | null;
  idempotencyKey?: string | null;
  /** billing_add only. */
  expireAt?: Timestamp | null;
  /** billing_add only. */
  subscriptionId?: Key | null;
  /** billing_deduct only. */
  scopes?: string[] | null;
}

const jsonbParam = (value: unknown, name: string): string => {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`pgbilling: ${name} must be an options object`);
  }
  const o = { ...(value as Record<string, unknown>) };
  if (o["amount"] !== undefined && o["amount"] !== null) o["amount"] = amountParam(o["amount"], "amount");
  if (o["expireAt"] instanceof Date) o["expireAt"] = timestampParam(o["expireAt"], "expireAt");
  for (const k of ["userId", "associationNo", "associationUserId", "subscriptionId"]) {
    if (typeof o[k] === "bigint") o[k] = (o[k] as bigint).toString();
  }
  return JSON.stringify(o);
};


// ---- the specs: SQL name, arguments in SQL order, result ----

const CHARGE_HEAD = [
  req("userId", "user_id", "text", keyParam),
  req("amount", "amount", "numeric", amountParam),
  req("accountType", "account_type", "text", textParam),
  req("sourceType", "source_type", "text", textParam),
  req("source", "source", "text", textParam),
  opt("remark", "remark", "text", textParam),
  opt("associationNo", "association_no", "text", keyParam),
  opt("associationUserId", "association_user_id", "text", keyParam),
];

export const FN = {
  power: { name: "billing_power", args: [req("userId", "user_id", "text", keyParam)], result: { kind: "scalar", decode: decimal } },
  hasPower: {
    name: "billing_has_power",
    args: [req("userId", "user_id", "text", keyParam), req("amount", "amount", "numeric", amountParam)],
    result: { kind: "scalar", decode: bool },
  },
  add: {
    name: "billing_add",
    args: [
      ...CHARGE_HEAD,
      opt("expireAt", "expire_at", "timestamptz", timestampParam),
      opt("subscriptionId", "subscription_id", "text", keyParam),
      opt("idempotencyKey", "idempotency_key", "text", textParam),
    ],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  deduct: {
    name: "billing_deduct",
    args: [...CHARGE_HEAD, opt("idempotencyKey", "idempotency_key", "text", textParam), opt("scopes", "scopes", "text[]", textArrayParam)],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  hold: {
    name: "billing_hold",
    args: [
      ...CHARGE_HEAD,
      opt("ttl", "ttl", "interval", textParam),
      opt("idempotencyKey", "idempotency_key", "text", textParam),
      opt("scopes", "scopes", "text[]", textArrayParam),
    ],
    result: { kind: "row", columns: HOLD },
  },
  settle: {
    name: "billing_settle",
    args: [
      req("holdId", "hold_id", "bigint", idParam),
      req("actualAmount", "actual_amount", "numeric", amountParam),
      opt("remark", "remark", "text", textParam),
      opt("allowDebt", "allow_debt", "boolean", boolParam),
    ],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  release: {
    name: "billing_release",
    args: [req("holdId", "hold_id", "bigint", idParam), opt("reason", "reason", "text", textParam)],
    result: { kind: "row", columns: HOLD },
  },
  refund: {
    name: "billing_refund",
    args: [
      req("logId", "log_id", "bigint", idParam),
      opt("amount", "amount", "numeric", amountParam),
      opt("remark", "remark", "text", textParam),
      opt("idempotencyKey", "idempotency_key", "text", textParam),
    ],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  userSettle: {
    name: "billing_user_settle",
    args: [
      req("userId", "user_id", "text", keyParam),
      req("holdId", "hold_id", "bigint", idParam),
      req("actualAmount", "actual_amount", "numeric", amountParam),
      opt("remark", "remark", "text", textParam),
      opt("allowDebt", "allow_debt", "boolean", boolParam),
    ],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  userRelease: {
    name: "billing_user_release",
    args: [req("userId", "user_id", "text", keyParam), req("holdId", "hold_id", "bigint", idParam), opt("reason", "reason", "text", textParam)],
    result: { kind: "row", columns: HOLD },
  },
  userRefund: {
    name: "billing_user_refund",
    args: [
      req("userId", "user_id", "text", keyParam),
      req("logId", "log_id", "bigint", idParam),
      opt("amount", "amount", "numeric", amountParam),
      opt("remark", "remark", "text", textParam),
      opt("idempotencyKey", "idempotency_key", "text", textParam),
    ],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  addWithOptions: { name: "billing_add", args: [req("options", "options", "jsonb", jsonbParam)], result: { kind: "row", columns: LEDGER_ENTRY } },
  deductWithOptions: { name: "billing_deduct", args: [req("options", "options", "jsonb", jsonbParam)], result: { kind: "row", columns: LEDGER_ENTRY } },
  verify: { name: "billing_verify", args: [opt("userId", "user_id", "text", keyParam)], result: { kind: "rows", columns: VIOLATION } },
  history: {
    name: "billing_history",
    args: [req("userId", "user_id", "text", keyParam), opt("pageSize", "page_size", "integer", intParam), opt("beforeSeq", "before_seq", "bigint", idParam)],
    result: { kind: "rows", columns: LEDGER_ENTRY },
  },
  byAssociation: {
    name: "billing_by_association",
    args: [req("userId", "user_id", "text", keyParam), req("associationNo", "association_no", "text", keyParam)],
    result: { kind: "rows", columns: LEDGER_ENTRY },
  },
  statement: {
    name: "billing_statement",
    args: [
      req("userId", "user_id", "text", keyParam),
      req("fromTs", "from_ts", "timestamptz", timestampParam),
      req("toTs", "to_ts", "timestamptz", timestampParam),
    ],
    result: { kind: "rows", columns: STATEMENT_ROW },
  },
  price: {
    name: "billing_price",
    args: [req("ruleCode", "rule_code", "text", textParam), req("tokens", "tokens", "bigint", idParam)],
    result: { kind: "scalar", decode: decimal },
  },
  expire: {
    name: "billing_expire",
    args: [opt("asOf", "as_of", "timestamptz", timestampParam), opt("batchSize", "batch_size", "integer", intParam)],
    result: { kind: "scalar", decode: count },
  },
  revokeSubscription: {
    name: "billing_revoke_subscription",
    args: [req("subscriptionId", "subscription_id", "text", keyParam), opt("remark", "remark", "text", textParam)],
    result: { kind: "rows", columns: LEDGER_ENTRY },
  },
  adjust: {
    name: "billing_adjust",
    args: [
      req("userId", "user_id", "text", keyParam),
      req("delta", "delta", "numeric", amountParam),
      req("remark", "remark", "text", textParam),
      opt("operator", "operator", "text", textParam),
    ],
    result: { kind: "row", columns: LEDGER_ENTRY },
  },
  setLowBalance: {
    name: "billing_set_low_balance",
    args: [req("userId", "user_id", "text", keyParam), req("threshold", "threshold", "numeric", amountParam)],
    result: { kind: "scalar", decode: decimalOrNull },
  },
  lowBalanceEvents: {
    name: "billing_low_balance_events",
    args: [opt("afterId", "after_id", "bigint", idParam)],
    result: { kind: "rows", columns: LOW_BALANCE_EVENT },
  },
  setDebtLimit: {
    name: "billing_set_debt_limit",
    args: [req("userId", "user_id", "text", keyParam), req("maxDebt", "max_debt", "numeric", amountParam)],
    result: { kind: "scalar", decode: decimalOrNull },
  },
  setLimit: {
    name: "billing_set_limit",
    args: [
      req("userId", "user_id", "text", keyParam),
      req("scope", "scope", "text", textParam),
      req("cap", "cap", "numeric", amountParam),
      opt("period", "period", "text", textParam),
      opt("timeZone", "time_zone", "text", textParam),
    ],
    result: { kind: "row", columns: SPENDING_LIMIT },
  },
  limits: { name: "billing_limits", args: [req("userId", "user_id", "text", keyParam)], result: { kind: "rows", columns: SPENDING_LIMIT } },
  metrics: { name: "billing_metrics", args: [], result: { kind: "rows", columns: METRIC } },
  metricsReset: { name: "billing_metrics_reset", args: [], result: { kind: "void" } },
  distribute: {
    name: "billing_distribute",
    args: [opt("delegate", "delegate", "boolean", boolParam)],
    result: { kind: "rows", columns: DISTRIBUTED_OBJECT },
  },
} as const satisfies Record<string, FnSpec>;

/**
 * The SQL functions of the billing extension as methods, on the connection you pass.
 *
 * Every method runs one statement on `db` and never commits: on a pg Client or PoolClient inside your
 * BEGIN ... COMMIT (or a TypeORM EntityManager inside `dataSource.transaction`), the billing change
 * commits or rolls back with your own writes; on a Pool, each call is its own transaction.
 * Errors of docs/errors.md are thrown as BillingError subclasses; any other error unchanged.
 */
export class Billing {
  constructor(readonly db: Queryable) {}

  private run<T>(spec: FnSpec, values: object): Promise<T> {
    return call(this.db, spec, values) as Promise<T>;
  }

  /** billing_power: the user's available power (0 for an unknown user). */
  power(userId: Key): Promise<Decimal> {
    return this.run(FN.power, { userId });
  }
  /** billing_has_power: an advisory check; deduct is the authoritative one. */
  hasPower(userId: Key, amount: Amount): Promise<boolean> {
    return this.run(FN.hasPower, { userId, amount });
  }
  /** billing_add: credits the permanent balance, or a grant with expireAt. */
  add(args: AddArgs): Promise<LedgerEntry> {
    return this.run(FN.add, args);
  }
  /** billing_deduct: spends power (grants soonest-expiring first, then the permanent balance). */
  deduct(args: DeductArgs): Promise<LedgerEntry> {
    return this.run(FN.deduct, args);
  }
  /** billing_hold: reserves power for work whose cost is known at the end. */
  hold(args: HoldArgs): Promise<Hold> {
    return this.run(FN.hold, args);
  }
  /** billing_settle: charges the actual amount from the hold; null for 0 (a release). */
  settle(holdId: Id, actualAmount: Amount, options: SettleOptions = {}): Promise<LedgerEntry | null> {
    return this.run(FN.settle, { ...options, holdId, actualAmount });
  }
  /** billing_release: gives the hold's power back, charging nothing. */
  release(holdId: Id, options: ReleaseOptions = {}): Promise<Hold> {
    return this.run(FN.release, { ...options, holdId });
  }
  /** billing_refund: gives back all (amount omitted) or part of a debit entry. */
  refund(logId: Id, options: RefundOptions = {}): Promise<LedgerEntry> {
    return this.run(FN.refund, { ...options, logId });
  }
  /**
   * billing_user_settle: {@link Billing.settle} of a hold of `userId`, keyed by the user as well (on Citus
   * the call runs on the node that holds the user); null for 0. A hold of another user is 22023 (InvalidArgument).
   */
  userSettle(userId: Key, holdId: Id, actualAmount: Amount, options: SettleOptions = {}): Promise<LedgerEntry | null> {
    return this.run(FN.userSettle, { ...options, userId, holdId, actualAmount });
  }
  /**
   * billing_user_release: {@link Billing.release} of a hold of `userId`, keyed by the user as well (on Citus
   * the call runs on the node that holds the user). A hold of another user is 22023 (InvalidArgument).
   */
  userRelease(userId: Key, holdId: Id, options: ReleaseOptions = {}): Promise<Hold> {
    return this.run(FN.userRelease, { ...options, userId, holdId });
  }
  /**
   * billing_user_refund: {@link Billing.refund} of an entry of `userId`, keyed by the user as well (on Citus
   * the call runs on the node that holds the user). An entry of another user is 22023 (InvalidArgument).
   */
  userRefund(userId: Key, logId: Id, options: RefundOptions = {}): Promise<LedgerEntry> {
    return this.run(FN.userRefund, { ...options, userId, logId });
  }
  /** billing_add(options jsonb): the options-object form (the server checks the keys). */
  addWithOptions(options: OptionsObject): Promise<LedgerEntry> {
    return this.run(FN.addWithOptions, { options });
  }
  /** billing_deduct(options jsonb): the options-object form (the server checks the keys). */
  deductWithOptions(options: OptionsObject): Promise<LedgerEntry> {
    return this.run(FN.deductWithOptions, { options });
  }
  /** billing_verify: every disagreement between the stored state and the ledger; [] is healthy. */
  verify(userId?: Key | null): Promise<Violation[]> {
    return this.run(FN.verify, { userId });
  }
  /** billing_history: one page of entries, newest first. */
  history(userId: Key, options: HistoryOptions = {}): Promise<LedgerEntry[]> {
    return this.run(FN.history, { ...options, userId });
  }
  /** billing_by_association: the user's entries with that association_no, oldest first. */
  byAssociation(userId: Key, associationNo: Key): Promise<LedgerEntry[]> {
    return this.run(FN.byAssociation, { userId, associationNo });
  }
  /** billing_statement: one row per account_type, then the total row (accountType null). */
  statement(userId: Key, fromTs: Timestamp, toTs: Timestamp): Promise<StatementRow[]> {
    return this.run(FN.statement, { userId, fromTs, toTs });
  }
  /** billing_price: what `tokens` cost under a pricing rule. */
  price(ruleCode: string, tokens: Id): Promise<Decimal> {
    return this.run(FN.price, { ruleCode, tokens });
  }
  /** billing_expire: one batch of the sweep; call again until it returns 0. */
  expire(options: ExpireOptions = {}): Promise<number> {
    return this.run(FN.expire, options);
  }
  /** billing_revoke_subscription: ends the subscription's live grants now. */
  revokeSubscription(subscriptionId: Key, options: RevokeOptions = {}): Promise<LedgerEntry[]> {
    return this.run(FN.revokeSubscription, { ...options, subscriptionId });
  }
  /** billing_adjust: a manual correction (a positive or negative delta). */
  adjust(userId: Key, delta: Amount, remark: string, options: AdjustOptions = {}): Promise<LedgerEntry> {
    return this.run(FN.adjust, { ...options, userId, delta, remark });
  }
  /** billing_set_low_balance: sets (null removes) the threshold; returns it. */
  setLowBalance(userId: Key, threshold: Amount | null): Promise<Decimal | null> {
    return this.run(FN.setLowBalance, { userId, threshold });
  }
  /** billing_low_balance_events: events after afterId, oldest first (poll this instead of LISTEN behind pgbouncer). */
  lowBalanceEvents(options: LowBalanceEventsOptions = {}): Promise<LowBalanceEvent[]> {
    return this.run(FN.lowBalanceEvents, options);
  }
  /** billing_set_debt_limit: sets (null removes) the debt floor; returns it. */
  setDebtLimit(userId: Key, maxDebt: Amount | null): Promise<Decimal | null> {
    return this.run(FN.setDebtLimit, { userId, maxDebt });
  }
  /** billing_set_limit: sets a spending limit (cap null removes it: returns null). */
  setLimit(userId: Key, scope: string, cap: Amount | null, options: SetLimitOptions = {}): Promise<SpendingLimit | null> {
    return this.run(FN.setLimit, { ...options, userId, scope, cap });
  }
  /** billing_limits: the user's spending limits as they stand now. */
  limits(userId: Key): Promise<SpendingLimit[]> {
    return this.run(FN.limits, { userId });
  }
  /** billing_metrics: counters and gauges. */
  metrics(): Promise<Metric[]> {
    return this.run(FN.metrics, {});
  }
  /** billing_metrics_reset: zeroes the counters (superusers only: 42501 otherwise). */
  metricsReset(): Promise<void> {
    return this.run(FN.metricsReset, {});
  }
  /**
   * billing_distribute: on the Citus coordinator, as the extension's owner, distributes the extension's
   * tables by user_id and its per-user functions; one row per object, saying what became of it. Without
   * the citus extension (or on a worker) CitusUnavailable (PB009), with nothing distributed; PUBLIC may not
   * execute it (42501).
   */
  distribute(options: DistributeOptions = {}): Promise<DistributedObject[]> {
    return this.run(FN.distribute, { ...options });
  }
}
