"""AsyncBilling: the same surface as Billing, as coroutines, on a psycopg AsyncConnection."""

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

import pgbilling
from pgbilling import AsyncBilling, Billing

from .conftest import conninfo

D = Decimal


def test_async_calls(database: str, user: str) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
            billing = AsyncBilling(conn)
            assert await billing.power(user) == 0
            added = await billing.add(user, D("100.5"), "RECHARGE_INC", "RECHARGE", "order-1")
            assert (added.amount, added.balance_after) == (D("100.5"), D("100.5"))
            spent = await billing.deduct(user, D("0.5"), "CHAT_DEC", "CHAT", "chat-7", association_no="task-7")
            assert spent.balance_after == 100
            assert await billing.has_power(user, 100) is True
            hold = await billing.hold(user, 50, "CHAT_DEC", "CHAT", "gpt-4")
            entry = await billing.settle(hold.hold_id, 12)
            assert entry is not None and entry.detail.hold == hold.hold_id
            released = await billing.release((await billing.hold(user, 5, "CHAT_DEC", "CHAT", "x")).hold_id)
            assert released.status == "released"
            refund = await billing.refund(spent.id)
            assert refund.amount == D("0.5") and refund.refund_of == spent.id
            assert await billing.power(user) == D("88.5")
            assert [e.seq for e in await billing.history(user, page_size=2)] == [4, 3]
            assert [e.id for e in await billing.by_association(user, "task-7")] == [spent.id, refund.id]
            opts = await billing.deduct_with_options(
                {"userId": user, "amount": D("0.25"), "accountType": "CHAT_DEC", "source": {"type": "CHAT", "source": "x"}}
            )
            assert opts.balance_after == D("88.25")
            assert await billing.verify(user_id=user) == []
            assert await billing.price("gpt", 1000) == 3
            limit = await billing.set_limit(user, "key:a", 1)
            assert limit is not None and [r.scope for r in await billing.limits(user)] == ["key:a"]
            with pytest.raises(pgbilling.LimitExceeded) as limited:
                await billing.deduct(user, 2, "CHAT_DEC", "CHAT", "x", scopes=["key:a"])
            assert (limited.value.scope, limited.value.cap, limited.value.requested) == ("key:a", D(1), D(2))
            with pytest.raises(pgbilling.InsufficientPower) as short:
                await billing.deduct(user, 1000, "CHAT_DEC", "CHAT", "x")
            assert (short.value.requested, short.value.available) == (D(1000), D("88.25"))

    asyncio.run(main())


def test_async_user_forms_and_distribute(database: str, user: str) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo(database), autocommit=True) as conn:
            billing = AsyncBilling(conn)
            other = f"{user}-other"
            await billing.add(user, 100, "RECHARGE_INC", "RECHARGE", "order-1")
            hold = await billing.hold(user, 50, "CHAT_DEC", "CHAT", "gpt-4")
            with pytest.raises(pgbilling.InvalidArgument) as raised:
                await billing.user_settle(other, hold.hold_id, 12)
            assert raised.value.message == f'hold_id {hold.hold_id} is not a hold of user "{other}"'
            with pytest.raises(pgbilling.InvalidArgument):
                await billing.user_release(other, hold.hold_id)
            assert await billing.power(user) == 50
            entry = await billing.user_settle(user, hold.hold_id, D("12.5"), remark="metered")
            assert entry is not None and (entry.amount, entry.balance_after, entry.remark) == (D("12.5"), D("87.5"), "metered")
            assert entry.detail.hold == hold.hold_id
            second = await billing.hold(user, 5, "CHAT_DEC", "CHAT", "x")
            released = await billing.user_release(user, second.hold_id, reason="timeout")
            assert (released.status, released.reason) == ("released", "timeout")
            with pytest.raises(pgbilling.InvalidArgument) as raised:
                await billing.user_refund(other, entry.id)
            assert raised.value.message == f'log_id {entry.id} is not an entry of user "{other}"'
            refund = await billing.user_refund(user, entry.id, amount=D("2.5"))
            assert (refund.amount, refund.refund_of, refund.balance_after) == (D("2.5"), entry.id, D(90))
            assert await billing.power(user) == 90
            with pytest.raises(pgbilling.CitusUnavailable):
                await billing.distribute()
            assert await billing.power(user) == 90

    asyncio.run(main())


def test_async_never_commits(database: str, user: str) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo(database)) as conn:
            billing = AsyncBilling(conn)
            await billing.add(user, 10, "RECHARGE_INC", "RECHARGE", "x")
            assert conn.info.transaction_status == TransactionStatus.INTRANS
            await conn.rollback()
            assert await billing.power(user) == 0
            await conn.rollback()

    asyncio.run(main())


def test_async_surface_matches_the_sync_one() -> None:
    for name, builder in pgbilling._calls.BUILDERS.items():
        sync_method = getattr(Billing, name)
        async_method = getattr(AsyncBilling, name)
        assert inspect.signature(sync_method) == inspect.signature(builder) == inspect.signature(async_method), name
        assert async_method.__doc__ == builder.__doc__


def test_methods_are_bound_with_their_signature(conn: psycopg.Connection[Any]) -> None:
    method = Billing(conn).deduct
    assert method.__name__ == "deduct"
    params = inspect.signature(method).parameters
    assert list(params)[:5] == ["user_id", "amount", "account_type", "source_type", "source"]
    assert params["scopes"].kind is inspect.Parameter.KEYWORD_ONLY
