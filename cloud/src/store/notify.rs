//! The outbox of OpenADR webhook notifications (`notify_webhooks`), sent
//! by `crate::notify`'s worker.
//!
//! A notification is durable once [`NotifyStore::enqueue_webhooks`]
//! returned: all of one call's rows are inserted by one statement (so all
//! or none). Workers of several `serve` processes share the table: a claim
//! is a lease with a random token, rows under a live lease are skipped
//! (PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite has one writer), and only
//! the holder of the claim's token may record its outcome, so a worker
//! whose lease expired mid-send cannot overwrite the newer claim's result.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::notify::{NewWebhook, NotifyStore, WebhookOutcome};
//!
//! let row = NewWebhook {
//!     subscription_id: "sub-1".into(),
//!     url: "https://ven.example.com/cb".into(),
//!     bearer_token: Some("t".into()),
//!     body: r#"{"objectType":"EVENT","operation":"POST","object":{}}"#.into(),
//! };
//! store.enqueue_webhooks(&[row], 1_000).await?;
//! for claimed in store.claim_webhooks(1_000, 60_000, 16, 42).await? {
//!     store.finish_webhook(claimed.id, 42, &WebhookOutcome::Delivered, 1_100).await?;
//! }
//! # Ok(()) }
//! ```

use std::future::Future;

use super::{AnyStore, StoreError};

/// One webhook notification to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    /// The subscription it is for.
    pub subscription_id: String,
    /// Where it is sent by POST.
    pub url: String,
    /// Sent as `Authorization: Bearer`, if set.
    pub bearer_token: Option<String>,
    /// The JSON body, as sent.
    pub body: String,
}

/// A webhook notification claimed for one attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedWebhook {
    /// Its outbox id (the same on every attempt).
    pub id: i64,
    /// The subscription it is for.
    pub subscription_id: String,
    /// Where it is sent by POST.
    pub url: String,
    /// Sent as `Authorization: Bearer`, if set.
    pub bearer_token: Option<String>,
    /// The JSON body.
    pub body: String,
    /// Attempts made, this one included.
    pub attempts: u32,
}

impl std::fmt::Debug for ClaimedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedWebhook")
            .field("id", &self.id)
            .field("subscription_id", &self.subscription_id)
            .field("url", &self.url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("body_bytes", &self.body.len())
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Failed; try again at `next_attempt_ms`.
    Retry {
        /// When.
        next_attempt_ms: i64,
        /// Why this attempt failed.
        error: String,
    },
    /// Failed for the last time; the row is kept, marked failed.
    Failed {
        /// Why the last attempt failed.
        error: String,
    },
}

/// Where a stored notification stands (for operators and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookState {
    /// Waiting for its next attempt (or being sent).
    Pending,
    /// Delivered at this time, ms.
    Delivered(i64),
    /// Given up at this time, ms.
    Failed(i64),
}

/// One stored notification as [`NotifyStore::webhooks_of`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Outbox id.
    pub id: i64,
    /// Where it stands.
    pub state: WebhookState,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
}

/// Storage of the webhook outbox (both backends).
pub trait NotifyStore: Send + Sync {
    /// Stores `webhooks`, due at `now_ms`, in one statement: all or none.
    /// Returns how many were stored.
    fn enqueue_webhooks(
        &self,
        webhooks: &[NewWebhook],
        now_ms: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Claims up to `limit` due rows (not delivered, not failed,
    /// `next_attempt_ms <= now_ms`, no live lease) until `now_ms +
    /// lease_ms` under `claim_token`, counting an attempt each; oldest
    /// first. Several workers never claim one row at once.
    fn claim_webhooks(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        claim_token: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedWebhook>, StoreError>> + Send;

    /// Records the outcome of the claim `claim_token` of row `id`. Returns
    /// false (and changes nothing) when the claim is no longer held (its
    /// lease expired and another worker claimed the row).
    fn finish_webhook(
        &self,
        id: i64,
        claim_token: i64,
        outcome: &WebhookOutcome,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a claim back unused (its attempt is not counted): the row is
    /// due again at `next_attempt_ms`. Returns false when not held.
    fn release_webhook(
        &self,
        id: i64,
        claim_token: i64,
        next_attempt_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Rows neither delivered nor failed.
    fn webhook_queue_depth(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The rows of one subscription, oldest first.
    fn webhooks_of(
        &self,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Vec<WebhookRecord>, StoreError>> + Send;
}

type ClaimRow = (i64, String, String, Option<String>, String, i64);
/// `(id, delivered_ms, failed_ms, attempts, last_error)`.
type RecordRow = (i64, Option<i64>, Option<i64>, i64, Option<String>);

impl NotifyStore for AnyStore {
    async fn enqueue_webhooks(
        &self,
        webhooks: &[NewWebhook],
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if webhooks.is_empty() {
            return Ok(0);
        }
        // One JSON array, expanded by the database: one statement for any
        // number of rows, so the insert is atomic without a transaction.
        let rows: Vec<serde_json::Value> = webhooks
            .iter()
            .map(|w| {
                serde_json::json!({
                    "s": w.subscription_id, "u": w.url, "t": w.bearer_token, "b": w.body,
                })
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        exec!(self.writer(), |pool| sqlx::query(sql!(pool;
            "INSERT INTO notify_webhooks \
             (subscription_id, url, bearer_token, body, created_ms, next_attempt_ms) \
             SELECT e.value->>'s', e.value->>'u', e.value->>'t', e.value->>'b', $2, $2 FROM ",
            [either "json_array_elements($1::json) WITH ORDINALITY AS e(value, key)" "json_each($1) AS e"],
            " ORDER BY e.key"
        ))
        .bind(rows.as_str())
        .bind(now_ms)
        .execute(pool)
        .await)
        .map_err(StoreError::from)
    }

    async fn claim_webhooks(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
        claim_token: i64,
    ) -> Result<Vec<ClaimedWebhook>, StoreError> {
        let rows: Vec<ClaimRow> = run!(self.writer(), |pool| sqlx::query_as(sql!(pool;
            "UPDATE notify_webhooks SET lease_until_ms = $2, claim_token = $4, \
             attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM notify_webhooks \
             WHERE delivered_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= $1 \
             AND (lease_until_ms IS NULL OR lease_until_ms <= $1) \
             ORDER BY next_attempt_ms, id LIMIT $3",
            skip_locked,
            ") RETURNING id, subscription_id, url, bearer_token, body, attempts"
        ))
        .bind(now_ms)
        .bind(now_ms.saturating_add(lease_ms))
        .bind(i64::from(limit))
        .bind(claim_token)
        .fetch_all(pool)
        .await)?;
        let mut claimed: Vec<ClaimedWebhook> = rows
            .into_iter()
            .map(
                |(id, subscription_id, url, bearer_token, body, attempts)| ClaimedWebhook {
                    id,
                    subscription_id,
                    url,
                    bearer_token,
                    body,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                },
            )
            .collect();
        claimed.sort_by_key(|w| w.id);
        Ok(claimed)
    }

    async fn finish_webhook(
        &self,
        id: i64,
        claim_token: i64,
        outcome: &WebhookOutcome,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (sql, at, error) = match outcome {
            WebhookOutcome::Delivered => (
                "UPDATE notify_webhooks SET delivered_ms = $3, lease_until_ms = NULL, \
                 claim_token = NULL, last_error = $4 WHERE id = $1 AND claim_token = $2",
                now_ms,
                None,
            ),
            WebhookOutcome::Retry {
                next_attempt_ms,
                error,
            } => (
                "UPDATE notify_webhooks SET next_attempt_ms = $3, lease_until_ms = NULL, \
                 claim_token = NULL, last_error = $4 WHERE id = $1 AND claim_token = $2",
                *next_attempt_ms,
                Some(error.as_str()),
            ),
            WebhookOutcome::Failed { error } => (
                "UPDATE notify_webhooks SET failed_ms = $3, lease_until_ms = NULL, \
                 claim_token = NULL, last_error = $4 WHERE id = $1 AND claim_token = $2",
                now_ms,
                Some(error.as_str()),
            ),
        };
        let changed = exec!(self.writer(), |pool| sqlx::query(sql)
            .bind(id)
            .bind(claim_token)
            .bind(at)
            .bind(error)
            .execute(pool)
            .await)?;
        Ok(changed == 1)
    }

    async fn release_webhook(
        &self,
        id: i64,
        claim_token: i64,
        next_attempt_ms: i64,
    ) -> Result<bool, StoreError> {
        let changed = exec!(self.writer(), |pool| sqlx::query(
            "UPDATE notify_webhooks SET next_attempt_ms = $3, lease_until_ms = NULL, \
             claim_token = NULL, attempts = attempts - 1 WHERE id = $1 AND claim_token = $2",
        )
        .bind(id)
        .bind(claim_token)
        .bind(next_attempt_ms)
        .execute(pool)
        .await)?;
        Ok(changed == 1)
    }

    async fn webhook_queue_depth(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = run!(self.reader(), |pool| {
            sqlx::query_as(
            "SELECT COUNT(*) FROM notify_webhooks WHERE delivered_ms IS NULL AND failed_ms IS NULL",
        )
        .fetch_one(pool)
        .await
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn webhooks_of(&self, subscription_id: &str) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows: Vec<RecordRow> = run!(self.reader(), |pool| sqlx::query_as(
            "SELECT id, delivered_ms, failed_ms, attempts, last_error FROM notify_webhooks \
                 WHERE subscription_id = $1 ORDER BY id",
        )
        .bind(subscription_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, delivered, failed, attempts, last_error)| WebhookRecord {
                    id,
                    state: match (delivered, failed) {
                        (Some(at), _) => WebhookState::Delivered(at),
                        (None, Some(at)) => WebhookState::Failed(at),
                        (None, None) => WebhookState::Pending,
                    },
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error,
                },
            )
            .collect())
    }
}
