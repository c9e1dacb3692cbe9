#!/usr/bin/env python3
"""Issue 17's speed targets, each as a ratio measured in one run.

Run through scripts/with-cluster.sh with a release build installed (make
install-release), as bench/run.py is. Scenario 1's data (10,000 users, 3 live
grants each) and scenario 4's (users with 100 grants of 1, a deduct of 2.5
spans 3 or 4); the variants run in turn, BENCH_ROUNDS rounds (default 3), each
keeping its best run (scenario 4, whose grants a run consumes, runs once after
them). Prints one line per target.

    scripts/with-cluster.sh python3 bench/targets.py
"""
import os
import sys

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


def main():
    assert KEYED_FLOOR != KEY + run.FLOOR and "idempotency_key =>" in KEYED_DEDUCT
    run.setup()
    run.many_grants_setup("g")
    r = run.compare([("floor", run.FLOOR), ("keyed floor", KEYED_FLOOR), ("billing_deduct", run.BILLING_DEDUCT),
                     ("keyed billing_deduct", KEYED_DEDUCT), ("hold + settle", run.HOLD_SETTLE)], run.CLIENTS, rounds=ROUNDS)
    tps = {name: r[name]["tps"] for name in r}
    # scenario 4 consumes its grants: one run, as bench/run.py does, right after the others
    tps["scenario 4 billing_deduct"] = run.pgbench(MANY, run.CLIENTS)["tps"]
    for target, name, reference, goal in [
        ("keyed deduct / keyed floor", "keyed billing_deduct", "keyed floor", 0.8),
        ("deduct / floor", "billing_deduct", "floor", 0.8),
        ("hold + settle pair / deduct", "hold + settle", "billing_deduct", 0.5),
        ("scenario 4 deduct / floor", "scenario 4 billing_deduct", "floor", 0.5),
    ]:
        ratio = tps[name] / tps[reference]
        print(f"{target} | {tps[name]:.0f} / {tps[reference]:.0f} | {ratio:.2f}x | target {goal}x | {'met' if ratio >= goal else 'not met'}")


if __name__ == "__main__":
    main()
