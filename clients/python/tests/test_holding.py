"""pgbilling.holding: hold committed before the work, settle or release after it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import pgbilling
from pgbilling import Billing

from .conftest import conninfo

D = Decimal


class UpstreamTimeout(Exception):
    pass


def hold_row(conn: psycopg.Connection[Any], hold_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, settled_amount::text, reason FROM billing.holds WHERE hold_id = %s", (hold_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def ledger(conn: psycopg.Connection[Any], user: str) -> list[tuple[str, str]]:
    return [(e.account_type, str(e.amount)) for e in Billing(conn).history(user)]


def test_success_settles_for_the_actual_amount(conn: psycopg.Connection[Any], connect_to: Any, user: str) -> None:
    observer = connect_to(autocommit=True)
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    work = connect_to()  # not autocommit, idle: holding opens and commits its own transactions
    with pgbilling.holding(work, user, 50, "CHAT_DEC", "CHAT", "gpt-4", association_no="task-7", settle_remark="metered") as h:
        # the hold is committed before the work: another connection sees it, and nothing is left open
        assert work.info.transaction_status == TransactionStatus.IDLE
        assert hold_row(observer, h.hold_id) == ("held", None, None)
        assert Billing(observer).power(user) == 50
        # the user's row is not locked: another charge goes through at once
        observer.execute("SET lock_timeout = '1s'")
        Billing(observer).deduct(user, 1, "CHAT_DEC", "CHAT", "meanwhile")
        h.actual = D("12.5")
    assert h.entry is not None and h.released is None
    assert (h.entry.amount, h.entry.remark, h.entry.association_no, h.entry.detail.hold) == (
        D("12.5"), "metered", "task-7", h.hold_id
    )
    assert hold_row(observer, h.hold_id) == ("settled", "12.5", None)
    assert Billing(observer).power(user) == D("86.5")
    assert ledger(observer, user) == [("CHAT_DEC", "12.5"), ("CHAT_DEC", "1"), ("RECHARGE_INC", "100")]
    assert work.info.transaction_status == TransactionStatus.IDLE


def test_an_exception_releases_the_hold_and_propagates(conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    raised = UpstreamTimeout("the model did not answer")
    with pytest.raises(UpstreamTimeout) as caught:
        with pgbilling.holding(conn, user, 50, "CHAT_DEC", "CHAT", "gpt-4") as h:
            h.actual = 3  # set, but the work failed after all
            raise raised
    assert caught.value is raised
    assert h.entry is None and h.released is not None and h.released.status == "released"
    status, settled, reason = hold_row(conn, h.hold_id)
    assert (status, settled) == ("released", None) and "UpstreamTimeout" in reason
    assert Billing(conn).power(user) == 100
    # a hold writes no ledger entry and a release none either: the ledger shows the recharge only
    assert ledger(conn, user) == [("RECHARGE_INC", "100")]
    assert Billing(conn).verify(user_id=user) == []


def test_a_failed_release_is_noted_on_the_work_error(conn: psycopg.Connection[Any], connect_to: Any, user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    with pytest.raises(UpstreamTimeout) as caught:
        with pgbilling.holding(conn, user, 50, "CHAT_DEC", "CHAT", "gpt-4") as h:
            Billing(connect_to(autocommit=True)).settle(h.hold_id, 5)  # someone else settles it meanwhile
            raise UpstreamTimeout()
    notes = getattr(caught.value, "__notes__", [])
    assert len(notes) == 1 and f"releasing hold {h.hold_id} failed too" in notes[0] and "HoldStateError" in notes[0]
    assert h.released is None
    assert hold_row(conn, h.hold_id)[:2] == ("settled", "5")


def test_no_actual_amount_releases(conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 10, "RECHARGE_INC", "RECHARGE", "order-1")
    with pgbilling.holding(conn, user, 5, "CHAT_DEC", "CHAT", "x") as h:
        pass
    assert h.released is not None and h.released.status == "released" and h.entry is None
    assert Billing(conn).power(user) == 10


def test_an_actual_amount_of_zero_settles_as_a_release(conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 10, "RECHARGE_INC", "RECHARGE", "order-1")
    with pgbilling.holding(conn, user, 5, "CHAT_DEC", "CHAT", "x") as h:
        h.actual = 0
    assert h.entry is None
    assert hold_row(conn, h.hold_id)[0] == "released"


def test_a_connection_inside_a_transaction_is_refused(connect_to: Any, user: str) -> None:
    work = connect_to()
    work.execute("SELECT 1")  # opens a transaction
    with pytest.raises(RuntimeError, match="not inside a transaction"):
        with pgbilling.holding(work, user, 5, "CHAT_DEC", "CHAT", "x"):
            pytest.fail("the block must not run")
    work.rollback()


def test_no_power_no_hold_and_the_block_does_not_run(conn: psycopg.Connection[Any], user: str) -> None:
    ran = []
    with pytest.raises(pgbilling.InsufficientPower):
        with pgbilling.holding(conn, user, 5, "CHAT_DEC", "CHAT", "x"):
            ran.append(1)
    assert ran == []


def test_a_settle_that_fails_raises_and_leaves_the_hold_open(conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 10, "RECHARGE_INC", "RECHARGE", "order-1")
    with pytest.raises(pgbilling.InsufficientPower) as raised:
        with pgbilling.holding(conn, user, 5, "CHAT_DEC", "CHAT", "x") as h:
            h.actual = 50
    assert raised.value.requested == 45
    assert hold_row(conn, h.hold_id)[0] == "held"
    entry = Billing(conn).settle(h.hold_id, 50, allow_debt=True)
    assert entry is not None and entry.balance_after == -40


def test_through_a_pool(database: str, conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
    with ConnectionPool(conninfo(database), min_size=1, max_size=2, open=True) as pool:
        with pgbilling.holding(pool, user, 20, "CHAT_DEC", "CHAT", "x") as h:
            h.actual = 7
        with pytest.raises(UpstreamTimeout):
            with pgbilling.holding(pool, user, 20, "CHAT_DEC", "CHAT", "y") as failed:
                raise UpstreamTimeout()
    assert h.entry is not None and h.entry.amount == 7
    assert failed.released is not None and failed.released.status == "released"
    assert Billing(conn).power(user) == 93


def test_async_twin(database: str, conn: psycopg.Connection[Any], user: str) -> None:
    Billing(conn).add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")

    async def main() -> tuple[pgbilling.HoldHandle, pgbilling.HoldHandle, pgbilling.HoldHandle]:
        async with await psycopg.AsyncConnection.connect(conninfo(database)) as aconn:
            async with pgbilling.holding_async(aconn, user, 30, "CHAT_DEC", "CHAT", "x") as ok:
                assert aconn.info.transaction_status == TransactionStatus.IDLE
                ok.actual = D("2.5")
        async with AsyncConnectionPool(conninfo(database), min_size=1, max_size=2, open=False) as pool:
            with pytest.raises(UpstreamTimeout):
                async with pgbilling.holding_async(pool, user, 30, "CHAT_DEC", "CHAT", "y") as failed:
                    raise UpstreamTimeout()
            async with pgbilling.holding_async(pool, user, 30, "CHAT_DEC", "CHAT", "z") as pooled:
                pooled.actual = 1
        return ok, failed, pooled

    ok, failed, pooled = asyncio.run(main())
    assert ok.entry is not None and ok.entry.amount == D("2.5")
    assert failed.released is not None and failed.released.status == "released"
    assert pooled.entry is not None and pooled.entry.amount == 1
    assert Billing(conn).power(user) == D("96.5")
    assert ledger(conn, user) == [("CHAT_DEC", "1"), ("CHAT_DEC", "2.5"), ("RECHARGE_INC", "100")]
