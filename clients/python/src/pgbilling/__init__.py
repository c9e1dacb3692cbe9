"""pgbilling: the Python client of the ``billing`` PostgreSQL extension, on psycopg 3.

- :class:`Billing` / :class:`AsyncBilling`: one method per SQL function, run
  in the caller's transaction, never committing;
- :mod:`pgbilling.errors`: one exception class per SQLSTATE of the error table;
- :func:`retry_transaction` / :func:`retry_transaction_async`: rerun a whole
  transaction on 40001 and 40P01;
- :func:`holding` / :func:`holding_async`: hold, do the work, settle (or release).
"""

from ._calls import AddOptions, Amount, Call, DeductOptions, SourceOption
from ._client import AsyncBilling, Billing
from .errors import (
    RETRYABLE_SQLSTATES,
    BillingError,
    CitusUnavailable,
    DeadlockDetected,
    DependentObjects,
    HoldStateError,
    IdempotencyConflict,
    InsufficientPower,
    InsufficientPrivilege,
    InvalidArgument,
    LedgerAppendOnly,
    LimitExceeded,
    NullArgument,
    OutOfRange,
    OverRefund,
    RetryableError,
    SerializationFailure,
    TriggerProtocolViolated,
    TypeCodeFixed,
    UndefinedColumn,
    UnknownType,
    from_psycopg,
    is_retryable,
    map_errors,
)
from .holding import HoldHandle, holding, holding_async
from .retry import retry_transaction, retry_transaction_async
from .types import (
    AccountLog,
    Distribution,
    Funding,
    GrantAmount,
    Hold,
    LowBalanceEvent,
    Metric,
    SpendingLimit,
    StatementRow,
    Violation,
)

__version__ = "0.3.0"

__all__ = [
    "AccountLog",
    "AddOptions",
    "Amount",
    "AsyncBilling",
    "Billing",
    "BillingError",
    "Call",
    "CitusUnavailable",
    "DeadlockDetected",
    "DeductOptions",
    "DependentObjects",
    "Distribution",
    "Funding",
    "GrantAmount",
    "Hold",
    "HoldHandle",
    "HoldStateError",
    "IdempotencyConflict",
    "InsufficientPower",
    "InsufficientPrivilege",
    "InvalidArgument",
    "LedgerAppendOnly",
    "LimitExceeded",
    "LowBalanceEvent",
    "Metric",
    "NullArgument",
    "OutOfRange",
    "OverRefund",
    "RETRYABLE_SQLSTATES",
    "RetryableError",
    "SerializationFailure",
    "SourceOption",
    "SpendingLimit",
    "StatementRow",
    "TriggerProtocolViolated",
    "TypeCodeFixed",
    "UndefinedColumn",
    "UnknownType",
    "Violation",
    "from_psycopg",
    "holding",
    "holding_async",
    "is_retryable",
    "map_errors",
    "retry_transaction",
    "retry_transaction_async",
]
