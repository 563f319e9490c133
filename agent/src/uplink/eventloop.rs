//! The thin I/O loop around [`UplinkState`]: it polls rumqttc's event
//! loop, turns packets and the agent's channels into [`Event`]s, and
//! performs the [`Effect`]s: publishes and subscriptions with rumqttc's
//! non-blocking `try_` calls, buffer and outbox reads and removals through
//! `tokio::task::spawn_blocking` (sled blocks on disk I/O), metrics, and
//! the waits the rate limits ask for.

use crate::blocking::off_the_runtime;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_protocol::{Encoding, Status, encode};
use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::inbound::on_publish;
use super::options::{mqtt_options, now, tls_config};
use super::state::{Effect, Event, Limits, Topics, UplinkState};
use super::{UplinkError, UplinkLinks, UplinkSettings};
use crate::buffer::Buffer;
use crate::channels::{Connection, ShadowInbound};
use crate::dr::InboundCommand;
use crate::dr::store::DrStore;
use crate::metrics::{ConnectionState, Metrics};

/// Exponential backoff with full jitter: attempt n waits a uniformly random
/// time in `[min, min * 2^n]`, capped at `max`.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let ceiling = min
        .saturating_mul(1u32 << attempt.min(16))
        .min(max)
        .max(min);
    let span = ceiling.saturating_sub(min).as_millis() as u64;
    min + Duration::from_millis(fastrand::u64(0..=span))
}

/// Runs the uplink until `shutdown` turns true. Then it publishes an offline
/// status and disconnects (best effort, bounded by 2 s).
///
/// Buffer reads and removals block (sled), so they run in
/// `tokio::task::spawn_blocking`, off the async workers.
pub async fn run(
    settings: UplinkSettings,
    buffer: Arc<Buffer>,
    sealed: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), UplinkError> {
    run_with(
        settings,
        buffer,
        sealed,
        metrics,
        shutdown,
        UplinkLinks::default(),
    )
    .await
}

/// [`run`], also carrying commands, DR acknowledgements, load snapshots
/// and the shadow's messages (see [`UplinkLinks`]).
///
/// After every CONNACK it subscribes (QoS 1) to `ven/cmd/{venId}` and the
/// shadow response topics. Incoming publishes are acknowledged manually: a
/// command only once DR has made it durable; anything else at once. A
/// command that is oversized, does not decode or names another VEN is
/// logged, counted in `gridlink_dr_commands_rejected_total` and
/// acknowledged to the broker (dropped). Publishing order while there is
/// room in the window and the rate limits: DR acknowledgements, shadow
/// messages, the load snapshot, then telemetry (see [`UplinkState`]).
#[expect(
    clippy::too_many_lines,
    reason = "one select loop over the connection, the buffer, DR and the shadow"
)]
pub async fn run_with(
    settings: UplinkSettings,
    buffer: Arc<Buffer>,
    sealed: Arc<Notify>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    links: UplinkLinks,
) -> Result<(), UplinkError> {
    let tls = tls_config(&settings.ca, &settings.cert, &settings.key, settings.alpn)?;
    let mut options = mqtt_options(&settings, tls)?;
    options.set_manual_acks(true);
    let cap = usize::from(settings.max_inflight.max(1)) + 16;
    let (client, mut eventloop) = AsyncClient::new(options, cap);
    let topics = Topics::new(&settings.ven_id, buffer.ven_id());
    let mut state = UplinkState::new(
        topics.clone(),
        Limits {
            max_inflight: settings.max_inflight,
            publishes_per_s: settings.publishes_per_s,
            bytes_per_s: settings.bytes_per_s,
        },
        links.dr_store.is_some(),
        Instant::now(),
    );
    let UplinkLinks {
        dr_store,
        commands,
        shadow_inbound,
        mut outgoing,
        mut snapshot,
        connection,
    } = links;
    if let Some(rx) = &mut snapshot {
        state.handle(Event::Snapshot(rx.borrow_and_update().clone()));
    }
    let io = Io {
        client: &client,
        buffer: &buffer,
        metrics: &metrics,
        settings: &settings,
        dr_store: dr_store.as_ref(),
        commands: commands.as_ref(),
        shadow_inbound: shadow_inbound.as_ref(),
        connection: connection.as_ref(),
    };
    let mut attempt = 0u32;
    metrics.set_connection_state(ConnectionState::Connecting);
    let no_acks = Notify::new();

    loop {
        if *shutdown.borrow() {
            break;
        }
        let wake_at = io.perform(&mut state).await;
        let wait = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let acks_added = match &dr_store {
            Some(store) => store.acks_added.notified(),
            None => no_acks.notified(),
        };
        let take_outgoing = state.wants_outgoing();
        let take_message = async {
            match &mut outgoing {
                Some(rx) if take_outgoing => rx.recv().await,
                _ => std::future::pending().await,
            }
        };
        let snapshot_changed = async {
            match &mut snapshot {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(event) => {
                    attempt = 0;
                    io.on_event(event, &mut state);
                }
                Err(error) => {
                    if state.connected() {
                        tracing::warn!(%error, "MQTT connection lost; reconnecting");
                    } else {
                        tracing::warn!(%error, attempt, "MQTT connect failed");
                    }
                    state.handle(Event::Disconnected);
                    if let Some(tx) = &connection {
                        tx.send_modify(|c| c.connected = false);
                    }
                    metrics.set_connection_state(ConnectionState::Disconnected);
                    let delay = backoff(attempt, settings.backoff_min, settings.backoff_max);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                    metrics.set_connection_state(ConnectionState::Connecting);
                }
            },
            () = sealed.notified() => {}
            () = acks_added => {}
            message = take_message => match message {
                Some(message) => state.handle(Event::Outgoing(message)),
                None => outgoing = None,
            },
            alive = snapshot_changed => {
                let latest = match &mut snapshot {
                    Some(rx) if alive => rx.borrow_and_update().clone(),
                    _ => None,
                };
                if !alive {
                    snapshot = None;
                }
                state.handle(Event::Snapshot(latest));
            }
            () = wait => {}
            _ = shutdown.changed() => {}
        }
    }

    if state.connected() {
        goodbye(&client, &mut eventloop, topics.status(), &settings).await;
    }
    if let Some(tx) = &connection {
        tx.send_modify(|c| c.connected = false);
    }
    metrics.set_connection_state(ConnectionState::Disconnected);
    Ok(())
}

/// What the loop performs effects with.
struct Io<'a> {
    client: &'a AsyncClient,
    buffer: &'a Arc<Buffer>,
    metrics: &'a Metrics,
    settings: &'a UplinkSettings,
    dr_store: Option<&'a Arc<DrStore>>,
    commands: Option<&'a mpsc::Sender<InboundCommand>>,
    shadow_inbound: Option<&'a mpsc::Sender<ShadowInbound>>,
    connection: Option<&'a watch::Sender<Connection>>,
}

impl Io<'_> {
    /// Performs the state machine's effects until the fill ends; returns
    /// when to poll again if a rate limit said wait.
    async fn perform(&self, state: &mut UplinkState) -> Option<Instant> {
        loop {
            match state.poll(Instant::now())? {
                Effect::WaitUntil(at) => return Some(at),
                Effect::Publish {
                    topic,
                    payload,
                    qos,
                    retain,
                    what: _,
                } => {
                    if let Err(error) = self.client.try_publish(topic, qos, retain, payload) {
                        state.handle(Event::Refused(error.to_string()));
                    }
                }
                Effect::Subscribe { topic } => {
                    if let Err(error) = self.client.try_subscribe(topic.as_str(), QoS::AtLeastOnce)
                    {
                        tracing::error!(%error, %topic, "cannot subscribe");
                    }
                }
                Effect::DeleteBatch {
                    seq,
                    readings,
                    bytes,
                } => {
                    let buffer = Arc::clone(self.buffer);
                    if let Err(error) = off_the_runtime(move || buffer.ack(seq)).await {
                        tracing::error!(%error, seq, "removing an acknowledged batch failed; it will be sent again");
                    }
                    let metrics = self.metrics;
                    metrics.batches_published.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .readings_published
                        .fetch_add(u64::from(readings), Ordering::Relaxed);
                    metrics
                        .bytes_published
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Effect::RemoveAck { key } => {
                    if let Some(store) = self.dr_store {
                        let removing = Arc::clone(store);
                        if let Err(error) = off_the_runtime(move || removing.remove_ack(key)).await
                        {
                            tracing::error!(%error, key, "removing a delivered DR acknowledgement failed; it will be sent again");
                        }
                    }
                    self.metrics
                        .dr_acks_published
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(store) = self.dr_store {
                        self.metrics
                            .dr_outbox
                            .store(store.outbox_len() as u64, Ordering::Relaxed);
                    }
                }
                Effect::CountAcks => {
                    let waiting = self.dr_store.map_or(0, |store| store.outbox_len());
                    state.handle(Event::AcksWaiting(waiting));
                }
                Effect::ReadAcks { limit } => {
                    let acks = match self.dr_store {
                        Some(store) => {
                            let store = Arc::clone(store);
                            off_the_runtime(move || store.pending_acks(limit)).await
                        }
                        None => Ok(Vec::new()),
                    };
                    state.handle(Event::Acks(acks));
                }
                Effect::ReadBatches { after, limit } => {
                    // sled may read from disk (its cache is small): off the async workers.
                    let buffer = Arc::clone(self.buffer);
                    let records = off_the_runtime(move || buffer.pending(after, limit)).await;
                    state.handle(Event::Batches(records));
                }
            }
        }
    }

    /// Turns one rumqttc event into the state machine's events, metrics and
    /// the connection state; routes incoming publishes.
    fn on_event(&self, event: MqttEvent, state: &mut UplinkState) {
        match event {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                let metrics = self.metrics;
                metrics.set_connection_state(ConnectionState::Connected);
                metrics.connections.fetch_add(1, Ordering::Relaxed);
                let next_seq = self.buffer.next_seq();
                tracing::info!(
                    session_present = ack.session_present,
                    next_seq,
                    "MQTT connected"
                );
                let status = Status {
                    ven_id: self.settings.ven_id.clone(),
                    online: true,
                    at: now(),
                    agent_version: env!("CARGO_PKG_VERSION").to_string(),
                    backlog_batches: self.buffer.stats().records,
                    dropped_readings: metrics.readings_dropped.load(Ordering::Relaxed),
                };
                state.handle(Event::Connected {
                    session_present: ack.session_present,
                    next_seq,
                    status,
                });
                if let Some(tx) = self.connection {
                    tx.send_replace(Connection {
                        connected: true,
                        generation: state.generation(),
                    });
                }
            }
            MqttEvent::Incoming(Packet::Publish(publish)) => on_publish(
                &publish,
                self.client,
                &self.settings.ven_id,
                self.commands,
                self.shadow_inbound,
                self.metrics,
            ),
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => state.handle(Event::Written(pkid)),
            MqttEvent::Incoming(Packet::PubAck(ack)) => state.handle(Event::PubAck(ack.pkid)),
            _ => {}
        }
    }
}

/// Publishes the offline status and disconnects, bounded in time, so the
/// cloud sees a clean shutdown rather than waiting for the last will.
async fn goodbye(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    status_topic: &str,
    settings: &UplinkSettings,
) {
    let Ok(payload) = encode(
        &Status::offline(settings.ven_id.clone(), now()),
        Encoding::Postcard,
    ) else {
        return;
    };
    if client
        .try_publish(status_topic, QoS::AtLeastOnce, true, payload)
        .is_err()
        || client.try_disconnect().is_err()
    {
        return;
    }
    let drive = async {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Outgoing(Outgoing::Disconnect))
                | Err(ConnectionError::RequestsDone) => {
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "closing the MQTT connection");
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drive).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            assert!(d >= min && d <= max, "{attempt}: {d:?}");
            let ceiling = min.saturating_mul(1 << attempt.min(16)).min(max);
            assert!(d <= ceiling, "{attempt}: {d:?} > {ceiling:?}");
        }
    }
}
