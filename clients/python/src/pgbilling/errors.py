"""Exceptions for the SQLSTATEs of the billing extension (docs/errors.md).

Every error the extension's error table names is raised as a subclass of
:class:`BillingError`, chained (``__cause__``) to the psycopg error it came
from. Any other database error passes through unchanged, as psycopg raised it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import psycopg

__all__ = [
    "BillingError",
    "InsufficientPower",
    "UnknownType",
    "IdempotencyConflict",
    "HoldStateError",
    "OverRefund",
    "LedgerAppendOnly",
    "TypeCodeFixed",
    "LimitExceeded",
    "CitusUnavailable",
    "DependentObjects",
    "InvalidArgument",
    "NullArgument",
    "OutOfRange",
    "UndefinedColumn",
    "RetryableError",
    "SerializationFailure",
    "DeadlockDetected",
    "InsufficientPrivilege",
    "TriggerProtocolViolated",
    "RETRYABLE_SQLSTATES",
    "from_psycopg",
    "map_errors",
    "is_retryable",
]

#: The SQLSTATEs after which rerunning the whole transaction may succeed.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


class BillingError(Exception):
    """An error of the billing extension's error table.

    ``sqlstate``, ``message`` (the primary message), ``detail`` and ``hint``
    are what the server sent; the psycopg error is ``pgerror`` (and
    ``__cause__`` when raised by this package).
    """

    #: The SQLSTATE this class stands for ("" for the base class).
    SQLSTATE: ClassVar[str] = ""
    #: True for errors after which the whole transaction may be rerun.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        pgerror: psycopg.Error | None = None,
    ) -> None:
        super().__init__(message)
        self.sqlstate: str = sqlstate if sqlstate is not None else self.SQLSTATE
        self.message: str = message
        self.detail: str | None = detail
        self.hint: str | None = hint
        self.pgerror: psycopg.Error | None = pgerror
        self._parse()

    def _parse(self) -> None:
        """Read the subclass's fields from the message and DETAIL."""

    def __reduce__(self) -> tuple[Any, ...]:
        # pickles (for multiprocessing, task queues) without the psycopg error
        return (_rebuild, (type(self), self.message, self.sqlstate, self.detail, self.hint))

    def __str__(self) -> str:
        parts = [f"{self.message} (SQLSTATE {self.sqlstate})"]
        if self.detail:
            parts.append(f"DETAIL:  {self.detail}")
        if self.hint:
            parts.append(f"HINT:  {self.hint}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, sqlstate={self.sqlstate!r}, detail={self.detail!r})"


class InsufficientPower(BillingError):
    """PB001: a deduct or hold asks for more than the available power, or a
    settle above its hold cannot take the difference.

    ``requested`` is what the call needed from the available power: the
    amount for a deduct or hold (DETAIL ``Requested X, available Y.``), the
    part above the hold for a settle (then ``held`` is what the hold
    reserved). ``available`` is the available power (for a settle under a
    debt floor: the room the grants, the balance and the floor leave), or
    None when the DETAIL does not show it to the calling role.
    ``user_id`` is the user the message names.
    """

    SQLSTATE = "PB001"
    user_id: str | None
    requested: Decimal | None
    available: Decimal | None
    held: Decimal | None

    def _parse(self) -> None:
        self.user_id = _quoted_after(self.message, "for user ")
        self.requested = self.available = self.held = None
        detail = self.detail or ""
        plain = re.match(r"Requested (\S+?)[,;]", detail)
        if plain:
            self.requested = _decimal(plain.group(1))
            shown = re.search(r", available (\S+)\.$", detail)
            if shown:
                self.available = _decimal(shown.group(1))
            return
        settle = re.match(r"The hold reserved (\S+); the other (\S+) must come from available power", detail)
        if settle:
            self.held = _decimal(settle.group(1))
            self.requested = _decimal(settle.group(2))
            shown = re.search(r", which (?:is|leave) (\S+)\.$", detail)
            if shown:
                self.available = _decimal(shown.group(1))


class UnknownType(BillingError):
    """PB002: unknown account_type or source_type, an account_type of the wrong
    direction, or an unknown pricing rule."""

    SQLSTATE = "PB002"


class IdempotencyConflict(BillingError):
    """PB003: the idempotency_key was already used by this user for a different operation."""

    SQLSTATE = "PB003"


class HoldStateError(BillingError):
    """PB004: the hold was already settled or released differently, or is past its ttl."""

    SQLSTATE = "PB004"


class OverRefund(BillingError):
    """PB005: a refund would give back more than is left of the entry.

    ``refundable`` is what can still be refunded, as the DETAIL says.
    """

    SQLSTATE = "PB005"
    refundable: Decimal | None

    def _parse(self) -> None:
        match = re.search(r"; (\S+) can still be refunded", self.detail or "")
        self.refundable = _decimal(match.group(1)) if match else None


class LedgerAppendOnly(BillingError):
    """PB006: UPDATE, DELETE or TRUNCATE on billing.account_log."""

    SQLSTATE = "PB006"


class TypeCodeFixed(BillingError):
    """PB007: renaming or deleting a type code, or changing an account type's direction."""

    SQLSTATE = "PB007"


class LimitExceeded(BillingError):
    """PB008: a charge would take a spending limit above its cap.

    ``scope`` and ``user_id`` come from the message. From the DETAIL
    (``cap=X spent=X held=X requested=X period_end=T``): ``requested`` always;
    ``cap``, ``spent``, ``held`` and ``period_end`` only when the calling role
    may execute billing_limits (otherwise None). ``period_end`` is None for a
    lifetime cap (``period_end=never``, with ``cap`` shown).
    """

    SQLSTATE = "PB008"
    scope: str | None
    user_id: str | None
    cap: Decimal | None
    spent: Decimal | None
    held: Decimal | None
    requested: Decimal | None
    period_end: datetime | None

    def _parse(self) -> None:
        self.scope = _quoted_after(self.message, "of scope ")
        self.user_id = _quoted_after(self.message, "for user ")
        pairs = dict(part.split("=", 1) for part in (self.detail or "").split(" ") if "=" in part)
        self.cap = _decimal(pairs.get("cap"))
        self.spent = _decimal(pairs.get("spent"))
        self.held = _decimal(pairs.get("held"))
        self.requested = _decimal(pairs.get("requested"))
        end = pairs.get("period_end")
        self.period_end = None
        if end and end != "never":
            try:
                self.period_end = datetime.fromisoformat(end)
            except ValueError:
                self.period_end = None


class CitusUnavailable(BillingError):
    """PB009: billing_distribute in a database without the citus extension, on a
    Citus worker rather than the coordinator, or when a worker could not be given
    its range of ids (the DETAIL names it). Nothing is distributed."""

    SQLSTATE = "PB009"


class DependentObjects(BillingError):
    """2BP01: dropping the extension while the ledger holds entries."""

    SQLSTATE = "2BP01"


class InvalidArgument(BillingError):
    """22023: an argument has a value the function does not accept (the message names it)."""

    SQLSTATE = "22023"


class NullArgument(BillingError):
    """22004: a required argument is NULL."""

    SQLSTATE = "22004"


class OutOfRange(BillingError):
    """22003: a balance would leave the range the extension computes in."""

    SQLSTATE = "22003"


class UndefinedColumn(BillingError):
    """42703: a charging trigger's argument names a column its table does not have."""

    SQLSTATE = "42703"


class RetryableError(BillingError):
    """Base of the errors after which the whole transaction may be rerun
    (40001 and 40P01): roll back, then run the transaction again."""

    retryable = True


class SerializationFailure(RetryableError):
    """40001: serialization failure (REPEATABLE READ or SERIALIZABLE)."""

    SQLSTATE = "40001"


class DeadlockDetected(RetryableError):
    """40P01: deadlock detected; this transaction was chosen to fail."""

    SQLSTATE = "40P01"


class InsufficientPrivilege(BillingError):
    """42501: the role may not execute the function (or a charging trigger's
    table owner may not, or billing_metrics_reset by a non-superuser)."""

    SQLSTATE = "42501"


class TriggerProtocolViolated(BillingError):
    """39P01: a charging trigger fired other than AFTER ... FOR EACH ROW."""

    SQLSTATE = "39P01"


_BY_SQLSTATE: dict[str, type[BillingError]] = {
    cls.SQLSTATE: cls
    for cls in (
        InsufficientPower,
        UnknownType,
        IdempotencyConflict,
        HoldStateError,
        OverRefund,
        LedgerAppendOnly,
        TypeCodeFixed,
        LimitExceeded,
        CitusUnavailable,
        DependentObjects,
        InvalidArgument,
        NullArgument,
        OutOfRange,
        UndefinedColumn,
        SerializationFailure,
        DeadlockDetected,
        InsufficientPrivilege,
        TriggerProtocolViolated,
    )
}


def from_psycopg(error: psycopg.Error) -> BillingError | None:
    """The BillingError for a psycopg error whose SQLSTATE is in the error
    table, or None for any other error (which should propagate unchanged)."""
    sqlstate = error.sqlstate
    cls = _BY_SQLSTATE.get(sqlstate) if sqlstate else None
    if cls is None:
        return None
    diag = error.diag
    message = diag.message_primary or str(error)
    mapped = cls(message, sqlstate=sqlstate, detail=diag.message_detail, hint=diag.message_hint, pgerror=error)
    mapped.__cause__ = error
    return mapped


@contextmanager
def map_errors() -> Iterator[None]:
    """Raise the mapped BillingError for psycopg errors raised inside the block.

    For the caller's own statements that run billing code, such as an INSERT
    that fires a charging trigger. Other errors pass through unchanged::

        with pgbilling.map_errors():
            cur.execute("INSERT INTO tasks (task_no, user_id) VALUES (%s, %s)", ("t-1", "alice"))
    """
    try:
        yield
    except psycopg.Error as error:
        mapped = from_psycopg(error)
        if mapped is None:
            raise
        raise mapped from error


def is_retryable(error: BaseException) -> bool:
    """True for a 40001 or 40P01, as a BillingError or as psycopg raised it."""
    if isinstance(error, BillingError):
        return error.retryable
    if isinstance(error, psycopg.Error):
        return error.sqlstate in RETRYABLE_SQLSTATES
    return False


def _rebuild(
    cls: type[BillingError], message: str, sqlstate: str, detail: str | None, hint: str | None
) -> BillingError:
    return cls(message, sqlstate=sqlstate, detail=detail, hint=hint)


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _quoted_after(message: str, prefix: str) -> str | None:
    """The string quoted (Rust debug style: "...", with backslash escapes) right after prefix."""
    match = re.search(re.escape(prefix) + r'"((?:[^"\\]|\\.)*)"', message)
    if not match:
        return None

    def unescape(m: re.Match[str]) -> str:
        code = m.group(1)
        if code.startswith("u{"):
            return chr(int(code[2:-1], 16))
        return _ESCAPES.get(code, code)

    return re.sub(r"\\(u\{[0-9a-fA-F]+\}|.)", unescape, match.group(1))
