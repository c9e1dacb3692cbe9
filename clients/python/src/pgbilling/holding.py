"""The hold helper: metered work that must not keep the user's row locked while
it runs. The one documented place where this package commits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus

from . import _calls
from ._calls import Amount, Call
from ._client import run, run_async
from .types import AccountLog, Hold

__all__ = ["HoldHandle", "holding", "holding_async"]

log = logging.getLogger("pgbilling")


class PoolLike(Protocol):
    """A psycopg_pool.ConnectionPool, or anything lending connections the same way."""

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...


class AsyncPoolLike(Protocol):
    """A psycopg_pool.AsyncConnectionPool, or anything lending connections the same way."""

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


@dataclass
class HoldHandle:
    """What the block of :func:`holding` gets.

    Set ``actual`` to what the work really cost (0 allowed); after the block,
    ``entry`` is the settle's ledger entry (None for a settle of 0), or
    ``released`` the released hold when nothing was settled.
    """

    hold: Hold
    actual: Decimal | int | None = None
    entry: AccountLog | None = None
    released: Hold | None = None

    @property
    def hold_id(self) -> int:
        return self.hold.hold_id


def _not_in_transaction(status: TransactionStatus) -> None:
    if status != TransactionStatus.IDLE:
        raise RuntimeError(
            "pgbilling.holding needs a pool, or a connection that is not inside a transaction "
            f"(this one is {status.name}): it commits the hold, and later the settle, in transactions of their own"
        )


@contextmanager
def _transaction(target: psycopg.Connection[Any] | PoolLike) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(target, psycopg.Connection):
        _not_in_transaction(target.info.transaction_status)
        with target.transaction():
            yield target
    else:
        with target.connection() as conn:
            _not_in_transaction(conn.info.transaction_status)
            with conn.transaction():
                yield conn


@asynccontextmanager
async def _transaction_async(
    target: psycopg.AsyncConnection[Any] | AsyncPoolLike,
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    if isinstance(target, psycopg.AsyncConnection):
        _not_in_transaction(target.info.transaction_status)
        async with target.transaction():
            yield target
    else:
        async with target.connection() as conn:
            _not_in_transaction(conn.info.transaction_status)
            async with conn.transaction():
                yield conn


def _release_reason(error: BaseException) -> str:
    return f"pgbilling.holding: the work raised {type(error).__name__}"


def _close(handle: HoldHandle, settle_remark: str | None, allow_debt: bool | None) -> Call[Any]:
    if handle.actual is None:
        return _calls.release(handle.hold_id, reason="pgbilling.holding: no actual amount was set")
    return _calls.settle(handle.hold_id, handle.actual, remark=settle_remark, allow_debt=allow_debt)


def _record_close(handle: HoldHandle, result: Any) -> None:
    if isinstance(result, Hold):
        handle.released = result
    else:
        handle.entry = result


def _note_release_failure(error: BaseException, handle: HoldHandle, release_error: BaseException) -> None:
    note = (
        f"pgbilling.holding: releasing hold {handle.hold_id} failed too ({release_error!r}); "
        f"its power comes back when its ttl passes at {handle.hold.expires_at.isoformat()}"
    )
    error.add_note(note)
    log.warning("%s", note)


@contextmanager
def holding(
    conn_or_pool: psycopg.Connection[Any] | PoolLike,
    user_id: str,
    amount: Amount,
    account_type: str,
    source_type: str,
    source: str,
    *,
    remark: str | None = None,
    association_no: str | None = None,
    association_user_id: str | None = None,
    ttl: timedelta | None = None,
    idempotency_key: str | None = None,
    scopes: Sequence[str] | None = None,
    settle_remark: str | None = None,
    allow_debt: bool | None = None,
    prepare: bool | None = None,
) -> Iterator[HoldHandle]:
    """Holds ``amount`` for the block, then settles for what the block set.

    1. ``billing_hold`` in a transaction of its own, committed before the
       block runs: the block holds no lock and no open transaction.
    2. The block runs and sets ``handle.actual``.
    3. In another transaction of its own: ``billing_settle(hold_id, actual)``
       when ``actual`` was set, ``billing_release`` when it was not or when
       the block raised; the block's exception is then re-raised (if the
       release fails too, a note on that exception says so, and the hold's
       power comes back when its ttl passes).

    ``conn_or_pool`` is a psycopg_pool.ConnectionPool (a connection is
    borrowed for each of the two transactions and given back in between) or
    a psycopg.Connection that is not inside a transaction (RuntimeError
    otherwise). A settle that fails (PB001, PB004, PB008) raises, and the hold
    stays open for the caller to settle or release by ``hold_id``.
    """
    hold_call = _calls.hold(
        user_id,
        amount,
        account_type,
        source_type,
        source,
        remark=remark,
        association_no=association_no,
        association_user_id=association_user_id,
        ttl=ttl,
        idempotency_key=idempotency_key,
        scopes=scopes,
    )
    with _transaction(conn_or_pool) as conn:
        handle = HoldHandle(run(conn, hold_call, prepare))
    try:
        yield handle
    except BaseException as error:
        try:
            with _transaction(conn_or_pool) as conn:
                handle.released = run(conn, _calls.release(handle.hold_id, reason=_release_reason(error)), prepare)
        except Exception as release_error:
            _note_release_failure(error, handle, release_error)
        raise
    with _transaction(conn_or_pool) as conn:
        _record_close(handle, run(conn, _close(handle, settle_remark, allow_debt), prepare))


@asynccontextmanager
async def holding_async(
    conn_or_pool: psycopg.AsyncConnection[Any] | AsyncPoolLike,
    user_id: str,
    amount: Amount,
    account_type: str,
    source_type: str,
    source: str,
    *,
    remark: str | None = None,
    association_no: str | None = None,
    association_user_id: str | None = None,
    ttl: timedelta | None = None,
    idempotency_key: str | None = None,
    scopes: Sequence[str] | None = None,
    settle_remark: str | None = None,
    allow_debt: bool | None = None,
    prepare: bool | None = None,
) -> AsyncIterator[HoldHandle]:
    """The async twin of :func:`holding`, on a psycopg.AsyncConnection not
    inside a transaction or a psycopg_pool.AsyncConnectionPool::

        async with pgbilling.holding_async(pool, "alice", 50, "CHAT_DEC", "CHAT", "gpt-4") as h:
            h.actual = await run_the_model()
    """
    hold_call = _calls.hold(
        user_id,
        amount,
        account_type,
        source_type,
        source,
        remark=remark,
        association_no=association_no,
        association_user_id=association_user_id,
        ttl=ttl,
        idempotency_key=idempotency_key,
        scopes=scopes,
    )
    async with _transaction_async(conn_or_pool) as conn:
        handle = HoldHandle(await run_async(conn, hold_call, prepare))
    try:
        yield handle
    except BaseException as error:
        try:
            async with _transaction_async(conn_or_pool) as conn:
                handle.released = await run_async(
                    conn, _calls.release(handle.hold_id, reason=_release_reason(error)), prepare
                )
        except Exception as release_error:
            _note_release_failure(error, handle, release_error)
        raise
    async with _transaction_async(conn_or_pool) as conn:
        _record_close(handle, await run_async(conn, _close(handle, settle_remark, allow_debt), prepare))
