// The README's quick start, taken from README.md as it is written and run
// verbatim against a fresh database (and type-checked with tsc --strict), so
// the README cannot rot.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Billing } from "pgbilling";
import pg from "pg";
import { eqDec, freshDatabase } from "./helpers.js";

const run = promisify(execFile);
const pkg = join(dirname(fileURLToPath(import.meta.url)), "..", ".."); // build/test -> the package
const readme = readFileSync(join(pkg, "README.md"), "utf8");

function quickStart(): string {
  const section = readme.indexOf("\n## Quick start\n");
  assert.ok(section >= 0, "README.md has a Quick start section");
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(section));
  assert.ok(m, "the Quick start has a js code block");
  return m[1]!;
}

test("the README's quick start runs as written", async () => {
  const code = quickStart();
  assert.ok(code.split("\n").filter((l) => l.trim() !== "").length <= 14, "it stays short");
  const dir = join(pkg, "build", "quickstart"); // inside the package, so "pgbilling" resolves to it
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "quickstart.mjs"), code);
  writeFileSync(join(dir, "quickstart.mts"), code);
  const database = await freshDatabase("readme");
  const { stdout } = await run(process.execPath, [join(dir, "quickstart.mjs")], { env: { ...process.env, PGDATABASE: database } });
  assert.equal(stdout, "requested 1000, available 75\n");
  const pool = new pg.Pool({ database });
  try {
    eqDec(await new Billing(pool).power("alice"), "75");
  } finally {
    await pool.end();
  }
});

test("the README's quick start type-checks under tsc --strict", async () => {
  const dir = join(pkg, "build", "quickstart");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "quickstart.mts"), quickStart());
  const tsc = join(pkg, "node_modules", "typescript", "bin", "tsc");
  const args = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--types", "node", join(dir, "quickstart.mts")];
  await run(process.execPath, [tsc, ...args]).catch((err: { stdout?: string }) => assert.fail(`tsc: ${err.stdout}`));
});
