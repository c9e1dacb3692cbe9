//! [`retry_transaction`]: runs the caller's whole transaction again on 40001
//! and 40P01, with jittered exponential backoff and an attempt limit.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::billing::Billing;
use crate::error::BillingError;

/// A boxed future, what the closures of [`retry_transaction`] and
/// [`crate::holding`] return (`Box::pin(async move { ... })`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors [`retry_transaction`] can tell to retry: 40001 and 40P01.
///
/// Implemented for [`BillingError`], [`tokio_postgres::Error`] and
/// `Box<dyn Error + Send + Sync>` (which looks through its source chain for
/// either); implement it for your own error type to use that in the closure.
pub trait Retryable {
    /// True when running the whole transaction again may succeed.
    fn is_retryable(&self) -> bool;
}

impl Retryable for BillingError {
    fn is_retryable(&self) -> bool {
        BillingError::is_retryable(self) || is_retryable_code(self.cause())
    }
}

fn is_retryable_code(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(c.code(), "40001" | "40P01"))
}

impl Retryable for tokio_postgres::Error {
    fn is_retryable(&self) -> bool {
        is_retryable_code(self)
    }
}

impl Retryable for Box<dyn std::error::Error + Send + Sync> {
    fn is_retryable(&self) -> bool {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self.as_ref());
        while let Some(e) = next {
            if let Some(b) = e.downcast_ref::<BillingError>() {
                return Retryable::is_retryable(b);
            }
            if let Some(p) = e.downcast_ref::<tokio_postgres::Error>() {
                return is_retryable_code(p);
            }
            next = e.source();
        }
        false
    }
}

/// How [`retry_transaction`] retries.
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles for each further one.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// `BEGIN ISOLATION LEVEL ...`; `None`: the session's default.
    pub isolation_level: Option<IsolationLevel>,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_attempts: 5,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(1),
            isolation_level: None,
        }
    }
}

impl RetryOptions {
    /// The wait before attempt `attempt + 1`: a random time between half and
    /// all of `base_delay * 2^(attempt - 1)`, at most `max_delay`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let half = full / 2;
        let nanos = u64::try_from((full - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(if nanos == 0 { 0 } else { random() % (nanos + 1) })
    }
}

/// A random number for the jitter, from the standard library's randomly keyed hasher.
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// The transaction of one attempt of [`retry_transaction`]: derefs to the
/// [`tokio_postgres::Transaction`], and [`Tx::billing`] calls the billing
/// functions in it. (`'env` is the lifetime of what the closure borrows.)
pub struct Tx<'t, 'env> {
    inner: Transaction<'t>,
    attempt: u32,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'t> Tx<'t, '_> {
    /// The billing functions in this transaction.
    pub fn billing(&self) -> Billing<'_, Transaction<'t>> {
        Billing::new(&self.inner)
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The transaction.
    pub fn transaction(&self) -> &Transaction<'t> {
        &self.inner
    }
}

impl<'t> Deref for Tx<'t, '_> {
    type Target = Transaction<'t>;

    fn deref(&self) -> &Transaction<'t> {
        &self.inner
    }
}

/// Runs `work` in a transaction on `client` and commits; when the work or the
/// COMMIT fails with 40001 (serialization failure) or 40P01 (deadlock), rolls
/// back, waits (jittered exponential backoff) and runs the whole of `work`
/// again in a new transaction, up to `options.max_attempts` attempts in all.
/// Any other error rolls back and returns at once; after the last attempt the
/// last error is returned. `work` must be safe to run more than once: keep
/// side effects outside the database out of it.
///
/// ```no_run
/// # async fn f(client: &mut tokio_postgres::Client) -> Result<(), pgbilling::BillingError> {
/// use pgbilling::{retry_transaction, BillingError, DeductOptions, RetryOptions};
/// use rust_decimal::Decimal;
///
/// let user = "alice";
/// let balance = retry_transaction(client, &RetryOptions::default(), |tx| {
///     Box::pin(async move {
///         tx.billing().deduct(user, Decimal::from(3), "CHAT_DEC", "CHAT", "chat-7", &DeductOptions::default()).await?;
///         tx.billing().power(user).await
///     })
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn retry_transaction<'env, T, E, F>(client: &mut Client, options: &RetryOptions, mut work: F) -> Result<T, E>
where
    F: for<'t> FnMut(&'t Tx<'t, 'env>) -> BoxFuture<'t, Result<T, E>>,
    E: From<BillingError> + Retryable,
{
    let max_attempts = options.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let mut builder = client.build_transaction();
        if let Some(level) = options.isolation_level {
            builder = builder.isolation_level(level);
        }
        let tx = Tx { inner: builder.start().await.map_err(BillingError::from)?, attempt, _env: PhantomData };
        let error: E = match work(&tx).await {
            Ok(value) => match tx.inner.commit().await {
                Ok(()) => return Ok(value),
                Err(e) => BillingError::from(e).into(),
            },
            Err(error) => {
                // The work's error is the one to report, even if the rollback
                // fails too (the connection is then broken, and says so next).
                let rolled_back = tx.inner.rollback().await.is_ok();
                if !rolled_back {
                    return Err(error);
                }
                error
            }
        };
        if !error.is_retryable() || attempt >= max_attempts {
            return Err(error);
        }
        tokio::time::sleep(options.backoff(attempt)).await;
        attempt += 1;
    }
}
