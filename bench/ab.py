#!/usr/bin/env python3
"""A/B of one change on scenario 1 (10,000 users, 3 live grants each, 8 clients).

Two databases are set up alike (bench/run.py's setup); in database B the SQL in
BENCH_AB_SQL undoes (or applies) the change. Then billing_deduct and the floor
run in turn on both, BENCH_AB_ROUNDS rounds (default 3), each keeping its best
run, so drift on the machine falls on both. Prints the TPS and each one's ratio
to its own database's floor; BENCHMARKS.md keeps the results with the command.

    BENCH_AB_SQL="ALTER TABLE billing.account_log ALTER COLUMN calling_role DROP DEFAULT" \\
        scripts/with-cluster.sh python3 bench/ab.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

AB_SQL = os.environ.get("BENCH_AB_SQL")
ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", "3"))


def main():
    if not AB_SQL:
        sys.exit("set BENCH_AB_SQL to the SQL that makes database B differ")
    for db in ["bench_a", "bench_b"]:
        run.DB = db
        run.setup()
    run.psql(AB_SQL, db="bench_b")
    best = {}
    for _ in range(ROUNDS):
        for db in ["bench_a", "bench_b"]:
            run.DB = db
            for name, script in [("floor", run.FLOOR), ("billing_deduct", run.BILLING_DEDUCT)]:
                tps = run.pgbench(script, run.CLIENTS)["tps"]
                key = (db, name)
                best[key] = max(best.get(key, 0), tps)
    for db in ["bench_a", "bench_b"]:
        floor, deduct = best[(db, "floor")], best[(db, "billing_deduct")]
        print(f"{db}: billing_deduct {deduct:.0f} TPS, floor {floor:.0f} TPS, {deduct / floor:.2f}x")
    print(f"B / A, billing_deduct: {best[('bench_b', 'billing_deduct')] / best[('bench_a', 'billing_deduct')]:.3f}")


if __name__ == "__main__":
    main()
