#!/usr/bin/env python3
"""Issue 13's measurement: billing_deduct through a Citus coordinator, sent
straight to a worker, and on one node, in the same run, on the same machine.

    scripts/with-citus.sh python3 bench/citus.py

Under scripts/with-citus.sh (a coordinator and two workers on 127.0.0.1). The
database `postgres` of the coordinator gets the extension and 10,000 users
(each with a permanent balance and 3 live grants, as bench/run.py seeds them),
then billing_distribute(); the database `single_node` on the same server gets
the same without Citus. Each variant runs BENCH_CITUS_ROUNDS times (default 2)
for BENCH_SECONDS (default 10) with 8 clients, in turn, keeping its best:

- one node: billing_deduct in `single_node`;
- coordinator: billing_deduct through the coordinator, not delegated (the
  function runs on the coordinator, and each statement goes to the user's
  worker);
- worker: billing_deduct sent straight to worker 1, for users whose shards it
  holds (the script looks the user up in a local table of that worker, a
  primary-key read that the other variants do not do);
- coordinator, delegated: after billing_distribute(delegate => true), each
  call goes whole to the user's worker.

On two cores the three servers and pgbench share the CPUs: this shows what
Citus adds to a call, not how it scales. So it also reads the CPU time each
server's processes spent during each variant's best run (/proc: the
postmaster with its exited children, and its live children), divided by the
calls: the CPU a call costs on the coordinator and on the workers, from which
BENCHMARKS.md estimates throughput per worker count.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_CITUS_ROUNDS", "2"))
USERS = 10000
SEED = f"""SELECT count(billing_add('u' || n, 1000000, 'RECHARGE_INC', 'RECHARGE', 'seed')) FROM generate_series(0, {USERS}) n;
SELECT count(billing_add('u' || n, 1000000, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'seed',
                         expire_at => now() + (k || ' days')::interval))
  FROM generate_series(0, {USERS}) n, generate_series(30, 32) k;"""
LOCAL_DEDUCT = ("\\set i random(1, :users)\n"
                "SELECT seq FROM billing_deduct((SELECT user_id FROM bench_local WHERE n = :i), 1, 'CHAT_DEC', 'CHAT', 'bench');\n")


NODES = ["coordinator", "worker1", "worker2"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(node):
    """CPU seconds spent so far by the server of `node` (scripts/with-citus.sh's directory)."""
    with open(os.path.join(os.environ["BILLING_CITUS_DIR"], node, "data", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, utime, stime, cutime, cstime = int(fields[1]), *map(int, fields[11:15])
        if int(pid) == postmaster:
            total += utime + stime + cutime + cstime
        elif ppid == postmaster:
            total += utime + stime
    return total / TICK


def measured(script):
    """One run of `script`: its TPS and each server's CPU microseconds per call."""
    before = {n: cpu_seconds(n) for n in NODES}
    tps = run.pgbench(script, run.CLIENTS)["tps"]
    calls = tps * run.SECONDS
    return tps, {n: (cpu_seconds(n) - before[n]) * 1e6 / calls for n in NODES}


def at(host, port, db):
    os.environ["PGHOST"], os.environ["PGPORT"] = host, str(port)
    run.DB = db


def main():
    os.environ["PATH"] = os.environ["BILLING_PG_BINDIR"] + os.pathsep + os.environ["PATH"]
    coordinator = (os.environ["PGHOST"], os.environ["PGPORT"])
    worker = os.environ["BILLING_CITUS_WORKERS"].split()[0].rsplit(":", 1)

    at(*coordinator, "postgres")
    run.psql("CREATE DATABASE single_node", "postgres")
    at(*coordinator, "single_node")
    run.psql("CREATE EXTENSION billing;\n" + SEED + "\nVACUUM ANALYZE;")
    at(*coordinator, "postgres")
    run.psql("CREATE EXTENSION billing;\n" + SEED + "\nSELECT count(*) FROM billing_distribute();")
    # the users whose shards worker 1 holds, numbered for the worker's script
    users = run.psql(f"""SELECT string_agg(quote_literal(a.user_id), ',')
                           FROM billing.accounts AS a
                           JOIN pg_dist_placement AS p ON p.shardid = get_shard_id_for_distribution_column('billing.accounts', a.user_id)
                           JOIN pg_dist_node AS w ON w.groupid = p.groupid
                          WHERE w.nodeport = {worker[1]}""")
    count = users.count(",") + 1
    at(worker[0], worker[1], "postgres")
    run.psql(f"""CREATE TABLE bench_local (n serial PRIMARY KEY, user_id text NOT NULL);
                 INSERT INTO bench_local (user_id) SELECT unnest(ARRAY[{users}]);
                 VACUUM ANALYZE bench_local;""")
    print(f"seeded: {USERS + 1} users, {count} of them on worker {worker[0]}:{worker[1]}", flush=True)

    variants = [
        ("one node", coordinator, "single_node", run.BILLING_DEDUCT),
        ("coordinator", coordinator, "postgres", run.BILLING_DEDUCT),
        ("worker", tuple(worker), "postgres", LOCAL_DEDUCT.replace(":users", str(count))),
    ]
    best = {}

    def keep(name, result):
        if name not in best or result[0] > best[name][0]:
            best[name] = result

    for _ in range(ROUNDS):
        for name, (host, port), db, script in variants:
            at(host, port, db)
            keep(name, measured(script))
    at(*coordinator, "postgres")
    run.psql("SELECT count(*) FROM billing_distribute(delegate => true);")
    for _ in range(ROUNDS):
        keep("coordinator, delegated", measured(run.BILLING_DEDUCT))
    single = best["one node"][0]
    print("variant | TPS | of one node | CPU us per call: coordinator, worker 1, worker 2", flush=True)
    for name in ["one node", "coordinator", "coordinator, delegated", "worker"]:
        tps, cpu = best[name]
        print(f"{name} | {tps:.0f} | {tps / single:.2f}x | {cpu['coordinator']:.0f}, {cpu['worker1']:.0f}, {cpu['worker2']:.0f}",
              flush=True)


if __name__ == "__main__":
    main()
