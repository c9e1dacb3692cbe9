# billing: credit billing inside PostgreSQL (pgrx 0.18): 15, and 16 and 18 from PyPI wheels.
#   make demo   install what is missing, build, and run the examples (examples/*.sql) in a throwaway cluster
#   make test   every test on PostgreSQL 15, 16 and 18 (unit, #[pg_test], SQL regression, isolation,
#               examples, client integration with upgrades; pgspot and the Python, TypeScript and Rust clients on 15),
#               moving data 15 -> 16/18, the exporter, the packages
#
# PG selects the PostgreSQL major for every target (default 15, the system's):
#   make test PG=18 (that major's suites only)     make install PG=16     make setup PG=18
# 15 is Debian's server (scripts/pg-config.sh); 16 and 18 are servers unpacked
# from pinned PyPI wheels into target/pg/NN by `make setup PG=NN`.
SHELL := /bin/bash
PG ?= 15
ifeq ($(PG),15)
PG_CONFIG ?= $(shell scripts/pg-config.sh)
# the default feature (pg15): the commands are exactly those of a build for 15 only
PG_FEATURES :=
else
# never the environment's PG_CONFIG (it names the 15 tree): the wheel's
override PG_CONFIG := $(shell scripts/pg-config.sh $(PG))
PG_FEATURES := --no-default-features --features pg$(PG)
endif
export PATH := $(HOME)/.cargo/bin:$(PATH)
export PG_CONFIG

ROOT := $(filter 0,$(shell id -u))
PGRX_TEST_DATA ?= /tmp/billing-pgrx-test-data
# each major its own data directory (pgrx keeps one cluster there per major)
PG_TEST_DATA := $(PGRX_TEST_DATA)$(if $(filter-out 15,$(PG)),-pg$(PG))
VENV := $(CURDIR)/target/venv

.PHONY: all setup setup-all setup-permissions clients citus install install-release test test-one test-pg-upgrade package package-test unit-and-pg-tests lint regress examples integration exporter test-upgrade test-model test-long demo bench clean

all: test

setup:
	@bash scripts/setup.sh $(PG)

# Debug build, used by the tests. cargo pgrx installs the current version's
# script and the upgrade scripts (sql/billing--A--B.sql); the scripts of earlier
# releases (sql/releases/) are installed too, so upgrades from them can be tested.
install: setup
	cargo pgrx install $(PG_FEATURES) --pg-config "$(PG_CONFIG)"
	install -m 644 sql/releases/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

# Optimised build, used by the demo and the benchmarks.
install-release: setup
	cargo pgrx install --release $(PG_FEATURES) --pg-config "$(PG_CONFIG)"
	install -m 644 sql/releases/*.sql "$$($(PG_CONFIG) --sharedir)/extension/"

# `make test`: every suite on every major this machine can test, in an order where
# each suite runs against the build it means to test (CI runs exactly this):
#   0. setup of every major first: the wheels and `cargo pgrx init` for each, so
#      ~/.pgrx/config.toml no longer changes (a change rebuilds pgrx-pg-sys);
#   1. PostgreSQL 15, every suite (test-one);
#   2. 16 and 18: the unit tests and #[pg_test]s, pg_regress and isolation, the
#      examples, the integration suite (upgrades from every release included);
#   3. moving a cluster from 15 to 16 and to 18 (test-pg-upgrade);
#   4. the packages: built, checked, and the 15 one installed, used and removed;
#      last, because it swaps the files `make install` put into the system's 15
#      tree for the package's (and puts them back afterwards).
# It prints how long each part took. `make test PG=NN` (or `make test-one PG=NN`)
# runs the suites of one major only.
OTHER_MAJORS := 16 18
ifneq ($(filter command line environment,$(origin PG)),)
test: test-one
	@echo "make test: all suites passed on PostgreSQL $(PG) (make test without PG runs 15, 16 and 18 and the packages)"
else
test:
	@set -e; summary=""; start=$$SECONDS; \
	part() { local name=$$1 s=$$SECONDS; shift; echo "===== make test: $$name"; \
	  $(MAKE) --no-print-directory "$$@" || { echo "===== make test: FAILED: $$name"; exit 1; }; \
	  summary+=$$(printf '%-52s %4d s' "$$name" $$((SECONDS - s)))$$'\n'; }; \
	part "setup: 15, 16 and 18" setup-all; \
	part "15: every suite" PG=15 test-one; \
	for v in $(OTHER_MAJORS); do \
	  part "$$v: unit, #[pg_test], regress, examples, integration" PG=$$v unit-and-pg-tests regress examples integration; done; \
	part "15 -> 16 and 18: dump/restore and pg_upgrade" PG=15 test-pg-upgrade; \
	part "packages: build, check, install/use/remove 15" PG=15 package-test; \
	echo "===== make test: all suites passed on PostgreSQL $$(echo 15 $(OTHER_MAJORS) | sed "s/ /, /g") and the packages"; \
	printf '%s' "$$summary"; printf '%-52s %4d s\n' total $$((SECONDS - start))
endif

setup-all:
	set -e; for v in 15 $(OTHER_MAJORS); do bash scripts/setup.sh $$v; done

test-one: unit-and-pg-tests install lint regress examples integration exporter $(if $(filter 15,$(PG)),setup-permissions clients citus)
	@echo "make test-one: all suites passed on PostgreSQL $(PG)"

# Moving a cluster holding billing data from 15 to 16 and to 18, both ways
# (scripts/pg-upgrade-test.sh): pg_dump/pg_restore, the steps docs/installing.md
# gives, and pg_upgrade --link, which needs the test to clear Debian 15.20's
# column option pg_attver first (the wheels' 16.2 and 18.6 reject it). Every
# balance, ledger row and table identical after; billing works on the new major.
UPGRADE_TARGETS ?= 16 18
test-pg-upgrade:
	set -e; for v in 15 $(UPGRADE_TARGETS); do $(MAKE) --no-print-directory PG=$$v install; done
	set -e; for v in $(UPGRADE_TARGETS); do \
	  scripts/pg-upgrade-test.sh dump 15 $$v; scripts/pg-upgrade-test.sh pg_upgrade 15 $$v; done

# Debian packages: target/packages/postgresql-NN-billing_VERSION_amd64.deb, from
# `cargo pgrx package` (optimised) for each major of PACKAGE_MAJORS.
PACKAGE_MAJORS ?= 15 16 18
package:
	set -e; for v in $(PACKAGE_MAJORS); do bash scripts/setup.sh $$v; scripts/package.sh $$v; done

# Checks each package's contents and metadata; installs, uses and removes the 15
# package when the build under test is the system's (see scripts/package-test.sh).
package-test: package
	scripts/package-test.sh $(PACKAGE_MAJORS)

# The clients (clients/python, clients/node, clients/rust): each one's test.sh installs
# its pinned dependencies, runs its static checks (mypy --strict, tsc --strict, clippy)
# and its suite against a throwaway cluster, then its basic calls through pgbouncer in
# transaction pooling (scripts/with-pgbouncer.sh). They call the SQL functions only,
# so they run on 15 alone.
CLIENTS ?= python node rust
clients: install
	set -e; for c in $(CLIENTS); do echo "== clients/$$c"; clients/$$c/test.sh; done

# The Citus suite (tests/citus.rs): a coordinator and two workers on 127.0.0.1
# (scripts/with-citus.sh), the extension distributed by billing_distribute().
# Citus is not in Debian: with CITUS_TARBALL naming a Citus release source
# tarball (.ci/run sets it from ../shared/vendor), scripts/setup-citus.sh builds
# and installs it first; without Citus installed the suite is skipped, saying so.
# Citus 13.2 supports PostgreSQL 15 to 17, so it runs on 15.
citus: install
	$(if $(CITUS_TARBALL),CITUS_TARBALL="$(CITUS_TARBALL)" scripts/setup-citus.sh $(PG))
	@if [ -f "$$($(PG_CONFIG) --pkglibdir)/citus.so" ]; then \
	  scripts/with-citus.sh cargo test --manifest-path tests/Cargo.toml --test citus -- --test-threads=2; \
	else \
	  echo "citus: SKIPPING the Citus suite: Citus is not installed into $$($(PG_CONFIG) --version) (set CITUS_TARBALL to a Citus release source tarball, e.g. ../shared/vendor/citus-13.2.2.tar.gz, to build it)"; \
	fi

# Setup as a user who is not root: a private server tree, and the system's
# directories untouched (scripts/test-setup-permissions.sh).
setup-permissions:
	scripts/test-setup-permissions.sh

# Pure Rust unit tests and the in-database #[pg_test]s (pgrx starts its own cluster).
unit-and-pg-tests: setup
	rm -rf "$(PG_TEST_DATA)" && mkdir -p "$(PG_TEST_DATA)"
ifeq ($(ROOT),0)
	chown postgres: "$(PG_TEST_DATA)"
	cargo pgrx test pg$(PG) $(PG_FEATURES) --runas postgres --pgdata "$(PG_TEST_DATA)"
else
	cargo pgrx test pg$(PG) $(PG_FEATURES) --pgdata "$(PG_TEST_DATA)"
endif

# pgspot, the linter for extension scripts, over the installed script and over
# every statement the functions prepare (sql/statements/, as build.rs assembles
# them): any warning fails.
lint: install
	@test -x "$(VENV)/bin/pgspot" || { python3 -m venv "$(VENV)" && "$(VENV)/bin/pip" install -q pgspot; }
	@# pgspot exits non-zero when it cannot read a statement (it then stops reading the
	@# file): that fails too, as does any line besides the summary.
	@script="$$($(PG_CONFIG) --sharedir)/extension/billing--$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml).sql"; \
	  out=$$("$(VENV)/bin/pgspot" "$$script" 2>&1) || { echo "$$out"; echo "lint: pgspot failed on $$script"; exit 1; }; \
	  echo "$$out"; test "$$(echo "$$out" | grep -cv '^ *$$')" -eq 1 && echo "$$out" | grep -q "Errors: 0 Warnings: 0 Unknown: 0"
	@statements=$$(ls -td target/*/build/billing-*/out/statements | head -1); \
	  out=$$("$(VENV)/bin/pgspot" "$$statements"/*.sql 2>&1) || { echo "$$out"; echo "lint: pgspot failed on $$statements"; exit 1; }; \
	  echo "statements: $$(echo "$$out" | tail -1)"; \
	  test "$$(ls "$$statements" | wc -l)" -eq "$$(ls sql/statements/*.sql | wc -l)" && \
	  echo "$$out" | tail -1 | grep -q "Errors: 0 Warnings: 0 Unknown: 0" && \
	  test "$$(echo "$$out" | grep -c 'Errors: 0 Warnings: 0 Unknown: 0')" -eq "$$(( $$(ls "$$statements" | wc -l) + 1 ))"
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
# The wheels of 16 and 18 have no pg_cron: there the one test that needs it is skipped.
# billing_metrics()'s counters exist only when billing is preloaded: tests/metrics.rs's
# with_preload tests, and the drop guard's (production preloads it), then run alone on
# a second cluster that preloads it as production does (PRELOADED_PG_OPTS); the main
# cluster does not, so the tests of sessions that have not loaded the library keep their meaning.
ifeq ($(PG),15)
INTEGRATION_PG_OPTS ?= -c shared_preload_libraries=pg_cron -c cron.database_name=postgres \
	-c cron.use_background_workers=on -c max_worker_processes=16
PRELOADED_PG_OPTS ?= -c shared_preload_libraries=pg_cron,billing -c cron.database_name=postgres \
	-c cron.use_background_workers=on -c max_worker_processes=16
INTEGRATION_SKIP :=
else
INTEGRATION_PG_OPTS ?= -c max_worker_processes=16
PRELOADED_PG_OPTS ?= -c shared_preload_libraries=billing -c max_worker_processes=16
INTEGRATION_SKIP := --skip pg_cron_runs_billing_expire_on_a_schedule
endif
integration: install
	$(if $(INTEGRATION_SKIP),@echo "integration: SKIPPING pg_cron_runs_billing_expire_on_a_schedule: the PostgreSQL $(PG) wheel has no pg_cron")
	BILLING_PG_OPTS="$(INTEGRATION_PG_OPTS)" scripts/with-cluster.sh \
	  cargo test --manifest-path tests/Cargo.toml --no-fail-fast -- --test-threads=2 --skip with_preload:: --skip citus:: $(INTEGRATION_SKIP)
	BILLING_PG_OPTS="$(PRELOADED_PG_OPTS)" scripts/with-cluster.sh \
	  cargo test --manifest-path tests/Cargo.toml --no-fail-fast --test metrics --test drop_guard -- --test-threads=1 --skip without_preload::

# prometheus-postgres-exporter with metrics/billing-queries.yaml against a cluster that
# preloads billing: the billing series are exported and move after some calls.
exporter: install
	scripts/exporter-test.sh

# The upgrade tests alone (tests/upgrade.rs: every released version to the current one).
test-upgrade: install
	BILLING_PG_OPTS="$(INTEGRATION_PG_OPTS)" scripts/with-cluster.sh \
	  cargo test --manifest-path tests/Cargo.toml --test upgrade

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
	rm -rf tests/target "$(PG_TEST_DATA)"
