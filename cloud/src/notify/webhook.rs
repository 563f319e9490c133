//! The webhook worker: claims due rows of the outbox
//! (`store::notify`), POSTs each to its callback URL, and records the
//! outcome: delivered (2xx), retried after an exponential backoff with
//! jitter, or marked failed after `max_attempts` (kept for inspection).
//!
//! - **Durable**: a row is in the database before [`Notifier::send`]
//!   returns, and leaves the queue only when a receiver answered 2xx or
//!   the attempts ran out; a restart resumes where the last process
//!   stopped.
//! - **Several processes**: a claim is a lease under a random token
//!   (`2 × timeout + 30 s`, longer than any attempt), so no two workers
//!   send a row at once; a worker that dies mid-send leaves the row to be
//!   retried when its lease expires, so a receiver may see a notification
//!   twice: `X-Gridlink-Delivery` (the row id) is the same on every
//!   attempt.
//! - **No receiver stalls the others**: at most [`MAX_IN_FLIGHT`] POSTs
//!   at once, at most [`MAX_PER_HOST`] per host (a claimed row beyond it
//!   is given back for a moment), each bounded by the time-out.
//! - **The URL policy** ([`super::callback`]) is applied again at every
//!   attempt, through the resolver that the connection uses.
//!
//! Each request: `POST`, `Content-Type: application/json`, the body as
//! stored, `Authorization: Bearer <bearerToken>` when the subscription has
//! one, `X-Gridlink-Delivery: <id>`, and `X-Gridlink-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>` where the key
//! is `signing_key` if configured, else the subscription's bearer token;
//! with neither there is no signature.
//!
//! [`Notifier::send`]: super::Notifier::send

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::SecureRandom as _;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::callback::{self, CallbackError};
use super::{NotifyConfig, NotifyMetrics};
use crate::model::clock::now_ms;
use crate::store::notify::{ClaimedWebhook, NotifyStore, WebhookOutcome};

/// Most POSTs in flight at once, per worker.
pub const MAX_IN_FLIGHT: usize = 64;
/// Most POSTs in flight to one host (and port) at once, per worker: many
/// VENs often share one endpoint (a vendor's cloud), so a fan-out to them
/// must not queue behind a handful of connections (at 4 with a 200 ms
/// wait, 50 VENs behind one host took 9 s: benches/dispatch.rs); a slow
/// host still holds at most half the worker.
pub const MAX_PER_HOST: usize = 32;
/// How long a claimed row over [`MAX_PER_HOST`] waits before it is due
/// again.
const HOST_BUSY_DELAY_MS: i64 = 50;
/// How often the queue depth gauge is refreshed, at most.
const DEPTH_INTERVAL: Duration = Duration::from_secs(1);

/// The `X-Gridlink-Signature` value of `body` sent at `timestamp_s`:
/// `t=<timestamp_s>,v1=<hex HMAC-SHA256(key, "<timestamp_s>.<body>")>`.
///
/// ```
/// use gridlink_cloud::notify::webhook::signature;
///
/// let sig = signature(b"key", 1_700_000_000, br#"{"objectType":"EVENT"}"#);
/// assert!(sig.starts_with("t=1700000000,v1=") && sig.len() == 16 + 64);
/// ```
pub fn signature(key: &[u8], timestamp_s: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp_s.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = format!("t={timestamp_s},v1=");
    for byte in tag.as_ref() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The wait after the `attempts`-th failed attempt: `min × 2^(attempts-1)`
/// capped at `max`, of which the upper half is scaled by `jitter` (in
/// 0..1): between half and all of it, so retries of many rows spread out.
pub fn backoff_ms(attempts: u32, min_ms: u32, max_ms: u32, jitter: f64) -> i64 {
    let doublings = attempts.saturating_sub(1).min(40);
    let base = i64::from(min_ms)
        .saturating_mul(1_i64 << doublings)
        .min(i64::from(max_ms.max(min_ms)));
    let half = base / 2;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "at most 86.4e6 ms, exact in an f64"
    )]
    let spread = ((base - half) as f64 * jitter.clamp(0.0, 1.0)) as i64;
    half + spread
}

/// A number in 0..1 from the system's generator (0.5 if it fails).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// A random claim token.
fn claim_token() -> i64 {
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Unique enough within one process; the lease still holds.
        return now_ms() ^ i64::from(std::process::id());
    }
    i64::from_le_bytes(bytes)
}

/// The host and port a URL's connection goes to (the per-host limit's key).
fn host_key(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or(0)
            )
        })
        .unwrap_or_default()
}

/// Sends what the outbox holds; see the module documentation.
pub struct WebhookWorker<S> {
    store: Arc<S>,
    client: reqwest::Client,
    config: Arc<NotifyConfig>,
    metrics: Arc<NotifyMetrics>,
}

impl<S: NotifyStore + 'static> WebhookWorker<S> {
    /// A worker over `store`; fails if the HTTP client cannot be built.
    pub fn new(
        store: Arc<S>,
        config: Arc<NotifyConfig>,
        metrics: Arc<NotifyMetrics>,
    ) -> Result<Self, reqwest::Error> {
        let client = callback::http_client(&config)?;
        Ok(Self {
            store,
            client,
            config,
            metrics,
        })
    }

    /// How long a claim keeps other workers off a row: longer than any
    /// attempt (a connection and a response, each within the time-out).
    fn lease_ms(&self) -> i64 {
        2 * i64::from(self.config.timeout_ms) + 30_000
    }

    /// Runs until `stop`: claims rows whenever `wake` is notified (this
    /// process enqueued some), a POST ended, or every poll interval
    /// (retries, rows of other processes). On `stop` it claims no more and
    /// waits for the POSTs in flight (each ends within the time-out).
    /// Database errors are logged and retried.
    pub async fn run(self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(u64::from(self.config.backoff_min_ms))
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut in_flight: JoinSet<String> = JoinSet::new();
        let mut per_host: HashMap<String, usize> = HashMap::new();
        let mut depth_read: Option<Instant> = None;
        let mut deferred_until: Option<Instant> = None;
        loop {
            let (more, deferred) = match self.fill(&mut in_flight, &mut per_host).await {
                Ok(filled) => filled,
                Err(error) => {
                    tracing::warn!(%error, "notify: cannot read the webhook outbox");
                    (false, false)
                }
            };
            // Rows given back for a busy host are due again soon: look
            // then rather than at the next poll.
            let busy_delay = Duration::from_millis(HOST_BUSY_DELAY_MS.unsigned_abs());
            if deferred {
                deferred_until = Some(Instant::now() + busy_delay);
            }
            let wait = match deferred_until {
                Some(until) if until > Instant::now() => until - Instant::now(),
                Some(_) => {
                    deferred_until = None;
                    Duration::ZERO
                }
                None => poll,
            };
            if depth_read.is_none_or(|at| at.elapsed() >= DEPTH_INTERVAL) {
                depth_read = Some(Instant::now());
                if let Ok(depth) = self.store.webhook_queue_depth().await {
                    self.metrics.queue_depth.store(depth, Ordering::Relaxed);
                }
            }
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    if let Ok(host) = done {
                        release_host(&mut per_host, &host);
                    }
                }
                () = wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|&stop| stop) => break,
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Claims as many due rows as there is room for and starts their
    /// POSTs. Returns whether it filled every free place (there may be
    /// more due), and whether it gave rows back for a busy host.
    async fn fill(
        &self,
        in_flight: &mut JoinSet<String>,
        per_host: &mut HashMap<String, usize>,
    ) -> Result<(bool, bool), crate::store::StoreError> {
        while let Some(done) = in_flight.try_join_next() {
            if let Ok(host) = done {
                release_host(per_host, &host);
            }
        }
        let free = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        if free == 0 {
            return Ok((false, false));
        }
        let token = claim_token();
        let now = now_ms();
        let claimed = self
            .store
            .claim_webhooks(
                now,
                self.lease_ms(),
                u32::try_from(free).unwrap_or(u32::MAX),
                token,
            )
            .await?;
        let full = claimed.len() == free;
        let mut given_back = 0;
        for row in claimed {
            let host = host_key(&row.url);
            let busy = per_host.entry(host.clone()).or_default();
            if *busy >= MAX_PER_HOST {
                given_back += 1;
                self.store
                    .release_webhook(row.id, token, now.saturating_add(HOST_BUSY_DELAY_MS))
                    .await?;
                continue;
            }
            *busy += 1;
            let attempt = Attempt {
                store: Arc::clone(&self.store),
                client: self.client.clone(),
                config: Arc::clone(&self.config),
                metrics: Arc::clone(&self.metrics),
                token,
            };
            in_flight.spawn(async move {
                attempt.run(row).await;
                host
            });
        }
        Ok((full && given_back == 0, given_back > 0))
    }
}

fn release_host(per_host: &mut HashMap<String, usize>, host: &str) {
    if let Some(n) = per_host.get_mut(host) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            per_host.remove(host);
        }
    }
}

/// One attempt at one row.
struct Attempt<S> {
    store: Arc<S>,
    client: reqwest::Client,
    config: Arc<NotifyConfig>,
    metrics: Arc<NotifyMetrics>,
    token: i64,
}

impl<S: NotifyStore> Attempt<S> {
    async fn run(self, row: ClaimedWebhook) {
        let started = Instant::now();
        let result = self.post(&row).await;
        self.metrics.observe_latency(started.elapsed());
        let outcome = match result {
            Ok(()) => {
                self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                WebhookOutcome::Delivered
            }
            Err(error) => {
                let permanent = matches!(
                    error,
                    CallbackError::InvalidUrl(_)
                        | CallbackError::Scheme { .. }
                        | CallbackError::NoHost
                );
                let error = error.to_string();
                if permanent || row.attempts >= self.config.max_attempts {
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        id = row.id,
                        subscription = row.subscription_id,
                        attempts = row.attempts,
                        %error,
                        "notify: webhook notification failed; giving up"
                    );
                    WebhookOutcome::Failed { error }
                } else {
                    self.metrics.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff_ms(
                        row.attempts,
                        self.config.backoff_min_ms,
                        self.config.backoff_max_ms,
                        jitter(),
                    );
                    tracing::info!(
                        id = row.id,
                        subscription = row.subscription_id,
                        attempts = row.attempts,
                        retry_in_ms = wait,
                        %error,
                        "notify: webhook notification failed; retrying"
                    );
                    WebhookOutcome::Retry {
                        next_attempt_ms: now_ms().saturating_add(wait),
                        error,
                    }
                }
            }
        };
        match self
            .store
            .finish_webhook(row.id, self.token, &outcome, now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id = row.id,
                "notify: the claim expired before the outcome was recorded"
            ),
            // The lease expires and the row is tried again.
            Err(error) => tracing::warn!(id = row.id, %error, "notify: cannot record the outcome"),
        }
    }

    async fn post(&self, row: &ClaimedWebhook) -> Result<(), CallbackError> {
        let url = callback::check_url(&self.config, &row.url)?;
        let now_s = now_ms() / 1000;
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Gridlink-Delivery", row.id.to_string());
        if let Some(token) = &row.bearer_token {
            request = request.bearer_auth(token);
        }
        let key = self
            .config
            .signing_key
            .as_deref()
            .or(row.bearer_token.as_deref());
        if let Some(key) = key {
            request = request.header(
                "X-Gridlink-Signature",
                signature(key.as_bytes(), now_s, row.body.as_bytes()),
            );
        }
        let response = request
            .body(row.body.clone())
            .send()
            .await
            .map_err(|e| callback::request_error(&self.config, &e))?;
        match callback::status_error(&response) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"7.what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        assert_eq!(
            signature(b"Jefe", 7, b"what do ya want for nothing?"),
            format!("t=7,v1={hex}")
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum() {
        assert_eq!(
            [1, 2, 3, 4, 5, 60].map(|a| backoff_ms(a, 100, 1000, 1.0)),
            [100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(
            [1, 2, 3, 4, 5, 60].map(|a| backoff_ms(a, 100, 1000, 0.0)),
            [50, 100, 200, 400, 500, 500]
        );
        assert_eq!(backoff_ms(1, 1000, 600_000, 0.5), 750);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn host_keys() {
        assert_eq!(host_key("https://a.example/x"), "a.example:443");
        assert_eq!(host_key("http://127.0.0.1:9000/x"), "127.0.0.1:9000");
        assert_eq!(host_key("nonsense"), "");
    }
}
