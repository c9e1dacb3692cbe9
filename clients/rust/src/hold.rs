//! [`holding`]: metered work that must not keep the user's row locked while
//! it runs. The one place where this client commits.

use std::marker::PhantomData;
use std::sync::Mutex;

use rust_decimal::Decimal;
use tokio_postgres::Client;

use crate::billing::{Billing, HoldOptions, SettleOptions};
use crate::error::BillingError;
use crate::retry::BoxFuture;
use crate::types::{AccountLog, Hold};

/// What to hold, and how to settle it.
#[derive(Debug, Clone)]
pub struct HoldRequest<'a> {
    pub user_id: &'a str,
    pub amount: Decimal,
    pub account_type: &'a str,
    pub source_type: &'a str,
    pub source: &'a str,
    /// The hold's optional arguments (ttl, idempotency_key, scopes, ...).
    pub options: HoldOptions<'a>,
    /// The settle's remark (default: the hold's).
    pub settle_remark: Option<&'a str>,
    /// Settle with `allow_debt => true`.
    pub allow_debt: bool,
}

impl<'a> HoldRequest<'a> {
    /// A request with the required arguments; the rest default.
    pub fn new(
        user_id: &'a str,
        amount: Decimal,
        account_type: &'a str,
        source_type: &'a str,
        source: &'a str,
    ) -> Self {
        HoldRequest {
            user_id,
            amount,
            account_type,
            source_type,
            source,
            options: HoldOptions::default(),
            settle_remark: None,
            allow_debt: false,
        }
    }
}

/// What the work of [`holding`] gets: the committed hold, the connection
/// (outside any transaction: each call commits on its own), and the place to
/// put the actual cost.
pub struct HoldHandle<'h, 'env> {
    hold: Hold,
    client: &'h Client,
    actual: &'h Mutex<Option<Decimal>>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'h> HoldHandle<'h, '_> {
    /// The hold, as `billing_hold` returned it (committed).
    pub fn hold(&self) -> &Hold {
        &self.hold
    }

    /// Sets the actual cost the hold is settled for when the work succeeds (0: release).
    /// Not set by then, the hold is released.
    pub fn set_actual(&self, amount: Decimal) {
        *self.actual.lock().unwrap_or_else(|e| e.into_inner()) = Some(amount);
    }

    /// The actual cost set so far.
    pub fn actual(&self) -> Option<Decimal> {
        *self.actual.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection, for the work's own statements (outside a transaction).
    pub fn client(&self) -> &'h Client {
        self.client
    }

    /// The billing functions on the connection.
    pub fn billing(&self) -> Billing<'h, Client> {
        Billing::new(self.client)
    }
}

/// What [`holding`] returns when the work succeeded.
#[derive(Debug)]
pub struct Held<T> {
    /// What the work returned.
    pub value: T,
    /// The hold as it was made.
    pub hold: Hold,
    /// The settle's ledger entry; `None` when the hold was released (no actual
    /// cost set, or 0).
    pub entry: Option<AccountLog>,
}

/// Why [`holding`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HoldingError<E> {
    /// The hold could not be made (PB001, PB008, ...): the work did not run.
    #[error("the hold could not be made: {0}")]
    Hold(#[source] BillingError),
    /// The work failed. The hold was released, unless `release` says why not
    /// (the hold then lapses at its ttl).
    #[error("the work failed: {error}")]
    Work {
        #[source]
        error: E,
        release: Option<BillingError>,
    },
    /// The work succeeded but settling (or releasing, with no actual cost)
    /// failed: the hold is still open until its ttl; settle or release it by
    /// `hold_id`. The work's value is dropped.
    #[error("the work succeeded, but closing hold {hold_id} failed: {error}")]
    Close {
        hold_id: i64,
        #[source]
        error: BillingError,
    },
}

impl<E> HoldingError<E> {
    /// The billing error, when billing failed rather than the work.
    pub fn billing_error(&self) -> Option<&BillingError> {
        match self {
            HoldingError::Hold(e) | HoldingError::Close { error: e, .. } => Some(e),
            HoldingError::Work { .. } => None,
        }
    }
}

/// Holds `request.amount` and commits, runs `work` with the hold committed (no
/// lock on the user's row while it runs), then settles the hold for the actual
/// cost the work set with [`HoldHandle::set_actual`], or releases it when the
/// work failed or set none; the settle or release commits in its own
/// transaction. The work's error comes back in [`HoldingError::Work`].
///
/// `client` must not be inside a transaction (a `&mut` borrow rules out a
/// live [`tokio_postgres::Transaction`]; do not `BEGIN` by hand around it).
/// With a pool, take one connection from it for the call and pass its
/// `tokio_postgres::Client` mutably. The work may use the same connection through
/// [`HoldHandle::client`] (each statement its own transaction) or anything it
/// captures.
///
/// ```no_run
/// # async fn f(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use pgbilling::{holding, BillingError, HoldRequest};
/// use rust_decimal::Decimal;
///
/// let held = holding(client, &HoldRequest::new("alice", Decimal::from(50), "AGENT_CHAT_DEC", "AGENT_CHAT", "gpt-4"),
///     |h| Box::pin(async move {
///         let tokens = 1234; // call the model here
///         h.set_actual(Decimal::new(tokens, 2));
///         Ok::<_, BillingError>(tokens)
///     }))
///     .await?;
/// assert_eq!(held.entry.unwrap().amount, Decimal::new(1234, 2));
/// # Ok(()) }
/// ```
pub async fn holding<'env, T, E, F>(
    client: &mut Client,
    request: &HoldRequest<'_>,
    work: F,
) -> Result<Held<T>, HoldingError<E>>
where
    F: for<'h> FnOnce(&'h HoldHandle<'h, 'env>) -> BoxFuture<'h, Result<T, E>>,
{
    let hold = hold_committed(client, request).await.map_err(HoldingError::Hold)?;
    let hold_id = hold.hold_id;
    let actual = Mutex::new(None);
    let outcome = {
        let handle = HoldHandle { hold: hold.clone(), client: &*client, actual: &actual, _env: PhantomData };
        work(&handle).await
    };
    let actual = actual.into_inner().unwrap_or_else(|e| e.into_inner());
    match outcome {
        Ok(value) => {
            let entry = match actual {
                Some(amount) => settle_committed(client, hold_id, amount, request).await,
                None => {
                    release_committed(client, hold_id, "pgbilling: the work set no actual cost").await.map(|_| None)
                }
            }
            .map_err(|error| HoldingError::Close { hold_id, error })?;
            Ok(Held { value, hold, entry })
        }
        Err(error) => {
            let release = release_committed(client, hold_id, "pgbilling: the work failed").await.err();
            Err(HoldingError::Work { error, release })
        }
    }
}

async fn hold_committed(client: &mut Client, r: &HoldRequest<'_>) -> Result<Hold, BillingError> {
    let tx = client.transaction().await?;
    let hold = Billing::new(&tx).hold(r.user_id, r.amount, r.account_type, r.source_type, r.source, &r.options).await?;
    tx.commit().await?;
    Ok(hold)
}

async fn settle_committed(
    client: &mut Client,
    hold_id: i64,
    amount: Decimal,
    r: &HoldRequest<'_>,
) -> Result<Option<AccountLog>, BillingError> {
    let tx = client.transaction().await?;
    let options = SettleOptions { remark: r.settle_remark, allow_debt: r.allow_debt };
    let entry = Billing::new(&tx).settle(hold_id, amount, &options).await?;
    tx.commit().await?;
    Ok(entry)
}

async fn release_committed(client: &mut Client, hold_id: i64, reason: &str) -> Result<Hold, BillingError> {
    let tx = client.transaction().await?;
    let hold = Billing::new(&tx).release(hold_id, Some(reason)).await?;
    tx.commit().await?;
    Ok(hold)
}
