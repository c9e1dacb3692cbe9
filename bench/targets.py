#!/usr/bin/env python3
"""Issue 17's speed targets, each as a ratio measured in one run.

Run through scripts/with-cluster.sh with a release build installed (make
install-release), as bench/run.py is. Scenario 1's data (10,000 users, 3 live
grants each) and scenario 4's (users with 100 grants of 1, a deduct of 2.5
spans 3 or 4); the variants run in turn, BENCH_ROUNDS rounds (default 3), each
keeping its best run (scenario 4, whose grants a run consumes, runs once after
them). Prints one line per target.

    scripts/with-cluster.sh python3 bench/targets.py
    scripts/with-cluster.sh python3 bench/targets.py profile   # as root, perf installed

`profile` runs each variant for BENCH_SECONDS under `perf record -a` (the
cpu-clock event: this VM has no hardware counters) and prints, per variant,
where the server's CPU time went by object (billing.so, postgres, the kernel,
libc) and its hottest functions; perf reports no time a backend spends waiting
(a WAL flush at commit), so it also prints the share of the machine's CPU time
the server used.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
KEY = "\\set k random(1, 2000000000)\n"
# the floor with an idempotency key: floor_log has account_log's unique (user_id, idempotency_key) index
KEYED_FLOOR = KEY + run.FLOOR.replace(
    "detail)\nSELECT user_id, seq, -1, 1, balance, 'CHAT_DEC', 'CHAT', 'bench', '{\"permanent\": 1}' FROM a;",
    "detail, idempotency_key)\nSELECT user_id, seq, -1, 1, balance, 'CHAT_DEC', 'CHAT', 'bench', '{\"permanent\": 1}', 'k' || :k FROM a;")
KEYED_DEDUCT = KEY + run.BILLING_DEDUCT.replace("'bench');", "'bench', idempotency_key => 'k' || :k);")
MANY = "\\set u random(1, %d)\nSELECT seq FROM billing_deduct('g' || :u, 2.5, 'CHAT_DEC', 'CHAT', 'bench');\n" % run.MANY_GRANT_USERS
# The bound of a hold + settle pair: two calls are two transactions, each with its
# own commit, so the least a pair can cost is the floor run twice, one commit each.
FLOOR_PAIR = run.FLOOR + run.FLOOR.replace(run.USER, "")
# The bound of scenario 4: the least any design writes for a deduct of 2.5 from
# grants of 1, in one statement: the account row, the 3 grants it spends, soonest
# expiring first, and one ledger row whose detail names them.
MANY_FLOOR = "\\set u random(1, %d)\n" % run.MANY_GRANT_USERS + """WITH a AS (
  UPDATE bench.floor_accounts SET balance = balance - 2.5, seq = seq + 1 WHERE user_id = 'g' || :u
  RETURNING user_id, balance, seq
), g AS (
  SELECT id, remaining, coalesce(sum(remaining) OVER (ORDER BY expire_at, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
    FROM bench.floor_grants WHERE user_id = 'g' || :u AND remaining > 0 ORDER BY expire_at, id LIMIT 4
), t AS (
  UPDATE bench.floor_grants f SET remaining = f.remaining - least(g.remaining, 2.5 - g.before)
    FROM g WHERE f.user_id = 'g' || :u AND f.id = g.id AND g.before < 2.5
  RETURNING f.id, least(g.remaining, 2.5 - g.before) AS taken
)
INSERT INTO bench.floor_log (user_id, seq, direction, amount, balance_after, account_type, source_type, source, detail)
SELECT user_id, seq, -1, 2.5, balance, 'CHAT_DEC', 'CHAT', 'bench',
       jsonb_build_object('grants', (SELECT jsonb_agg(jsonb_build_object('id', id, 'amount', taken)) FROM t)) FROM a;
"""


# What any function-call API pays over raw SQL: the floor's statement inside a
# PL/pgSQL function (run through SPI with a kept plan, as billing's statements are),
# called by one SELECT.
FUNCTION_FLOOR = run.USER + "SELECT bench.floor_deduct('u' || :u, NULL);\n"
KEYED_FUNCTION_FLOOR = run.USER + KEY + "SELECT bench.floor_deduct('u' || :u, 'k' || :k);\n"


def bound_setup():
    """The references that bound the targets: the floor in a function, and the
    floor's copy of scenario 4's users (their account rows and grants)."""
    run.psql("""CREATE FUNCTION bench.floor_deduct(u text, k text) RETURNS bigint LANGUAGE plpgsql AS $f$
                DECLARE s bigint;
                BEGIN
                    WITH a AS (UPDATE bench.floor_accounts SET balance = balance - 1, seq = seq + 1 WHERE user_id = u
                               RETURNING user_id, balance, seq)
                    INSERT INTO bench.floor_log (user_id, seq, direction, amount, balance_after, account_type, source_type,
                                                 source, detail, idempotency_key)
                    SELECT user_id, seq, -1, 1, balance, 'CHAT_DEC', 'CHAT', 'bench', '{"permanent": 1}', k FROM a
                    RETURNING seq INTO s;
                    RETURN s;
                END
                $f$;""")
    run.psql("""CREATE TABLE bench.floor_grants (user_id text, id bigint, remaining numeric NOT NULL, expire_at timestamptz NOT NULL,
                                                 PRIMARY KEY (user_id, id)) WITH (fillfactor = 80);
                CREATE INDEX ON bench.floor_grants (user_id, expire_at, id);
                INSERT INTO bench.floor_grants SELECT user_id, id, remaining, expire_at FROM billing.grants WHERE user_id LIKE 'g%';
                INSERT INTO bench.floor_accounts SELECT user_id, sum(remaining), 0 FROM billing.grants WHERE user_id LIKE 'g%' GROUP BY user_id;
                VACUUM ANALYZE;""")


# The variants both modes run: those measured in rounds, then scenario 4's, whose
# grants a run consumes (one run each, as bench/run.py does, right after the others).
VARIANTS = [("floor", run.FLOOR), ("keyed floor", KEYED_FLOOR), ("billing_deduct", run.BILLING_DEDUCT),
            ("keyed billing_deduct", KEYED_DEDUCT), ("hold + settle", run.HOLD_SETTLE),
            ("floor pair", FLOOR_PAIR), ("floor in a function", FUNCTION_FLOOR),
            ("keyed floor in a function", KEYED_FUNCTION_FLOOR)]
RUN_ONCE = [("scenario 4 billing_deduct", MANY), ("scenario 4 floor", MANY_FLOOR)]


def setup():
    run.setup()
    run.many_grants_setup("g")
    bound_setup()


def main():
    assert KEYED_FLOOR != KEY + run.FLOOR and "idempotency_key =>" in KEYED_DEDUCT
    setup()
    r = run.compare(VARIANTS, run.CLIENTS, rounds=ROUNDS)
    tps = {name: r[name]["tps"] for name in r}
    for name, script in RUN_ONCE:
        tps[name] = run.pgbench(script, run.CLIENTS)["tps"]
    for target, name, reference, goal in [
        ("keyed deduct / keyed floor", "keyed billing_deduct", "keyed floor", 0.8),
        ("deduct / floor", "billing_deduct", "floor", 0.8),
        ("hold + settle pair / deduct", "hold + settle", "billing_deduct", 0.5),
        ("scenario 4 deduct / floor", "scenario 4 billing_deduct", "floor", 0.5),
    ]:
        ratio = tps[name] / tps[reference]
        print(f"{target} | {tps[name]:.0f} / {tps[reference]:.0f} | {ratio:.2f}x | target {goal}x | {'met' if ratio >= goal else 'not met'}")
    # what bounds the two targets that compare with a one-commit, one-row floor
    for bound, name, reference in [
        ("floor in a function / floor: what a function call costs", "floor in a function", "floor"),
        ("deduct / floor in a function", "billing_deduct", "floor in a function"),
        ("keyed floor in a function / keyed floor", "keyed floor in a function", "keyed floor"),
        ("keyed deduct / keyed floor in a function", "keyed billing_deduct", "keyed floor in a function"),
        ("floor pair (two commits) / floor: the most a pair of calls can reach", "floor pair", "floor"),
        ("hold + settle pair / floor pair", "hold + settle", "floor pair"),
        ("scenario 4 floor (3 grants) / floor: the most scenario 4 can reach", "scenario 4 floor", "floor"),
        ("scenario 4 deduct / scenario 4 floor", "scenario 4 billing_deduct", "scenario 4 floor"),
    ]:
        print(f"{bound} | {tps[name]:.0f} / {tps[reference]:.0f} | {tps[name] / tps[reference]:.2f}x")


def perf_report(data, *args):
    out = subprocess.run(["perf", "report", "-i", data, "-g", "none", "--stdio", "-q", "--percent-limit", "0.3", *args],
                         capture_output=True, text=True)
    return [line.rstrip() for line in out.stdout.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# where a call's time goes, inclusive of what each calls (perf's children view)
STAGES = ["PostgresMain", "exec_bind_message", "exec_execute_message", "PortalRun", "SPI_execute_plan",
          "standard_ExecutorStart", "standard_ExecutorRun", "standard_ExecutorEnd", "ExecInsert", "ExecUpdate",
          "finish_xact_command", "CommitTransactionCommand", "XLogFlush", "XLogInsertRecord", "secure_read", "pq_flush"]


def profile():
    setup()
    seconds = int(os.environ.get("BENCH_SECONDS", "10"))
    for name, script in VARIANTS + RUN_ONCE:
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "perf.data")
            # perf samples every CPU for as long as pgbench runs
            rec = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "999", "-o", data,
                                    "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = run.pgbench(script, run.CLIENTS, seconds=seconds)
            rec.wait()
            print(f"== {name}: {result['tps']:.0f} TPS")
            print("   all CPU time by program (swapper is idle):")
            print("\n".join(perf_report(data, "--sort", "comm")[:6]))
            print("   the server's CPU time by object:")
            print("\n".join(perf_report(data, "--comm", "postgres", "--no-children", "--sort", "dso")[:6]))
            print("   the server's hottest functions (self):")
            print("\n".join(perf_report(data, "--comm", "postgres", "--no-children", "--sort", "dso,sym")[:15]))
            print("   inclusive share of all samples, by stage:")
            children = perf_report(data, "--comm", "postgres", "--children", "--sort", "sym")
            for line in children:
                if line.split()[-1] in STAGES:
                    print(line)
            sys.stdout.flush()


if __name__ == "__main__":
    profile() if sys.argv[1:] == ["profile"] else main()
