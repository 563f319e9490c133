//! Alerts: rules that watch what ingest committed and the VENs' state,
//! alerts that open and resolve with hold-down times, and their delivery
//! by webhook, e-mail and AWS SNS through a durable outbox.
//!
//! * [`rules`]: the rules as pure functions.
//! * [`engine::AlertEngine`]: feeds them from the [`Feed`](crate::feed)
//!   (telemetry, statuses) and a periodic scan (offline by silence, DR
//!   non-response), and calls [`raise`] / [`clear`].
//! * [`delivery`]: the worker that claims queued notifications and sends
//!   them, retrying with exponential backoff.
//!
//! Another rule (the projects feature's `project_milestone`) raises and
//! clears its alerts with the same two calls:
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::alerts::{self, AlertsConfig, Condition, Rule, Severity};
//!
//! let settings = AlertsConfig::default().settings();
//! let mut condition = Condition::new(
//!     Rule::ProjectMilestone, "project-3/generation-1MWh", Severity::Info,
//!     "project 3 generated 1 MWh",
//! );
//! condition.project_id = Some(3);
//! alerts::raise(&store, &settings, &condition, 1_795_000_000_000).await?;
//! alerts::clear(&store, &settings, Rule::ProjectMilestone, "project-3/generation-1MWh", 1_795_000_100_000).await?;
//! # Ok(()) }
//! ```
//!
//! # Hold-down
//!
//! A condition must be seen continuously for its rule's `open_after`
//! before an alert opens, and be clear for `resolve_after` before the
//! alert resolves; a condition that comes back while an alert is resolving
//! keeps it open. Both are kept in the database (`alert_conditions`,
//! `alerts.clear_since_ms`), so several `serve` processes share them, and
//! the database allows one open alert per (rule, subject).

pub mod config;
pub mod delivery;
pub mod engine;
mod metrics;
pub mod rules;

use std::collections::BTreeMap;
use std::time::Duration;

pub use config::{AlertsConfig, AlertsConfigError, ENV_VARS};
pub use engine::AlertEngine;
pub use metrics::AlertMetrics;

pub use crate::model::alerts::{
    Alert, AlertFilter, AlertState, Channel, Cleared, Condition, Raised, Rule, Severity,
};
pub(crate) use crate::model::clock::now_ms;
use crate::store::StoreError;
pub use crate::store::alerts::AlertStore;

/// The hold-down of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HoldDown {
    /// How long a condition must persist before its alert opens, ms.
    pub open_after_ms: i64,
    /// How long it must be clear before the alert resolves, ms.
    pub resolve_after_ms: i64,
}

/// Where webhooks go (`Debug` does not show the secret).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The URL the notifications are sent to by POST.
    pub url: String,
    /// The HMAC-SHA256 key.
    pub secret: String,
    /// Longest one POST may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Where e-mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSettings {
    /// SMTP server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Longest one message may take.
    pub timeout: Duration,
}

/// The SNS topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsSettings {
    /// Topic ARN.
    pub topic_arn: String,
    /// Endpoint override (moto in tests).
    pub endpoint_url: Option<String>,
}

/// Retries and pacing of the delivery worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Attempts per notification and channel before giving up.
    pub max_attempts: u32,
    /// Wait before the first retry, ms; doubled each time.
    pub backoff_initial_ms: i64,
    /// Longest wait between retries, ms.
    pub backoff_max_ms: i64,
    /// How often the worker looks for due notifications when not woken.
    pub poll_interval: Duration,
    /// How long a claim keeps other processes off a notification.
    pub lease_ms: i64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff_initial_ms: 5_000,
            backoff_max_ms: 3_600_000,
            poll_interval: Duration::from_secs(2),
            lease_ms: 120_000,
        }
    }
}

impl DeliverySettings {
    /// The wait after the `attempts`-th failed attempt: initial × 2^(attempts-1),
    /// at most the maximum.
    pub fn backoff_ms(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(40);
        self.backoff_initial_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.backoff_max_ms)
    }
}

/// What the engine and the delivery worker run with (built from
/// [`AlertsConfig::settings`], or directly in tests).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Time between scans.
    pub scan_interval: Duration,
    /// Silence that makes a VEN offline; `None`: inferred.
    pub offline_after_ms: Option<i64>,
    /// Reporting intervals of silence when inferred.
    pub offline_intervals: u32,
    /// Import-only meters: `meter` or `ven/meter`.
    pub import_only_meters: Vec<String>,
    /// Spike bound, W; `None`: off.
    pub spike_w: Option<f64>,
    /// Gap multiple; `None`: off.
    pub gap_intervals: Option<u32>,
    /// Time after an event's start by which VENs must acknowledge.
    pub dr_ack_grace_ms: i64,
    /// Shed at or below which an ended event raises `dr_no_shed`, W.
    pub dr_shed_min_w: f64,
    /// How long after an event's end its alerts are evaluated.
    pub dr_lookback_ms: i64,
    /// Hold-down per rule (a missing rule: none).
    pub hold: BTreeMap<Rule, HoldDown>,
    /// The channels notifications are queued for.
    pub channels: Vec<Channel>,
    /// The webhook, if configured.
    pub webhook: Option<WebhookSettings>,
    /// E-mail, if configured.
    pub email: Option<EmailSettings>,
    /// SNS, if configured.
    pub sns: Option<SnsSettings>,
    /// Retries.
    pub delivery: DeliverySettings,
}

impl AlertSettings {
    /// The hold-down of `rule`.
    pub fn hold(&self, rule: Rule) -> HoldDown {
        self.hold.get(&rule).copied().unwrap_or_default()
    }

    /// Whether `meter` of `ven_id` is declared import-only.
    pub fn is_import_only(&self, ven_id: &str, meter: &str) -> bool {
        self.import_only_meters
            .iter()
            .any(|entry| match entry.split_once('/') {
                Some((ven, m)) => ven == ven_id && m == meter,
                None => entry == meter,
            })
    }
}

/// Records that `condition` holds now: opens its alert once the rule's
/// `open_after` has passed (queueing its notifications), or keeps the open
/// one open.
pub async fn raise<S: AlertStore>(
    store: &S,
    settings: &AlertSettings,
    condition: &Condition,
    now_ms: i64,
) -> Result<Raised, StoreError> {
    let hold = settings.hold(condition.rule);
    store
        .raise_alert(condition, now_ms, hold.open_after_ms, &settings.channels)
        .await
}

/// Records that the condition of (`rule`, `subject`) is clear now: resolves
/// its alert once the rule's `resolve_after` has passed (queueing its
/// notifications).
pub async fn clear<S: AlertStore>(
    store: &S,
    settings: &AlertSettings,
    rule: Rule,
    subject: &str,
    now_ms: i64,
) -> Result<Cleared, StoreError> {
    let hold = settings.hold(rule);
    store
        .clear_alert(
            rule,
            subject,
            now_ms,
            hold.resolve_after_ms,
            &settings.channels,
        )
        .await
}

/// The alert engine and the delivery worker over `store`, as one task for
/// `serve`'s task set that runs until `stop`; `None` when
/// `config.enabled` is false. Fails if a sender cannot be built (the
/// webhook's HTTP client).
pub async fn service<S: crate::store::Store + 'static>(
    store: &std::sync::Arc<S>,
    config: &AlertsConfig,
    metrics: &std::sync::Arc<AlertMetrics>,
    feed: &crate::feed::Feed,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<impl Future<Output = (&'static str, anyhow::Result<()>)> + Send + use<S>>>
{
    use std::sync::Arc;

    if !config.enabled {
        return Ok(None);
    }
    let settings = Arc::new(config.settings());
    let senders = delivery::Senders::from_settings(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("starting alert delivery: {e}"))?;
    let engine = AlertEngine::new(
        Arc::clone(store),
        Arc::clone(&settings),
        Arc::clone(metrics),
    );
    let wake = engine.delivery_wake();
    let worker = delivery::DeliveryWorker::new(
        Arc::clone(store),
        Arc::clone(&settings),
        Arc::clone(metrics),
        senders,
    );
    tracing::info!(
        channels = ?settings.channels,
        scan_interval = ?settings.scan_interval,
        "alerts running"
    );
    let (feed, engine_stop, worker_stop) = (feed.subscribe(), stop.clone(), stop.clone());
    Ok(Some(async move {
        tokio::join!(engine.run(feed, engine_stop), worker.run(wake, worker_stop));
        ("alerts", Ok(()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let d = DeliverySettings {
            backoff_initial_ms: 100,
            backoff_max_ms: 1000,
            ..DeliverySettings::default()
        };
        assert_eq!(
            [1, 2, 3, 4, 5, 60].map(|a| d.backoff_ms(a)),
            [100, 200, 400, 800, 1000, 1000]
        );
    }

    #[test]
    fn import_only_meters_by_name_or_ven() {
        let mut s = AlertsConfig::default().settings();
        s.import_only_meters = vec!["main".into(), "ven-2/grid".into()];
        assert!(s.is_import_only("ven-1", "main"));
        assert!(s.is_import_only("ven-2", "grid"));
        assert!(!s.is_import_only("ven-1", "grid"));
    }

    #[test]
    fn metrics_render_every_channel() {
        let m = AlertMetrics::default();
        m.count(Channel::Webhook, 2, true, false);
        let text = m.render();
        assert!(text.contains("gridlink_alert_notifications_sent_total{channel=\"webhook\"} 1"));
        assert!(text.contains("gridlink_alert_notifications_retries_total{channel=\"webhook\"} 1"));
        assert!(text.contains("gridlink_alert_notifications_sent_total{channel=\"sns\"} 0"));
    }
}
