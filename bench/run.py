#!/usr/bin/env python3
"""Benchmarks billing_deduct and billing_power with pgbench and writes BENCHMARKS.md.

Run through scripts/with-cluster.sh (make bench does): it needs PGHOST/PGPORT/PGUSER
of a throwaway cluster with the extension installed. Every row is measured in
this run next to its reference (the floor, or a primary-key SELECT), so ratios
compare like with like on the same machine at the same moment.
Environment: BENCH_SECONDS (per pgbench run, default 10), BENCH_LEDGER_ROWS
(default 10,000,000), BENCH_OUT (default BENCHMARKS.md).
"""
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
LEDGER_ROWS = int(os.environ.get("BENCH_LEDGER_ROWS", "10000000"))
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "BENCHMARKS.md"))
DB = "bench"
USERS = 10000
CLIENTS = 8
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def psql(sql, db=None):
    """Runs SQL (several statements, each in its own transaction) in db (default DB); returns the output."""
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db or DB, "-f", "-"],
                         input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr}\n{sql}")
    return out.stdout.strip()


def pgbench(script, clients, seconds=SECONDS, latencies=False):
    """Runs one pgbench script; returns tps and, with latencies, p50/p99 in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "script.sql")
        with open(path, "w") as f:
            f.write(script)
        cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
               "-T", str(seconds), "-f", path, DB]
        if latencies:
            os.chmod(tmp, 0o777)
            cmd += ["-l", "--log-prefix", os.path.join(tmp, "log")]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if run.returncode != 0 or "tps =" not in run.stdout:
            sys.exit(f"pgbench failed:\n{script}\n{run.stdout}\n{run.stderr}")
        tps = float(re.search(r"tps = ([0-9.]+)", run.stdout).group(1))
        failed = re.search(r"number of failed transactions: (\d+)", run.stdout)
        if failed and int(failed.group(1)) > 0:
            sys.exit(f"pgbench saw failed transactions:\n{run.stdout}")
        result = {"tps": tps}
        if latencies:
            times = []
            for name in os.listdir(tmp):
                if name.startswith("log"):
                    with open(os.path.join(tmp, name)) as f:
                        times += [int(line.split()[2]) / 1000.0 for line in f if line.strip()]
            times.sort()
            result["p50"] = times[len(times) // 2]
            result["p99"] = times[int(len(times) * 0.99)]
            result["mean"] = statistics.fmean(times)
        return result


def best(script, clients, rounds=2, latencies=False):
    """The best of a few runs: the least disturbed by whatever else the machine did."""
    runs = [pgbench(script, clients, latencies=latencies) for _ in range(rounds)]
    return max(runs, key=lambda r: r["tps"])


def compare(variants, clients, rounds=3, latencies=False):
    """Runs the variants in turn, `rounds` times over, and keeps each one's best run,
    so that drift on the machine (autovacuum, checkpoints) falls on all of them.
    The order is the same every round, so a variant that always follows quiet
    ones can get the best runs (BENCHMARKS.md, issue 15's target): for the ratio
    of two scripts, paired() is the fairer measure."""
    results = {}
    for _ in range(rounds):
        for name, script in variants:
            r = pgbench(script, clients, latencies=latencies)
            if name not in results or r["tps"] > results[name]["tps"]:
                results[name] = r
    return results


def paired(a, b, clients, rounds):
    """Rounds of A B B A, so that drift within a round falls on both scripts alike;
    returns each round's ratio (B1 + B2) / (A1 + A2) (take the median)."""
    ratios = []
    for _ in range(rounds):
        a1 = pgbench(a, clients)["tps"]
        b1 = pgbench(b, clients)["tps"]
        b2 = pgbench(b, clients)["tps"]
        a2 = pgbench(a, clients)["tps"]
        ratios.append((b1 + b2) / (a1 + a2))
    return ratios


USER = "\\set u random(1, %d)\n" % USERS
BILLING_DEDUCT = USER + "SELECT seq FROM billing_deduct('u' || :u, 1, 'CHAT_DEC', 'CHAT', 'bench');\n"
PLPGSQL_DEDUCT = USER + "SELECT seq FROM bench.plpgsql_deduct('u' || :u, 1, 'CHAT_DEC', 'CHAT', 'bench');\n"
FLOOR = USER + """WITH a AS (UPDATE bench.floor_accounts SET balance = balance - 1, seq = seq + 1 WHERE user_id = 'u' || :u
                  RETURNING user_id, balance, seq)
INSERT INTO bench.floor_log (user_id, seq, direction, amount, balance_after, account_type, source_type, source, detail)
SELECT user_id, seq, -1, 1, balance, 'CHAT_DEC', 'CHAT', 'bench', '{"permanent": 1}' FROM a;
"""
SKINNY_FLOOR = USER + """WITH a AS (UPDATE bench.floor_accounts SET balance = balance - 1 WHERE user_id = 'u' || :u
                  RETURNING user_id, balance)
INSERT INTO bench.skinny_log (user_id, amount, balance_after) SELECT user_id, 1, balance FROM a;
"""
# The usual service: one round trip per statement inside a transaction. A service
# would plan the draw-down in its own code; here the statements carry it.
APP_SIDE = USER + """BEGIN;
SELECT permanent, grants_total, last_seq FROM bench.accounts WHERE user_id = 'u' || :u FOR UPDATE;
SELECT id, remaining FROM bench.grants WHERE user_id = 'u' || :u AND remaining > 0 AND expire_at > now() ORDER BY expire_at, id;
UPDATE bench.grants SET remaining = remaining - 1 WHERE user_id = 'u' || :u AND id = (SELECT id FROM bench.grants WHERE user_id = 'u' || :u AND remaining > 0 AND expire_at > now() ORDER BY expire_at, id LIMIT 1);
UPDATE bench.accounts SET grants_total = grants_total - 1, last_seq = last_seq + 1, updated_at = now() WHERE user_id = 'u' || :u;
INSERT INTO bench.account_log (user_id, seq, direction, amount, balance_after, account_type, source_type, source, detail) SELECT user_id, last_seq, -1, 1, permanent + grants_total, 'CHAT_DEC', 'CHAT', 'bench', '{"grants": []}' FROM bench.accounts WHERE user_id = 'u' || :u;
COMMIT;
"""


# A metered call: reserve before, settle the real cost after (two round trips).
PK_SELECT = USER + "SELECT balance FROM bench.floor_accounts WHERE user_id = 'u' || :u;\n"
BILLING_POWER = USER + "SELECT billing_power('u' || :u);\n"
HOLD_SETTLE = USER + """SELECT hold_id AS h FROM billing_hold('u' || :u, 2, 'CHAT_DEC', 'CHAT', 'bench') \\gset
SELECT id FROM billing_settle(:h, 1);
"""
EXPIRED_USERS = int(os.environ.get("BENCH_EXPIRED_USERS", "200000"))
EXPIRED_PER_USER = 5


def load_expired_grants(users, per_user):
    """users accounts with per_user grants of 1 that expired an hour ago, each with
    the MEMBERSHIP_GIFT_INC entry that made it: what a sweep finds after a lapse."""
    psql(f"""WITH g AS (
               SELECT u, k, nextval('billing.grants_id_seq') AS gid, nextval('billing.account_log_id_seq') AS lid,
                      now() - interval '1 hour' + k * interval '1 second' AS expire_at
                 FROM generate_series(1, {users}) u, generate_series(1, {per_user}) k
             ), grants AS (
               INSERT INTO billing.grant_store (user_id, id, amount, remaining, expire_at, log_id)
               SELECT 'x' || u, gid, 1, 1, expire_at, lid FROM g
             )
             INSERT INTO billing.account_log (id, user_id, seq, direction, amount, balance_after, account_type,
                                              source_type, source, expire_at, detail)
             SELECT lid, 'x' || u, k, 1, 1, k, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'seed', expire_at,
                    jsonb_build_object('grants', jsonb_build_array(jsonb_build_object('id', gid, 'amount', 1)))
               FROM g;
             INSERT INTO billing.accounts (user_id, permanent, grants_total, next_expiry, last_seq)
             SELECT 'x' || u, 0, {per_user}, now() - interval '1 hour' + interval '1 second', {per_user}
               FROM generate_series(1, {users}) u;
             VACUUM ANALYZE;""")


def hot(script):
    return script.replace(USER, "\\set u 0\n")


def setup():
    subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}"],
                   check=True, capture_output=True)
    psql("CREATE EXTENSION billing")
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB, "-f", os.path.join(HERE, "plpgsql_deduct.sql")],
                   check=True, capture_output=True)
    # 10,000 users (and the hot user u0), each with a permanent balance and 3 live grants
    # large enough that no run exhausts them.
    psql(f"""SELECT count(billing_add('u' || n, 1000000, 'RECHARGE_INC', 'RECHARGE', 'seed')) FROM generate_series(0, {USERS}) n;
             SELECT count(billing_add('u' || n, 1000000, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'seed',
                                      expire_at => now() + (k || ' days')::interval))
               FROM generate_series(0, {USERS}) n, generate_series(30, 32) k;
             INSERT INTO bench.floor_accounts SELECT 'u' || n, 1000000, 0 FROM generate_series(0, {USERS}) n;
             INSERT INTO bench.accounts SELECT * FROM billing.accounts;
             INSERT INTO bench.grants SELECT * FROM billing.grants;
             VACUUM ANALYZE;""")


MANY_GRANT_USERS = 3000


def many_grants_setup(prefix, users=MANY_GRANT_USERS, grants=100):
    """Users with 100 grants of 1 each: 40 deducts of 2.5 apiece, so a run of
    about 60,000 deducts spread at random never empties one. They are copied
    into the PL/pgSQL version's tables too."""
    psql(f"""SELECT count(billing_add('{prefix}' || n, 1, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'seed',
                                      expire_at => now() + (k || ' hours')::interval))
               FROM generate_series(1, {users}) n, generate_series(1, {grants}) k;
             INSERT INTO bench.accounts SELECT * FROM billing.accounts WHERE user_id LIKE '{prefix}%';
             INSERT INTO bench.grants SELECT * FROM billing.grants WHERE user_id LIKE '{prefix}%';
             VACUUM ANALYZE;""")


def load_ledger(rows):
    """Other users' history: rows ledger entries (ten +1 credits each) for rows/10
    users who are not in the runs, with the account rows that match them."""
    t0 = time.time()
    psql(f"""INSERT INTO billing.account_log (user_id, seq, direction, amount, balance_after, account_type,
                                             source_type, source, detail)
             SELECT 'h' || (n / 10), n % 10 + 1, 1, 1, n % 10 + 1, 'RECHARGE_INC', 'RECHARGE', 'history',
                    '{{"permanent": 1}}'
               FROM generate_series(0, {rows - 1}) n;
             INSERT INTO billing.accounts (user_id, permanent, last_seq)
             SELECT 'h' || u, 10, 10 FROM generate_series(0, {rows // 10 - 1}) u;
             VACUUM ANALYZE billing.account_log;
             VACUUM ANALYZE billing.accounts;""")
    return time.time() - t0


def ratio(a, b):
    return f"{a / b:.2f}x"


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    setup()
    rows = []  # (scenario, variant, measure, value, reference, ratio)

    # 1. 10,000 users, 3 live grants each, 8 clients; 2. one hot user
    deducts = [("billing_deduct", BILLING_DEDUCT), ("PL/pgSQL function", PLPGSQL_DEDUCT),
               ("application-side round trips", APP_SIDE)]
    for label, shape in [("1. 10k users, 3 grants, 8 clients", lambda x: x), ("2. one hot user, 8 clients", hot)]:
        r = compare([("floor", shape(FLOOR)), ("skinny floor", shape(SKINNY_FLOOR))]
                    + [(name, shape(script)) for name, script in deducts], CLIENTS)
        floor = r["floor"]["tps"]
        for name in ["billing_deduct", "PL/pgSQL function", "application-side round trips", "skinny floor"]:
            rows.append((label, name, "TPS", f"{r[name]['tps']:.0f}", f"floor {floor:.0f}", ratio(r[name]["tps"], floor)))
        if label.startswith("1."):
            floor1 = r["floor"]

    # 3. one client: latency
    r = compare([("floor", FLOOR), ("billing_deduct", BILLING_DEDUCT)], 1, rounds=2, latencies=True)
    floor, lat = r["floor"], r["billing_deduct"]
    rows.append(("3. one client, latency", "billing_deduct", "p50 / p99 ms", f"{lat['p50']:.3f} / {lat['p99']:.3f}",
                 f"floor {floor['p50']:.3f} / {floor['p99']:.3f}", ratio(floor["p50"], lat["p50"]) + " (p50 speed)"))

    # 6. reads
    r = compare([("PK SELECT", PK_SELECT),
                 ("billing_power", BILLING_POWER),
                 ("billing_has_power", USER + "SELECT billing_has_power('u' || :u, 5);\n")], CLIENTS)
    pk = r["PK SELECT"]["tps"]
    for name in ["billing_power", "billing_has_power"]:
        rows.append(("6. reads, 8 clients", name, "calls/s", f"{r[name]['tps']:.0f}", f"PK SELECT {pk:.0f}", ratio(r[name]["tps"], pk)))

    # 4. users with 100 live grants of 1 each; a deduct of 2.5 spans 3 or 4 grants
    many = "\\set u random(1, %d)\n" % MANY_GRANT_USERS
    for name, fn, prefix in [("billing_deduct", "billing_deduct", "g"), ("PL/pgSQL function", "bench.plpgsql_deduct", "p")]:
        many_grants_setup(prefix)
        r = pgbench(many + f"SELECT seq FROM {fn}('{prefix}' || :u, 2.5, 'CHAT_DEC', 'CHAT', 'bench');\n", CLIENTS)
        rows.append(("4. 100 grants per user, deduct spans 3-4, 8 clients", name, "TPS", f"{r['tps']:.0f}", f"scenario 1 floor {floor1['tps']:.0f}", ratio(r["tps"], floor1["tps"])))

    # 8. metered calls: hold then settle, against one deduct and the floor
    r = compare([("floor", FLOOR), ("billing_deduct", BILLING_DEDUCT), ("hold + settle", HOLD_SETTLE)], CLIENTS)
    rows.append(("8. metered call, 8 clients", "billing_hold + billing_settle (2 round trips)", "pairs/s",
                 f"{r['hold + settle']['tps']:.0f}", f"billing_deduct {r['billing_deduct']['tps']:.0f}",
                 ratio(r["hold + settle"]["tps"], r["billing_deduct"]["tps"])))

    # 9. billing_expire over a million expired grants, in batches as pg_cron would run it
    load_expired_grants(EXPIRED_USERS, EXPIRED_PER_USER)
    t0 = time.time()
    expired, calls = 0, 0
    while True:
        got = int(psql("SELECT billing_expire(batch_size => 10000);"))
        calls += 1
        if got == 0:
            break
        expired += got
    expire_seconds = time.time() - t0
    if expired != EXPIRED_USERS * EXPIRED_PER_USER:
        sys.exit(f"billing_expire expired {expired} grants, expected {EXPIRED_USERS * EXPIRED_PER_USER}")
    rows.append(("7. mass operations", f"billing_expire: {expired:,} expired grants of {EXPIRED_USERS:,} users, batch_size 10,000",
                 "grants/s", f"{expired / expire_seconds:,.0f}", f"{expire_seconds:.0f} s, {calls} calls", ""))

    # 5. the same deduct with a small ledger and with LEDGER_ROWS more rows
    before = best(BILLING_DEDUCT, 1, latencies=True)
    load_seconds = load_ledger(LEDGER_ROWS)
    after = best(BILLING_DEDUCT, 1, latencies=True)
    ledger_size = psql("SELECT count(*) FROM billing.account_log")
    rows.append(("5. ledger size, one client", "billing_deduct, small ledger", "mean / p99 ms",
                 f"{before['mean']:.3f} / {before['p99']:.3f}", "", ""))
    rows.append(("5. ledger size, one client", f"billing_deduct, +{LEDGER_ROWS:,} rows ({int(ledger_size):,} in all)", "mean / p99 ms",
                 f"{after['mean']:.3f} / {after['p99']:.3f}", "small ledger", f"{after['mean'] / before['mean']:.2f}x time"))

    # 7. mass operations: billing_verify over the whole ledger, with the default work_mem
    t0 = time.time()
    findings = psql("SET work_mem = '4MB'; SELECT count(*) FROM billing_verify();")
    verify_seconds = time.time() - t0
    if findings != "0":
        sys.exit(f"billing_verify found {findings} violations after the benchmark")
    rows.append(("7. mass operations", f"billing_verify() over {int(ledger_size):,} ledger rows, work_mem 4MB", "rows/s",
                 f"{int(ledger_size) / verify_seconds:,.0f}", f"{verify_seconds:.0f} s, no findings", ""))
    rows.append(("7. mass operations", f"loading {LEDGER_ROWS:,} ledger rows (INSERT ... SELECT, for reference)", "rows/s",
                 f"{LEDGER_ROWS / load_seconds:,.0f}", "", ""))

    settings = psql("SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings "
                    "WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_wal_size', 'wal_level', 'checkpoint_timeout')")
    version = psql("SHOW server_version")
    table = ["| scenario | variant | measure | value | reference (same run) | ratio |", "|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    generated = "\n".join([
        BEGIN,
        f"Measured {started:%Y-%m-%d %H:%M} UTC by `make bench` on {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.platform()}, "
        f"PostgreSQL {version} ({settings}). pgbench -M prepared, {SECONDS} s per run; the variants of a "
        f"scenario run in turn, three rounds (two for 3 and 5, one for 4, whose grants are consumed), "
        f"each keeping its best run; clients and server on the same machine. The floor updates a balance "
        f"row and inserts a ledger row of account_log's shape; the skinny floor inserts a 5-column row.",
        "",
        *table,
        END,
    ])
    text = open(OUT).read() if os.path.exists(OUT) else "# Benchmarks\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in text:
        text += "\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(OUT, "w") as f:
        f.write(head + generated + tail)
    print(generated)


if __name__ == "__main__":
    main()
