//! Dispatch: publishes the commands of the outbox (`command_outbox`, see
//! `store::dr`) on `ven/cmd/{venId}` and marks each sent when the broker
//! acknowledges it.
//!
//! - The commands were written in the transaction that created, changed or
//!   deleted their event, so once the API answered they are durable; this
//!   task only moves them to the broker.
//! - It connects with the backend identity (mTLS, as ingest) under its own
//!   client id (`{mqtt.client_id}-dispatch`), on a persistent session, and
//!   publishes at QoS 1, not retained. The VENs' persistent sessions queue
//!   a command at the broker while the VEN is offline.
//! - A row is marked sent only on the broker's PUBACK. After a reconnect
//!   or a restart every unsent row is published again, so a VEN may get a
//!   command twice; it recognises the `command_id` (strictly increasing per
//!   VEN).
//! - It wakes when the API committed commands (a [`Notify`]), after each
//!   (re)connection, and every [`SWEEP_INTERVAL`] as a safety net.
//! - At most [`MAX_OUTSTANDING`] commands are between the outbox and a
//!   PUBACK at once; rumqttc keeps at most 100 of them in flight, as AWS
//!   IoT Core allows per connection.

mod metrics;
pub mod response;

pub use metrics::DispatchMetrics;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_protocol::{Topic, VenId};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{Notify, mpsc, watch};

use crate::model::clock::now_ms;
use crate::mqtt::{MqttError, MqttSettings, mqtt_options};
use crate::store::Store;

/// Longest the dispatcher waits between two looks at the outbox.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Most commands published and not yet acknowledged by the broker.
pub const MAX_OUTSTANDING: usize = 2000;
/// Queued MQTT requests (more than [`MAX_OUTSTANDING`], so never full).
const REQUEST_CAPACITY: usize = MAX_OUTSTANDING + 64;
/// QoS 1 messages in flight on the connection (AWS IoT's limit).
const INFLIGHT: u16 = 100;

/// The dispatcher's MQTT client id: ingest's with `-dispatch` (cut to the
/// 128 characters a client id may have).
pub fn client_id(ingest_client_id: &str) -> String {
    let suffix = "-dispatch";
    let keep = 128 - suffix.len();
    let base: String = ingest_client_id.chars().take(keep).collect();
    format!("{base}{suffix}")
}

enum Signal {
    Connected,
    Published(u16),
    Acknowledged(u16),
    Lost(String),
}

/// The dispatcher, ready to run: its MQTT options are built (and the
/// backend's certificate and key read) when it is made, so `serve` fails
/// at start, not later, when they are unreadable.
#[derive(Debug)]
pub struct Dispatcher {
    options: rumqttc::MqttOptions,
}

impl Dispatcher {
    /// Reads the backend identity of `settings`; the client id is
    /// [`client_id`] of ingest's.
    pub fn new(settings: &MqttSettings) -> Result<Self, MqttError> {
        let mut options = mqtt_options(settings, &client_id(&settings.client_id))?;
        options.set_manual_acks(false).set_inflight(INFLIGHT);
        Ok(Self { options })
    }

    /// Runs until `shutdown` turns true.
    pub async fn run<S: Store + 'static>(
        self,
        store: Arc<S>,
        wake: Arc<Notify>,
        metrics: Arc<DispatchMetrics>,
        shutdown: watch::Receiver<bool>,
    ) {
        run(self.options, store, wake, metrics, shutdown).await;
    }
}

async fn run<S: Store + 'static>(
    options: rumqttc::MqttOptions,
    store: Arc<S>,
    wake: Arc<Notify>,
    metrics: Arc<DispatchMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), REQUEST_CAPACITY);
        let (tx, rx) = mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                let signal = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Signal::Connected,
                    Ok(Event::Incoming(Packet::PubAck(ack))) => Signal::Acknowledged(ack.pkid),
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Signal::Published(pkid),
                    Ok(_) => continue,
                    Err(error) => {
                        let _ = tx.send(Signal::Lost(error.to_string()));
                        return;
                    }
                };
                if tx.send(signal).is_err() {
                    return;
                }
            }
        });
        let mut connection = Connection {
            store: Arc::clone(&store),
            client,
            metrics: Arc::clone(&metrics),
            connected: false,
            awaiting_pkid: VecDeque::new(),
            in_flight: std::collections::HashMap::new(),
            outstanding: HashSet::new(),
            acked: Vec::new(),
            more: false,
            refill: false,
        };
        let lost = connection
            .run(rx, &wake, &mut shutdown, &mut failures)
            .await;
        metrics.connected.store(0, Ordering::Relaxed);
        let _ = connection.client.try_disconnect();
        poller.abort();
        // Whatever was acknowledged is recorded before the next connection.
        connection.flush_acked().await;
        let Some(reason) = lost else { return };
        let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
            .min(Duration::from_secs(5));
        failures = failures.saturating_add(1);
        tracing::warn!(
            error = reason,
            ?delay,
            "dispatch lost the broker; reconnecting"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|&stop| stop) => return,
        }
    }
}

type Key = (VenId, u64);

struct Connection<S> {
    store: Arc<S>,
    client: AsyncClient,
    metrics: Arc<DispatchMetrics>,
    connected: bool,
    /// Publishes handed to rumqttc, waiting for their packet id (rumqttc
    /// assigns ids in request order).
    awaiting_pkid: VecDeque<Key>,
    in_flight: std::collections::HashMap<u16, Key>,
    /// Everything published on this connection and not yet marked sent.
    outstanding: HashSet<Key>,
    /// Acknowledged, not yet marked sent in the store.
    acked: Vec<Key>,
    /// The last look at the outbox found more than there was room for.
    more: bool,
    /// Look at the outbox after handling the signals at hand.
    refill: bool,
}

impl<S: Store> Connection<S> {
    /// Serves one connection; `Some(reason)` when it is lost, `None` on
    /// shutdown.
    async fn run(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Signal>,
        wake: &Notify,
        shutdown: &mut watch::Receiver<bool>,
        failures: &mut u32,
    ) -> Option<String> {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            let fill;
            tokio::select! {
                signal = rx.recv() => {
                    let Some(signal) = signal else { return Some("event loop ended".into()) };
                    if let Some(lost) = self.handle(signal, failures) {
                        return Some(lost);
                    }
                    while let Ok(signal) = rx.try_recv() {
                        if let Some(lost) = self.handle(signal, failures) {
                            return Some(lost);
                        }
                    }
                    fill = self.refill;
                    self.refill = false;
                }
                () = wake.notified() => fill = true,
                _ = sweep.tick() => fill = true,
                _ = shutdown.wait_for(|&stop| stop) => return None,
            }
            self.flush_acked().await;
            if fill && self.connected {
                self.publish_unsent().await;
            }
        }
    }

    fn handle(&mut self, signal: Signal, failures: &mut u32) -> Option<String> {
        match signal {
            Signal::Connected => {
                *failures = 0;
                self.connected = true;
                self.refill = true;
                self.metrics.connected.store(1, Ordering::Relaxed);
                tracing::info!("dispatch connected to the broker");
            }
            Signal::Published(pkid) => {
                if let Some(key) = self.awaiting_pkid.pop_front() {
                    self.in_flight.insert(pkid, key);
                }
            }
            Signal::Acknowledged(pkid) => {
                if let Some(key) = self.in_flight.remove(&pkid) {
                    self.metrics.acknowledged.fetch_add(1, Ordering::Relaxed);
                    self.acked.push(key);
                    self.refill |= self.more;
                }
            }
            Signal::Lost(reason) => return Some(reason),
        }
        None
    }

    /// Marks acknowledged commands sent; kept for the next try if the
    /// database refuses (they are not republished meanwhile).
    async fn flush_acked(&mut self) {
        if self.acked.is_empty() {
            return;
        }
        match self.store.mark_sent(&self.acked, now_ms()).await {
            Ok(()) => {
                for key in self.acked.drain(..) {
                    self.outstanding.remove(&key);
                }
            }
            Err(error) => {
                tracing::warn!(%error, commands = self.acked.len(), "cannot mark commands sent; retrying");
            }
        }
    }

    /// Publishes unsent commands not already outstanding on this connection.
    async fn publish_unsent(&mut self) {
        let room = MAX_OUTSTANDING.saturating_sub(self.outstanding.len());
        if room == 0 {
            return;
        }
        let limit = u32::try_from(room + self.outstanding.len()).unwrap_or(u32::MAX);
        let unsent = match self.store.unsent_commands(limit).await {
            Ok(unsent) => unsent,
            Err(error) => {
                tracing::warn!(%error, "cannot read the command outbox; retrying");
                return;
            }
        };
        self.more = unsent.len() >= limit as usize;
        for command in unsent {
            let key = (command.ven_id.clone(), command.command_id);
            if self.outstanding.contains(&key) {
                continue;
            }
            let topic = Topic::cmd(command.ven_id).to_string();
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, command.payload)
            {
                Ok(()) => {
                    self.metrics.published.fetch_add(1, Ordering::Relaxed);
                    self.awaiting_pkid.push_back(key.clone());
                    self.outstanding.insert(key);
                }
                Err(error) => {
                    tracing::debug!(%error, "the MQTT request queue is full; publishing the rest later");
                    break;
                }
            }
            if self.outstanding.len() >= MAX_OUTSTANDING {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_suffixed_and_bounded() {
        assert_eq!(client_id("gridlink-cloud-h1"), "gridlink-cloud-h1-dispatch");
        let long = "x".repeat(200);
        assert_eq!(client_id(&long).len(), 128);
        assert!(client_id(&long).ends_with("-dispatch"));
    }
}
