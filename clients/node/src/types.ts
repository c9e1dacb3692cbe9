// The rows the SQL functions return, as typed records. Money is a decimal.js
// Decimal, bigint ids are strings (exact, and JSON-safe), counts are numbers,
// timestamps are Dates.
import type { Decimal } from "decimal.js";
import type { JsonValue } from "./json.js";

/** Where a charge or credit came from or went to: a ledger entry's `detail`, a hold's `funding`. */
export interface Funding {
  /** Power from (or to) the permanent balance. */
  permanent?: Decimal;
  /** Power from (or to) grants, by grant id. */
  grants?: { id: string; amount: Decimal }[];
  /** For a settle's entry: the hold it settled. */
  hold?: string;
  /** Any other key, numbers as Decimal. */
  [key: string]: unknown;
}

/** A row of billing.account_log: what billing_add, billing_deduct, billing_settle, billing_refund, billing_user_settle, billing_user_refund, billing_adjust and the reports return. */
export interface LedgerEntry {
  id: string;
  userId: string;
  seq: string;
  /** +1 credit, -1 debit. */
  direction: 1 | -1;
  amount: Decimal;
  balanceAfter: Decimal;
  accountType: string;
  sourceType: string;
  source: string;
  remark: string | null;
  associationNo: string | null;
  associationUserId: string | null;
  subscriptionId: string | null;
  expireAt: Date | null;
  detail: Funding;
  idempotencyKey: string | null;
  createdAt: Date;
  /** For a refund: the id of the entry it gives back (part of). */
  refundOf: string | null;
  sessionRole: string | null;
  callingRole: string | null;
  scopes: string[] | null;
}

export type HoldStatus = "held" | "settled" | "released" | "expired";

/** A row of billing.holds: what billing_hold, billing_release and billing_user_release return. */
export interface Hold {
  userId: string;
  holdId: string;
  status: HoldStatus;
  amount: Decimal;
  expiresAt: Date;
  accountType: string;
  sourceType: string;
  source: string;
  remark: string | null;
  associationNo: string | null;
  associationUserId: string | null;
  idempotencyKey: string | null;
  funding: Funding;
  reservedAfterSeq: string;
  settledAmount: Decimal | null;
  /** The settle's ledger entry. */
  logId: string | null;
  reason: string | null;
  closedAfterSeq: string | null;
  createdAt: Date;
  closedAt: Date | null;
  scopes: string[] | null;
}

/** billing.spending_limit: what billing_set_limit and billing_limits return. */
export interface SpendingLimit {
  scope: string;
  cap: Decimal;
  /** null: a lifetime cap; "day", "week", "month" or an interval. */
  period: string | null;
  timeZone: string;
  periodStart: Date;
  /** null for a lifetime cap. */
  periodEnd: Date | null;
  spent: Decimal;
  held: Decimal;
  remaining: Decimal;
}

/** billing.violation: one finding of billing_verify. */
export interface Violation {
  userId: string;
  check: string;
  expected: string | null;
  actual: string | null;
}

/** One row of billing_statement; the total row has accountType null. */
export interface StatementRow {
  accountType: string | null;
  entries: number;
  credited: Decimal;
  debited: Decimal;
  net: Decimal;
  openingBalance: Decimal;
  closingBalance: Decimal;
}

/** One row of billing_low_balance_events. */
export interface LowBalanceEvent {
  eventId: string;
  userId: string;
  threshold: Decimal;
  available: Decimal;
  at: Date;
}

/** One row of billing_metrics. */
export interface Metric {
  metric: string;
  kind: "counter" | "gauge";
  labels: { [key: string]: JsonValue };
  value: Decimal;
}

/** One row of billing_distribute: a table, the id sequences or a function, and what became of it. */
export interface DistributedObject {
  /** The table or function (as regclass / regprocedure text), or "id sequences". */
  object: string;
  /**
   * "distributed by user_id", "reference table", "delegated by user_id" (a function) or the sequences'
   * range, with " (already)" when the call found it so.
   */
  distribution: string;
}
