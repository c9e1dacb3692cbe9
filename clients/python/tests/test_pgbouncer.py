"""The basic calls through pgbouncer in transaction pooling (4 server connections).

Run by clients/python/test.sh under scripts/with-cluster.sh scripts/with-pgbouncer.sh:
PGHOST/PGPORT point at pgbouncer, BILLING_DIRECT_PGHOST/PGPORT at the server.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import IsolationLevel
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

import pgbilling
from pgbilling import AccountLog, Billing

from .conftest import create_database, drop_database

pytestmark = pytest.mark.pgbouncer
D = Decimal


def bouncer_conninfo(dbname: str) -> str:
    return make_conninfo(host=os.environ["PGHOST"], port=os.environ["PGPORT"], dbname=dbname)


@pytest.fixture(scope="module")
def bounced() -> Iterator[str]:
    """A database with the extension, made on the server; its name, to reach through pgbouncer."""
    if not os.environ.get("BILLING_DIRECT_PGHOST"):
        pytest.fail("run through scripts/with-cluster.sh scripts/with-pgbouncer.sh (clients/python/test.sh does)")
    name = create_database(f"pgbilling_bouncer_{os.getpid()}")
    yield name
    drop_database(name)


@pytest.fixture
def through_bouncer(bounced: str) -> Iterator[Callable[..., psycopg.Connection[Any]]]:
    opened: list[psycopg.Connection[Any]] = []

    def open_one(**kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("prepare_threshold", None)  # pgbouncer 1.18 keeps no prepared statements
        c = psycopg.connect(bouncer_conninfo(bounced), **kwargs)
        opened.append(c)
        return c

    yield open_one
    for c in opened:
        c.close()


def test_it_is_pgbouncer_in_transaction_pooling() -> None:
    with psycopg.connect(bouncer_conninfo("pgbouncer"), autocommit=True) as admin:
        result = admin.pgconn.exec_(b"SHOW CONFIG")  # the admin console speaks the simple protocol only
        config = {
            (result.get_value(row, 0) or b"").decode(): (result.get_value(row, 1) or b"").decode()
            for row in range(result.ntuples)
        }
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == "4"


def test_basic_calls_and_an_error_mapping(through_bouncer: Callable[..., psycopg.Connection[Any]], user: str) -> None:
    conn = through_bouncer(autocommit=True)
    billing = Billing(conn)
    assert billing.power(user) == 0
    added = billing.add(user, D("100.5"), "RECHARGE_INC", "RECHARGE", "order-1", idempotency_key="order-1")
    assert added.balance_after == D("100.5")
    with conn.transaction():
        spent = billing.deduct(user, D("0.5"), "CHAT_DEC", "CHAT", "chat-7")
        assert billing.power(user) == 100
    hold = billing.hold(user, 50, "CHAT_DEC", "CHAT", "gpt-4")
    entry = billing.settle(hold.hold_id, D("12.5"))
    assert entry is not None and entry.detail.hold == hold.hold_id
    released = billing.release(billing.hold(user, 5, "CHAT_DEC", "CHAT", "x").hold_id, reason="not needed")
    assert released.status == "released"
    refund = billing.refund(spent.id)
    assert refund.refund_of == spent.id
    assert billing.power(user) == 88
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        billing.deduct(user, 1000, "CHAT_DEC", "CHAT", "x")
    assert (raised.value.requested, raised.value.available) == (D(1000), D(88))
    with pytest.raises(pgbilling.InvalidArgument):
        billing.deduct(user, 0, "CHAT_DEC", "CHAT", "x")
    # more runs of the same statements than psycopg's default prepare_threshold
    for _ in range(8):
        assert billing.has_power(user, 88) is True


def test_many_clients_share_four_server_connections(through_bouncer: Callable[..., psycopg.Connection[Any]], user: str) -> None:
    Billing(through_bouncer(autocommit=True)).add(user, 1000, "RECHARGE_INC", "RECHARGE", "order-1")
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            # the default prepare_threshold on the connection, prepare=False on the billing calls
            conn = through_bouncer(autocommit=True, prepare_threshold=5)
            billing = Billing(conn, prepare=False)
            for i in range(10):
                with conn.transaction():
                    billing.deduct(user, 1, "CHAT_DEC", "CHAT", f"client-{n}-{i}")
                    assert billing.power(user) >= 0
        except BaseException as error:  # noqa: BLE001 - checked below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    check = Billing(through_bouncer(autocommit=True))
    assert check.power(user) == 920
    assert check.verify(user_id=user) == []


def test_retry_through_the_pooler(through_bouncer: Callable[..., psycopg.Connection[Any]], user: str) -> None:
    other = Billing(through_bouncer(autocommit=True))
    other.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    a = through_bouncer()
    a.isolation_level = IsolationLevel.REPEATABLE_READ  # BEGIN ISOLATION LEVEL ...: per transaction, fine here
    billing = Billing(a)
    attempts = 0

    def charge() -> AccountLog:
        nonlocal attempts
        attempts += 1
        with a.transaction():
            billing.power(user)
            if attempts == 1:
                other.deduct(user, 10, "CHAT_DEC", "CHAT", "interferes")
            return billing.deduct(user, 10, "CHAT_DEC", "CHAT", "retried")

    entry = pgbilling.retry_transaction(charge, sleep=lambda _: None)
    assert attempts == 2 and entry.balance_after == 80


def test_holding_with_a_pool_through_the_pooler(bounced: str, user: str) -> None:
    kwargs = {"prepare_threshold": None}
    with ConnectionPool(bouncer_conninfo(bounced), min_size=1, max_size=3, kwargs=kwargs, open=True) as pool:
        with pool.connection() as conn:
            Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
        with pgbilling.holding(pool, user, 40, "CHAT_DEC", "CHAT", "gpt-4") as h:
            h.actual = D("3.5")
        with pytest.raises(LookupError), pgbilling.holding(pool, user, 40, "CHAT_DEC", "CHAT", "gpt-4") as failed:
            raise LookupError("the work failed")
        with pool.connection() as conn:
            assert Billing(conn).power(user) == D("96.5")
    assert h.entry is not None and h.entry.amount == D("3.5")
    assert failed.released is not None and failed.released.status == "released"


def test_low_balance_events_instead_of_listen(through_bouncer: Callable[..., psycopg.Connection[Any]], user: str) -> None:
    billing = Billing(through_bouncer(autocommit=True))
    billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    billing.set_low_balance(user, 50)
    last = max((e.event_id for e in billing.low_balance_events()), default=0)
    billing.deduct(user, 60, "CHAT_DEC", "CHAT", "x")
    events = [e for e in billing.low_balance_events(after_id=last) if e.user_id == user]
    assert [(e.threshold, e.available) for e in events] == [(D(50), D(40))]
