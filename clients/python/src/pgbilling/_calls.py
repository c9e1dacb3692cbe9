"""One builder per SQL function: its Python signature, the statement it runs and
how its rows become the result.

A builder returns a :class:`Call` (SQL text, parameters, decoder) and does no
I/O; :class:`pgbilling.Billing` and :class:`pgbilling.AsyncBilling` run it.
Adding a method is adding a builder here and one line to each of the two
classes (tests/test_surface.py checks that none is forgotten).

Rules every builder follows:

- the function is called by name with named arguments and an explicit cast
  per argument (``billing_deduct(user_id => %s::text, ...)``), so overloads
  resolve exactly; no SQL is built from values, only from the fixed names here;
- required SQL arguments are positional-or-keyword, arguments with a SQL
  default are keyword-only, and an optional argument left at None is not
  passed at all, so the SQL default applies;
- numerics come back as text and become Decimal (never float).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, Required, TypedDict, TypeVar

from .types import (
    AccountLog,
    Distribution,
    Hold,
    LowBalanceEvent,
    Metric,
    SpendingLimit,
    StatementRow,
    Violation,
    _Record,
)

T = TypeVar("T")
R = TypeVar("R", bound=_Record)

#: What an amount argument accepts: exact values only (a float raises TypeError).
Amount = Decimal | int


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A statement ready to run: SQL with %s placeholders, its parameters, and
    the function that turns the fetched rows into the result."""

    function: str
    sql: str
    params: tuple[Any, ...]
    decode: Callable[[list[Sequence[Any]]], T]


class SourceOption(TypedDict):
    type: str
    source: str


class DeductOptions(TypedDict, total=False):
    """The options object of ``billing_deduct(options jsonb)``."""

    userId: Required[str | int]
    amount: Required[Decimal | int | str]
    accountType: Required[str]
    source: Required[SourceOption]
    remark: str | None
    associationNo: str | int | None
    associationUserId: str | int | None
    idempotencyKey: str | None
    scopes: Sequence[str] | None


class AddOptions(TypedDict, total=False):
    """The options object of ``billing_add(options jsonb)``."""

    userId: Required[str | int]
    amount: Required[Decimal | int | str]
    accountType: Required[str]
    source: Required[SourceOption]
    remark: str | None
    associationNo: str | int | None
    associationUserId: str | int | None
    expireAt: datetime | str | None
    subscriptionId: str | int | None
    idempotencyKey: str | None


# -- arguments ---------------------------------------------------------------


def _amount(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal or an int, not {type(value).__name__} (money is never a float)")
    return Decimal(value)


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value


class _Args:
    """The named-argument list of one call."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []

    def required(self, name: str, sql_type: str, value: Any) -> _Args:
        self.parts.append(f"{name} => %s::{sql_type}")
        self.params.append(value)
        return self

    def optional(self, name: str, sql_type: str, value: Any) -> _Args:
        if value is not None:
            self.required(name, sql_type, value)
        return self

    def __str__(self) -> str:
        return ", ".join(self.parts)


def _only(function: str, rows: list[Sequence[Any]]) -> Sequence[Any]:
    if len(rows) != 1:
        raise RuntimeError(f"{function} returned {len(rows)} rows, expected 1")
    return rows[0]


def _record(function: str, args: _Args, cls: type[R]) -> Call[R]:
    def decode(rows: list[Sequence[Any]]) -> R:
        return cls.from_row(_only(function, rows))

    return Call(function, f"SELECT {cls.select_list()} FROM {function}({args}) AS r", tuple(args.params), decode)


def _record_or_none(function: str, args: _Args, cls: type[R]) -> Call[R | None]:
    """A function returning one composite that may be NULL (or SETOF with 0 or 1 rows)."""

    def decode(rows: list[Sequence[Any]]) -> R | None:
        if not rows or all(v is None for v in rows[0]):
            return None
        return cls.from_row(_only(function, rows))

    return Call(function, f"SELECT {cls.select_list()} FROM {function}({args}) AS r", tuple(args.params), decode)


def _records(function: str, args: _Args, cls: type[R]) -> Call[list[R]]:
    def decode(rows: list[Sequence[Any]]) -> list[R]:
        return [cls.from_row(row) for row in rows]

    return Call(function, f"SELECT {cls.select_list()} FROM {function}({args}) AS r", tuple(args.params), decode)


def _scalar(function: str, args: _Args, cast: str, convert: Callable[[Any], T]) -> Call[T]:
    def decode(rows: list[Sequence[Any]]) -> T:
        return convert(_only(function, rows)[0])

    return Call(function, f"SELECT {function}({args}){cast}", tuple(args.params), decode)


def _decimal(value: Any) -> Decimal:
    return Decimal(value)


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _bool(value: Any) -> bool:
    return bool(value)


def _int(value: Any) -> int:
    return int(value)


def _none(value: Any) -> None:
    return None


# -- options objects ---------------------------------------------------------


def _json(value: Any) -> str:
    """JSON text with Decimals written as exact JSON numbers; floats refused."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite amount: {value}")
        return str(value)
    if isinstance(value, float):
        raise TypeError("money is never a float: pass a Decimal, an int or a string")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("datetimes in an options object must be timezone-aware")
        return _json_string(value.isoformat())
    if isinstance(value, date):
        return _json_string(value.isoformat())
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_json_string(str(k))}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    raise TypeError(f"cannot put {type(value).__name__} into an options object")


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# -- the builders, one per SQL function --------------------------------------


def power(user_id: str) -> Call[Decimal]:
    """billing_power: the user's available power (0 for an unknown user)."""
    args = _Args().required("user_id", "text", user_id)
    return _scalar("billing_power", args, "::text", _decimal)


def has_power(user_id: str, amount: Amount) -> Call[bool]:
    """billing_has_power: whether the available power is at least amount (advisory)."""
    args = _Args().required("user_id", "text", user_id).required("amount", "numeric", _amount("amount", amount))
    return _scalar("billing_has_power", args, "", _bool)


def add(
    user_id: str,
    amount: Amount,
    account_type: str,
    source_type: str,
    source: str,
    *,
    remark: str | None = None,
    association_no: str | None = None,
    association_user_id: str | None = None,
    expire_at: datetime | None = None,
    subscription_id: str | None = None,
    idempotency_key: str | None = None,
) -> Call[AccountLog]:
    """billing_add: adds power (a grant when expire_at is given); returns the ledger entry."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("amount", "numeric", _amount("amount", amount))
        .required("account_type", "text", account_type)
        .required("source_type", "text", source_type)
        .required("source", "text", source)
        .optional("remark", "text", remark)
        .optional("association_no", "text", association_no)
        .optional("association_user_id", "text", association_user_id)
        .optional("expire_at", "timestamptz", _aware("expire_at", expire_at))
        .optional("subscription_id", "text", subscription_id)
        .optional("idempotency_key", "text", idempotency_key)
    )
    return _record("billing_add", args, AccountLog)


def deduct(
    user_id: str,
    amount: Amount,
    account_type: str,
    source_type: str,
    source: str,
    *,
    remark: str | None = None,
    association_no: str | None = None,
    association_user_id: str | None = None,
    idempotency_key: str | None = None,
    scopes: Sequence[str] | None = None,
) -> Call[AccountLog]:
    """billing_deduct: spends power (grants soonest-expiring first); returns the ledger entry."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("amount", "numeric", _amount("amount", amount))
        .required("account_type", "text", account_type)
        .required("source_type", "text", source_type)
        .required("source", "text", source)
        .optional("remark", "text", remark)
        .optional("association_no", "text", association_no)
        .optional("association_user_id", "text", association_user_id)
        .optional("idempotency_key", "text", idempotency_key)
        .optional("scopes", "text[]", None if scopes is None else list(scopes))
    )
    return _record("billing_deduct", args, AccountLog)


def hold(
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
) -> Call[Hold]:
    """billing_hold: reserves amount until settled, released or ttl (default 15 minutes) passes."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("amount", "numeric", _amount("amount", amount))
        .required("account_type", "text", account_type)
        .required("source_type", "text", source_type)
        .required("source", "text", source)
        .optional("remark", "text", remark)
        .optional("association_no", "text", association_no)
        .optional("association_user_id", "text", association_user_id)
        .optional("ttl", "interval", ttl)
        .optional("idempotency_key", "text", idempotency_key)
        .optional("scopes", "text[]", None if scopes is None else list(scopes))
    )
    return _record("billing_hold", args, Hold)


def settle(
    hold_id: int,
    actual_amount: Amount,
    *,
    remark: str | None = None,
    allow_debt: bool | None = None,
) -> Call[AccountLog | None]:
    """billing_settle: charges actual_amount of a hold in one entry; None for 0 (a release)."""
    args = (
        _Args()
        .required("hold_id", "bigint", hold_id)
        .required("actual_amount", "numeric", _amount("actual_amount", actual_amount))
        .optional("remark", "text", remark)
        .optional("allow_debt", "boolean", allow_debt)
    )
    return _record_or_none("billing_settle", args, AccountLog)


def release(hold_id: int, *, reason: str | None = None) -> Call[Hold]:
    """billing_release: gives a hold's power back; returns the hold."""
    args = _Args().required("hold_id", "bigint", hold_id).optional("reason", "text", reason)
    return _record("billing_release", args, Hold)


def refund(
    log_id: int,
    *,
    amount: Amount | None = None,
    remark: str | None = None,
    idempotency_key: str | None = None,
) -> Call[AccountLog]:
    """billing_refund: gives back all (amount None) or part of a debit entry."""
    args = (
        _Args()
        .required("log_id", "bigint", log_id)
        .optional("amount", "numeric", _amount("amount", amount))
        .optional("remark", "text", remark)
        .optional("idempotency_key", "text", idempotency_key)
    )
    return _record("billing_refund", args, AccountLog)


def user_settle(
    user_id: str,
    hold_id: int,
    actual_amount: Amount,
    *,
    remark: str | None = None,
    allow_debt: bool | None = None,
) -> Call[AccountLog | None]:
    """billing_user_settle: billing_settle of a hold of user_id (22023 if it is not the user's hold),
    which Citus runs on the node holding the user; None for 0 (a release)."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("hold_id", "bigint", hold_id)
        .required("actual_amount", "numeric", _amount("actual_amount", actual_amount))
        .optional("remark", "text", remark)
        .optional("allow_debt", "boolean", allow_debt)
    )
    return _record_or_none("billing_user_settle", args, AccountLog)


def user_release(user_id: str, hold_id: int, *, reason: str | None = None) -> Call[Hold]:
    """billing_user_release: billing_release of a hold of user_id (22023 if it is not the user's hold),
    which Citus runs on the node holding the user; returns the hold."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("hold_id", "bigint", hold_id)
        .optional("reason", "text", reason)
    )
    return _record("billing_user_release", args, Hold)


def user_refund(
    user_id: str,
    log_id: int,
    *,
    amount: Amount | None = None,
    remark: str | None = None,
    idempotency_key: str | None = None,
) -> Call[AccountLog]:
    """billing_user_refund: billing_refund of an entry of user_id (22023 if it is not the user's entry),
    which Citus runs on the node holding the user; returns the refund's entry."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("log_id", "bigint", log_id)
        .optional("amount", "numeric", _amount("amount", amount))
        .optional("remark", "text", remark)
        .optional("idempotency_key", "text", idempotency_key)
    )
    return _record("billing_user_refund", args, AccountLog)


def add_with_options(options: AddOptions | Mapping[str, Any]) -> Call[AccountLog]:
    """billing_add(options jsonb): billing_add with the options object services build."""
    args = _Args().required("options", "jsonb", _json(options))
    return _record("billing_add", args, AccountLog)


def deduct_with_options(options: DeductOptions | Mapping[str, Any]) -> Call[AccountLog]:
    """billing_deduct(options jsonb): billing_deduct with the options object services build."""
    args = _Args().required("options", "jsonb", _json(options))
    return _record("billing_deduct", args, AccountLog)


def verify(*, user_id: str | None = None) -> Call[list[Violation]]:
    """billing_verify: the disagreements between the ledger and the stored state (none: healthy)."""
    args = _Args().optional("user_id", "text", user_id)
    return _records("billing_verify", args, Violation)


def history(user_id: str, *, page_size: int | None = None, before_seq: int | None = None) -> Call[list[AccountLog]]:
    """billing_history: one page of the user's entries, newest first."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .optional("page_size", "integer", page_size)
        .optional("before_seq", "bigint", before_seq)
    )
    return _records("billing_history", args, AccountLog)


def by_association(user_id: str, association_no: str) -> Call[list[AccountLog]]:
    """billing_by_association: the user's entries with that association_no, oldest first."""
    args = _Args().required("user_id", "text", user_id).required("association_no", "text", association_no)
    return _records("billing_by_association", args, AccountLog)


def statement(user_id: str, from_ts: datetime, to_ts: datetime) -> Call[list[StatementRow]]:
    """billing_statement: per account_type rows, then the total row (account_type None)."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("from_ts", "timestamptz", _aware("from_ts", from_ts))
        .required("to_ts", "timestamptz", _aware("to_ts", to_ts))
    )
    return _records("billing_statement", args, StatementRow)


def price(rule_code: str, tokens: int) -> Call[Decimal]:
    """billing_price: what tokens of usage cost under a pricing rule."""
    args = _Args().required("rule_code", "text", rule_code).required("tokens", "bigint", tokens)
    return _scalar("billing_price", args, "::text", _decimal)


def expire(*, as_of: datetime | None = None, batch_size: int | None = None) -> Call[int]:
    """billing_expire: the sweep; returns how many grants and lapsed holds it ended."""
    args = (
        _Args()
        .optional("as_of", "timestamptz", _aware("as_of", as_of))
        .optional("batch_size", "integer", batch_size)
    )
    return _scalar("billing_expire", args, "", _int)


def revoke_subscription(subscription_id: str, *, remark: str | None = None) -> Call[list[AccountLog]]:
    """billing_revoke_subscription: ends the subscription's live grants; returns the entries."""
    args = _Args().required("subscription_id", "text", subscription_id).optional("remark", "text", remark)
    return _records("billing_revoke_subscription", args, AccountLog)


def adjust(user_id: str, delta: Amount, remark: str, *, operator: str | None = None) -> Call[AccountLog]:
    """billing_adjust: a manual correction, up (delta > 0) or down (delta < 0)."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("delta", "numeric", _amount("delta", delta))
        .required("remark", "text", remark)
        .optional("operator", "text", operator)
    )
    return _record("billing_adjust", args, AccountLog)


def set_low_balance(user_id: str, threshold: Amount | None) -> Call[Decimal | None]:
    """billing_set_low_balance: sets (None removes) the low-balance threshold; returns it."""
    args = _Args().required("user_id", "text", user_id).required("threshold", "numeric", _amount("threshold", threshold))
    return _scalar("billing_set_low_balance", args, "::text", _decimal_or_none)


def low_balance_events(*, after_id: int | None = None) -> Call[list[LowBalanceEvent]]:
    """billing_low_balance_events: the events with an id above after_id, oldest first."""
    args = _Args().optional("after_id", "bigint", after_id)
    return _records("billing_low_balance_events", args, LowBalanceEvent)


def set_debt_limit(user_id: str, max_debt: Amount | None) -> Call[Decimal | None]:
    """billing_set_debt_limit: sets (None removes) the user's debt floor; returns it."""
    args = _Args().required("user_id", "text", user_id).required("max_debt", "numeric", _amount("max_debt", max_debt))
    return _scalar("billing_set_debt_limit", args, "::text", _decimal_or_none)


def set_limit(
    user_id: str,
    scope: str,
    cap: Amount | None,
    *,
    period: str | None = None,
    time_zone: str | None = None,
) -> Call[SpendingLimit | None]:
    """billing_set_limit: sets (cap None removes) a spending limit; returns it as billing_limits shows it."""
    args = (
        _Args()
        .required("user_id", "text", user_id)
        .required("scope", "text", scope)
        .required("cap", "numeric", _amount("cap", cap))
        .optional("period", "text", period)
        .optional("time_zone", "text", time_zone)
    )
    return _record_or_none("billing_set_limit", args, SpendingLimit)


def limits(user_id: str) -> Call[list[SpendingLimit]]:
    """billing_limits: the user's spending limits as they stand now, in scope order."""
    args = _Args().required("user_id", "text", user_id)
    return _records("billing_limits", args, SpendingLimit)


def metrics() -> Call[list[Metric]]:
    """billing_metrics: counters and gauges for an operator."""
    return _records("billing_metrics", _Args(), Metric)


def metrics_reset() -> Call[None]:
    """billing_metrics_reset: zeroes the counters (superuser only)."""
    return _scalar("billing_metrics_reset", _Args(), "::text", _none)


def distribute(*, delegate: bool | None = None) -> Call[list[Distribution]]:
    """billing_distribute: on a Citus coordinator, as the extension's owner, distributes the billing
    tables by user_id and, with ``delegate=True``, sends the per-user functions' calls to the user's
    node (docs/citus.md: read about delegation first); one row per object. PB009 without Citus."""
    return _records("billing_distribute", _Args().optional("delegate", "boolean", delegate), Distribution)


#: Every builder, by method name (the SQL name without ``billing_``).
BUILDERS: dict[str, Callable[..., Call[Any]]] = {
    f.__name__: f
    for f in (
        power,
        has_power,
        add,
        deduct,
        hold,
        settle,
        release,
        refund,
        user_settle,
        user_release,
        user_refund,
        add_with_options,
        deduct_with_options,
        verify,
        history,
        by_association,
        statement,
        price,
        expire,
        revoke_subscription,
        adjust,
        set_low_balance,
        low_balance_events,
        set_debt_limit,
        set_limit,
        limits,
        metrics,
        metrics_reset,
        distribute,
    )
}
