// Converting what callers pass into SQL parameters, and what PostgreSQL
// returns (always selected as text) into exact JS values. Money never passes
// through a JS number.
import { Decimal } from "decimal.js";

/** An amount of power as callers pass it: a decimal.js Decimal or a decimal string. Never a JS number. */
export type Amount = Decimal | string;
/** An identifier such as a user id: a string, or an integer (a safe-integer number or a bigint). */
export type Key = string | number | bigint;
/** A bigint id (ledger entry, hold, seq): a string of digits, a bigint or a safe-integer number. */
export type Id = string | bigint | number;
/** A timestamp: a Date or a string PostgreSQL reads as timestamptz (ISO 8601 with a zone is the safe form). */
export type Timestamp = Date | string;

const DECIMAL_TEXT = /^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;
const SPECIAL = /^\s*(?:NaN|[+-]?Infinity)\s*$/;

/**
 * The text of an amount for a `$n::numeric` parameter. Refuses JS numbers (and
 * anything else that is not a Decimal or a decimal string) with a TypeError;
 * NaN and the infinities go to the server, which refuses them with 22023 like
 * every other bad amount (docs/bad-input.md).
 */
export function amountParam(value: unknown, name: string): string {
  if (typeof value === "number") {
    throw new TypeError(
      `pgbilling: ${name} must be a decimal.js Decimal or a decimal string, not a JS number (${value}): ` +
        `numbers are binary floating point and cannot hold every amount exactly; pass "${value}" or new Decimal("${value}")`,
    );
  }
  if (Decimal.isDecimal(value)) {
    const d = value as Decimal;
    return d.isFinite() ? d.toFixed() : d.toString();
  }
  if (typeof value === "string") {
    if (DECIMAL_TEXT.test(value) || SPECIAL.test(value)) return value.trim();
    throw new TypeError(`pgbilling: ${name} must be a decimal number such as "12.5", got ${JSON.stringify(value)}`);
  }
  throw new TypeError(`pgbilling: ${name} must be a decimal.js Decimal or a decimal string, got ${describe(value)}`);
}

export function keyParam(value: unknown, name: string): string {
  if (typeof value === "string") return value;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number" && Number.isSafeInteger(value)) return String(value);
  throw new TypeError(`pgbilling: ${name} must be a string or an integer, got ${describe(value)}`);
}

export function textParam(value: unknown, name: string): string {
  if (typeof value === "string") return value;
  throw new TypeError(`pgbilling: ${name} must be a string, got ${describe(value)}`);
}

export function idParam(value: unknown, name: string): string {
  if (typeof value === "string" && /^\s*-?\d+\s*$/.test(value)) return value.trim();
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number" && Number.isSafeInteger(value)) return String(value);
  throw new TypeError(`pgbilling: ${name} must be an integer id (a string of digits, a bigint or a safe integer), got ${describe(value)}`);
}

export function intParam(value: unknown, name: string): number {
  if (typeof value === "number" && Number.isSafeInteger(value)) return value;
  throw new TypeError(`pgbilling: ${name} must be an integer, got ${describe(value)}`);
}

export function boolParam(value: unknown, name: string): boolean {
  if (typeof value === "boolean") return value;
  throw new TypeError(`pgbilling: ${name} must be a boolean, got ${describe(value)}`);
}

export function timestampParam(value: unknown, name: string): string {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new TypeError(`pgbilling: ${name} is an invalid Date`);
    return value.toISOString();
  }
  if (typeof value === "string") return value;
  throw new TypeError(`pgbilling: ${name} must be a Date or a timestamp string, got ${describe(value)}`);
}

export function textArrayParam(value: unknown, name: string): (string | null)[] {
  if (Array.isArray(value) && value.every((v) => typeof v === "string" || v === null)) return value as (string | null)[];
  throw new TypeError(`pgbilling: ${name} must be an array of strings, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return `an object (${(value as object).constructor?.name ?? "Object"})`;
  if (typeof value === "bigint") return `a bigint (${value}n)`;
  return `a ${typeof value} (${String(value)})`;
}
