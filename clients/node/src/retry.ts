// retryTransaction: reruns the caller's whole transaction on 40001 and 40P01.
import { isRetryable } from "./errors.js";

export interface RetryOptions {
  /** Attempts in all, the first included (default 5). */
  maxAttempts?: number;
  /** The first backoff's upper bound in milliseconds (default 10); doubled after each attempt. */
  baseDelayMs?: number;
  /** The largest backoff in milliseconds (default 1000). */
  maxDelayMs?: number;
  /** Called before each rerun, after the failed attempt, with the delay about to be slept. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Which errors to retry (default: SQLSTATE 40001 or 40P01, mapped or not, TypeORM's wrapper included). */
  isRetryable?: (error: unknown) => boolean;
}

/**
 * Runs `fn`, which must run a whole transaction of its own (BEGIN ... COMMIT on a client it takes from a
 * pool, or `dataSource.transaction(...)`), and runs it again when it fails with a serialization failure
 * (40001) or a deadlock (40P01), after a jittered exponential backoff ("full jitter": a random delay
 * between 0 and min(maxDelayMs, baseDelayMs * 2^(attempt-1))). After maxAttempts the last error
 * propagates; any other error propagates at once. `fn` gets the attempt number, from 1.
 *
 * Never wrap a single statement inside a transaction that goes on: the statements before it were rolled
 * back with it, so only the whole transaction can be run again.
 */
export async function retryTransaction<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 5;
  const base = options.baseDelayMs ?? 10;
  const cap = options.maxDelayMs ?? 1000;
  const retryable = options.isRetryable ?? isRetryable;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError("pgbilling: maxAttempts must be an integer of at least 1");
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= maxAttempts || !retryable(err)) throw err;
      const delay = Math.random() * Math.min(cap, base * 2 ** (attempt - 1));
      options.onRetry?.(err, attempt, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
