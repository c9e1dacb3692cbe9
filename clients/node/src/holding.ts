// holding(): metered work that must not keep the user's row locked while it
// runs. The one documented place where this client commits: the hold is one
// statement run on its own (committed before the work), and so is the settle
// or release after it.
import { Billing, type HoldArgs } from "./billing.js";
import type { Queryable } from "./sql.js";
import type { Hold, LedgerEntry } from "./types.js";
import { amountParam, type Amount } from "./values.js";

export interface HoldingOptions extends HoldArgs {
  /** The settle's remark (default: the hold's). */
  settleRemark?: string | null;
  /** Settle above the hold into debt (billing_settle's allow_debt). */
  allowDebt?: boolean;
  /** The release's reason when the work sets no amount (default "holding: no actual amount was set"). */
  releaseReason?: string;
}

/** What the work sees: the hold, and the actual cost it sets. */
export class HoldHandle {
  #actual: string | undefined;
  constructor(readonly hold: Hold) {}
  /** The actual cost: a Decimal or a decimal string (a JS number is a TypeError here, inside the work). Unset: release. */
  get actual(): string | undefined {
    return this.#actual;
  }
  set actual(value: Amount | undefined | null) {
    this.#actual = value === undefined || value === null ? undefined : amountParam(value, "actual");
  }
}

export interface HoldingResult<T> {
  /** What the work returned. */
  value: T;
  /** The hold as billing_hold returned it. */
  hold: Hold;
  /** The settle's ledger entry; null when nothing was charged (released, or settled for 0). */
  entry: LedgerEntry | null;
}

/** Is `db` inside a transaction block? Known for pg clients (8.x) and TypeORM's EntityManager. */
function inTransaction(db: Queryable): boolean {
  const d = db as { getTransactionStatus?: () => unknown; queryRunner?: { isTransactionActive?: unknown } };
  if (typeof d.getTransactionStatus === "function") {
    const status = d.getTransactionStatus();
    if (status === "T" || status === "E") return true;
  }
  return d.queryRunner?.isTransactionActive === true;
}

const NOT_IN_A_TRANSACTION =
  "pgbilling: holding() needs a pool (pg Pool, TypeORM DataSource) or a connection that is not inside a transaction: " +
  "it commits the hold before the work and settles after it, each in a transaction of its own";

/**
 * Holds `options.amount` for the user and commits the hold (one statement on `db`, outside any
 * transaction), runs `work(handle)` with no lock held, then settles for `handle.actual` (or releases
 * when the work set no amount), again in a statement of its own. When the work throws, the hold is
 * released and the work's error is rethrown (an AggregateError of both if the release fails too).
 * If the settle itself fails (PB001 above the hold without allowDebt, PB008), its error propagates and
 * the hold stays open until you settle or release it, or its ttl passes.
 *
 * `db` must be a pool or a connection that is not inside a transaction: the hold, the settle and the
 * release each commit on their own. Through pgbouncer in transaction pooling this works unchanged.
 */
export async function holding<T>(db: Queryable, options: HoldingOptions, work: (handle: HoldHandle) => Promise<T>): Promise<HoldingResult<T>> {
  if (inTransaction(db)) throw new Error(NOT_IN_A_TRANSACTION);
  const { settleRemark, allowDebt, releaseReason, ...holdArgs } = options;
  const billing = new Billing(db);
  const hold = await billing.hold(holdArgs);
  // A Queryable of unknown kind: if the hold did not commit on its own, this statement runs in the same
  // transaction, which then has a transaction id (the hold locked the account row).
  const check = await db.query("SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL AS in_transaction", []);
  const row = (Array.isArray(check) ? check[0] : check?.rows?.[0]) as { in_transaction?: unknown } | undefined;
  if (row?.in_transaction === true) throw new Error(`${NOT_IN_A_TRANSACTION}; this one is (the hold ${hold.holdId} is part of it: roll it back)`);

  const handle = new HoldHandle(hold);
  let value: T;
  try {
    value = await work(handle);
  } catch (workError) {
    try {
      await billing.release(hold.holdId, { reason: reasonOf(workError) });
    } catch (releaseError) {
      throw new AggregateError([workError, releaseError], `pgbilling: the work failed and releasing hold ${hold.holdId} failed too`);
    }
    throw workError;
  }
  if (handle.actual === undefined) {
    await billing.release(hold.holdId, { reason: releaseReason ?? "holding: no actual amount was set" });
    return { value, hold, entry: null };
  }
  const entry = await billing.settle(hold.holdId, handle.actual, { remark: settleRemark ?? undefined, allowDebt });
  return { value, hold, entry };
}

function reasonOf(error: unknown): string {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `holding: the work failed: ${message}`.slice(0, 4000);
}
