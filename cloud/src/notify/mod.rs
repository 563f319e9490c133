//! OpenADR 3.1 notifications: the delivery layer under `/subscriptions`
//! and `/notifiers`. The API decides who is told what (subscriptions,
//! privacy rules) and hands the result to a [`Notifier`]:
//!
//! * webhooks ([`WebhookDelivery`]) go to a durable outbox
//!   (`store::notify`, one transaction per [`Notifier::send`]) and are
//!   sent by POST by the [`webhook`] worker, retried with backoff, leased so
//!   several `serve` processes share the work;
//! * MQTT notifications ([`MqttNotification`]) go through a bounded queue
//!   to the [`mqtt`] publisher (a full queue drops and counts; the caller
//!   never waits), on the topics of [`topics`];
//! * [`verify_callback`] is the URL policy and the spec's echo challenge
//!   a subscription's `callbackUrl` must pass ([`callback`]).
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<gridlink_cloud::store::AnyStore>) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use gridlink_cloud::notify::{self, MqttNotification, NotifyConfig, NotifyMetrics, WebhookDelivery, topics};
//!
//! let (stop_tx, stop) = tokio::sync::watch::channel(false);
//! let mut tasks = tokio::task::JoinSet::new();
//! let config = NotifyConfig::default();
//! let notifier = notify::spawn(&mut tasks, store, &config, None, Arc::new(NotifyMetrics::default()), &stop)?;
//! notify::verify_callback(&config, "https://ven.example.com/cb").await?;
//! let body = serde_json::json!({"objectType": "EVENT", "operation": "POST", "object": {}});
//! notifier.send(
//!     vec![WebhookDelivery {
//!         subscription_id: "sub-1".into(),
//!         url: "https://ven.example.com/cb".into(),
//!         bearer_token: Some("ven-token".into()),
//!         body: body.clone(),
//!     }],
//!     vec![MqttNotification { topic: topics::events(topics::Op::Create), body }],
//! ).await?;
//! stop_tx.send(true)?;
//! while tasks.join_next().await.is_some() {}
//! # Ok(()) }
//! ```

pub mod callback;
pub mod config;
mod metrics;
pub mod mqtt;
pub mod topics;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

pub use callback::{CallbackError, verify_callback};
pub use config::{NotifyConfig, NotifyConfigError};
pub use metrics::NotifyMetrics;

use crate::model::clock::now_ms;
use crate::mqtt::{MqttError, MqttSettings};
use crate::store::notify::{NewWebhook, NotifyStore};
use crate::store::{AnyStore, StoreError};

/// One webhook notification to send (the body is the OpenADR
/// `notification` JSON object).
#[derive(Clone, PartialEq)]
pub struct WebhookDelivery {
    /// The subscription it is for.
    pub subscription_id: String,
    /// The subscription's `callbackUrl`.
    pub url: String,
    /// The subscription's `bearerToken`, sent as `Authorization: Bearer`.
    pub bearer_token: Option<String>,
    /// The `notification` object, sent by POST as JSON.
    pub body: serde_json::Value,
}

impl std::fmt::Debug for WebhookDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDelivery")
            .field("subscription_id", &self.subscription_id)
            .field("url", &self.url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("body", &self.body)
            .finish()
    }
}

/// One MQTT notification (topic chosen by the caller, JSON body).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttNotification {
    /// The topic, e.g. [`topics::ven_events`].
    pub topic: String,
    /// The `notification` object, published as JSON.
    pub body: serde_json::Value,
}

/// Hands notifications to the outbox and the MQTT publisher. Cheap to
/// clone; held in the API state.
#[derive(Clone)]
pub struct Notifier {
    store: Arc<AnyStore>,
    wake: Arc<Notify>,
    mqtt: Option<mpsc::Sender<MqttNotification>>,
    metrics: Arc<NotifyMetrics>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("mqtt", &self.mqtt.is_some())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A Notifier that only stores webhooks (no MQTT publisher; MQTT
    /// notifications are counted as dropped), for tests and for `mqtt`
    /// disabled. No worker is woken: whichever worker shares the database
    /// finds the rows at its next poll.
    pub fn store_only(store: Arc<AnyStore>, metrics: Arc<NotifyMetrics>) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
            mqtt: None,
            metrics,
        }
    }

    /// Durably enqueues the webhooks (one transaction), wakes the worker,
    /// hands the MQTT ones to the publisher (bounded queue; a full queue
    /// drops and counts, never blocks the caller). When the webhooks
    /// cannot be stored the error is returned and no MQTT notification is
    /// handed on, so the caller may retry the whole call.
    pub async fn send(
        &self,
        webhooks: Vec<WebhookDelivery>,
        mqtt: Vec<MqttNotification>,
    ) -> Result<(), StoreError> {
        if !webhooks.is_empty() {
            let rows: Vec<NewWebhook> = webhooks
                .into_iter()
                .map(|w| NewWebhook {
                    body: w.body.to_string(),
                    subscription_id: w.subscription_id,
                    url: w.url,
                    bearer_token: w.bearer_token,
                })
                .collect();
            // Durable from here: the rows are committed.
            self.store.enqueue_webhooks(&rows, now_ms()).await?;
            self.wake.notify_one();
        }
        for notification in mqtt {
            let handed = self
                .mqtt
                .as_ref()
                .is_some_and(|queue| queue.try_send(notification).is_ok());
            if !handed {
                self.metrics.mqtt_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `[openadr.notify]` cannot work.
    #[error("openadr.notify: {0}")]
    Config(#[from] NotifyConfigError),
    /// The HTTP client of the webhook worker cannot be built.
    #[error("webhook HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The MQTT publisher's certificate or key cannot be read.
    #[error("MQTT notifier: {0}")]
    Mqtt(#[from] MqttError),
}

/// The task set of `serve`: each task names itself and says how it ended.
pub type Tasks = JoinSet<(&'static str, anyhow::Result<()>)>;

/// Starts the webhook worker and (if given `mqtt`) the MQTT publisher in
/// `tasks`, the task set `serve` supervises; both stop when `stop` turns
/// true (the worker after the POSTs in flight end, each within the
/// time-out). Returns the [`Notifier`] that feeds them. Fails, starting
/// nothing, if the config cannot work or the MQTT identity cannot be read.
pub fn spawn(
    tasks: &mut Tasks,
    store: Arc<AnyStore>,
    config: &NotifyConfig,
    mqtt: Option<&MqttSettings>,
    metrics: Arc<NotifyMetrics>,
    stop: &watch::Receiver<bool>,
) -> Result<Notifier, NotifyError> {
    config.check()?;
    let config = Arc::new(config.clone());
    let worker = webhook::WebhookWorker::new(
        Arc::clone(&store),
        Arc::clone(&config),
        Arc::clone(&metrics),
    )?;
    let publisher = mqtt.map(mqtt::options).transpose()?;
    let wake = Arc::new(Notify::new());
    let queue = publisher.map(|options| {
        let capacity = usize::try_from(config.mqtt_queue).unwrap_or(usize::MAX);
        let (tx, rx) = mpsc::channel(capacity);
        let run = mqtt::run(options, rx, Arc::clone(&metrics), stop.clone());
        tasks.spawn(async move {
            run.await;
            ("notify-mqtt", Ok(()))
        });
        tx
    });
    tracing::info!(
        mqtt = queue.is_some(),
        allow_http = config.allow_http,
        allow_private = config.allow_private,
        "notify running"
    );
    let run = worker.run(Arc::clone(&wake), stop.clone());
    tasks.spawn(async move {
        run.await;
        ("notify-webhooks", Ok(()))
    });
    Ok(Notifier {
        store,
        wake,
        mqtt: queue,
        metrics,
    })
}
