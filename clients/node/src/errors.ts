// The errors of docs/errors.md as classes. Every method maps what the server
// raised through mapError: a SQLSTATE of the table becomes its BillingError
// subclass (the driver's error kept as `cause`), anything else is rethrown
// unchanged.
import { Decimal } from "decimal.js";

/** The fields a driver error carries: pg's DatabaseError, or TypeORM's QueryFailedError around one. */
interface DriverErrorLike {
  code?: unknown;
  message?: unknown;
  detail?: unknown;
  hint?: unknown;
  driverError?: unknown;
}

/** The base of every error this client raises for a SQLSTATE of docs/errors.md. */
export class BillingError extends Error {
  /** The five-character SQLSTATE, e.g. "PB001". */
  readonly sqlstate: string;
  /** The server's DETAIL, if any. */
  readonly detail: string | undefined;
  /** The server's HINT, if any. */
  readonly hint: string | undefined;
  /** True for the errors retryTransaction reruns on (40001, 40P01). */
  get retryable(): boolean {
    return false;
  }

  constructor(sqlstate: string, message: string, detail?: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.sqlstate = sqlstate;
    this.detail = detail;
    this.hint = hint;
  }
}

/** PB001: not enough available power for a deduct or a hold, or for the part of a settle above its hold. */
export class InsufficientPower extends BillingError {
  /** The user, from the message. */
  readonly userId: string | undefined;
  /** What was asked for: the amount of a deduct or hold; for a settle, the part above what the hold reserved. */
  readonly requested: Decimal | undefined;
  /**
   * The power available (for a settle with allow_debt under a debt floor: what the grants, the balance and
   * the floor leave). Undefined when the DETAIL hides it: the calling role may not execute billing_power.
   */
  readonly available: Decimal | undefined;
  /** For a settle: what the hold reserved. */
  readonly held: Decimal | undefined;

  constructor(sqlstate: string, message: string, detail?: string, hint?: string, options?: { cause?: unknown }) {
    super(sqlstate, message, detail, hint, options);
    this.userId = quotedAfter(message, "for user ");
    const d = detail ?? "";
    let m = /^Requested (\S+?)(?:, available (\S+)\.$|;)/.exec(d);
    if (m) {
      this.requested = dec(m[1]);
      this.available = dec(m[2]);
      this.held = undefined;
      return;
    }
    m = /^The hold reserved (\S+?); the other (\S+) must come from available power(?:.*?, which (?:is|leave) (\S+?)\.$)?/.exec(d);
    this.held = dec(m?.[1]);
    this.requested = dec(m?.[2]);
    this.available = dec(m?.[3]);
  }
}

/** PB002: unknown account_type or source_type, a type of the wrong direction, an unknown pricing rule. */
export class UnknownType extends BillingError {}
/** PB003: the idempotency key was already used by this user for a different operation. */
export class IdempotencyConflict extends BillingError {}
/** PB004: the hold was already settled or released differently, or is past its ttl. */
export class HoldStateError extends BillingError {}
/** PB005: a refund would give back more than is left of the entry. */
export class OverRefund extends BillingError {}
/** PB006: UPDATE, DELETE or TRUNCATE on billing.account_log. */
export class LedgerAppendOnly extends BillingError {}
/** PB007: renaming or deleting a type code, or changing an account type's direction. */
export class TypeCodeFixed extends BillingError {}

/** PB008: a charge would take a spending limit above its cap (docs/limits.md). */
export class LimitExceeded extends BillingError {
  /** The scope whose limit is exceeded (the first over its cap), from the message. */
  readonly scope: string | undefined;
  /** The user, from the message. */
  readonly userId: string | undefined;
  /** What this call adds (the amount, or a settle's actual amount); always in the DETAIL. */
  readonly requested: Decimal | undefined;
  /** The cap and counters: undefined when the calling role may not execute billing_limits. */
  readonly cap: Decimal | undefined;
  readonly spent: Decimal | undefined;
  readonly held: Decimal | undefined;
  /** The end of the current period; null for a lifetime cap (`never`); undefined when hidden. */
  readonly periodEnd: Date | null | undefined;

  constructor(sqlstate: string, message: string, detail?: string, hint?: string, options?: { cause?: unknown }) {
    super(sqlstate, message, detail, hint, options);
    this.scope = quotedAfter(message, "spending limit of scope ");
    this.userId = quotedAfter(message, "for user ");
    const pairs = new Map<string, string>();
    for (const part of (detail ?? "").trim().split(" ")) {
      const eq = part.indexOf("=");
      if (eq > 0) pairs.set(part.slice(0, eq), part.slice(eq + 1));
    }
    this.cap = dec(pairs.get("cap"));
    this.spent = dec(pairs.get("spent"));
    this.held = dec(pairs.get("held"));
    this.requested = dec(pairs.get("requested"));
    const end = pairs.get("period_end");
    this.periodEnd = end === undefined ? undefined : end === "never" ? null : new Date(end);
  }
}

/**
 * PB009: billing_distribute in a database without the citus extension, on a Citus worker rather than the
 * coordinator, or when a worker could not be given its range of ids (the DETAIL names the worker).
 * Nothing is distributed.
 */
export class CitusUnavailable extends BillingError {}

/** 22023: an argument has a value the function does not accept; the message starts with its name. */
export class InvalidArgument extends BillingError {}
/** 22004: a required argument is NULL. */
export class NullArgument extends BillingError {}
/** 22003: a balance would leave the range the extension computes in. */
export class OutOfRange extends BillingError {}
/** 42703: a charging trigger's argument names a column its table does not have. */
export class UndefinedColumn extends BillingError {}
/** 42501: the role may not do this (no EXECUTE; a charging trigger's table owner; billing_metrics_reset). */
export class InsufficientPrivilege extends BillingError {}
/** 39P01: billing_charge or billing_hold_charge fired other than AFTER ... FOR EACH ROW. */
export class TriggerProtocolViolated extends BillingError {}
/** 2BP01: dropping the extension while the ledger holds entries. */
export class DependentObjects extends BillingError {}

/** The retryable conflicts between concurrent transactions: roll back and run the whole transaction again. */
export class TransactionConflict extends BillingError {
  override get retryable(): boolean {
    return true;
  }
}
/** 40001: serialization failure (REPEATABLE READ / SERIALIZABLE). */
export class SerializationFailure extends TransactionConflict {}
/** 40P01: deadlock detected. */
export class DeadlockDetected extends TransactionConflict {}

type ErrorClass = new (sqlstate: string, message: string, detail?: string, hint?: string, options?: { cause?: unknown }) => BillingError;

/** SQLSTATE to class. One line per code: a new code of docs/errors.md is one more line. */
export const ERROR_CLASSES: Readonly<Record<string, ErrorClass>> = Object.freeze({
  PB001: InsufficientPower,
  PB002: UnknownType,
  PB003: IdempotencyConflict,
  PB004: HoldStateError,
  PB005: OverRefund,
  PB006: LedgerAppendOnly,
  PB007: TypeCodeFixed,
  PB008: LimitExceeded,
  PB009: CitusUnavailable,
  "22023": InvalidArgument,
  "22004": NullArgument,
  "22003": OutOfRange,
  "42703": UndefinedColumn,
  "42501": InsufficientPrivilege,
  "39P01": TriggerProtocolViolated,
  "2BP01": DependentObjects,
  "40001": SerializationFailure,
  "40P01": DeadlockDetected,
});

/** The driver error inside `err`: TypeORM's QueryFailedError keeps pg's error as `driverError`. */
function driverError(err: unknown): DriverErrorLike | undefined {
  if (err === null || typeof err !== "object") return undefined;
  const e = err as DriverErrorLike;
  if (e.driverError !== null && typeof e.driverError === "object" && typeof (e.driverError as DriverErrorLike).code === "string") {
    return e.driverError as DriverErrorLike;
  }
  return e;
}

/** The SQLSTATE of a driver error (pg, or TypeORM around pg), or undefined. */
export function sqlstateOf(err: unknown): string | undefined {
  const e = driverError(err);
  if (err instanceof BillingError) return err.sqlstate;
  return typeof e?.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
}

/**
 * Maps a driver error to its BillingError subclass (the driver's error as `cause`); any other error,
 * database error or not, is returned unchanged. Use it on errors of your own statements too (a
 * charging trigger fired by your INSERT, DROP EXTENSION, an UPDATE of the ledger).
 */
export function mapError(err: unknown): unknown {
  if (err instanceof BillingError) return err;
  const state = sqlstateOf(err);
  const cls = state === undefined ? undefined : ERROR_CLASSES[state];
  if (state === undefined || cls === undefined) return err;
  const e = driverError(err)!;
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return new cls(state, str(e.message) ?? String(err), str(e.detail), str(e.hint), { cause: err });
}

/** True for 40001 and 40P01, whether mapped or still the driver's error. */
export function isRetryable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const state = sqlstateOf(e);
    if (state === "40001" || state === "40P01") return true;
    e = typeof e === "object" ? (e as { cause?: unknown }).cause : undefined;
  }
  return false;
}

function dec(text: string | undefined): Decimal | undefined {
  if (text === undefined) return undefined;
  try {
    return new Decimal(text);
  } catch {
    return undefined;
  }
}

/** The string after `prefix` in the message, written with Rust's {:?} quoting ("...", with \" \\ \n \u{..} escapes). */
function quotedAfter(message: string, prefix: string): string | undefined {
  const at = message.indexOf(prefix + '"');
  if (at < 0) return undefined;
  let out = "";
  for (let i = at + prefix.length + 1; i < message.length; i++) {
    const c = message[i]!;
    if (c === '"') return out;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const n = message[++i];
    if (n === "n") out += "\n";
    else if (n === "t") out += "\t";
    else if (n === "r") out += "\r";
    else if (n === "0") out += "\0";
    else if (n === "u") {
      const m = /^\{([0-9a-fA-F]+)\}/.exec(message.slice(i + 1));
      if (!m) return undefined;
      out += String.fromCodePoint(parseInt(m[1]!, 16));
      i += m[0].length;
    } else if (n !== undefined) out += n;
  }
  return undefined;
}
