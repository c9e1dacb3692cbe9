"""Typed records mirroring the rows the SQL functions return (docs/functions.md).

Amounts are :class:`decimal.Decimal`, never floats: numeric columns travel as
text and JSON amounts are read with ``parse_float=Decimal``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, TypeVar

__all__ = [
    "Funding",
    "GrantAmount",
    "AccountLog",
    "Hold",
    "Violation",
    "StatementRow",
    "SpendingLimit",
    "LowBalanceEvent",
    "Metric",
    "Distribution",
]

# How a column travels: as psycopg loads it ("raw"), as a text[] ("array", a
# tuple here), or as text that this module parses ("numeric", "funding", "json").
Kind = Literal["raw", "array", "numeric", "funding", "json"]


def load_json(text: str) -> Any:
    """JSON with every non-integer number as an exact Decimal."""
    return json.loads(text, parse_float=Decimal)


def _amount(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise TypeError(f"not an amount: {value!r}")
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class GrantAmount:
    """Part of an amount that a grant gave or took (``{"id": g, "amount": y}``)."""

    id: int
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Funding:
    """Where power came from or went: a ledger entry's ``detail`` or a hold's ``funding``.

    ``permanent`` is the permanent balance's part (None when the JSON has
    none), ``grants`` the grants' parts in order, ``hold`` the hold a settle
    entry names; ``other`` keeps any other key as parsed.
    """

    permanent: Decimal | None = None
    grants: tuple[GrantAmount, ...] = ()
    hold: int | None = None
    other: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> Funding:
        data = load_json(text)
        if not isinstance(data, dict):
            return cls(other={"": data})
        permanent = data.pop("permanent", None)
        grants = data.pop("grants", None) or []
        hold = data.pop("hold", None)
        return cls(
            permanent=None if permanent is None else _amount(permanent),
            grants=tuple(GrantAmount(int(g["id"]), _amount(g["amount"])) for g in grants),
            hold=None if hold is None else int(hold),
            other=data,
        )


R = TypeVar("R", bound="_Record")


def _convert(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "numeric":
        return Decimal(value)
    if kind == "funding":
        return Funding.from_json(value)
    if kind == "json":
        return load_json(value)
    if kind == "array":
        return tuple(value)
    return value


class _Record:
    """Mixin: the record's columns, how to select them, how to build it from a row."""

    __slots__ = ()
    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]]

    @classmethod
    def select_list(cls, alias: str = "r") -> str:
        exprs = []
        for name, kind in cls.COLUMNS:
            expr = f'{alias}."{name}"'
            if kind in ("numeric", "funding", "json"):
                expr += "::text"
            exprs.append(expr)
        return ", ".join(exprs)

    @classmethod
    def from_row(cls: type[R], row: Sequence[Any]) -> R:
        columns = cls.COLUMNS
        if len(row) != len(columns):
            raise ValueError(f"{cls.__name__}: expected {len(columns)} columns, got {len(row)}")
        return cls(*(_convert(kind, value) for (_, kind), value in zip(columns, row)))


@dataclass(frozen=True, slots=True)
class AccountLog(_Record):
    """A ledger entry (``billing.account_log``), as billing_add, billing_deduct,
    billing_settle, billing_refund, billing_user_settle, billing_user_refund,
    billing_adjust and the reports return it."""

    id: int
    user_id: str
    seq: int
    direction: int
    amount: Decimal
    balance_after: Decimal
    account_type: str
    source_type: str
    source: str
    remark: str | None
    association_no: str | None
    association_user_id: str | None
    subscription_id: str | None
    expire_at: datetime | None
    detail: Funding
    idempotency_key: str | None
    created_at: datetime
    refund_of: int | None
    session_role: str | None
    calling_role: str | None
    scopes: tuple[str, ...] | None

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("id", "raw"),
        ("user_id", "raw"),
        ("seq", "raw"),
        ("direction", "raw"),
        ("amount", "numeric"),
        ("balance_after", "numeric"),
        ("account_type", "raw"),
        ("source_type", "raw"),
        ("source", "raw"),
        ("remark", "raw"),
        ("association_no", "raw"),
        ("association_user_id", "raw"),
        ("subscription_id", "raw"),
        ("expire_at", "raw"),
        ("detail", "funding"),
        ("idempotency_key", "raw"),
        ("created_at", "raw"),
        ("refund_of", "raw"),
        ("session_role", "raw"),
        ("calling_role", "raw"),
        ("scopes", "array"),
    )


@dataclass(frozen=True, slots=True)
class Hold(_Record):
    """A hold (``billing.holds``), as billing_hold, billing_release and billing_user_release return it.

    ``status`` is ``held``, ``settled``, ``released`` or ``expired``.
    """

    user_id: str
    hold_id: int
    status: str
    amount: Decimal
    expires_at: datetime
    account_type: str
    source_type: str
    source: str
    remark: str | None
    association_no: str | None
    association_user_id: str | None
    idempotency_key: str | None
    funding: Funding
    reserved_after_seq: int
    settled_amount: Decimal | None
    log_id: int | None
    reason: str | None
    closed_after_seq: int | None
    created_at: datetime
    closed_at: datetime | None
    scopes: tuple[str, ...] | None

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("user_id", "raw"),
        ("hold_id", "raw"),
        ("status", "raw"),
        ("amount", "numeric"),
        ("expires_at", "raw"),
        ("account_type", "raw"),
        ("source_type", "raw"),
        ("source", "raw"),
        ("remark", "raw"),
        ("association_no", "raw"),
        ("association_user_id", "raw"),
        ("idempotency_key", "raw"),
        ("funding", "funding"),
        ("reserved_after_seq", "raw"),
        ("settled_amount", "numeric"),
        ("log_id", "raw"),
        ("reason", "raw"),
        ("closed_after_seq", "raw"),
        ("created_at", "raw"),
        ("closed_at", "raw"),
        ("scopes", "array"),
    )


@dataclass(frozen=True, slots=True)
class Violation(_Record):
    """A finding of billing_verify (``billing.violation``)."""

    user_id: str | None
    check: str
    expected: str | None
    actual: str | None

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("user_id", "raw"),
        ("check", "raw"),
        ("expected", "raw"),
        ("actual", "raw"),
    )


@dataclass(frozen=True, slots=True)
class StatementRow(_Record):
    """A row of billing_statement: one per account_type, then the total row
    (``account_type`` None)."""

    account_type: str | None
    entries: int
    credited: Decimal
    debited: Decimal
    net: Decimal
    opening_balance: Decimal
    closing_balance: Decimal

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("account_type", "raw"),
        ("entries", "raw"),
        ("credited", "numeric"),
        ("debited", "numeric"),
        ("net", "numeric"),
        ("opening_balance", "numeric"),
        ("closing_balance", "numeric"),
    )


@dataclass(frozen=True, slots=True)
class SpendingLimit(_Record):
    """A spending limit as it stands now (``billing.spending_limit``).

    ``period`` is None for a lifetime cap, and then ``period_end`` is None.
    """

    scope: str
    cap: Decimal
    period: str | None
    time_zone: str
    period_start: datetime
    period_end: datetime | None
    spent: Decimal
    held: Decimal
    remaining: Decimal

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("scope", "raw"),
        ("cap", "numeric"),
        ("period", "raw"),
        ("time_zone", "raw"),
        ("period_start", "raw"),
        ("period_end", "raw"),
        ("spent", "numeric"),
        ("held", "numeric"),
        ("remaining", "numeric"),
    )


@dataclass(frozen=True, slots=True)
class LowBalanceEvent(_Record):
    """A row of billing_low_balance_events."""

    event_id: int
    user_id: str
    threshold: Decimal
    available: Decimal
    at: datetime

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("event_id", "raw"),
        ("user_id", "raw"),
        ("threshold", "numeric"),
        ("available", "numeric"),
        ("at", "raw"),
    )


@dataclass(frozen=True, slots=True)
class Metric(_Record):
    """A row of billing_metrics: ``kind`` is ``counter`` or ``gauge``."""

    metric: str
    kind: str
    labels: Mapping[str, Any] | None
    value: Decimal

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("metric", "raw"),
        ("kind", "raw"),
        ("labels", "json"),
        ("value", "numeric"),
    )


@dataclass(frozen=True, slots=True)
class Distribution(_Record):
    """A row of billing_distribute: an ``object`` of the extension (a table, ``id
    sequences``, a function's signature) and what its ``distribution`` is now on
    Citus (``distributed by user_id``, ``reference table``, ``delegated by
    user_id``, ...; `` (already)`` appended when an earlier call did it)."""

    object: str
    distribution: str

    COLUMNS: ClassVar[tuple[tuple[str, Kind], ...]] = (
        ("object", "raw"),
        ("distribution", "raw"),
    )
