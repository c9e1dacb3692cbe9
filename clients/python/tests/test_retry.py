"""retry_transaction under real serialization failures between two connections."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import IsolationLevel

import pgbilling
from pgbilling import AccountLog, AsyncBilling, Billing

from .conftest import conninfo

D = Decimal


def test_a_real_serialization_failure_is_retried_and_succeeds(conn: psycopg.Connection[Any], connect_to: Any, user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    a = connect_to(isolation_level=IsolationLevel.REPEATABLE_READ)
    other = Billing(connect_to(autocommit=True))
    billing = Billing(a)
    attempts: list[int] = []
    retries: list[tuple[int, str, float]] = []
    slept: list[float] = []

    def charge() -> AccountLog:
        attempts.append(len(attempts) + 1)
        with a.transaction():
            billing.power(user)  # the snapshot
            if len(attempts) == 1:
                other.deduct(user, 10, "CHAT_DEC", "CHAT", "the-other-transaction")  # commits meanwhile
            return billing.deduct(user, 10, "CHAT_DEC", "CHAT", "retried")

    entry = pgbilling.retry_transaction(
        charge, on_retry=lambda n, e, d: retries.append((n, type(e).__name__, d)), sleep=slept.append
    )
    assert attempts == [1, 2]
    assert [(n, name) for n, name, _ in retries] == [(1, "SerializationFailure")]
    assert len(slept) == 1 and 0 <= slept[0] <= 0.05
    assert (entry.source, entry.balance_after) == ("retried", D(80))
    assert [e.source for e in other.history(user)] == ["retried", "the-other-transaction", "order-1"]


def test_the_attempt_limit_is_respected_and_the_last_error_propagates(
    conn: psycopg.Connection[Any], connect_to: Any, user: str
) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    a = connect_to(isolation_level=IsolationLevel.REPEATABLE_READ)
    other = Billing(connect_to(autocommit=True))
    billing = Billing(a)
    calls: list[int] = []
    slept: list[float] = []

    def always_conflicting() -> AccountLog:
        calls.append(1)
        with a.transaction():
            billing.power(user)
            other.deduct(user, 1, "CHAT_DEC", "CHAT", "interferes")
            return billing.deduct(user, 1, "CHAT_DEC", "CHAT", "never")

    with pytest.raises(pgbilling.SerializationFailure):
        pgbilling.retry_transaction(always_conflicting, attempts=3, base_delay=0.01, max_delay=0.015, sleep=slept.append)
    assert len(calls) == 3 and len(slept) == 2
    assert 0 <= slept[0] <= 0.01 and 0 <= slept[1] <= 0.015
    assert other.power(user) == 97, "only the interfering deducts happened"


def test_other_errors_are_not_retried(conn: psycopg.Connection[Any], user: str) -> None:
    calls: list[int] = []

    def short() -> AccountLog:
        calls.append(1)
        with conn.transaction():
            return Billing(conn).deduct(user, 5, "CHAT_DEC", "CHAT", "x")

    with pytest.raises(pgbilling.InsufficientPower):
        pgbilling.retry_transaction(short, sleep=lambda _: None)
    assert calls == [1]


def test_a_serialization_failure_at_commit_raised_by_psycopg_is_retried(connect_to: Any, user: str) -> None:
    """Write skew under SERIALIZABLE: the caller's own statements fail (at the
    INSERT or at COMMIT) with psycopg's own SerializationFailure; the helper
    retries that too."""
    setup = connect_to(autocommit=True)
    table = f"skew_{user.replace('-', '_')}"
    setup.execute(f"CREATE TABLE {table} (who text)")
    a = connect_to(isolation_level=IsolationLevel.SERIALIZABLE)
    b = connect_to(isolation_level=IsolationLevel.SERIALIZABLE)
    attempts: list[BaseException | None] = []

    def book() -> None:
        try:
            with a.transaction():
                a.execute(f"SELECT count(*) FROM {table}")
                Billing(a).add(user, 1, "RECHARGE_INC", "RECHARGE", "a")
                if not attempts:
                    with b.transaction():  # b reads, writes and commits while a is open
                        b.execute(f"SELECT count(*) FROM {table}")
                        b.execute(f"INSERT INTO {table} VALUES ('b')")
                a.execute(f"INSERT INTO {table} VALUES ('a')")
        except BaseException as error:
            attempts.append(error)
            raise
        attempts.append(None)

    pgbilling.retry_transaction(book, sleep=lambda _: None)
    assert len(attempts) == 2 and attempts[1] is None
    first = attempts[0]
    assert isinstance(first, psycopg.errors.SerializationFailure) and not isinstance(first, pgbilling.BillingError)
    rows = setup.execute(f"SELECT who FROM {table} ORDER BY who").fetchall()
    assert rows == [("a",), ("b",)]
    assert Billing(setup).power(user) == 1
    setup.execute(f"DROP TABLE {table}")


def test_backoff_is_jittered_exponential_and_capped() -> None:
    import random

    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.05), (2, 0.1), (3, 0.2), (4, 0.4), (10, 2.0)]:
        delays = [pgbilling.retry.backoff_delay(attempt, 0.05, 2.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2, "spread over the whole range"
    with pytest.raises(ValueError):
        pgbilling.retry_transaction(lambda: None, attempts=0)


def test_async_retry_under_a_real_serialization_failure(database: str, conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    dsn = conninfo(database)

    async def main() -> tuple[AccountLog, int]:
        async with await psycopg.AsyncConnection.connect(dsn) as a, \
                await psycopg.AsyncConnection.connect(dsn, autocommit=True) as b:
            await a.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            billing, other = AsyncBilling(a), AsyncBilling(b)
            attempts = 0

            async def charge() -> AccountLog:
                nonlocal attempts
                attempts += 1
                async with a.transaction():
                    await billing.power(user)
                    if attempts == 1:
                        await other.deduct(user, 10, "CHAT_DEC", "CHAT", "the-other-transaction")
                    return await billing.deduct(user, 10, "CHAT_DEC", "CHAT", "retried")

            async def no_sleep(_: float) -> None:
                return None

            entry = await pgbilling.retry_transaction_async(charge, sleep=no_sleep)
            return entry, attempts

    entry, attempts = asyncio.run(main())
    assert attempts == 2
    assert (entry.source, entry.balance_after) == ("retried", D(80))


def test_async_retry_limit(database: str, conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    dsn = conninfo(database)

    async def main() -> int:
        calls = 0
        async with await psycopg.AsyncConnection.connect(dsn) as a, \
                await psycopg.AsyncConnection.connect(dsn, autocommit=True) as b:
            await a.set_isolation_level(IsolationLevel.REPEATABLE_READ)

            async def always_conflicting() -> AccountLog:
                nonlocal calls
                calls += 1
                async with a.transaction():
                    await AsyncBilling(a).power(user)
                    await AsyncBilling(b).deduct(user, 1, "CHAT_DEC", "CHAT", "interferes")
                    return await AsyncBilling(a).deduct(user, 1, "CHAT_DEC", "CHAT", "never")

            with pytest.raises(pgbilling.SerializationFailure):
                await pgbilling.retry_transaction_async(always_conflicting, attempts=2, base_delay=0.001)
        return calls

    assert asyncio.run(main()) == 2
    assert Billing(conn).power(user) == 98
