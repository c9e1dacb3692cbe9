#!/usr/bin/env python3
"""A/B of two builds of the extension on scenarios 1, 2, 8 and 6, in the same run.

Two clusters run side by side, A with one build installed and B with another
(bench/builds.sh starts them, each from its own PostgreSQL tree). Each is set up
as bench/run.py sets up its database; then, BENCH_AB_ROUNDS rounds over (default
3), each scenario runs on A and then on B: 1 (10,000 users, 8 clients:
billing_deduct and the floor), 2 (one hot user: the same two), 8 (hold then
settle, and billing_deduct) and 6 (billing_power and a primary-key SELECT); with BENCH_AB_KEYED=1, also K (billing_deduct with an
idempotency key and the keyed floor, as bench/targets.py runs them);
BENCH_AB_SCENARIOS=1,K runs only the scenarios so numbered. Each keeps its best run, so drift on the machine
falls on both builds. Prints each result, its ratio to its own cluster's
reference, and B / A. Each round runs A before B: with BENCH_AB_PAIRED=N it runs
instead N rounds of A B B A of each scenario's measured script (the fairer
ratio, as bench/run.py's paired()).

    BENCH_A_PG_CONFIG=.../pg_config BENCH_B_PG_CONFIG=.../pg_config bench/builds.sh
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
import targets  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", "3"))
SIDES = {
    "A": (os.environ["BENCH_A_HOST"], os.environ["BENCH_A_PORT"]),
    "B": (os.environ["PGHOST"], os.environ["PGPORT"]),
}
SCENARIOS = [
    ("1. 10k users, 3 grants, 8 clients", [("floor", run.FLOOR), ("billing_deduct", run.BILLING_DEDUCT)]),
    ("2. one hot user, 8 clients", [("floor", run.hot(run.FLOOR)), ("billing_deduct", run.hot(run.BILLING_DEDUCT))]),
    ("8. metered call, 8 clients", [("billing_deduct", run.BILLING_DEDUCT), ("hold + settle", run.HOLD_SETTLE)]),
    ("6. reads, 8 clients", [("PK SELECT", run.PK_SELECT), ("billing_power", run.BILLING_POWER)]),
] + ([("K. idempotency key, 10k users, 8 clients", [("keyed floor", targets.KEYED_FLOOR), ("billing_deduct", targets.KEYED_DEDUCT)])]
     if os.environ.get("BENCH_AB_KEYED") == "1" else [])
if os.environ.get("BENCH_AB_SCENARIOS"):
    SCENARIOS = [s for s in SCENARIOS if s[0].split(".")[0] in os.environ["BENCH_AB_SCENARIOS"].split(",")]


def use(side):
    os.environ["PGHOST"], os.environ["PGPORT"] = SIDES[side]


def paired(rounds):
    """BENCH_AB_PAIRED=N: for each scenario's measured script, N rounds of A B B A
    (each side's cluster in turn), so drift within a round and the order fall on
    both builds alike; prints each round's (B1 + B2) / (A1 + A2) and the median."""
    for label, variants in SCENARIOS:
        name, script = variants[-1]
        ratios = []
        for _ in range(rounds):
            tps = {}
            for n, side in enumerate("ABBA"):
                use(side)
                tps[(side, n)] = run.pgbench(script, run.CLIENTS)["tps"]
            ratios.append((tps[("B", 1)] + tps[("B", 2)]) / (tps[("A", 0)] + tps[("A", 3)]))
            print(f"{label} | {name} | round: A {tps[('A', 0)]:.0f} B {tps[('B', 1)]:.0f} B {tps[('B', 2)]:.0f} "
                  f"A {tps[('A', 3)]:.0f} | B / A {ratios[-1]:.3f}", flush=True)
        print(f"{label} | {name} | B / A, median of {rounds} A B B A rounds: {statistics.median(ratios):.3f}", flush=True)


def main():
    for side in SIDES:
        use(side)
        run.setup()
        print(f"{side}: {run.psql('SELECT extversion FROM pg_extension WHERE extname = $$billing$$')} set up", flush=True)
    if os.environ.get("BENCH_AB_PAIRED"):
        paired(int(os.environ["BENCH_AB_PAIRED"]))
        return
    best = {}
    for _ in range(ROUNDS):
        for label, variants in SCENARIOS:
            for side in SIDES:
                use(side)
                for name, script in variants:
                    tps = run.pgbench(script, run.CLIENTS)["tps"]
                    key = (label, side, name)
                    best[key] = max(best.get(key, 0), tps)
    for label, variants in SCENARIOS:
        measured, reference = variants[-1][0], variants[0][0]
        for side in SIDES:
            m, r = best[(label, side, measured)], best[(label, side, reference)]
            print(f"{label} | {side} | {measured} {m:.0f} | {reference} {r:.0f} | {m / r:.2f}x")
        print(f"{label} | B / A, {measured}: {best[(label, 'B', measured)] / best[(label, 'A', measured)]:.3f}")


if __name__ == "__main__":
    main()
