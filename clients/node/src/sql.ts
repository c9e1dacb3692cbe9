// How a method becomes one SQL statement: a declarative spec per SQL function
// (its arguments with their SQL names and types, and what it returns), and one
// call() that builds `SELECT ... FROM billing_x(arg => $1::type, ...)` from the
// spec's constant names and binds every value as a parameter. No SQL is ever
// built from input: the only variable part is which of the spec's optional
// arguments are given (an omitted one takes the SQL default).
import { Decimal } from "decimal.js";
import { mapError } from "./errors.js";
import { parseExactJson, type JsonValue } from "./json.js";
import type { Funding } from "./types.js";

/**
 * Anything with node-postgres' `query(text, values)`: a pg Client or PoolClient (inside your transaction),
 * a pg Pool (each call its own transaction), a TypeORM EntityManager or DataSource. The result may be
 * pg's `{ rows }` or TypeORM's rows array.
 */
export interface Queryable {
  query(text: string, values?: any[]): Promise<any>;
}

type Convert = (value: unknown, name: string) => unknown;

export interface ArgSpec {
  /** The name callers use (camelCase). */
  readonly js: string;
  /** The SQL argument name, used in named notation. */
  readonly sql: string;
  /** The SQL type of the cast, so overloads resolve exactly. */
  readonly type: string;
  readonly convert: Convert;
  /** Required arguments are always passed (NULL when missing: the server answers 22004). */
  readonly required: boolean;
}

export function req(js: string, sql: string, type: string, convert: Convert): ArgSpec {
  return { js, sql, type, convert, required: true };
}
export function opt(js: string, sql: string, type: string, convert: Convert): ArgSpec {
  return { js, sql, type, convert, required: false };
}

type Decode<T> = (text: string | null, column: string) => T;

/** A column of a result row: the JS field, the SQL expression over `r` (always text), its decoder. */
export type Column = readonly [js: string, sql: string, decode: Decode<unknown>];

export type Result =
  | { readonly kind: "scalar"; readonly decode: Decode<unknown> }
  | { readonly kind: "void" }
  | { readonly kind: "row" | "rows"; readonly columns: readonly Column[] };

export interface FnSpec {
  /** The SQL function, called unqualified (it lives in the schema CREATE EXTENSION chose). */
  readonly name: string;
  readonly args: readonly ArgSpec[];
  readonly result: Result;
}

/** The rows of a query result, whichever shape the Queryable returns. */
export function rowsOf(result: unknown): Record<string, string | null>[] {
  if (Array.isArray(result)) return result as Record<string, string | null>[];
  const rows = (result as { rows?: unknown } | null)?.rows;
  if (Array.isArray(rows)) return rows as Record<string, string | null>[];
  throw new TypeError("pgbilling: query() returned neither rows nor { rows }; pass a pg Client, Pool or a TypeORM EntityManager");
}

/** Builds the statement of a call: SQL text from the spec alone, values as parameters. */
export function statement(spec: FnSpec, valuesObject: object): { text: string; params: unknown[] } {
  const values = valuesObject as Readonly<Record<string, unknown>>;
  for (const key of Object.keys(values)) {
    if (values[key] !== undefined && !spec.args.some((a) => a.js === key)) {
      throw new TypeError(`pgbilling: ${spec.name} has no argument ${key} (it takes ${spec.args.map((a) => a.js).join(", ") || "none"})`);
    }
  }
  const params: unknown[] = [];
  const named: string[] = [];
  for (const a of spec.args) {
    let v = values[a.js];
    if (v === undefined) {
      if (!a.required) continue;
      v = null;
    }
    params.push(v === null ? null : a.convert(v, a.js));
    named.push(`${a.sql} => $${params.length}::${a.type}`);
  }
  const call = `${spec.name}(${named.join(", ")})`;
  const r = spec.result;
  let text: string;
  if (r.kind === "scalar") text = `SELECT (${call})::text AS v`;
  else if (r.kind === "void") text = `SELECT ${call} IS NULL AS v`;
  else text = `SELECT ${r.columns.map(([js, sql]) => `${sql} AS "${js}"`).join(", ")} FROM ${call} AS r`;
  return { text, params };
}

/** Runs a call on `db`; a SQLSTATE of docs/errors.md is rethrown as its BillingError. */
export async function call(db: Queryable, spec: FnSpec, values: object): Promise<unknown> {
  const { text, params } = statement(spec, values);
  let result: unknown;
  try {
    result = await db.query(text, params);
  } catch (err) {
    throw mapError(err);
  }
  const rows = rowsOf(result);
  const r = spec.result;
  if (r.kind === "void") return undefined;
  if (r.kind === "scalar") return r.decode(rows[0]?.["v"] ?? null, "result");
  const decoded = rows
    // a function returning a NULL composite (billing_settle for 0) gives one row of NULLs
    .filter((row) => row[r.columns[0]![0]] !== null)
    .map((row) => decodeRow(row, r.columns));
  return r.kind === "rows" ? decoded : (decoded[0] ?? null);
}

function decodeRow(row: Record<string, string | null>, columns: readonly Column[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [js, , decode] of columns) out[js] = decode(row[js] ?? null, js);
  return out;
}

// ---- decoders: every column arrives as text (or NULL) ----

function present(text: string | null, column: string): string {
  if (text === null) throw new TypeError(`pgbilling: column ${column} is unexpectedly NULL`);
  return text;
}
export const text: Decode<string> = (t, c) => present(t, c);
export const textOrNull: Decode<string | null> = (t) => t;
export const decimal: Decode<Decimal> = (t, c) => new Decimal(present(t, c));
export const decimalOrNull: Decode<Decimal | null> = (t) => (t === null ? null : new Decimal(t));
export const id: Decode<string> = (t, c) => present(t, c);
export const idOrNull: Decode<string | null> = (t) => t;
export const count: Decode<number> = (t, c) => {
  const n = Number(present(t, c));
  if (!Number.isSafeInteger(n)) throw new RangeError(`pgbilling: ${c} ${t} is not a safe integer`);
  return n;
};
export const bool: Decode<boolean> = (t, c) => present(t, c) === "true";
export const direction: Decode<1 | -1> = (t, c) => (present(t, c) === "-1" ? -1 : 1);
/** Timestamps are selected as to_json(x)::text: ISO 8601 whatever DateStyle the session has. */
export const timestamp: Decode<Date> = (t, c) => new Date(JSON.parse(present(t, c)) as string);
export const timestampOrNull: Decode<Date | null> = (t) => (t === null ? null : new Date(JSON.parse(t) as string));
export const textArrayOrNull: Decode<string[] | null> = (t) => (t === null ? null : (JSON.parse(t) as string[]));
export const json: Decode<JsonValue> = (t, c) => parseExactJson(present(t, c));
export const funding: Decode<Funding> = (t, c) => {
  const value = parseExactJson(present(t, c));
  if (value === null || typeof value !== "object" || Array.isArray(value) || Decimal.isDecimal(value)) {
    throw new TypeError(`pgbilling: ${c} is not a JSON object: ${t}`);
  }
  const out: Funding = { ...(value as Record<string, JsonValue>) };
  const asId = (v: unknown) => (Decimal.isDecimal(v) ? (v as Decimal).toFixed() : String(v));
  if (Array.isArray(out.grants)) {
    out.grants = (out.grants as unknown as { id: unknown; amount: Decimal }[]).map((g) => ({ ...g, id: asId(g.id), amount: g.amount }));
  }
  if (out.hold !== undefined) out.hold = asId(out.hold);
  return out;
};

// ---- SQL expressions of the columns, over the row alias r ----

const asText = (col: string) => `r.${col}::text`;
const asJsonText = (col: string) => `pg_catalog.to_json(r.${col})::text`;

/** billing.account_log, as LedgerEntry. */
export const LEDGER_ENTRY: readonly Column[] = [
  ["id", asText("id"), id],
  ["userId", "r.user_id", text],
  ["seq", asText("seq"), id],
  ["direction", asText("direction"), direction],
  ["amount", asText("amount"), decimal],
  ["balanceAfter", asText("balance_after"), decimal],
  ["accountType", "r.account_type", text],
  ["sourceType", "r.source_type", text],
  ["source", "r.source", text],
  ["remark", "r.remark", textOrNull],
  ["associationNo", "r.association_no", textOrNull],
  ["associationUserId", "r.association_user_id", textOrNull],
  ["subscriptionId", "r.subscription_id", textOrNull],
  ["expireAt", asJsonText("expire_at"), timestampOrNull],
  ["detail", asText("detail"), funding],
  ["idempotencyKey", "r.idempotency_key", textOrNull],
  ["createdAt", asJsonText("created_at"), timestamp],
  ["refundOf", asText("refund_of"), idOrNull],
  ["sessionRole", "r.session_role", textOrNull],
  ["callingRole", "r.calling_role", textOrNull],
  ["scopes", asJsonText("scopes"), textArrayOrNull],
];

/** billing.holds, as Hold. */
export const HOLD: readonly Column[] = [
  ["holdId", asText("hold_id"), id],
  ["userId", "r.user_id", text],
  ["status", "r.status", text],
  ["amount", asText("amount"), decimal],
  ["expiresAt", asJsonText("expires_at"), timestamp],
  ["accountType", "r.account_type", text],
  ["sourceType", "r.source_type", text],
  ["source", "r.source", text],
  ["remark", "r.remark", textOrNull],
  ["associationNo", "r.association_no", textOrNull],
  ["associationUserId", "r.association_user_id", textOrNull],
  ["idempotencyKey", "r.idempotency_key", textOrNull],
  ["funding", asText("funding"), funding],
  ["reservedAfterSeq", asText("reserved_after_seq"), id],
  ["settledAmount", asText("settled_amount"), decimalOrNull],
  ["logId", asText("log_id"), idOrNull],
  ["reason", "r.reason", textOrNull],
  ["closedAfterSeq", asText("closed_after_seq"), idOrNull],
  ["createdAt", asJsonText("created_at"), timestamp],
  ["closedAt", asJsonText("closed_at"), timestampOrNull],
  ["scopes", asJsonText("scopes"), textArrayOrNull],
];

/** billing.spending_limit, as SpendingLimit. */
export const SPENDING_LIMIT: readonly Column[] = [
  ["scope", "r.scope", text],
  ["cap", asText("cap"), decimal],
  ["period", "r.period", textOrNull],
  ["timeZone", "r.time_zone", text],
  ["periodStart", asJsonText("period_start"), timestamp],
  ["periodEnd", asJsonText("period_end"), timestampOrNull],
  ["spent", asText("spent"), decimal],
  ["held", asText("held"), decimal],
  ["remaining", asText("remaining"), decimal],
];

/** billing.violation, as Violation. */
export const VIOLATION: readonly Column[] = [
  ["userId", "r.user_id", text],
  ["check", 'r."check"', text],
  ["expected", "r.expected", textOrNull],
  ["actual", "r.actual", textOrNull],
];

/** billing_statement's rows. The first column decides a row's presence, so it is one that is never NULL. */
export const STATEMENT_ROW: readonly Column[] = [
  ["entries", asText("entries"), count],
  ["accountType", "r.account_type", textOrNull],
  ["credited", asText("credited"), decimal],
  ["debited", asText("debited"), decimal],
  ["net", asText("net"), decimal],
  ["openingBalance", asText("opening_balance"), decimal],
  ["closingBalance", asText("closing_balance"), decimal],
];

/** billing_low_balance_events' rows. */
export const LOW_BALANCE_EVENT: readonly Column[] = [
  ["eventId", asText("event_id"), id],
  ["userId", "r.user_id", text],
  ["threshold", asText("threshold"), decimal],
  ["available", asText("available"), decimal],
  ["at", asJsonText("at"), timestamp],
];

/** billing_metrics' rows. */
export const METRIC: readonly Column[] = [
  ["metric", "r.metric", text],
  ["kind", "r.kind", text],
  ["labels", asText("labels"), json],
  ["value", asText("value"), decimal],
];

/** billing_distribute's rows. */
export const DISTRIBUTED_OBJECT: readonly Column[] = [
  ["object", "r.object", text],
  ["distribution", "r.distribution", text],
];
