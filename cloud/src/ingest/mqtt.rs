//! MQTT ingest: consumes VEN telemetry, status and load snapshots from the
//! broker and stores them, acknowledging each message only after what it
//! carries is committed.
//!
//! - The client uses the `backend` certificate, a persistent session and
//!   plain subscriptions (`oadr/meter/+`, `ven/status/+`, `ven/loads/+`,
//!   `ven/ack/+`), so a restarted process gets what arrived while it was
//!   away, also across a broker restart. With a share group (for brokers
//!   that keep shared subscriptions in persistent sessions, see
//!   `mqtt.shared_subscriptions_persist`) several `serve` processes split
//!   the VENs' messages (`$share/{group}/oadr/meter/+`).
//! - No poison messages: the client reads every packet the broker may
//!   deliver (`mqtt.max_packet_bytes`), so one oversized message is dropped
//!   and acknowledged below instead of breaking the connection (rumqttc
//!   disconnects on a packet over its limit, and the broker would send the
//!   same message again at every reconnect).
//! - Manual acknowledgements: a PUBACK goes out only after the database
//!   transaction holding the message's rows committed. If the database is
//!   down, writes are retried with backoff and nothing is acknowledged;
//!   the broker holds the rest (at most its in-flight window is out at once)
//!   and redelivers after a reconnect.
//! - Telemetry from many messages is grouped (by count and time) into one
//!   transaction. `(ven_id, batch_seq)` already stored is acknowledged and
//!   skipped, so redeliveries and agent retransmissions are harmless.
//! - Anything malformed, oversized, on a foreign topic, or whose payload's
//!   ven id differs from the topic's is dropped, counted by reason, logged
//!   at most once per VEN and reason per minute, and acknowledged (a message
//!   that can never be stored must not be redelivered forever).
//!
//! Acknowledgements carry the connection generation they belong to: after
//! a reconnect, packet ids start over, so an acknowledgement for a message
//! of an earlier connection is not sent (the broker redelivers that message
//! and the store skips it as a duplicate).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridlink_protocol::{
    CommandAck, DecodeError, LoadSnapshot, MAX_PAYLOAD_BYTES, Status, TelemetryBatch, Topic,
    TopicKind, VenId, decode,
};
use rumqttc::{AsyncClient, Event, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};

use super::metrics::{DropReason, IngestMetrics};
use crate::feed::Feed;
use crate::model::clock::now_ms;
use crate::mqtt::{MqttError, MqttSettings, mqtt_options};
use crate::store::dr::AckOutcome;
use crate::store::{IngestBatch, Store, StoreError};

/// Messages between the MQTT task and the writer. The broker sends at most
/// its in-flight window of unacknowledged messages, so this never fills in
/// practice; if it does, the MQTT task waits.
const CHANNEL: usize = 4096;
/// How often a drop is logged per VEN (or topic) and reason.
const DROP_LOG_INTERVAL: Duration = Duration::from_mins(1);

/// Everything ingest needs: the broker connection and how messages are
/// grouped into transactions.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The broker connection (shared with dispatch, the shadow service and
    /// the export's lease).
    pub mqtt: MqttSettings,
    /// Most telemetry messages per database transaction.
    pub max_batches: usize,
    /// Longest a message waits for its group to fill.
    pub max_delay: Duration,
    /// Drop data from VENs the store does not know.
    pub refuse_unknown_vens: bool,
}

/// A message on its way from the MQTT task to the writer.
struct Incoming {
    publish: Publish,
    generation: u64,
    received_ms: i64,
}

/// Runs ingest until `shutdown` turns true: the MQTT task receives, the
/// writer groups, stores and acknowledges.
pub async fn run<S: Store + 'static>(
    settings: IngestSettings,
    store: Arc<S>,
    metrics: Arc<IngestMetrics>,
    feed: Feed,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), MqttError> {
    let options = mqtt_options(&settings.mqtt, &settings.mqtt.client_id)?;
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let generation = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<Incoming>(CHANNEL);

    let filters: Vec<String> = [
        TopicKind::Meter,
        TopicKind::Status,
        TopicKind::Loads,
        TopicKind::Ack,
    ]
    .into_iter()
    .map(|kind| {
        if settings.mqtt.share_group.is_empty() {
            kind.wildcard_filter()
        } else {
            kind.shared_filter(&settings.mqtt.share_group)
        }
    })
    .collect();
    let mqtt_metrics = Arc::clone(&metrics);
    let mqtt_generation = Arc::clone(&generation);
    let subscriber = client.clone();
    let mut mqtt_shutdown = shutdown.clone();
    let mqtt = tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                _ = mqtt_shutdown.wait_for(|&stop| stop) => return,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    failures = 0;
                    let generation = mqtt_generation.fetch_add(1, Ordering::SeqCst) + 1;
                    mqtt_metrics.mqtt_connected.store(1, Ordering::Relaxed);
                    tracing::info!(
                        session_present = ack.session_present,
                        generation,
                        "ingest connected to the broker"
                    );
                    for filter in &filters {
                        if let Err(error) =
                            subscriber.try_subscribe(filter.clone(), QoS::AtLeastOnce)
                        {
                            tracing::error!(%error, filter, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    mqtt_metrics
                        .messages_received
                        .fetch_add(1, Ordering::Relaxed);
                    let message = Incoming {
                        publish,
                        generation: mqtt_generation.load(Ordering::SeqCst),
                        received_ms: now_ms(),
                    };
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    mqtt_metrics.mqtt_connected.store(0, Ordering::Relaxed);
                    let delay = Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)))
                        .min(Duration::from_secs(5));
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, ?delay, "ingest lost the broker; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = mqtt_shutdown.wait_for(|&stop| stop) => return,
                    }
                }
            }
        }
    });

    let mut writer = Writer {
        settings,
        store,
        metrics: Arc::clone(&metrics),
        feed,
        client: client.clone(),
        generation,
        group: Vec::new(),
        group_deadline: None,
        drop_log: HashMap::new(),
        known_vens: std::collections::HashSet::new(),
    };
    writer.run(rx, &mut shutdown).await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), mqtt).await;
    metrics.mqtt_connected.store(0, Ordering::Relaxed);
    Ok(())
}

/// How often a batch may be refused by the database (for a reason other
/// than being unreachable) before it is dropped.
const REJECT_AFTER: u32 = 3;

/// What became of a store attempt.
enum Stored {
    Committed,
    ShuttingDown,
    Refused(StoreError),
}

/// What one message turned out to be.
enum Classified {
    Telemetry(TelemetryBatch),
    Status(Status),
    Loads(LoadSnapshot),
    Ack(CommandAck),
    Drop {
        reason: DropReason,
        key: String,
        detail: String,
    },
}

/// Decodes and checks a message against its topic. Pure: no I/O.
fn classify(topic: &str, payload: &[u8]) -> Classified {
    let drop = |reason, key: &str, detail: String| Classified::Drop {
        reason,
        key: key.to_string(),
        detail,
    };
    let topic = match Topic::parse(topic) {
        Ok(topic) => topic,
        Err(error) => return drop(DropReason::ForeignTopic, topic, error.to_string()),
    };
    let ven = topic.ven_id.as_str();
    if payload.len() > MAX_PAYLOAD_BYTES {
        return drop(
            DropReason::Oversized,
            ven,
            format!("{} bytes", payload.len()),
        );
    }
    let mismatch = |payload_ven: &VenId| {
        drop(
            DropReason::VenMismatch,
            ven,
            format!("payload says {payload_ven}"),
        )
    };
    let malformed = |error: DecodeError| drop(DropReason::Malformed, ven, error.to_string());
    match topic.kind {
        TopicKind::Meter => match decode::<TelemetryBatch>(payload) {
            Ok(batch) if batch.ven_id == topic.ven_id => Classified::Telemetry(batch),
            Ok(batch) => mismatch(&batch.ven_id),
            Err(error) => malformed(error),
        },
        TopicKind::Status => match decode::<Status>(payload) {
            Ok(status) if status.ven_id == topic.ven_id => Classified::Status(status),
            Ok(status) => mismatch(&status.ven_id),
            Err(error) => malformed(error),
        },
        TopicKind::Loads => match decode::<LoadSnapshot>(payload) {
            Ok(snapshot) if snapshot.ven_id == topic.ven_id => Classified::Loads(snapshot),
            Ok(snapshot) => mismatch(&snapshot.ven_id),
            Err(error) => malformed(error),
        },
        TopicKind::Ack => match decode::<CommandAck>(payload) {
            Ok(ack) if ack.ven_id == topic.ven_id => Classified::Ack(ack),
            Ok(ack) => mismatch(&ack.ven_id),
            Err(error) => malformed(error),
        },
        other => drop(
            DropReason::ForeignTopic,
            ven,
            format!("{other:?} is not an ingest topic"),
        ),
    }
}

struct Writer<S> {
    settings: IngestSettings,
    store: Arc<S>,
    metrics: Arc<IngestMetrics>,
    feed: Feed,
    client: AsyncClient,
    generation: Arc<AtomicU64>,
    group: Vec<(IngestBatch, Incoming)>,
    group_deadline: Option<tokio::time::Instant>,
    drop_log: HashMap<(String, DropReason), Instant>,
    known_vens: std::collections::HashSet<VenId>,
}

impl<S: Store> Writer<S> {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Incoming>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        loop {
            let deadline = self.group_deadline;
            let flush_due = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                message = rx.recv() => Some(message),
                () = flush_due => None,
                _ = shutdown.wait_for(|&stop| stop) => Some(None),
            };
            match next {
                None => self.flush(shutdown).await,
                Some(None) => break,
                Some(Some(message)) => self.handle(message, shutdown).await,
            }
            if self.group.len() >= self.settings.max_batches.max(1) {
                self.flush(shutdown).await;
            }
        }
        // Shutting down: store what is grouped if the database takes it at
        // once; otherwise leave it unacknowledged for redelivery.
        if !self.group.is_empty() {
            let (never, _) = watch::channel(true);
            let mut stop_now = never.subscribe();
            self.flush(&mut stop_now).await;
        }
    }

    async fn handle(&mut self, message: Incoming, shutdown: &mut watch::Receiver<bool>) {
        let classified = classify(&message.publish.topic, &message.publish.payload);
        if let Some(ven) = self.refused(&classified).await {
            self.dropped(DropReason::UnknownVen, ven.as_str(), "not registered");
            self.ack(&message);
            return;
        }
        match classified {
            Classified::Telemetry(batch) => {
                let newest = batch
                    .series
                    .iter()
                    .filter_map(|s| s.points.last())
                    .map(|p| p.ts_ms)
                    .max();
                if let Some(newest) = newest {
                    self.metrics
                        .ingest_lag_ms
                        .store(message.received_ms - newest, Ordering::Relaxed);
                }
                let batch = IngestBatch {
                    ven_id: batch.ven_id,
                    batch_seq: batch.batch_seq,
                    received_ms: message.received_ms,
                    series: batch.series,
                };
                if self.group.is_empty() {
                    self.group_deadline =
                        Some(tokio::time::Instant::now() + self.settings.max_delay);
                }
                self.group.push((batch, message));
            }
            Classified::Status(status) => {
                let store = Arc::clone(&self.store);
                let at = message.received_ms;
                let result = self
                    .retry(shutdown, "status", || store.record_status(&status, at))
                    .await;
                if matches!(result, Ok(Some(()))) {
                    self.feed.status(&status, at);
                }
                self.settle(result, &message, &status.ven_id);
            }
            Classified::Loads(snapshot) => {
                let store = Arc::clone(&self.store);
                let at = message.received_ms;
                let result = self
                    .retry(shutdown, "loads", || store.record_loads(&snapshot, at))
                    .await;
                self.settle(result, &message, &snapshot.ven_id);
            }
            Classified::Ack(ack) => {
                let store = Arc::clone(&self.store);
                let at = message.received_ms;
                let result = self
                    .retry(shutdown, "ack", || store.record_ack(&ack, at))
                    .await;
                match result {
                    Ok(Some(AckOutcome::UnknownEvent)) => {
                        self.dropped(
                            DropReason::UnknownEvent,
                            ack.ven_id.as_str(),
                            &format!("event {} was not sent to this VEN", ack.event_id),
                        );
                        self.ack(&message);
                    }
                    other => self.settle(other.map(|o| o.map(|_| ())), &message, &ack.ven_id),
                }
            }
            Classified::Drop {
                reason,
                key,
                detail,
            } => {
                self.dropped(reason, &key, &detail);
                self.ack(&message);
            }
        }
    }

    /// With `refuse_unknown_vens`, the VEN of a storable message the store
    /// does not know.
    async fn refused(&mut self, classified: &Classified) -> Option<VenId> {
        if !self.settings.refuse_unknown_vens {
            return None;
        }
        let ven = match classified {
            Classified::Telemetry(b) => &b.ven_id,
            Classified::Status(s) => &s.ven_id,
            Classified::Loads(l) => &l.ven_id,
            Classified::Ack(a) => &a.ven_id,
            Classified::Drop { .. } => return None,
        };
        if self.known_vens.contains(ven) {
            return None;
        }
        match self.store.ven(ven).await {
            Ok(Some(_)) => {
                self.known_vens.insert(ven.clone());
                None
            }
            Ok(None) => Some(ven.clone()),
            // Unknown because the database is down: let the write path retry.
            Err(_) => None,
        }
    }

    /// Stores the group in one transaction (retrying while the database is
    /// unavailable), then acknowledges every message in it. A group the
    /// database refuses for another reason is stored batch by batch, so one
    /// bad batch cannot hold up the others; a batch refused
    /// [`REJECT_AFTER`] times is dropped and counted.
    async fn flush(&mut self, shutdown: &mut watch::Receiver<bool>) {
        self.group_deadline = None;
        if self.group.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        let batches: Vec<IngestBatch> = group.iter().map(|(b, _)| b.clone()).collect();
        match self.store_batches(&batches, shutdown).await {
            Stored::Committed => {
                for (_, message) in &group {
                    self.ack(message);
                }
            }
            // Shutting down with the database away: nothing acknowledged,
            // the broker redelivers.
            Stored::ShuttingDown => {}
            Stored::Refused(error) if batches.len() > 1 => {
                tracing::warn!(%error, batches = batches.len(), "the database refused a group; storing its batches one by one");
                for (batch, message) in group {
                    match self
                        .store_batches(std::slice::from_ref(&batch), shutdown)
                        .await
                    {
                        Stored::Committed => self.ack(&message),
                        Stored::ShuttingDown => return,
                        Stored::Refused(error) => {
                            self.dropped(
                                DropReason::Rejected,
                                batch.ven_id.as_str(),
                                &error.to_string(),
                            );
                            self.ack(&message);
                        }
                    }
                }
            }
            Stored::Refused(error) => {
                if let Some((batch, message)) = group.first() {
                    self.dropped(
                        DropReason::Rejected,
                        batch.ven_id.as_str(),
                        &error.to_string(),
                    );
                    self.ack(message);
                }
            }
        }
    }

    /// One transaction for `batches`: retried without limit while the
    /// database is unavailable, [`REJECT_AFTER`] times for other errors.
    async fn store_batches(
        &self,
        batches: &[IngestBatch],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Stored {
        let mut delay = Duration::from_millis(100);
        let mut refusals = 0;
        loop {
            let started = Instant::now();
            match self.store.ingest(batches).await {
                Ok(outcome) => {
                    self.metrics.db_write(started.elapsed().as_micros() as u64);
                    self.metrics
                        .batches_ingested
                        .fetch_add(outcome.inserted_batches, Ordering::Relaxed);
                    self.metrics
                        .readings_ingested
                        .fetch_add(outcome.inserted_readings, Ordering::Relaxed);
                    self.metrics
                        .duplicate_batches
                        .fetch_add(outcome.duplicate_batches, Ordering::Relaxed);
                    self.feed.telemetry(batches);
                    return Stored::Committed;
                }
                Err(error) => {
                    self.metrics.db_write_errors.fetch_add(1, Ordering::Relaxed);
                    if !matches!(error, StoreError::Unavailable(_)) {
                        refusals += 1;
                        if refusals >= REJECT_AFTER {
                            return Stored::Refused(error);
                        }
                    }
                    tracing::warn!(%error, ?delay, "storing telemetry failed; retrying, nothing acknowledged");
                }
            }
            if *shutdown.borrow() {
                return Stored::ShuttingDown;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|&stop| stop) => return Stored::ShuttingDown,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Runs `op` until it succeeds: without limit while the database is
    /// unavailable, [`REJECT_AFTER`] times for other errors (then `Err`).
    /// `Ok(None)` if shutdown came first.
    async fn retry<T, F, Fut>(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        what: &str,
        mut op: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut refusals = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(Some(value)),
                Err(error) => {
                    self.metrics.db_write_errors.fetch_add(1, Ordering::Relaxed);
                    if !matches!(error, StoreError::Unavailable(_)) {
                        refusals += 1;
                        if refusals >= REJECT_AFTER {
                            return Err(error);
                        }
                    }
                    tracing::warn!(%error, what, ?delay, "database write failed; retrying, nothing acknowledged");
                }
            }
            if *shutdown.borrow() {
                return Ok(None);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|&stop| stop) => return Ok(None),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Acknowledges a stored message, or drops and acknowledges one the
    /// database refused; leaves it unacknowledged if shutdown came first.
    fn settle(&mut self, result: Result<Option<()>, StoreError>, message: &Incoming, ven: &VenId) {
        match result {
            Ok(Some(())) => self.ack(message),
            Ok(None) => {}
            Err(error) => {
                self.dropped(DropReason::Rejected, ven.as_str(), &error.to_string());
                self.ack(message);
            }
        }
    }

    fn ack(&self, message: &Incoming) {
        if message.generation != self.generation.load(Ordering::SeqCst) {
            // From an earlier connection: its packet id means nothing now.
            // The broker redelivers it and the store skips the duplicate.
            return;
        }
        if let Err(error) = self.client.try_ack(&message.publish) {
            tracing::warn!(%error, "cannot queue an acknowledgement; the broker will redeliver");
        }
    }

    fn dropped(&mut self, reason: DropReason, key: &str, detail: &str) {
        self.metrics.dropped(reason);
        let now = Instant::now();
        let entry = self.drop_log.entry((key.to_string(), reason));
        let log = match entry {
            std::collections::hash_map::Entry::Occupied(mut last) => {
                if now.duration_since(*last.get()) >= DROP_LOG_INTERVAL {
                    last.insert(now);
                    true
                } else {
                    false
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(now);
                true
            }
        };
        if log {
            tracing::warn!(
                from = key,
                reason = reason.as_str(),
                detail,
                "dropped a message (logged once a minute per VEN and reason)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::{Encoding, Phase, Point, Quantity, Series, Timestamp, encode};

    use super::*;

    fn batch(ven: &str) -> TelemetryBatch {
        TelemetryBatch {
            ven_id: VenId::new(ven).unwrap(),
            batch_seq: 1,
            series: vec![Series {
                meter: "main".into(),
                quantity: Quantity::ActivePower,
                phase: Phase::Total,
                exponent: 0,
                points: vec![Point {
                    ts_ms: 1000,
                    raw: 5,
                }],
            }],
        }
    }

    fn reason(c: &Classified) -> Option<DropReason> {
        match c {
            Classified::Drop { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn classifies_every_kind_of_message() {
        let good = encode(&batch("ven-1"), Encoding::Postcard).unwrap();
        assert!(matches!(
            classify("oadr/meter/ven-1", &good),
            Classified::Telemetry(_)
        ));
        let json = encode(&batch("ven-1"), Encoding::Json).unwrap();
        assert!(matches!(
            classify("oadr/meter/ven-1", &json),
            Classified::Telemetry(_)
        ));
        assert_eq!(
            reason(&classify("oadr/meter/ven-2", &good)),
            Some(DropReason::VenMismatch)
        );
        assert_eq!(
            reason(&classify("oadr/meter/ven-1", &good[..5])),
            Some(DropReason::Malformed)
        );
        assert_eq!(
            reason(&classify("oadr/meter/ven-1", b"hello")),
            Some(DropReason::Malformed)
        );
        assert_eq!(
            reason(&classify("some/other/topic", &good)),
            Some(DropReason::ForeignTopic)
        );
        assert_eq!(
            reason(&classify("ven/cmd/ven-1", &good)),
            Some(DropReason::ForeignTopic)
        );
        let huge = vec![1u8; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            reason(&classify("oadr/meter/ven-1", &huge)),
            Some(DropReason::Oversized)
        );

        let status = Status::offline(
            VenId::new("ven-1").unwrap(),
            Timestamp::from_unix_ms(0).unwrap(),
        );
        let bytes = encode(&status, Encoding::Postcard).unwrap();
        assert!(matches!(
            classify("ven/status/ven-1", &bytes),
            Classified::Status(_)
        ));
        assert_eq!(
            reason(&classify("ven/status/ven-9", &bytes)),
            Some(DropReason::VenMismatch)
        );
        // A status payload on the meter topic does not decode as telemetry.
        assert_eq!(
            reason(&classify("oadr/meter/ven-1", &bytes)),
            Some(DropReason::Malformed)
        );
    }

    #[test]
    fn classifies_acknowledgements() {
        let ack = CommandAck {
            ven_id: VenId::new("ven-1").unwrap(),
            command_id: 4,
            event_id: gridlink_protocol::ObjectId::new("event-1").unwrap(),
            state: gridlink_protocol::AckState::Received,
            at: Timestamp::from_unix_ms(1000).unwrap(),
            reason: None,
        };
        let bytes = encode(&ack, Encoding::Postcard).unwrap();
        assert!(matches!(
            classify("ven/ack/ven-1", &bytes),
            Classified::Ack(a) if a == ack
        ));
        assert_eq!(
            reason(&classify("ven/ack/ven-2", &bytes)),
            Some(DropReason::VenMismatch)
        );
        assert_eq!(
            reason(&classify("ven/ack/ven-1", b"{\"state\":1}")),
            Some(DropReason::Malformed)
        );
        let failed_without_reason = CommandAck {
            state: gridlink_protocol::AckState::Failed,
            ..ack
        };
        let json = serde_json::to_vec(&failed_without_reason).unwrap();
        assert_eq!(
            reason(&classify("ven/ack/ven-1", &json)),
            Some(DropReason::Malformed),
            "validation runs on decode"
        );
    }
}
