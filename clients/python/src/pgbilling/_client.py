"""Billing and AsyncBilling: the SQL functions as methods on the caller's connection."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

import psycopg

from . import _calls
from ._calls import Call
from .errors import from_psycopg

P = ParamSpec("P")
T = TypeVar("T")


class CursorLike(Protocol):
    """What Billing needs of a cursor (psycopg.Cursor has it)."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> object: ...

    def fetchall(self) -> Sequence[Any]: ...

    def close(self) -> None: ...


class ConnectionLike(Protocol):
    """What Billing needs of a connection: psycopg.Connection (any row factory) has it."""

    def cursor(self) -> CursorLike: ...


class AsyncCursorLike(Protocol):
    """What AsyncBilling needs of a cursor (psycopg.AsyncCursor has it)."""

    async def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None) -> object: ...

    async def fetchall(self) -> Sequence[Any]: ...

    async def close(self) -> None: ...


class AsyncConnectionLike(Protocol):
    """What AsyncBilling needs of a connection: psycopg.AsyncConnection has it."""

    def cursor(self) -> AsyncCursorLike: ...


def _tuples(rows: Sequence[Any]) -> list[Sequence[Any]]:
    """Rows as sequences, whatever row factory the caller's connection uses
    (tuple_row, namedtuple_row, dict_row)."""
    out: list[Sequence[Any]] = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append(tuple(row.values()))
        elif isinstance(row, Sequence) and not isinstance(row, (str, bytes)):
            out.append(row)
        else:
            raise TypeError(
                f"pgbilling needs rows as tuples or dicts, got {type(row).__name__}: "
                "use a connection with the default row factory, dict_row or namedtuple_row"
            )
    return out


def _execute_kwargs(prepare: bool | None) -> dict[str, Any]:
    return {} if prepare is None else {"prepare": prepare}


def run(conn: ConnectionLike, call: Call[T], prepare: bool | None = None) -> T:
    """Runs one call on the caller's connection, in its transaction; maps billing errors."""
    cur = conn.cursor()
    try:
        try:
            cur.execute(call.sql, call.params, **_execute_kwargs(prepare))
            rows = cur.fetchall()
        except psycopg.Error as error:
            mapped = from_psycopg(error)
            if mapped is None:
                raise
            raise mapped from error
    finally:
        cur.close()
    return call.decode(_tuples(rows))


async def run_async(conn: AsyncConnectionLike, call: Call[T], prepare: bool | None = None) -> T:
    """Runs one call on the caller's async connection, in its transaction; maps billing errors."""
    cur = conn.cursor()
    try:
        try:
            await cur.execute(call.sql, call.params, **_execute_kwargs(prepare))
            rows = await cur.fetchall()
        except psycopg.Error as error:
            mapped = from_psycopg(error)
            if mapped is None:
                raise
            raise mapped from error
    finally:
        await cur.close()
    return call.decode(_tuples(rows))


class _Method(Generic[P, T]):
    """Makes a builder a method of Billing: same parameters, returns the result."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        functools.update_wrapper(cast(Any, self), build)

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _Method[P, T]: ...

    @overload
    def __get__(self, obj: Billing, objtype: type | None = None) -> Callable[P, T]: ...

    def __get__(self, obj: Billing | None, objtype: type | None = None) -> _Method[P, T] | Callable[P, T]:
        if obj is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return run(obj.conn, build(*args, **kwargs), obj.prepare)

        return method

    def __call__(self, billing: Billing, /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Billing.deduct(billing, ...) is billing.deduct(...), as for a plain method."""
        return run(billing.conn, self.build(*args, **kwargs), billing.prepare)


class _AsyncMethod(Generic[P, T]):
    """Makes a builder a coroutine method of AsyncBilling."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        functools.update_wrapper(cast(Any, self), build)

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _AsyncMethod[P, T]: ...

    @overload
    def __get__(self, obj: AsyncBilling, objtype: type | None = None) -> Callable[P, Awaitable[T]]: ...

    def __get__(
        self, obj: AsyncBilling | None, objtype: type | None = None
    ) -> _AsyncMethod[P, T] | Callable[P, Awaitable[T]]:
        if obj is None:
            return self
        build = self.build

        @functools.wraps(build)
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run_async(obj.conn, build(*args, **kwargs), obj.prepare)

        return method

    async def __call__(self, billing: AsyncBilling, /, *args: P.args, **kwargs: P.kwargs) -> T:
        """AsyncBilling.deduct(billing, ...) is billing.deduct(...), as for a plain method."""
        return await run_async(billing.conn, self.build(*args, **kwargs), billing.prepare)


class Billing:
    """The billing functions on a psycopg Connection (or anything with its cursor API).

    Every method runs one statement in the connection's current transaction
    and never commits: commit or roll back as the rest of your work does.
    ``prepare`` is passed to ``cursor.execute`` (``False`` never prepares,
    for a pooler in transaction mode; None leaves it to the connection's
    ``prepare_threshold``).
    """

    def __init__(self, conn: ConnectionLike, *, prepare: bool | None = None) -> None:
        self.conn = conn
        self.prepare = prepare

    def run(self, call: Call[T]) -> T:
        """Runs a prepared Call (see pgbilling._calls) on this connection."""
        return run(self.conn, call, self.prepare)

    power = _Method(_calls.power)
    has_power = _Method(_calls.has_power)
    add = _Method(_calls.add)
    deduct = _Method(_calls.deduct)
    hold = _Method(_calls.hold)
    settle = _Method(_calls.settle)
    release = _Method(_calls.release)
    refund = _Method(_calls.refund)
    user_settle = _Method(_calls.user_settle)
    user_release = _Method(_calls.user_release)
    user_refund = _Method(_calls.user_refund)
    add_with_options = _Method(_calls.add_with_options)
    deduct_with_options = _Method(_calls.deduct_with_options)
    verify = _Method(_calls.verify)
    history = _Method(_calls.history)
    by_association = _Method(_calls.by_association)
    statement = _Method(_calls.statement)
    price = _Method(_calls.price)
    expire = _Method(_calls.expire)
    revoke_subscription = _Method(_calls.revoke_subscription)
    adjust = _Method(_calls.adjust)
    set_low_balance = _Method(_calls.set_low_balance)
    low_balance_events = _Method(_calls.low_balance_events)
    set_debt_limit = _Method(_calls.set_debt_limit)
    set_limit = _Method(_calls.set_limit)
    limits = _Method(_calls.limits)
    metrics = _Method(_calls.metrics)
    metrics_reset = _Method(_calls.metrics_reset)
    distribute = _Method(_calls.distribute)


class AsyncBilling:
    """The billing functions on a psycopg AsyncConnection: the same methods as
    :class:`Billing`, as coroutines. Never commits."""

    def __init__(self, conn: AsyncConnectionLike, *, prepare: bool | None = None) -> None:
        self.conn = conn
        self.prepare = prepare

    async def run(self, call: Call[T]) -> T:
        """Runs a prepared Call (see pgbilling._calls) on this connection."""
        return await run_async(self.conn, call, self.prepare)

    power = _AsyncMethod(_calls.power)
    has_power = _AsyncMethod(_calls.has_power)
    add = _AsyncMethod(_calls.add)
    deduct = _AsyncMethod(_calls.deduct)
    hold = _AsyncMethod(_calls.hold)
    settle = _AsyncMethod(_calls.settle)
    release = _AsyncMethod(_calls.release)
    refund = _AsyncMethod(_calls.refund)
    user_settle = _AsyncMethod(_calls.user_settle)
    user_release = _AsyncMethod(_calls.user_release)
    user_refund = _AsyncMethod(_calls.user_refund)
    add_with_options = _AsyncMethod(_calls.add_with_options)
    deduct_with_options = _AsyncMethod(_calls.deduct_with_options)
    verify = _AsyncMethod(_calls.verify)
    history = _AsyncMethod(_calls.history)
    by_association = _AsyncMethod(_calls.by_association)
    statement = _AsyncMethod(_calls.statement)
    price = _AsyncMethod(_calls.price)
    expire = _AsyncMethod(_calls.expire)
    revoke_subscription = _AsyncMethod(_calls.revoke_subscription)
    adjust = _AsyncMethod(_calls.adjust)
    set_low_balance = _AsyncMethod(_calls.set_low_balance)
    low_balance_events = _AsyncMethod(_calls.low_balance_events)
    set_debt_limit = _AsyncMethod(_calls.set_debt_limit)
    set_limit = _AsyncMethod(_calls.set_limit)
    limits = _AsyncMethod(_calls.limits)
    metrics = _AsyncMethod(_calls.metrics)
    metrics_reset = _AsyncMethod(_calls.metrics_reset)
    distribute = _AsyncMethod(_calls.distribute)
