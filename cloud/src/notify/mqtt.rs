//! The MQTT notifier: publishes the notifications [`Notifier::send`]
//! queued on the topics the caller chose ([`super::topics`]).
//!
//! - Its own connection with the backend identity (mTLS, the options of
//!   [`crate::mqtt::mqtt_options`]) and client id `{mqtt.client_id}-notify`,
//!   a persistent session, QoS 1, not retained, JSON payloads.
//! - Between the API and the connection is a bounded queue
//!   (`openadr.notify.mqtt_queue`): when it is full (the broker is away
//!   for long), new notifications are dropped and counted
//!   (`gridlink_notify_mqtt_dropped_total`); the caller never waits. MQTT
//!   notifications are not stored: a subscriber that missed some reads
//!   the objects over the REST API, as OpenADR intends.
//! - After a lost connection it reconnects with a backoff (100 ms doubling
//!   up to 5 s) as dispatch does; rumqttc sends the publishes that were
//!   not yet acknowledged again on the new connection.
//!
//! [`Notifier::send`]: super::Notifier::send

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_protocol::MAX_PAYLOAD_BYTES;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::{mpsc, watch};

use super::{MqttNotification, NotifyMetrics};
use crate::mqtt::{MqttError, MqttSettings, mqtt_options};

/// Requests rumqttc queues between the publisher and its connection.
const REQUEST_CAPACITY: usize = 256;
/// QoS 1 messages in flight on the connection (AWS IoT's limit).
const INFLIGHT: u16 = 100;

/// The notifier's MQTT client id: ingest's with `-notify` (cut to the 128
/// characters a client id may have).
pub fn client_id(ingest_client_id: &str) -> String {
    let suffix = "-notify";
    let base: String = ingest_client_id.chars().take(128 - suffix.len()).collect();
    format!("{base}{suffix}")
}

/// The publisher's connection options (reads the backend's certificate
/// and key now, so `serve` fails at start when they are unreadable).
pub fn options(settings: &MqttSettings) -> Result<MqttOptions, MqttError> {
    let mut options = mqtt_options(settings, &client_id(&settings.client_id))?;
    options.set_manual_acks(false).set_inflight(INFLIGHT);
    Ok(options)
}

/// Publishes what arrives on `queue` until `stop` (or until every
/// [`Notifier`](super::Notifier) is gone).
pub async fn run(
    options: MqttOptions,
    mut queue: mpsc::Receiver<MqttNotification>,
    metrics: Arc<NotifyMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let poll_metrics = Arc::clone(&metrics);
    let connection = async move {
        let mut failures = 0u32;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    failures = 0;
                    poll_metrics.mqtt_connected.store(1, Ordering::Relaxed);
                    tracing::info!("notify: MQTT notifier connected");
                }
                Ok(Event::Incoming(Incoming::PubAck(_))) => {
                    poll_metrics.mqtt_published.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(error) => {
                    poll_metrics.mqtt_connected.store(0, Ordering::Relaxed);
                    let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
                        .min(Duration::from_secs(5));
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, ?delay, "notify: MQTT notifier lost the broker; reconnecting");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    };
    let publish = async {
        while let Some(notification) = queue.recv().await {
            let payload = match serde_json::to_vec(&notification.body) {
                Ok(payload) if payload.len() <= MAX_PAYLOAD_BYTES => payload,
                Ok(payload) => {
                    metrics.mqtt_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        topic = notification.topic,
                        bytes = payload.len(),
                        "notify: MQTT notification too large; dropped"
                    );
                    continue;
                }
                Err(error) => {
                    metrics.mqtt_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "notify: MQTT notification is not JSON; dropped");
                    continue;
                }
            };
            // Waits while rumqttc's own queue is full; the caller's queue
            // in front of it is what bounds memory and drops.
            if client
                .publish(notification.topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
        // Every Notifier is gone: nothing more to publish; keep the
        // connection for what is in flight until `stop`.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = connection => {}
        () = publish => {}
        _ = stop.wait_for(|&stop| stop) => {}
    }
    // The connection ends with this task; the broker keeps the persistent
    // session, and what was not acknowledged is lost (not stored).
    metrics.mqtt_connected.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_suffixed_and_bounded() {
        assert_eq!(client_id("gridlink-cloud-a"), "gridlink-cloud-a-notify");
        let long = "x".repeat(200);
        assert_eq!(client_id(&long).len(), 128);
        assert!(client_id(&long).ends_with("-notify"));
    }
}
