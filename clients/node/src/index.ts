// pgbilling: the TypeScript client of the billing PostgreSQL extension.
export { Billing, FN } from "./billing.js";
export type {
  AddArgs,
  AdjustOptions,
  ChargeArgs,
  DeductArgs,
  ExpireOptions,
  HistoryOptions,
  HoldArgs,
  LowBalanceEventsOptions,
  OptionsObject,
  RefundOptions,
  ReleaseOptions,
  DistributeOptions,
  RevokeOptions,
  SetLimitOptions,
  SettleOptions,
} from "./billing.js";
export { BillingService } from "./service.js";
export type { AddUserPowerOptions, DeductUserPowerOptions, PowerChangeOptions } from "./service.js";
export {
  BillingError,
  CitusUnavailable,
  DeadlockDetected,
  DependentObjects,
  ERROR_CLASSES,
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
  SerializationFailure,
  TransactionConflict,
  TriggerProtocolViolated,
  TypeCodeFixed,
  UndefinedColumn,
  UnknownType,
  isRetryable,
  mapError,
  sqlstateOf,
} from "./errors.js";
export { retryTransaction } from "./retry.js";
export type { RetryOptions } from "./retry.js";
export { holding, HoldHandle } from "./holding.js";
export type { HoldingOptions, HoldingResult } from "./holding.js";
export type { Queryable } from "./sql.js";
export type { DistributedObject, Funding, Hold, HoldStatus, LedgerEntry, LowBalanceEvent, Metric, SpendingLimit, StatementRow, Violation } from "./types.js";
export type { JsonValue } from "./json.js";
export type { Amount, Id, Key, Timestamp } from "./values.js";
export { Decimal } from "decimal.js";
