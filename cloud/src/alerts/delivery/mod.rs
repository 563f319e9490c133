//! The delivery worker: claims queued notifications from the outbox
//! (`alert_deliveries`), sends each to its channel, and records the
//! outcome: delivered, retried after an exponential backoff, or given up
//! after `max_attempts`. Everything it needs is in the database, so a
//! restart resumes where it stopped, and several `serve` processes share
//! the work (a claim is a lease: a process that dies mid-send leaves the
//! row to be retried when the lease expires; the channel may then see it
//! twice, so webhooks carry `X-Gridlink-Delivery`).

pub mod smtp;
pub mod sns;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::{Notify, watch};

use super::{AlertMetrics, AlertSettings, AlertStore, Channel};
use crate::store::StoreError;
use crate::store::alerts::{Alert, Delivery, DeliveryOutcome};

/// Most notifications claimed at once.
const CLAIM_BATCH: u32 = 16;

/// The senders of the configured channels.
#[derive(Debug, Default, Clone)]
pub struct Senders {
    /// The webhook.
    pub webhook: Option<webhook::WebhookSender>,
    /// E-mail.
    pub email: Option<smtp::SmtpSender>,
    /// SNS.
    pub sns: Option<sns::SnsSender>,
}

impl Senders {
    /// The senders `settings` configure (SNS reads the AWS configuration).
    pub async fn from_settings(settings: &AlertSettings) -> Result<Self, reqwest::Error> {
        let webhook = settings
            .webhook
            .clone()
            .map(webhook::WebhookSender::new)
            .transpose()?;
        let email = settings.email.clone().map(smtp::SmtpSender::new);
        let sns = match &settings.sns {
            Some(sns) => Some(sns::SnsSender::connect(sns).await),
            None => None,
        };
        Ok(Self {
            webhook,
            email,
            sns,
        })
    }
}

/// Sends what the outbox holds.
pub struct DeliveryWorker<S> {
    store: Arc<S>,
    settings: Arc<AlertSettings>,
    metrics: Arc<AlertMetrics>,
    senders: Senders,
}

impl<S: AlertStore> DeliveryWorker<S> {
    /// A worker over `store` with the given senders.
    pub fn new(
        store: Arc<S>,
        settings: Arc<AlertSettings>,
        metrics: Arc<AlertMetrics>,
        senders: Senders,
    ) -> Self {
        Self {
            store,
            settings,
            metrics,
            senders,
        }
    }

    /// One round at `now_ms`: claims due notifications and tries each once.
    /// Returns how many were tried.
    pub async fn deliver_due(&self, now_ms: i64) -> Result<usize, StoreError> {
        let claimed = self
            .store
            .claim_deliveries(now_ms, self.settings.delivery.lease_ms, CLAIM_BATCH)
            .await?;
        for delivery in &claimed {
            let result = self.send(delivery, now_ms).await;
            let delivery_settings = &self.settings.delivery;
            let outcome = match result {
                Ok(()) => DeliveryOutcome::Delivered,
                Err(error) if delivery.attempts >= delivery_settings.max_attempts => {
                    let error = error.to_string();
                    tracing::warn!(
                        id = delivery.id,
                        channel = delivery.channel.as_str(),
                        attempts = delivery.attempts,
                        %error,
                        "alert notification given up"
                    );
                    DeliveryOutcome::GiveUp { error }
                }
                Err(error) => {
                    let error = error.to_string();
                    let wait = delivery_settings.backoff_ms(delivery.attempts);
                    tracing::info!(
                        id = delivery.id,
                        channel = delivery.channel.as_str(),
                        attempts = delivery.attempts,
                        retry_in_ms = wait,
                        %error,
                        "alert notification failed; retrying"
                    );
                    DeliveryOutcome::Retry {
                        next_attempt_ms: super::now_ms().max(now_ms).saturating_add(wait),
                        error,
                    }
                }
            };
            self.metrics.count(
                delivery.channel,
                delivery.attempts,
                outcome == DeliveryOutcome::Delivered,
                matches!(outcome, DeliveryOutcome::GiveUp { .. }),
            );
            self.store
                .finish_delivery(delivery.id, &outcome, super::now_ms().max(now_ms))
                .await?;
        }
        Ok(claimed.len())
    }

    async fn send(&self, delivery: &Delivery, now_ms: i64) -> Result<(), DeliveryError> {
        let notification: serde_json::Value =
            serde_json::from_str(&delivery.payload).map_err(DeliveryError::NotJson)?;
        match delivery.channel {
            Channel::Webhook => {
                let sender = self
                    .senders
                    .webhook
                    .as_ref()
                    .ok_or(DeliveryError::NotConfigured)?;
                sender
                    .send(delivery.id, &delivery.payload, now_ms / 1000)
                    .await
            }
            Channel::Email => {
                let sender = self
                    .senders
                    .email
                    .as_ref()
                    .ok_or(DeliveryError::NotConfigured)?;
                let alert = alert_of(&notification)?;
                sender.send(&delivery.kind, &alert, now_ms).await
            }
            Channel::Sns => {
                let sender = self
                    .senders
                    .sns
                    .as_ref()
                    .ok_or(DeliveryError::NotConfigured)?;
                let alert = alert_of(&notification)?;
                let (subject, _) = smtp::compose(&delivery.kind, &alert);
                sender.send(&subject, &delivery.payload).await
            }
        }
    }

    /// Runs until `stop`: delivers what is due whenever `wake` is notified
    /// (an alert opened or resolved in this process) or every
    /// `poll_interval` (retries, and notifications queued by other
    /// processes). Database errors are logged and retried.
    pub async fn run(self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        loop {
            match self.deliver_due(super::now_ms()).await {
                Ok(n) if n == CLAIM_BATCH as usize => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "alert delivery: cannot read the outbox"),
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(self.settings.delivery.poll_interval) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// Why one notification was not delivered; stored as the delivery's
/// `last_error` and logged. Every variant is retried until the attempts
/// run out.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The stored notification does not parse.
    #[error("stored notification is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The stored notification's `alert` lacks a field or has a bad one.
    #[error("stored notification: bad alert.{0}")]
    BadAlert(&'static str),
    /// The delivery's channel has no sender (configured no more).
    #[error("the channel is not configured (any more)")]
    NotConfigured,
    /// The SMTP transaction did not finish in time.
    #[error("SMTP timed out after {0:?}")]
    SmtpTimeout(std::time::Duration),
    /// The SMTP server cannot be reached.
    #[error("cannot connect to {host}:{port}: {source}")]
    SmtpConnect {
        /// The server's host.
        host: String,
        /// The server's port.
        port: u16,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Reading or writing the SMTP connection failed at `step`.
    #[error("SMTP {step}: {source}")]
    SmtpIo {
        /// The step (`EHLO`, `MAIL FROM`, ...).
        step: &'static str,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The SMTP server closed the connection at `step`.
    #[error("SMTP {0}: the server closed the connection")]
    SmtpClosed(&'static str),
    /// The SMTP server refused `step` with `reply`.
    #[error("SMTP {step} refused: {reply}")]
    SmtpRefused {
        /// The step (`EHLO`, `MAIL FROM`, ...).
        step: &'static str,
        /// The server's reply (at most about 1 KiB).
        reply: String,
    },
    /// SNS refused the publish, or could not be reached.
    #[error("SNS Publish failed: {}", aws_sdk_sns::error::DisplayErrorContext(.0.as_ref()))]
    Sns(#[source] Box<aws_sdk_sns::error::SdkError<aws_sdk_sns::operation::publish::PublishError>>),
    /// The webhook's POST failed (connection, time-out).
    #[error("POST failed: {0}")]
    WebhookPost(#[source] reqwest::Error),
    /// The webhook answered with a status other than 2xx.
    #[error("the webhook answered {0}")]
    WebhookStatus(reqwest::StatusCode),
}

/// The alert inside a stored notification.
fn alert_of(notification: &serde_json::Value) -> Result<Alert, DeliveryError> {
    let a = &notification["alert"];
    let text = |key: &str| a[key].as_str().map(str::to_owned);
    let bad = DeliveryError::BadAlert;
    Ok(Alert {
        id: a["id"].as_i64().ok_or(bad("id"))?,
        rule: text("rule")
            .and_then(|r| super::Rule::from_name(&r))
            .ok_or(bad("rule"))?,
        severity: text("severity")
            .and_then(|s| super::Severity::from_name(&s))
            .ok_or(bad("severity"))?,
        subject: text("subject").ok_or(bad("subject"))?,
        ven_id: text("ven_id"),
        event_id: text("event_id"),
        project_id: a["project_id"].as_i64(),
        state: if a["state"] == "resolved" {
            super::AlertState::Resolved
        } else {
            super::AlertState::Open
        },
        opened_ms: a["opened_ms"].as_i64().ok_or(bad("opened_ms"))?,
        resolved_ms: a["resolved_ms"].as_i64(),
        acknowledged_ms: a["acknowledged_ms"].as_i64(),
        acknowledged_by: text("acknowledged_by"),
        message: text("message").unwrap_or_default(),
        details: a["details"].clone(),
    })
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_the_stored_text() {
        let cases = [
            (
                DeliveryError::NotConfigured,
                "the channel is not configured (any more)",
            ),
            (
                DeliveryError::BadAlert("id"),
                "stored notification: bad alert.id",
            ),
            (
                DeliveryError::SmtpTimeout(std::time::Duration::from_secs(10)),
                "SMTP timed out after 10s",
            ),
            (
                DeliveryError::SmtpConnect {
                    host: "mx".into(),
                    port: 25,
                    source: std::io::Error::other("refused"),
                },
                "cannot connect to mx:25: refused",
            ),
            (
                DeliveryError::SmtpIo {
                    step: "EHLO",
                    source: std::io::Error::other("reset"),
                },
                "SMTP EHLO: reset",
            ),
            (
                DeliveryError::SmtpClosed("DATA"),
                "SMTP DATA: the server closed the connection",
            ),
            (
                DeliveryError::SmtpRefused {
                    step: "RCPT TO",
                    reply: "550 no such user".into(),
                },
                "SMTP RCPT TO refused: 550 no such user",
            ),
            (
                DeliveryError::WebhookStatus(reqwest::StatusCode::BAD_GATEWAY),
                "the webhook answered 502 Bad Gateway",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        let not_json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let expected = format!("stored notification is not JSON: {not_json}");
        assert_eq!(DeliveryError::NotJson(not_json).to_string(), expected);
        assert_eq!(
            alert_of(&serde_json::json!({"alert": {}}))
                .unwrap_err()
                .to_string(),
            "stored notification: bad alert.id"
        );
    }
}
