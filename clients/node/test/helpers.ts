// Shared by the test files: one fresh database (with CREATE EXTENSION billing)
// per file, on the throwaway cluster of scripts/with-cluster.sh. Under
// scripts/with-pgbouncer.sh, PGHOST/PGPORT point at pgbouncer and setup goes to
// BILLING_DIRECT_PGHOST/PGPORT, the server itself.
import pg from "pg";
import { Decimal } from "pgbilling";
import assert from "node:assert/strict";

export const behindBouncer = process.env["BILLING_DIRECT_PGHOST"] !== undefined;
/** The server itself, for setup a pooler cannot do. */
export const direct: pg.ClientConfig = {
  host: process.env["BILLING_DIRECT_PGHOST"] ?? process.env["PGHOST"],
  port: Number(process.env["BILLING_DIRECT_PGPORT"] ?? process.env["PGPORT"]),
};

let counter = 0;

/** Creates a database with the extension and returns its name. */
export async function freshDatabase(prefix: string): Promise<string> {
  assert.ok(process.env["PGHOST"], "run under scripts/with-cluster.sh (PGHOST is not set)");
  const name = `pgb_${prefix}_${process.pid}_${counter++}`;
  assert.match(name, /^[a-z0-9_]+$/);
  const admin = new pg.Client({ ...direct, database: "postgres" });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  await withDirect(name, (c) => c.query("CREATE EXTENSION billing"));
  return name;
}

/** Runs fn on a connection to the server itself (not through pgbouncer). */
export async function withDirect<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ ...direct, database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A pool on PGHOST/PGPORT (pgbouncer when behind it). */
export function poolFor(database: string, max = 6): pg.Pool {
  return new pg.Pool({ database, max });
}

/** A client on PGHOST/PGPORT, connected. */
export async function clientFor(database: string): Promise<pg.Client> {
  const c = new pg.Client({ database });
  await c.connect();
  return c;
}

/** Exact decimal equality, with the values in the message. */
export function eqDec(actual: Decimal | null | undefined, expected: string, message?: string): void {
  assert.ok(actual !== null && actual !== undefined, `${message ?? "value"}: expected ${expected}, got ${String(actual)}`);
  assert.ok(Decimal.isDecimal(actual), `${message ?? "value"}: not a Decimal: ${String(actual)}`);
  assert.ok(actual.equals(expected), `${message ?? "value"}: expected ${expected}, got ${actual.toString()}`);
}

/** Runs `fn` and returns what it threw (fails if it did not throw). */
export async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail("expected an error, none was thrown");
}

/** A promise two parties wait on until both have arrived. */
export function barrier(parties: number): () => Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const all = new Promise<void>((resolve) => (release = resolve));
  return () => {
    arrived++;
    if (arrived === parties) release();
    return all;
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
