# billing: credit billing inside PostgreSQL 15 (pgrx 0.18).
#   make demo   install what is missing, build, and run the examples (examples/*.sql) in a throwaway cluster
#   make test   every test: unit, #[pg_test], pgspot, SQL regression, isolation, examples, client integration
SHELL := /bin/bash
PG_CONFIG ?= $(shell scripts/pg-config.sh)
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PG_CONFIG

ROOT := $(filter 0,$(shell id -u))
PGRX_TEST_DATA ?= /tmp/billing-pgrx-test-data
VENV := $(CURDIR)/target/venv

.PHONY: all setup setup-permissions install install-release test unit-and-pg-tests lint regress examples integration test-model test-long demo bench clean

all: test

setup:
	@bash scripts/setup.sh

# Debug build, used by the tests. cargo pgrx installs the current version's
# script and the upgrade scripts (sql/billing--A--B.sql); the scripts of earlier
# releases (sql/releases/) are installed too, so upgrades from them can be tested.
install: setup
	cargo pgrx install --pg-config "$(PG_CONFIG)"
	install -m 644 sql/releases/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

# Optimised build, used by the demo and the benchmarks.
install-release: setup
	cargo pgrx install --release --pg-config "$(PG_CONFIG)"
	install -m 644 sql/releases/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

test: unit-and-pg-tests install lint regress examples integration setup-permissions
	@echo "make test: all suites passed"

# Setup as a user who is not root: a private server tree, and the system's
# directories untouched (scripts/test-setup-permissions.sh).
setup-permissions:
	scripts/test-setup-permissions.sh

# Pure Rust unit tests and the in-database #[pg_test]s (pgrx starts its own cluster).
unit-and-pg-tests: setup
	rm -rf "$(PGRX_TEST_DATA)" && mkdir -p "$(PGRX_TEST_DATA)"
ifeq ($(ROOT),0)
	chown postgres: "$(PGRX_TEST_DATA)"
	cargo pgrx test pg15 --runas postgres --pgdata "$(PGRX_TEST_DATA)"
else
	cargo pgrx test pg15 --pgdata "$(PGRX_TEST_DATA)"
endif

# pgspot, the linter for extension scripts, over the installed script and over
# every statement the functions prepare (sql/statements/, as build.rs assembles
# them): any warning fails.
lint: install
	@test -x "$(VENV)/bin/pgspot" || { python3 -m venv "$(VENV)" && "$(VENV)/bin/pip" install -q pgspot; }
	@script="$$($(PG_CONFIG) --sharedir)/extension/billing--$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml).sql"; \
	  out=$$("$(VENV)/bin/pgspot" "$$script"); echo "$$out"; \
	  echo "$$out" | grep -q "Errors: 0 Warnings: 0 Unknown: 0"
	@statements=$$(ls -td target/*/build/billing-*/out/statements | head -1); \
	  out=$$("$(VENV)/bin/pgspot" "$$statements"/*.sql | tail -1); echo "statements: $$out"; \
	  test "$$(ls "$$statements" | wc -l)" -eq "$$(ls sql/statements/*.sql | wc -l)" && \
	  echo "$$out" | grep -q "Errors: 0 Warnings: 0 Unknown: 0"
	@# every relative link and anchor of the docs resolves
	python3 scripts/check-links.py
	@# the upgrade script into this version re-creates functions exactly as sql/ defines them
	python3 scripts/upgrade-functions.py --check sql/billing--*--$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml).sql

# pg_regress SQL files (regress/sql, regress/expected) and isolation specs
# (regress/specs; their expected outputs are in regress/expected too).
regress: install
	scripts/with-cluster.sh scripts/regress.sh

# The SQL walk-throughs (examples/NAME.sql), each checked against its expected
# output (examples/NAME.out) in a fresh database.
examples: install
	scripts/with-cluster.sh scripts/examples.sh

# Real client connections: concurrency, savepoints, privileges, dump and restore,
# a kill -9 crash under load, the model-based test, and upgrades from earlier releases.
# The cluster preloads pg_cron (postgresql-15-cron), so a test can schedule billing_expire.
INTEGRATION_PG_OPTS ?= -c shared_preload_libraries=pg_cron -c cron.database_name=postgres \
	-c cron.use_background_workers=on -c max_worker_processes=16
integration: install
	BILLING_PG_OPTS="$(INTEGRATION_PG_OPTS)" scripts/with-cluster.sh \
	  cargo test --manifest-path tests/Cargo.toml --no-fail-fast -- --test-threads=2

# The model-based test alone (tests/model.rs; `make integration` runs it too, with
# the defaults). The environment chooses what it runs, so any range can be tried:
#   BILLING_MODEL_SEEDS  seeds, e.g. 5001-5100 or 3,9,20-25 (default 1-64)
#   BILLING_MODEL_OPS    operations per seed (default 1000)
#   BILLING_MODEL_JOBS   seeds run at once (default 2)
# A failure names its seed and step; BILLING_MODEL_SEEDS=<seed> make test-model replays it.
test-model: install
	BILLING_PG_OPTS="$(INTEGRATION_PG_OPTS)" scripts/with-cluster.sh \
	  cargo test --manifest-path tests/Cargo.toml --test model -- --nocapture

# Before a release: 2,000 seeds of the model-based test (about 40 minutes on 2 cores).
test-long: export BILLING_MODEL_SEEDS = 1-2000
test-long: test-model

# The examples, each printed as it ran (and checked, as in make test).
demo: install-release
	BILLING_EXAMPLES_SHOW=1 scripts/with-cluster.sh scripts/examples.sh

# Benchmarks (results in BENCHMARKS.md), with PostgreSQL's default durability
# (synchronous_commit=on, fsync=on) and room for the data in shared_buffers;
# every ratio compares runs of the same cluster in the same run.
# BENCH_PG_OPTS="... -c synchronous_commit=off" shows the CPU cost per call instead.
BENCH_PG_OPTS ?= -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min
bench: install-release
	BILLING_PG_OPTS="$(BENCH_PG_OPTS)" scripts/with-cluster.sh bench/run.sh

clean:
	cargo clean
	rm -rf tests/target "$(PGRX_TEST_DATA)"
