#!/usr/bin/env python3
"""Issue 15's speed target: a deduct that names one limited scope, against a
deduct without scopes, in one run (target 0.8x or better).

Run through scripts/with-cluster.sh with a release build installed (make
install-release), as bench/run.py is. Scenario 1's users (10,000, each with a
permanent balance and 3 live grants) deduct 1 without scopes; 10,000 more users
of the same shape, each with a lifetime limit on scope key_a whose cap no run
reaches, deduct 1 naming key_a (not key:a: pgbench would read :a as one of its
variables); and the variants that show where the cost lies. The variants
run in turn, BENCH_ROUNDS rounds (default 3), each keeping its best run.
Prints one line per variant and the target's ratio.

Keeping the best of runs in turn favours whichever variant runs while the
machine is least busy, and the order is the same every round (the first
variant follows the floors, which leave the billing tables to autovacuum).
BENCH_PAIRED=N measures the target without that bias: after the variants, the
two sides of the target (and, as a control, the deduct naming key_a of a user
without limits against the same reference) run N rounds in the order A B B A,
so that drift within a round falls on both sides alike; each round gives one
ratio (B1 + B2) / (A1 + A2), and the median of the rounds is the result.

    scripts/with-cluster.sh python3 bench/limits.py
    BENCH_PAIRED=6 scripts/with-cluster.sh python3 bench/limits.py
"""
import statistics
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PAIRED = int(os.environ.get("BENCH_PAIRED", "0"))


def users(prefix):
    return "\\set u random(1, %d)\n" % run.USERS, f"'{prefix}' || :u"


def deduct(prefix, scopes=None):
    head, user = users(prefix)
    scopes = f", scopes => {scopes}" if scopes else ""
    return head + f"SELECT seq FROM billing_deduct({user}, 1, 'CHAT_DEC', 'CHAT', 'bench'{scopes});\n"


def hold_settle(prefix, scopes=None):
    head, user = users(prefix)
    scopes = f", scopes => {scopes}" if scopes else ""
    return head + (f"SELECT hold_id AS h FROM billing_hold({user}, 2, 'CHAT_DEC', 'CHAT', 'bench'{scopes}) \\gset\n"
                   "SELECT id FROM billing_settle(:h, 1);\n")


KEY = "ARRAY['key_a']"
# The bound: the floor (bench/run.py: the account row and one ledger row in one
# statement), and the floor that also adds to a counter row of the user, as a
# limit's spent (the least any design writes for a charge that counts).
FLOOR_COUNTED = run.FLOOR.replace(
    "WITH a AS (",
    "WITH c AS (UPDATE bench.floor_limits SET spent = spent + 1 WHERE user_id = 'u' || :u AND scope = 'key_a'\n"
    "           RETURNING spent), a AS (").replace(" FROM a;", " FROM a, c WHERE c.spent <= 100000000000;")
VARIANTS = [
    ("deduct, a user without limits", deduct("u")),
    ("deduct naming key_a, a user without limits", deduct("u", KEY)),
    ("deduct naming key_a, limited (1 limit)", deduct("l", KEY)),
    ("deduct naming key_a, limited (key_a and a monthly '*')", deduct("m", KEY)),
    ("deduct without scopes, limited ('*' counts it)", deduct("m")),
    ("hold + settle, a user without limits", hold_settle("u")),
    ("hold + settle naming key_a, limited (1 limit)", hold_settle("l", KEY)),
    ("floor", run.FLOOR),
    ("floor with a counter row", FLOOR_COUNTED),
]


def setup():
    run.setup()
    # the limited users: the shape of scenario 1's, with a cap no run reaches
    for prefix, limits in [("l", "SELECT count(*) FROM generate_series(1, %d) n, billing_set_limit('l' || n, 'key_a', 100000000000)"),
                           ("m", "SELECT count(*) FROM generate_series(1, %d) n, billing_set_limit('m' || n, 'key_a', 100000000000) AS k, "
                                 "billing_set_limit('m' || n, '*', 100000000000, 'month', 'Europe/Berlin') AS s")]:
        run.psql(f"""SELECT count(billing_add('{prefix}' || n, 1000000, 'RECHARGE_INC', 'RECHARGE', 'seed')) FROM generate_series(1, {run.USERS}) n;
                     SELECT count(billing_add('{prefix}' || n, 1000000, 'MEMBERSHIP_GIFT_INC', 'MEMBERSHIP_GIFT', 'seed',
                                              expire_at => now() + (k || ' days')::interval))
                       FROM generate_series(1, {run.USERS}) n, generate_series(30, 32) k;
                     {limits % run.USERS};
                     VACUUM ANALYZE;""")
    run.psql(f"""CREATE TABLE bench.floor_limits (user_id text, scope text, spent numeric NOT NULL, PRIMARY KEY (user_id, scope));
                 INSERT INTO bench.floor_limits SELECT 'u' || n, 'key_a', 0 FROM generate_series(0, {run.USERS}) n;
                 VACUUM ANALYZE;""")


def main():
    setup()
    r = run.compare(VARIANTS, run.CLIENTS, rounds=ROUNDS)
    base = r[VARIANTS[0][0]]["tps"]
    for name, _ in VARIANTS:
        print(f"{name} | {r[name]['tps']:.0f} TPS | {r[name]['tps'] / base:.2f}x of a deduct without limits")
    ratio = r["deduct naming key_a, limited (1 limit)"]["tps"] / base
    print(f"target: deduct with one limited scope / deduct without scopes | {ratio:.2f}x | target 0.8x | {'met' if ratio >= 0.8 else 'not met'}")
    pair = r["hold + settle naming key_a, limited (1 limit)"]["tps"] / r["hold + settle, a user without limits"]["tps"]
    print(f"hold + settle with one limited scope / without | {pair:.2f}x")
    bound = r["floor with a counter row"]["tps"] / r["floor"]["tps"]
    print(f"bound: floor with a counter row / floor | {bound:.2f}x")
    print(f"deduct naming a limited scope / deduct without scopes, against that bound | {ratio / bound:.2f}")
    if PAIRED:
        for label, b in [("deduct naming key_a, limited (1 limit)", deduct("l", KEY)),
                         ("control: deduct naming key_a, a user without limits", deduct("u", KEY))]:
            ratios = run.paired(deduct("u"), b, run.CLIENTS, PAIRED)
            print(f"paired, A B B A x {PAIRED}: {label} / deduct without scopes | median {statistics.median(ratios):.2f}x | "
                  + " ".join(f"{r:.2f}" for r in ratios))
    verify = run.psql("SELECT count(*) FROM billing_verify()")
    print(f"billing_verify after the run: {verify} findings")


if __name__ == "__main__":
    main()
