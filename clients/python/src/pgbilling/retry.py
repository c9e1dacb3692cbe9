"""Opt-in retry of a whole transaction on 40001 (serialization failure) and
40P01 (deadlock), with jittered exponential backoff and an attempt limit."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import is_retryable

__all__ = ["retry_transaction", "retry_transaction_async", "backoff_delay"]

T = TypeVar("T")
log = logging.getLogger("pgbilling")

#: Called before each rerun with (attempt that failed, its error, the delay about to be slept).
OnRetry = Callable[[int, BaseException, float], None]


def backoff_delay(attempt: int, base_delay: float, max_delay: float, rng: random.Random | None = None) -> float:
    """Full jitter: a random delay in [0, min(max_delay, base_delay * 2 ** (attempt - 1))]
    seconds after failed attempt number ``attempt`` (1, 2, ...)."""
    ceiling = min(max_delay, base_delay * (2 ** (attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def _check(attempts: int, base_delay: float, max_delay: float) -> None:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    if base_delay < 0 or max_delay < 0:
        raise ValueError("delays must not be negative")


def retry_transaction(
    fn: Callable[[], T],
    *,
    attempts: int = 5,
    base_delay: float = 0.05,
    max_delay: float = 2.0,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Runs ``fn`` and reruns it while it fails with 40001 or 40P01, at most
    ``attempts`` times in all; returns what it returns. The last error, and
    any other error at once, propagates unchanged.

    ``fn`` is the caller's whole transaction, start to commit, and must roll
    back on error, for example::

        def charge() -> AccountLog:
            with conn.transaction():      # BEGIN ... COMMIT, ROLLBACK on error
                return billing.deduct("alice", 5, "CHAT_DEC", "CHAT", "chat-7")

        entry = pgbilling.retry_transaction(charge)

    (A serialization failure can come at COMMIT, so the commit must be inside
    ``fn``.) Between attempts it sleeps a random delay of up to
    ``base_delay * 2 ** (n - 1)`` seconds, capped by ``max_delay``.
    """
    _check(attempts, base_delay, max_delay)
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as error:
            if attempt >= attempts or not is_retryable(error):
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.info("pgbilling: attempt %d failed with %s, retrying in %.3fs", attempt, _sqlstate(error), delay)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            sleep(delay)
            attempt += 1


async def retry_transaction_async(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    base_delay: float = 0.05,
    max_delay: float = 2.0,
    on_retry: OnRetry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """The async twin of :func:`retry_transaction`: ``fn`` is a coroutine
    function running the whole transaction (``async with conn.transaction():``)."""
    _check(attempts, base_delay, max_delay)
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as error:
            if attempt >= attempts or not is_retryable(error):
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.info("pgbilling: attempt %d failed with %s, retrying in %.3fs", attempt, _sqlstate(error), delay)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await sleep(delay)
            attempt += 1


def _sqlstate(error: BaseException) -> str:
    return str(getattr(error, "sqlstate", None) or type(error).__name__)
