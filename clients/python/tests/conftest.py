"""Fixtures: a real PostgreSQL cluster from scripts/with-cluster.sh (PGHOST,
PGPORT, PGUSER in the environment), databases with CREATE EXTENSION billing,
and roles with less than a superuser. No mocks."""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

APP_ROLE = "pgbilling_app"  # may charge, may not read balances or limits
NOBODY_ROLE = "pgbilling_nobody"  # may execute nothing of billing

_counter = itertools.count()


def require_cluster() -> None:
    if not os.environ.get("PGHOST") or not os.environ.get("PGPORT"):
        pytest.fail("PGHOST/PGPORT are not set: run the suite through clients/python/test.sh (scripts/with-cluster.sh)")


def conninfo(dbname: str) -> str:
    """The server itself (not a pooler in front of it), database dbname, as the cluster's superuser."""
    host = os.environ.get("BILLING_DIRECT_PGHOST") or os.environ["PGHOST"]
    port = os.environ.get("BILLING_DIRECT_PGPORT") or os.environ["PGPORT"]
    return make_conninfo(host=host, port=port, dbname=dbname)


def connect(dbname: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo(dbname), **kwargs)


def create_database(name: str) -> str:
    """A new, empty database with the extension, on the server itself (never through a pooler)."""
    with connect("postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(name, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION billing")
    return name


def drop_database(name: str) -> None:
    with connect("postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _ensure_role(admin: psycopg.Connection[Any], role: str) -> None:
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if not exists:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """The suite's shared database: each test works on users of its own (fixture ``user``)."""
    require_cluster()
    name = create_database(f"pgbilling_test_{os.getpid()}")
    with connect(name, autocommit=True) as conn:
        _ensure_role(conn, APP_ROLE)
        _ensure_role(conn, NOBODY_ROLE)
        conn.execute(
            sql.SQL(
                "GRANT EXECUTE ON FUNCTION"
                " billing_add(text, numeric, text, text, text, text, text, text, timestamptz, text, text),"
                " billing_deduct(text, numeric, text, text, text, text, text, text, text, text[]),"
                " billing_hold(text, numeric, text, text, text, text, text, text, interval, text, text[]),"
                " billing_settle(bigint, numeric, text, boolean), billing_release(bigint, text),"
                " billing_metrics_reset() TO {}"
            ).format(sql.Identifier(APP_ROLE))
        )
        conn.execute("INSERT INTO billing.pricing_rules (code, tokens, power) VALUES ('gpt', 1000, 3)")
    yield name
    drop_database(name)


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection (each call commits on its own unless inside ``conn.transaction()``)."""
    with connect(database, autocommit=True) as c:
        yield c


@pytest.fixture
def connect_to(database: str) -> Iterator[Callable[..., psycopg.Connection[Any]]]:
    """Opens more connections to the shared database; closes them at the end of the test."""
    opened: list[psycopg.Connection[Any]] = []

    def open_one(isolation_level: psycopg.IsolationLevel | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        c = connect(database, **kwargs)
        opened.append(c)
        c.isolation_level = isolation_level
        return c

    yield open_one
    for c in opened:
        c.close()


@pytest.fixture
def user(request: pytest.FixtureRequest) -> str:
    """A user id no other test uses."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fresh_database() -> Iterator[Callable[[], str]]:
    """Makes databases of the test's own (dropped at the end)."""
    made: list[str] = []

    def make() -> str:
        name = create_database(f"pgbilling_fresh_{os.getpid()}_{next(_counter)}")
        made.append(name)
        return name

    yield make
    for name in made:
        drop_database(name)
