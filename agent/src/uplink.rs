//! The MQTT uplink: publishes sealed batches from the durable buffer to the
//! broker over mutually authenticated TLS and removes each batch only after
//! the broker's PUBACK.
//!
//! The shape follows rumqttc's own split: [`SendWindow`] is a pure state
//! machine (which batch goes next, which packet id acknowledges which
//! batch, what a lost session means), [`RateLimiter`] is pure arithmetic,
//! and [`run`] is the thin loop that polls the event loop and feeds both.
//!
//! Delivery rules:
//! - QoS 1, persistent session (`clean_session = false`), client id = ven id.
//! - At most `max_inflight` unacknowledged publishes, at most
//!   `publishes_per_s` publishes and `bytes_per_s` payload bytes per second:
//!   AWS IoT Core's per-connection limits, enforced here so the broker never
//!   has to throttle or disconnect us.
//! - The backlog drains oldest first. Batches sealed after the connection
//!   came up are live data; while a backlog exists every fourth publish is
//!   the oldest live batch, so live data keeps flowing during a long drain.
//!   Each stream is sent in sequence order.
//! - After a reconnect with the session kept, rumqttc retransmits what was
//!   in flight. If the broker lost the session, rumqttc drops its pending
//!   publishes, so the window forgets them and sends again from the
//!   buffer. Either way a batch can reach the broker twice; the cloud drops
//!   the second copy by `(ven_id, batch_seq)`.
//! - The last will is a retained offline [`Status`] on `ven/status/{venId}`;
//!   an online status is published after every CONNACK.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gridlink_protocol::{
    Command, Encoding, MAX_PAYLOAD_BYTES, ShadowOp, Status, Timestamp, Topic, TopicKind, VenId,
    decode, encode,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, TlsConfiguration, Transport,
};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::buffer::{Buffer, Record};
use crate::channels::{Connection, Outgoing as ChannelOutgoing, ShadowInbound};
use crate::dr::InboundCommand;
use crate::dr::store::DrStore;
use crate::metrics::{ConnectionState, Metrics, now_ms};

/// The ALPN protocol AWS IoT Core expects for MQTT with client
/// certificates on port 443.
pub const AWS_IOT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

/// Room for a PUBLISH header beyond its payload (fixed header, topic, id).
const PUBLISH_HEADER_ALLOWANCE: usize = 512;

/// Largest MQTT packet sent or accepted: a full 128 KB payload plus header.
/// rumqttc's default is 10 KiB.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + PUBLISH_HEADER_ALLOWANCE;

/// One in every `LIVE_SHARE` publishes goes to live data while a backlog drains.
const LIVE_SHARE: u32 = 4;

/// Everything the uplink needs to connect and pace itself.
#[derive(Debug, Clone)]
pub struct UplinkSettings {
    /// The VEN: MQTT client id and topic segment.
    pub ven_id: VenId,
    /// Broker host name or address.
    pub host: String,
    /// Broker port (8883, or 443 with ALPN).
    pub port: u16,
    /// Offer ALPN `x-amzn-mqtt-ca` (AWS IoT Core on port 443).
    pub alpn: bool,
    /// CA certificate(s) the broker's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The VEN's client certificate (PEM).
    pub cert: PathBuf,
    /// The VEN's private key (PEM).
    pub key: PathBuf,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Publishes per second; 0 = unlimited (benchmarks only).
    pub publishes_per_s: u32,
    /// Payload bytes per second; 0 = unlimited (benchmarks only).
    pub bytes_per_s: u32,
    /// Unacknowledged QoS 1 publishes at once (AWS IoT: 100).
    pub max_inflight: u16,
}

/// Why the uplink could not start.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The last-will payload could not be encoded.
    #[error("last will: {0}")]
    Encode(#[from] gridlink_protocol::EncodeError),
    /// Reading the buffer failed.
    #[error("buffer: {0}")]
    Buffer(#[from] crate::buffer::BufferError),
}

/// Builds the rustls client configuration: ring provider, the given CA as
/// the only trust anchor, the VEN's certificate and key, and ALPN when asked.
pub fn tls_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: bool,
) -> Result<ClientConfig, UplinkError> {
    let pem_err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| UplinkError::Pem {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(pem_err(ca))? {
        roots.add(cert.map_err(pem_err(ca))?)?;
    }
    if roots.is_empty() {
        return Err(UplinkError::Pem {
            path: ca.to_path_buf(),
            reason: "no certificate in file".into(),
        });
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    if chain.is_empty() {
        return Err(UplinkError::Pem {
            path: cert.to_path_buf(),
            reason: "no certificate in file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)?;
    if alpn {
        config.alpn_protocols = vec![AWS_IOT_ALPN.to_vec()];
    }
    Ok(config)
}

/// MQTT options for the VEN: persistent session, last will, packet sizes,
/// in-flight window and TLS.
pub fn mqtt_options(
    settings: &UplinkSettings,
    tls: ClientConfig,
) -> Result<MqttOptions, UplinkError> {
    let mut options = MqttOptions::new(
        settings.ven_id.as_str(),
        settings.host.clone(),
        settings.port,
    );
    let will = encode(
        &Status::offline(settings.ven_id.clone(), now()),
        Encoding::Postcard,
    )?;
    options
        .set_clean_session(false)
        .set_keep_alive(settings.keep_alive.max(Duration::from_secs(5)))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(settings.max_inflight.max(1))
        .set_request_channel_capacity(usize::from(settings.max_inflight.max(1)) + 8)
        .set_last_will(LastWill::new(
            Topic::status(settings.ven_id.clone()).to_string(),
            will,
            QoS::AtLeastOnce,
            true,
        ))
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    Ok(options)
}

fn now() -> Timestamp {
    Timestamp::from_unix_ms(now_ms()).unwrap_or(Timestamp::NOW_SENTINEL)
}

/// What a submitted QoS 1 publish carries, so its PUBACK can be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A batch from the buffer.
    Batch {
        /// Its sequence number.
        seq: u64,
        /// Readings in it.
        readings: u32,
        /// Payload bytes.
        bytes: usize,
    },
    /// A status message.
    Status,
    /// A DR acknowledgement from the durable outbox.
    Ack {
        /// Its outbox key.
        key: u64,
    },
    /// A message not tracked beyond its PUBACK (shadow requests, load
    /// snapshots).
    Message,
}

/// The publish window: pure bookkeeping of what is in flight, no I/O.
///
/// rumqttc assigns packet ids when it writes a publish and reports them as
/// `Outgoing::Publish(pkid)` in submission order; a retransmission after a
/// reconnect reports a packet id already known. So the window keeps the
/// submissions not yet numbered in a queue, numbers them from those events,
/// and maps each PUBACK back to its batch.
///
/// Two cursors walk the buffer: the backlog (batches sealed before this
/// connection came up) and live data (sealed since). Both restart from the
/// beginning at every CONNACK and skip batches still in flight, so nothing
/// is sent twice on one session and nothing unacknowledged is forgotten.
#[derive(Debug)]
pub struct SendWindow {
    max_inflight: usize,
    unnumbered: VecDeque<Submitted>,
    inflight: HashMap<u16, Submitted>,
    in_flight_seqs: HashSet<u64>,
    in_flight_acks: HashSet<u64>,
    /// Highest backlog seq submitted on this connection (None: from the oldest).
    backlog_after: Option<u64>,
    /// Highest live seq submitted on this connection (None: from the floor).
    live_after: Option<u64>,
    /// Batches with seq >= this were sealed after the connection came up.
    live_floor: u64,
    sent_since_live: u32,
}

/// The stream [`SendWindow::next_source`] wants the next batch from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The oldest unsent backlog batch with seq > this (None: the oldest).
    Backlog(Option<u64>),
    /// The oldest unsent batch with seq > this, at or above the live floor.
    Live(Option<u64>),
}

impl SendWindow {
    /// An empty window allowing `max_inflight` unacknowledged publishes.
    pub fn new(max_inflight: u16) -> Self {
        Self {
            max_inflight: usize::from(max_inflight.max(1)),
            unnumbered: VecDeque::new(),
            inflight: HashMap::new(),
            in_flight_seqs: HashSet::new(),
            in_flight_acks: HashSet::new(),
            backlog_after: None,
            live_after: None,
            live_floor: 0,
            sent_since_live: 0,
        }
    }

    /// Publishes submitted and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.unnumbered.len() + self.inflight.len()
    }

    /// True if another publish may be submitted.
    pub fn has_room(&self) -> bool {
        self.outstanding() < self.max_inflight
    }

    /// A CONNACK arrived. `next_seq` is the first seq the buffer will assign
    /// from now on: everything below it is backlog. If the broker kept no
    /// session, rumqttc dropped what was in flight too, so the window
    /// forgets it and it is sent again from the buffer.
    pub fn connected(&mut self, session_present: bool, next_seq: u64) {
        if !session_present {
            self.unnumbered.clear();
            self.inflight.clear();
            self.in_flight_seqs.clear();
            self.in_flight_acks.clear();
        }
        self.restart_cursors();
        self.live_floor = next_seq;
    }

    fn restart_cursors(&mut self) {
        self.backlog_after = None;
        self.live_after = None;
        self.sent_since_live = 0;
    }

    /// Which stream to take the next batch from: while a backlog remains,
    /// live data gets one slot in [`LIVE_SHARE`].
    pub fn next_source(&self, backlog_left: bool) -> Source {
        if backlog_left && self.sent_since_live + 1 < LIVE_SHARE {
            Source::Backlog(self.backlog_after)
        } else {
            Source::Live(self.live_after.or(self.live_floor.checked_sub(1)))
        }
    }

    /// Whether `seq` belongs to the backlog (sealed before this connection).
    pub fn is_backlog(&self, seq: u64) -> bool {
        seq < self.live_floor
    }

    /// Whether `seq` should be read for sending: not in flight already.
    pub fn wants(&self, seq: u64) -> bool {
        !self.in_flight_seqs.contains(&seq)
    }

    /// Records a submitted batch and advances its stream's cursor.
    pub fn submit_batch(&mut self, record: &Record) {
        if self.is_backlog(record.seq) {
            self.backlog_after = Some(record.seq);
            self.sent_since_live += 1;
        } else {
            self.live_after = Some(record.seq);
            self.sent_since_live = 0;
        }
        self.in_flight_seqs.insert(record.seq);
        self.unnumbered.push_back(Submitted::Batch {
            seq: record.seq,
            readings: record.readings,
            bytes: record.payload.len(),
        });
    }

    /// Records a submitted status publish.
    pub fn submit_status(&mut self) {
        self.unnumbered.push_back(Submitted::Status);
    }

    /// Records a submitted DR acknowledgement.
    pub fn submit_ack(&mut self, key: u64) {
        self.in_flight_acks.insert(key);
        self.unnumbered.push_back(Submitted::Ack { key });
    }

    /// Records a submitted untracked message.
    pub fn submit_message(&mut self) {
        self.unnumbered.push_back(Submitted::Message);
    }

    /// Whether the acknowledgement `key` should be sent: not in flight.
    pub fn wants_ack(&self, key: u64) -> bool {
        !self.in_flight_acks.contains(&key)
    }

    /// Takes back the last submission, which rumqttc refused; the cursors
    /// restart so the batch is offered again.
    pub fn unsubmit_last(&mut self) {
        match self.unnumbered.pop_back() {
            Some(Submitted::Batch { seq, .. }) => {
                self.in_flight_seqs.remove(&seq);
            }
            Some(Submitted::Ack { key }) => {
                self.in_flight_acks.remove(&key);
            }
            _ => {}
        }
        self.restart_cursors();
    }

    /// rumqttc wrote a publish with `pkid`.
    pub fn numbered(&mut self, pkid: u16) {
        if self.inflight.contains_key(&pkid) {
            return; // a retransmission after reconnect
        }
        if let Some(submitted) = self.unnumbered.pop_front() {
            self.inflight.insert(pkid, submitted);
        }
    }

    /// The broker acknowledged `pkid`; returns what it acknowledged.
    pub fn acked(&mut self, pkid: u16) -> Option<Submitted> {
        let submitted = self.inflight.remove(&pkid)?;
        match submitted {
            Submitted::Batch { seq, .. } => {
                self.in_flight_seqs.remove(&seq);
            }
            Submitted::Ack { key } => {
                self.in_flight_acks.remove(&key);
            }
            Submitted::Status | Submitted::Message => {}
        }
        Some(submitted)
    }
}

/// Token buckets for publishes and bytes per second, with one second of
/// burst. A limit of 0 means unlimited.
#[derive(Debug)]
pub struct RateLimiter {
    publishes_per_s: f64,
    bytes_per_s: f64,
    publish_tokens: f64,
    byte_tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// Full buckets at `now`.
    pub fn new(publishes_per_s: u32, bytes_per_s: u32, now: Instant) -> Self {
        Self {
            publishes_per_s: f64::from(publishes_per_s),
            bytes_per_s: f64::from(bytes_per_s),
            publish_tokens: f64::from(publishes_per_s),
            byte_tokens: f64::from(bytes_per_s),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.publish_tokens =
            (self.publish_tokens + dt * self.publishes_per_s).min(self.publishes_per_s);
        self.byte_tokens = (self.byte_tokens + dt * self.bytes_per_s).min(self.bytes_per_s);
    }

    /// Takes the tokens for one publish of `bytes` if they are there, or
    /// says how long to wait for them.
    pub fn try_take(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        // A payload larger than one second of bytes may go once the bucket is full.
        let need_bytes = (bytes as f64).min(self.bytes_per_s);
        let pub_ok = self.publishes_per_s == 0.0 || self.publish_tokens >= 1.0;
        let bytes_ok = self.bytes_per_s == 0.0 || self.byte_tokens >= need_bytes;
        if pub_ok && bytes_ok {
            if self.publishes_per_s > 0.0 {
                self.publish_tokens -= 1.0;
            }
            if self.bytes_per_s > 0.0 {
                self.byte_tokens -= need_bytes;
            }
            return Ok(());
        }
        let wait_pub = if pub_ok {
            0.0
        } else {
            (1.0 - self.publish_tokens) / self.publishes_per_s
        };
        let wait_bytes = if bytes_ok {
            0.0
        } else {
            (need_bytes - self.byte_tokens) / self.bytes_per_s
        };
        Err(Duration::from_secs_f64(wait_pub.max(wait_bytes)).max(Duration::from_millis(1)))
    }
}

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

/// What the uplink exchanges with DR and the shadow client, beyond the
/// buffer. Every part is optional: [`run`] uses none of them.
#[derive(Debug, Default)]
pub struct UplinkLinks {
    /// The durable outbox of DR acknowledgements, published ahead of
    /// telemetry and removed on PUBACK.
    pub dr_store: Option<Arc<DrStore>>,
    /// Where valid commands go. Without it commands are acknowledged to the
    /// broker and dropped.
    pub commands: Option<mpsc::Sender<InboundCommand>>,
    /// Where shadow responses go.
    pub shadow_inbound: Option<mpsc::Sender<ShadowInbound>>,
    /// Messages to publish while connected (shadow requests).
    pub outgoing: Option<mpsc::Receiver<ChannelOutgoing>>,
    /// The latest encoded load snapshot, published on change and after
    /// every CONNACK.
    pub snapshot: Option<watch::Receiver<Option<Arc<Vec<u8>>>>>,
    /// The connection state, for the shadow and DR.
    pub connection: Option<watch::Sender<Connection>>,
}

/// Most shadow messages taken from the channel and waiting for the window.
const OUTGOING_QUEUE: usize = 32;

/// Runs the uplink until `shutdown` turns true. Then it publishes an offline
/// status and disconnects (best effort, bounded by 2 s).
///
/// Buffer reads and removals block (sled), so they run in
/// `tokio::task::block_in_place`: this needs the multi-threaded runtime.
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
/// acknowledged to the broker (dropped). Publishing order while there is room in the window and the
/// rate limits: DR acknowledgements, shadow messages, the load snapshot,
/// then telemetry.
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
    mut links: UplinkLinks,
) -> Result<(), UplinkError> {
    let tls = tls_config(&settings.ca, &settings.cert, &settings.key, settings.alpn)?;
    let mut options = mqtt_options(&settings, tls)?;
    options.set_manual_acks(true);
    let cap = usize::from(settings.max_inflight.max(1)) + 16;
    let (client, mut eventloop) = AsyncClient::new(options, cap);
    let status_topic = Topic::status(settings.ven_id.clone()).to_string();
    let mut state = LoopState {
        window: SendWindow::new(settings.max_inflight),
        limiter: RateLimiter::new(
            settings.publishes_per_s,
            settings.bytes_per_s,
            Instant::now(),
        ),
        connected: false,
        generation: 0,
        backlog: VecDeque::new(),
        live: VecDeque::new(),
        outgoing: VecDeque::new(),
        snapshot_dirty: false,
    };
    let mut attempt = 0u32;
    let mut wake_at: Option<Instant> = None;
    metrics.set_connection_state(ConnectionState::Connecting);
    let no_acks = Notify::new();

    loop {
        if *shutdown.borrow() {
            break;
        }
        if state.connected {
            wake_at = match fill_window(&client, &buffer, &mut state, &links) {
                Ok(wake_at) => wake_at,
                Err(error) => {
                    tracing::error!(%error, "reading the buffer failed; retrying in 1 s");
                    Some(Instant::now() + Duration::from_secs(1))
                }
            };
        }
        let wait = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let acks_added = match &links.dr_store {
            Some(store) => store.acks_added.notified(),
            None => no_acks.notified(),
        };
        let take_outgoing = state.connected && state.outgoing.len() < OUTGOING_QUEUE;
        let outgoing = async {
            match &mut links.outgoing {
                Some(rx) if take_outgoing => rx.recv().await,
                _ => std::future::pending().await,
            }
        };
        let snapshot_changed = async {
            match &mut links.snapshot {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(event) => {
                    attempt = 0;
                    on_event(event, &client, &buffer, &metrics, &status_topic, &settings, &mut state, &links);
                }
                Err(error) => {
                    if state.connected {
                        tracing::warn!(%error, "MQTT connection lost; reconnecting");
                    } else {
                        tracing::warn!(%error, attempt, "MQTT connect failed");
                    }
                    state.connected = false;
                    if let Some(tx) = &links.connection {
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
            message = outgoing => match message {
                Some(message) => state.outgoing.push_back(message),
                None => links.outgoing = None,
            },
            alive = snapshot_changed => {
                if alive {
                    state.snapshot_dirty = true;
                } else {
                    links.snapshot = None;
                }
            }
            () = wait => {}
            _ = shutdown.changed() => {}
        }
    }

    if state.connected {
        goodbye(&client, &mut eventloop, &status_topic, &settings).await;
    }
    if let Some(tx) = &links.connection {
        tx.send_modify(|c| c.connected = false);
    }
    metrics.set_connection_state(ConnectionState::Disconnected);
    Ok(())
}

/// The mutable state of [`run_with`]'s loop.
struct LoopState {
    window: SendWindow,
    limiter: RateLimiter,
    connected: bool,
    generation: u64,
    backlog: VecDeque<Record>,
    live: VecDeque<Record>,
    outgoing: VecDeque<ChannelOutgoing>,
    snapshot_dirty: bool,
}

/// The topics subscribed after every CONNACK.
fn subscriptions(ven_id: &VenId) -> Vec<String> {
    let mut topics = vec![Topic::cmd(ven_id.clone()).to_string()];
    for op in [
        ShadowOp::UpdateAccepted,
        ShadowOp::UpdateRejected,
        ShadowOp::UpdateDelta,
        ShadowOp::GetAccepted,
        ShadowOp::GetRejected,
    ] {
        topics.push(Topic::shadow(ven_id.clone(), op).to_string());
    }
    topics
}

#[expect(
    clippy::too_many_arguments,
    reason = "the event handler touches every part of the loop's state"
)]
fn on_event(
    event: Event,
    client: &AsyncClient,
    buffer: &Buffer,
    metrics: &Metrics,
    status_topic: &str,
    settings: &UplinkSettings,
    state: &mut LoopState,
    links: &UplinkLinks,
) {
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => {
            state.connected = true;
            state.generation += 1;
            metrics.set_connection_state(ConnectionState::Connected);
            metrics.connections.fetch_add(1, Ordering::Relaxed);
            let next_seq = buffer.next_seq();
            tracing::info!(
                session_present = ack.session_present,
                next_seq,
                "MQTT connected"
            );
            state.window.connected(ack.session_present, next_seq);
            state.backlog.clear();
            state.live.clear();
            state.snapshot_dirty = true;
            for topic in subscriptions(&settings.ven_id) {
                if let Err(error) = client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                    tracing::error!(%error, %topic, "cannot subscribe");
                }
            }
            let status = Status {
                ven_id: settings.ven_id.clone(),
                online: true,
                at: now(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                backlog_batches: buffer.stats().records,
                dropped_readings: metrics.readings_dropped.load(Ordering::Relaxed),
            };
            match encode(&status, Encoding::Postcard) {
                Ok(payload) => {
                    if client
                        .try_publish(status_topic, QoS::AtLeastOnce, true, payload)
                        .is_ok()
                    {
                        state.window.submit_status();
                    }
                }
                Err(error) => tracing::error!(%error, "status does not encode"),
            }
            if let Some(tx) = &links.connection {
                let generation = state.generation;
                tx.send_replace(Connection {
                    connected: true,
                    generation,
                });
            }
        }
        Event::Incoming(Packet::Publish(publish)) => {
            on_publish(&publish, client, settings, links, metrics);
        }
        Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => state.window.numbered(pkid),
        Event::Incoming(Packet::PubAck(ack)) => match state.window.acked(ack.pkid) {
            Some(Submitted::Batch {
                seq,
                readings,
                bytes,
            }) => {
                if let Err(error) = tokio::task::block_in_place(|| buffer.ack(seq)) {
                    tracing::error!(%error, seq, "removing an acknowledged batch failed; it will be sent again");
                }
                metrics.batches_published.fetch_add(1, Ordering::Relaxed);
                metrics
                    .readings_published
                    .fetch_add(u64::from(readings), Ordering::Relaxed);
                metrics
                    .bytes_published
                    .fetch_add(bytes as u64, Ordering::Relaxed);
            }
            Some(Submitted::Ack { key }) => {
                if let Some(store) = &links.dr_store
                    && let Err(error) = tokio::task::block_in_place(|| store.remove_ack(key))
                {
                    tracing::error!(%error, key, "removing a delivered DR acknowledgement failed; it will be sent again");
                }
                metrics.dr_acks_published.fetch_add(1, Ordering::Relaxed);
                if let Some(store) = &links.dr_store {
                    metrics
                        .dr_outbox
                        .store(store.outbox_len() as u64, Ordering::Relaxed);
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// Routes one incoming PUBLISH: a command to DR (which has it acknowledged
/// to the broker once durable), a shadow response to the shadow client;
/// everything else, and every command that is not acceptable, is
/// acknowledged here.
fn on_publish(
    publish: &Publish,
    client: &AsyncClient,
    settings: &UplinkSettings,
    links: &UplinkLinks,
    metrics: &Metrics,
) {
    let topic = Topic::parse(&publish.topic).ok();
    let ack_now = |publish: &Publish| {
        if let Err(error) = client.try_ack(publish) {
            tracing::warn!(%error, "cannot queue a PUBACK");
        }
    };
    match topic {
        Some(Topic {
            kind: TopicKind::Cmd,
            ven_id,
        }) if ven_id == settings.ven_id => {
            match check_command(&publish.payload, &settings.ven_id) {
                Ok(command) => {
                    let Some(tx) = &links.commands else {
                        tracing::warn!(
                            command_id = command.command_id,
                            "no DR executor; command dropped"
                        );
                        ack_now(publish);
                        return;
                    };
                    let acker = client.clone();
                    let held = publish.clone();
                    let inbound = InboundCommand {
                        command,
                        puback: Box::new(move || {
                            if let Err(error) = acker.try_ack(&held) {
                                tracing::warn!(%error, "cannot queue a command's PUBACK");
                            }
                        }),
                    };
                    if let Err(error) = tx.try_send(inbound) {
                        // Not acknowledged: the broker delivers it again.
                        tracing::error!(%error, "DR is not taking commands; the command is left to the broker");
                    }
                }
                Err(reason) => {
                    metrics.dr_commands_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%reason, bytes = publish.payload.len(), "command dropped");
                    ack_now(publish);
                }
            }
        }
        Some(Topic {
            kind: TopicKind::Shadow(op),
            ven_id,
        }) if ven_id == settings.ven_id => {
            if let Some(tx) = &links.shadow_inbound
                && let Err(error) = tx.try_send(ShadowInbound {
                    op,
                    payload: publish.payload.to_vec(),
                })
            {
                tracing::warn!(%error, ?op, "shadow client is not taking messages; dropped");
            }
            ack_now(publish);
        }
        _ => {
            metrics.dr_commands_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %publish.topic, "message on an unexpected topic dropped");
            ack_now(publish);
        }
    }
}

/// Decodes a command payload and checks it is for `ven_id`.
pub fn check_command(payload: &[u8], ven_id: &VenId) -> Result<Command, String> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_PAYLOAD_BYTES}-byte limit",
            payload.len()
        ));
    }
    let command: Command = decode(payload).map_err(|e| format!("does not decode: {e}"))?;
    if &command.ven_id != ven_id {
        return Err(format!(
            "command {} is for VEN {:?}, not this one",
            command.command_id,
            command.ven_id.as_str()
        ));
    }
    Ok(command)
}

/// Submits DR acknowledgements, shadow messages, the snapshot and batches
/// while the window and the rate limits allow. Returns when to try again
/// if the rate limiter said wait.
fn fill_window(
    client: &AsyncClient,
    buffer: &Buffer,
    state: &mut LoopState,
    links: &UplinkLinks,
) -> Result<Option<Instant>, UplinkError> {
    let ven = buffer.ven_id().clone();
    // 1. DR acknowledgements, oldest first.
    if let Some(store) = &links.dr_store
        && state.window.has_room()
        && store.outbox_len() > state.window.in_flight_acks.len()
    {
        let limit = state.window.max_inflight;
        let acks = tokio::task::block_in_place(|| {
            store.pending_acks(limit + state.window.in_flight_acks.len())
        });
        match acks {
            Ok(acks) => {
                let topic = Topic::ack(ven.clone()).to_string();
                for (key, payload) in acks {
                    if !state.window.has_room() {
                        return Ok(None);
                    }
                    if !state.window.wants_ack(key) {
                        continue;
                    }
                    if let Err(wait) = state.limiter.try_take(payload.len(), Instant::now()) {
                        return Ok(Some(Instant::now() + wait));
                    }
                    state.window.submit_ack(key);
                    if let Err(error) =
                        client.try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
                    {
                        tracing::error!(%error, "rumqttc refused an acknowledgement; offering it again");
                        state.window.unsubmit_last();
                        return Ok(None);
                    }
                }
            }
            Err(error) => tracing::error!(%error, "reading the DR outbox failed"),
        }
    }
    // 2. Shadow messages.
    while state.window.has_room() {
        let Some(message) = state.outgoing.front() else {
            break;
        };
        if let Err(wait) = state
            .limiter
            .try_take(message.payload.len(), Instant::now())
        {
            return Ok(Some(Instant::now() + wait));
        }
        let Some(message) = state.outgoing.pop_front() else {
            break;
        };
        state.window.submit_message();
        if let Err(error) = client.try_publish(
            message.topic.to_string(),
            QoS::AtLeastOnce,
            false,
            message.payload,
        ) {
            tracing::error!(%error, "rumqttc refused a shadow message; dropped");
            state.window.unsubmit_last();
            return Ok(None);
        }
    }
    // 3. The load snapshot (latest wins).
    if state.snapshot_dirty
        && state.window.has_room()
        && let Some(rx) = &links.snapshot
    {
        let payload = rx.borrow().clone();
        match payload {
            Some(payload) => {
                if let Err(wait) = state.limiter.try_take(payload.len(), Instant::now()) {
                    return Ok(Some(Instant::now() + wait));
                }
                state.window.submit_message();
                if client
                    .try_publish(
                        Topic::loads(ven.clone()).to_string(),
                        QoS::AtLeastOnce,
                        false,
                        payload.to_vec(),
                    )
                    .is_err()
                {
                    state.window.unsubmit_last();
                    return Ok(None);
                }
                state.snapshot_dirty = false;
            }
            None => state.snapshot_dirty = false,
        }
    }
    // 4. Telemetry.
    fill_batches(
        client,
        buffer,
        &mut state.window,
        &mut state.limiter,
        &mut state.backlog,
        &mut state.live,
    )
}

/// Submits batches while the window and the rate limits allow. Returns when
/// to try again if the rate limiter said wait.
fn fill_batches(
    client: &AsyncClient,
    buffer: &Buffer,
    window: &mut SendWindow,
    limiter: &mut RateLimiter,
    backlog: &mut VecDeque<Record>,
    live: &mut VecDeque<Record>,
) -> Result<Option<Instant>, UplinkError> {
    let read_ahead = window.max_inflight.max(16);
    let topic = Topic::meter(buffer.ven_id().clone()).to_string();
    while window.has_room() {
        if backlog.is_empty() {
            backlog.extend(read_stream(
                buffer,
                window,
                window.backlog_after,
                true,
                read_ahead,
            )?);
        }
        let backlog_left = !backlog.is_empty();
        let queue = match window.next_source(backlog_left) {
            Source::Backlog(_) => &mut *backlog,
            Source::Live(after) => {
                if live.is_empty() {
                    live.extend(read_stream(buffer, window, after, false, read_ahead)?);
                }
                if live.is_empty() && backlog_left {
                    &mut *backlog
                } else {
                    &mut *live
                }
            }
        };
        let Some(record) = queue.front() else {
            return Ok(None);
        };
        if let Err(wait) = limiter.try_take(record.payload.len(), Instant::now()) {
            return Ok(Some(Instant::now() + wait));
        }
        let Some(record) = queue.pop_front() else {
            return Ok(None);
        };
        window.submit_batch(&record);
        if let Err(error) =
            client.try_publish(topic.as_str(), QoS::AtLeastOnce, false, record.payload)
        {
            tracing::error!(%error, "rumqttc refused a publish; offering the batch again");
            window.unsubmit_last();
            backlog.clear();
            live.clear();
            return Ok(None);
        }
    }
    Ok(None)
}

/// The next batches of one stream after `after` that are not in flight,
/// paging past in-flight ones; empty when the stream has none left.
fn read_stream(
    buffer: &Buffer,
    window: &SendWindow,
    mut after: Option<u64>,
    backlog: bool,
    page: usize,
) -> Result<Vec<Record>, UplinkError> {
    loop {
        // sled may read from disk (its cache is small): off the async workers.
        let records = tokio::task::block_in_place(|| buffer.pending(after, page))?;
        let Some(last) = records.last() else {
            return Ok(Vec::new());
        };
        after = Some(last.seq);
        let past_backlog = !window.is_backlog(last.seq);
        let wanted: Vec<Record> = records
            .into_iter()
            .filter(|r| window.is_backlog(r.seq) == backlog && window.wants(r.seq))
            .collect();
        if !wanted.is_empty() || (backlog && past_backlog) {
            return Ok(wanted);
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
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(ConnectionError::RequestsDone) => {
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

    fn record(seq: u64) -> Record {
        Record {
            seq,
            payload: vec![1; 10],
            readings: 5,
            oldest_ts_ms: 0,
        }
    }

    #[test]
    fn pkids_map_back_to_batches_across_retransmission() {
        let mut w = SendWindow::new(3);
        w.connected(false, 10);
        w.submit_status();
        w.submit_batch(&record(1));
        w.submit_batch(&record(2));
        assert!(!w.has_room());
        w.numbered(1); // status
        w.numbered(2); // batch 1
        // connection drops with the session kept: rumqttc retransmits pkid 2
        w.connected(true, 10);
        w.numbered(2);
        w.numbered(3); // batch 2, first written now
        assert_eq!(w.acked(1), Some(Submitted::Status));
        assert_eq!(
            w.acked(2),
            Some(Submitted::Batch {
                seq: 1,
                readings: 5,
                bytes: 10
            })
        );
        assert_eq!(
            w.acked(3),
            Some(Submitted::Batch {
                seq: 2,
                readings: 5,
                bytes: 10
            })
        );
        assert_eq!(w.acked(3), None);
        assert_eq!(w.outstanding(), 0);
    }

    #[test]
    fn lost_session_resends_from_the_buffer() {
        let mut w = SendWindow::new(10);
        w.connected(false, 5);
        for s in 1..=2 {
            w.submit_batch(&record(s));
        }
        w.numbered(1);
        assert_eq!(w.next_source(true), Source::Backlog(Some(2)));
        assert!(!w.wants(2));
        // Session kept: cursors restart, in-flight batches are skipped.
        w.connected(true, 5);
        assert_eq!(w.next_source(true), Source::Backlog(None));
        assert!(!w.wants(1) && !w.wants(2) && w.wants(3));
        // Session lost: everything is wanted again.
        w.connected(false, 5);
        assert_eq!(w.outstanding(), 0);
        assert!(w.wants(1) && w.wants(2));
    }

    #[test]
    fn live_data_gets_every_fourth_slot_during_a_drain() {
        let mut w = SendWindow::new(100);
        w.connected(false, 100);
        let mut order = Vec::new();
        let (mut backlog_next, mut live_next) = (1u64, 100u64);
        for _ in 0..8 {
            match w.next_source(true) {
                Source::Backlog(_) => {
                    w.submit_batch(&record(backlog_next));
                    order.push(backlog_next);
                    backlog_next += 1;
                }
                Source::Live(after) => {
                    assert_eq!(after, Some(live_next - 1));
                    w.submit_batch(&record(live_next));
                    order.push(live_next);
                    live_next += 1;
                }
            }
        }
        assert_eq!(order, vec![1, 2, 3, 100, 4, 5, 6, 101]);
        assert_eq!(w.next_source(false), Source::Live(Some(101)));
    }

    #[test]
    fn unsubmit_offers_the_batch_again() {
        let mut w = SendWindow::new(10);
        w.connected(false, 100);
        w.submit_batch(&record(7));
        w.submit_batch(&record(8));
        w.unsubmit_last();
        assert_eq!(w.outstanding(), 1);
        assert!(w.wants(8) && !w.wants(7));
        assert_eq!(w.next_source(true), Source::Backlog(None));
    }

    #[test]
    fn rate_limiter_paces_publishes_and_bytes() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(100, 1000, t0);
        for _ in 0..2 {
            assert!(r.try_take(400, t0).is_ok());
        }
        // 200 bytes left: a 400-byte payload waits 0.2 s.
        let wait = r.try_take(400, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 0.01, "{wait:?}");
        assert!(r.try_take(400, t0 + Duration::from_millis(200)).is_ok());

        let mut r = RateLimiter::new(100, 0, t0);
        for _ in 0..100 {
            assert!(r.try_take(1, t0).is_ok());
        }
        let wait = r.try_take(1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.01).abs() < 0.002, "{wait:?}");

        let mut unlimited = RateLimiter::new(0, 0, t0);
        for _ in 0..10_000 {
            assert!(unlimited.try_take(1 << 20, t0).is_ok());
        }
    }

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
