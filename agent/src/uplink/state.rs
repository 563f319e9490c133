//! The uplink's state machine: what to publish next and what to delete,
//! without any network, disk or clock.
//!
//! Like rumqttc's `MqttState`, [`UplinkState`] "just modifies the state of
//! the object without doing any network operations". The I/O loop
//! ([`super::run_with`]) feeds it [`Event`]s with
//! [`handle`](UplinkState::handle) and asks it for [`Effect`]s with
//! [`poll`](UplinkState::poll), passing the current time; it performs each
//! effect and answers the ones that ask for data with an event. So the
//! publish-priority policy and AWS IoT Core's per-connection limits are
//! tested here with plain values (see the tests below).
//!
//! # A fill
//!
//! While connected, every `poll` until it returns `None` or
//! [`Effect::WaitUntil`] is one *fill*: the effects queued by the last
//! events first (deletes, subscriptions, the online status), then publishes
//! while the [`SendWindow`] has room and the [`RateLimiter`] allows, in
//! this order:
//!
//! 1. DR acknowledgements from the durable outbox, oldest first
//!    ([`Effect::CountAcks`], then [`Effect::ReadAcks`] if some are not in
//!    flight yet). A full window ends the fill here.
//! 2. Shadow messages, in the order they came.
//! 3. The load snapshot, if it changed or the connection is new (latest
//!    wins).
//! 4. Telemetry batches: the backlog (sealed before this connection came
//!    up) oldest first, and while a backlog remains every fourth publish
//!    is the oldest live batch ([`SendWindow::next_source`]); with no live
//!    batch waiting, the backlog takes that place too. Batches are read a page at a time
//!    ([`Effect::ReadBatches`]) into two read-ahead queues, skipping those
//!    already in flight.
//!
//! The fill ends when the window is full or nothing is left (`None`), or
//! when a rate limit says wait ([`Effect::WaitUntil`]: the instant at which
//! the next publish's tokens are there). The loop then waits for that
//! instant or the next event and polls again.
//!
//! # Where the quotas are enforced
//!
//! Here, before every publish of steps 1 to 4: the window bounds the
//! unacknowledged QoS 1 publishes (`max_inflight`, AWS IoT: 100), the
//! token buckets the publishes and payload bytes per second. The online
//! status after a CONNACK is not rate limited (one per connection) but
//! takes a place in the window.
//!
//! # Durability
//!
//! The state machine keeps nothing durable and deletes nothing itself. It
//! only sees batches the buffer has sealed and synced and acknowledgements
//! DR has synced, and it asks for a delete ([`Effect::DeleteBatch`],
//! [`Effect::RemoveAck`]) only when the PUBACK for exactly that publish's
//! packet id arrives.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use gridlink_protocol::{Encoding, ShadowOp, Status, Topic, VenId, encode};
use rumqttc::QoS;
use tokio::time::Instant;

use super::limiter::RateLimiter;
use super::window::{SendWindow, Source, Submitted};
use crate::buffer::{BufferError, Record};
use crate::channels::Outgoing;
use crate::dr::store::StoreError;

/// Most shadow messages taken from their channel and waiting for the window.
pub const OUTGOING_QUEUE: usize = 32;

/// How long to wait before trying again after a buffer read failed.
const READ_RETRY: Duration = Duration::from_secs(1);

/// Fewest batches read from the buffer at once.
const MIN_READ_AHEAD: usize = 16;

/// The topics the uplink publishes on and subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    status: String,
    subscriptions: Vec<String>,
    meter: String,
    ack: String,
    loads: String,
}

impl Topics {
    /// The topics of `ven_id` (the MQTT client: status and subscriptions)
    /// and of `data_ven_id` (the buffer's VEN, which every batch carries:
    /// telemetry, DR acknowledgements, load snapshots). In the agent both
    /// are the configured VEN.
    pub fn new(ven_id: &VenId, data_ven_id: &VenId) -> Self {
        let mut subscriptions = vec![Topic::cmd(ven_id.clone()).to_string()];
        for op in [
            ShadowOp::UpdateAccepted,
            ShadowOp::UpdateRejected,
            ShadowOp::UpdateDelta,
            ShadowOp::GetAccepted,
            ShadowOp::GetRejected,
        ] {
            subscriptions.push(Topic::shadow(ven_id.clone(), op).to_string());
        }
        Self {
            status: Topic::status(ven_id.clone()).to_string(),
            subscriptions,
            meter: Topic::meter(data_ven_id.clone()).to_string(),
            ack: Topic::ack(data_ven_id.clone()).to_string(),
            loads: Topic::loads(data_ven_id.clone()).to_string(),
        }
    }

    /// `ven/status/{venId}`: the online status and the last will.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// The topics subscribed (QoS 1) after every CONNACK: commands and the
    /// shadow's responses.
    pub fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }
}

/// AWS IoT Core's per-connection limits, as the client enforces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unacknowledged QoS 1 publishes at once (AWS IoT: 100; at least 1).
    pub max_inflight: u16,
    /// Publishes per second; 0 = unlimited.
    pub publishes_per_s: u32,
    /// Payload bytes per second; 0 = unlimited.
    pub bytes_per_s: u32,
}

/// What happens to the uplink: the connection's packets, answers to the
/// effects that ask for data, and news from the rest of the agent.
#[derive(Debug)]
pub enum Event {
    /// CONNACK.
    Connected {
        /// Whether the broker kept the session (and rumqttc retransmits
        /// what was in flight).
        session_present: bool,
        /// The buffer's next `batch_seq`: batches below it are backlog.
        next_seq: u64,
        /// The online status to publish, retained.
        status: Status,
    },
    /// The connection failed or was lost.
    Disconnected,
    /// rumqttc wrote a PUBLISH with this packet id (`Outgoing::Publish`),
    /// in submission order; a known id is a retransmission.
    Written(u16),
    /// PUBACK for this packet id.
    PubAck(u16),
    /// rumqttc refused the last [`Effect::Publish`] (its request channel is
    /// full or closed); why.
    Refused(String),
    /// The answer to [`Effect::CountAcks`]: acknowledgements in the DR
    /// outbox.
    AcksWaiting(usize),
    /// The answer to [`Effect::ReadAcks`]: `(key, payload)`, oldest first.
    Acks(Result<Vec<(u64, Vec<u8>)>, StoreError>),
    /// The answer to [`Effect::ReadBatches`]: sealed batches, oldest first.
    Batches(Result<Vec<Record>, BufferError>),
    /// A shadow message to publish while connected.
    Outgoing(Outgoing),
    /// The latest encoded load snapshot (`None`: none, or no more).
    Snapshot(Option<Arc<Vec<u8>>>),
}

/// What the I/O loop is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Publish; answer a refusal with [`Event::Refused`] before polling
    /// again.
    Publish {
        /// The topic.
        topic: String,
        /// The payload.
        payload: Vec<u8>,
        /// Always QoS 1.
        qos: QoS,
        /// The retain flag (set on the status only).
        retain: bool,
        /// What the publish carries, as the window tracks it.
        what: Submitted,
    },
    /// Subscribe at QoS 1.
    Subscribe {
        /// The topic filter.
        topic: String,
    },
    /// The broker acknowledged batch `seq`: remove it from the buffer and
    /// count it published.
    DeleteBatch {
        /// Its `batch_seq`.
        seq: u64,
        /// Readings in it.
        readings: u32,
        /// Payload bytes.
        bytes: usize,
    },
    /// The broker acknowledged DR acknowledgement `key`: remove it from the
    /// outbox and count it published.
    RemoveAck {
        /// Its outbox key.
        key: u64,
    },
    /// Count the DR outbox; answer with [`Event::AcksWaiting`].
    CountAcks,
    /// Read up to `limit` DR acknowledgements, oldest first; answer with
    /// [`Event::Acks`].
    ReadAcks {
        /// How many at most.
        limit: usize,
    },
    /// Read up to `limit` sealed batches with `seq > after` (`None`: from
    /// the oldest); answer with [`Event::Batches`].
    ReadBatches {
        /// Where to start, exclusive.
        after: Option<u64>,
        /// How many at most.
        limit: usize,
    },
    /// A rate limit holds the next publish back: poll again at this
    /// instant, or at the next event.
    WaitUntil(Instant),
}

/// The telemetry stream a read is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Backlog,
    Live,
}

/// Which streams were read since the last batch publish: each is read at
/// most once per publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Round {
    backlog_read: bool,
    live_read: bool,
}

/// Where the current fill is.
#[derive(Debug)]
enum Fill {
    /// No fill in progress: the next poll starts one.
    Idle,
    /// Waiting for [`Event::AcksWaiting`].
    CountingAcks,
    /// Waiting for [`Event::Acks`].
    ReadingAcks,
    /// Publishing a page of acknowledgements.
    Acks(VecDeque<(u64, Vec<u8>)>),
    /// Publishing shadow messages.
    Shadow,
    /// Publishing the load snapshot.
    Snapshot,
    /// Publishing telemetry.
    Batches(Round),
    /// Waiting for [`Event::Batches`] of `stream`.
    ReadingBatches { stream: Stream, round: Round },
    /// A buffer read failed: the next poll says wait.
    Failed,
    /// The fill is over: the next poll returns `None`.
    Done,
}

/// What the last [`Effect::Publish`] was, so a refusal can be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status,
    Ack,
    Shadow,
    Snapshot,
    Batch,
}

/// The uplink's state: the window, the rate limiter, the read-ahead
/// queues, the pending shadow messages and snapshot, and where the
/// current fill is. No I/O; the clock comes in with [`poll`](Self::poll).
#[derive(Debug)]
pub struct UplinkState {
    topics: Topics,
    window: SendWindow,
    limiter: RateLimiter,
    read_ahead: usize,
    dr_outbox: bool,
    connected: bool,
    generation: u64,
    backlog: VecDeque<Record>,
    live: VecDeque<Record>,
    outgoing: VecDeque<Outgoing>,
    snapshot: Option<Arc<Vec<u8>>>,
    snapshot_dirty: bool,
    effects: VecDeque<Effect>,
    fill: Fill,
    last: Option<Kind>,
}

impl UplinkState {
    /// A disconnected uplink with full rate buckets at `now`. With
    /// `dr_outbox` it publishes DR acknowledgements first.
    pub fn new(topics: Topics, limits: Limits, dr_outbox: bool, now: Instant) -> Self {
        let window = SendWindow::new(limits.max_inflight);
        Self {
            topics,
            read_ahead: window.max_inflight().max(MIN_READ_AHEAD),
            window,
            limiter: RateLimiter::new(limits.publishes_per_s, limits.bytes_per_s, now),
            dr_outbox,
            connected: false,
            generation: 0,
            backlog: VecDeque::new(),
            live: VecDeque::new(),
            outgoing: VecDeque::new(),
            snapshot: None,
            snapshot_dirty: false,
            effects: VecDeque::new(),
            fill: Fill::Idle,
            last: None,
        }
    }

    /// True between a CONNACK and the loss of the connection.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Number of CONNACKs so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether to take another shadow message from its channel: connected,
    /// and fewer than [`OUTGOING_QUEUE`] waiting.
    pub fn wants_outgoing(&self) -> bool {
        self.connected && self.outgoing.len() < OUTGOING_QUEUE
    }

    /// The publish window.
    pub fn window(&self) -> &SendWindow {
        &self.window
    }

    /// Takes one event in.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Connected {
                session_present,
                next_seq,
                status,
            } => self.on_connected(session_present, next_seq, &status),
            Event::Disconnected => {
                self.connected = false;
                self.fill = Fill::Idle;
                self.last = None;
            }
            Event::Written(pkid) => {
                if pkid != 0 {
                    self.window.numbered(pkid);
                }
            }
            Event::PubAck(pkid) => match self.window.acked(pkid) {
                Some(Submitted::Batch {
                    seq,
                    readings,
                    bytes,
                }) => self.effects.push_back(Effect::DeleteBatch {
                    seq,
                    readings,
                    bytes,
                }),
                Some(Submitted::Ack { key }) => self.effects.push_back(Effect::RemoveAck { key }),
                Some(Submitted::Status | Submitted::Message) | None => {}
            },
            Event::Refused(error) => self.on_refused(&error),
            Event::AcksWaiting(waiting) => {
                if matches!(self.fill, Fill::CountingAcks) {
                    self.fill = if waiting > self.window.acks_in_flight() {
                        self.effects.push_back(Effect::ReadAcks {
                            limit: self.window.max_inflight() + self.window.acks_in_flight(),
                        });
                        Fill::ReadingAcks
                    } else {
                        Fill::Shadow
                    };
                }
            }
            Event::Acks(acks) => {
                if matches!(self.fill, Fill::ReadingAcks) {
                    self.fill = match acks {
                        Ok(acks) => Fill::Acks(acks.into()),
                        Err(error) => {
                            tracing::error!(%error, "reading the DR outbox failed");
                            Fill::Shadow
                        }
                    };
                }
            }
            Event::Batches(records) => self.on_batches(records),
            Event::Outgoing(message) => self.outgoing.push_back(message),
            Event::Snapshot(snapshot) => {
                self.snapshot = snapshot;
                self.snapshot_dirty = true;
            }
        }
    }

    /// The next effect at `now`: first those the last events caused, then
    /// the next step of the fill (see the module docs). `None` ends the
    /// fill, and so does [`Effect::WaitUntil`]; the poll after either
    /// starts the next fill. A read must be answered before polling again.
    pub fn poll(&mut self, now: Instant) -> Option<Effect> {
        if let Some(effect) = self.effects.pop_front() {
            return Some(effect);
        }
        if !self.connected {
            return None;
        }
        loop {
            match std::mem::replace(&mut self.fill, Fill::Idle) {
                Fill::Idle => {
                    if self.dr_outbox && self.window.has_room() {
                        self.fill = Fill::CountingAcks;
                        return Some(Effect::CountAcks);
                    }
                    self.fill = Fill::Shadow;
                }
                waiting
                @ (Fill::CountingAcks | Fill::ReadingAcks | Fill::ReadingBatches { .. }) => {
                    self.fill = waiting;
                    return None;
                }
                Fill::Acks(page) => match self.next_ack(page, now) {
                    Ok(effect) => return effect,
                    Err(next) => self.fill = next,
                },
                Fill::Shadow => match self.next_shadow(now) {
                    Ok(effect) => return effect,
                    Err(next) => self.fill = next,
                },
                Fill::Snapshot => match self.next_snapshot(now) {
                    Ok(effect) => return effect,
                    Err(next) => self.fill = next,
                },
                Fill::Batches(round) => return self.next_batch(round, now),
                Fill::Failed => return Some(Effect::WaitUntil(now + READ_RETRY)),
                Fill::Done => return None,
            }
        }
    }

    fn on_connected(&mut self, session_present: bool, next_seq: u64, status: &Status) {
        self.connected = true;
        self.generation += 1;
        self.window.connected(session_present, next_seq);
        self.backlog.clear();
        self.live.clear();
        self.snapshot_dirty = true;
        self.fill = Fill::Idle;
        self.last = None;
        for topic in &self.topics.subscriptions {
            self.effects.push_back(Effect::Subscribe {
                topic: topic.clone(),
            });
        }
        match encode(status, Encoding::Postcard) {
            Ok(payload) => {
                self.window.submit_status();
                self.last = Some(Kind::Status);
                self.effects.push_back(Effect::Publish {
                    topic: self.topics.status.clone(),
                    payload,
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    what: Submitted::Status,
                });
            }
            Err(error) => tracing::error!(%error, "status does not encode"),
        }
    }

    /// Undoes the last publish, which rumqttc refused, and ends the fill
    /// (the status after a CONNACK is simply not sent).
    fn on_refused(&mut self, error: &str) {
        let Some(kind) = self.last.take() else {
            return;
        };
        self.window.unsubmit_last();
        match kind {
            Kind::Status => return,
            Kind::Ack => {
                tracing::error!(%error, "rumqttc refused an acknowledgement; offering it again");
            }
            Kind::Shadow => tracing::error!(%error, "rumqttc refused a shadow message; dropped"),
            Kind::Snapshot => self.snapshot_dirty = true,
            Kind::Batch => {
                tracing::error!(%error, "rumqttc refused a publish; offering the batch again");
                self.backlog.clear();
                self.live.clear();
            }
        }
        self.fill = Fill::Done;
    }

    /// Takes a page of batches: keeps those of the stream read that are
    /// not in flight, or asks for the next page if there are none yet.
    fn on_batches(&mut self, records: Result<Vec<Record>, BufferError>) {
        let Fill::ReadingBatches { stream, mut round } =
            std::mem::replace(&mut self.fill, Fill::Idle)
        else {
            return;
        };
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(%error, "reading the buffer failed; retrying in 1 s");
                self.fill = Fill::Failed;
                return;
            }
        };
        let backlog = stream == Stream::Backlog;
        let mut wanted = Vec::new();
        if let Some(last) = records.last().map(|r| r.seq) {
            let past_backlog = !self.window.is_backlog(last);
            wanted = records
                .into_iter()
                .filter(|r| self.window.is_backlog(r.seq) == backlog && self.window.wants(r.seq))
                .collect();
            if wanted.is_empty() && !(backlog && past_backlog) {
                // Everything on this page is in flight (or the other
                // stream's): page on.
                self.fill = Fill::ReadingBatches { stream, round };
                self.effects.push_back(Effect::ReadBatches {
                    after: Some(last),
                    limit: self.read_ahead,
                });
                return;
            }
        }
        if backlog {
            self.backlog.extend(wanted);
            round.backlog_read = true;
        } else {
            self.live.extend(wanted);
            round.live_read = true;
        }
        self.fill = Fill::Batches(round);
    }

    /// Step 1: the next acknowledgement of `page`. `Ok` ends this poll
    /// with the effect; `Err` moves to the given step.
    fn next_ack(
        &mut self,
        mut page: VecDeque<(u64, Vec<u8>)>,
        now: Instant,
    ) -> Result<Option<Effect>, Fill> {
        while let Some((key, payload)) = page.pop_front() {
            if !self.window.has_room() {
                return Ok(None);
            }
            if !self.window.wants_ack(key) {
                continue;
            }
            if let Err(wait) = self.limiter.try_take(payload.len(), now) {
                return Ok(Some(Effect::WaitUntil(now + wait)));
            }
            self.window.submit_ack(key);
            self.last = Some(Kind::Ack);
            self.fill = Fill::Acks(page);
            return Ok(Some(Effect::Publish {
                topic: self.topics.ack.clone(),
                payload,
                qos: QoS::AtLeastOnce,
                retain: false,
                what: Submitted::Ack { key },
            }));
        }
        Err(Fill::Shadow)
    }

    /// Step 2: the oldest shadow message.
    fn next_shadow(&mut self, now: Instant) -> Result<Option<Effect>, Fill> {
        if !self.window.has_room() {
            return Err(Fill::Snapshot);
        }
        let Some(message) = self.outgoing.front() else {
            return Err(Fill::Snapshot);
        };
        if let Err(wait) = self.limiter.try_take(message.payload.len(), now) {
            return Ok(Some(Effect::WaitUntil(now + wait)));
        }
        let Some(message) = self.outgoing.pop_front() else {
            return Err(Fill::Snapshot);
        };
        self.window.submit_message();
        self.last = Some(Kind::Shadow);
        self.fill = Fill::Shadow;
        Ok(Some(Effect::Publish {
            topic: message.topic.to_string(),
            payload: message.payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            what: Submitted::Message,
        }))
    }

    /// Step 3: the load snapshot, if it changed.
    fn next_snapshot(&mut self, now: Instant) -> Result<Option<Effect>, Fill> {
        let next = Fill::Batches(Round::default());
        if !self.snapshot_dirty || !self.window.has_room() {
            return Err(next);
        }
        let Some(payload) = &self.snapshot else {
            self.snapshot_dirty = false;
            return Err(next);
        };
        if let Err(wait) = self.limiter.try_take(payload.len(), now) {
            return Ok(Some(Effect::WaitUntil(now + wait)));
        }
        let payload = payload.to_vec();
        self.window.submit_message();
        self.snapshot_dirty = false;
        self.last = Some(Kind::Snapshot);
        self.fill = next;
        Ok(Some(Effect::Publish {
            topic: self.topics.loads.clone(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
            what: Submitted::Message,
        }))
    }

    /// Step 4: the next telemetry batch, or the read it needs first.
    fn next_batch(&mut self, round: Round, now: Instant) -> Option<Effect> {
        if !self.window.has_room() {
            return None;
        }
        if self.backlog.is_empty() && !round.backlog_read {
            return Some(self.read(Stream::Backlog, self.window.backlog_after(), round));
        }
        let backlog_left = !self.backlog.is_empty();
        let from_backlog = match self.window.next_source(backlog_left) {
            Source::Backlog(_) => true,
            Source::Live(after) => {
                if self.live.is_empty() && !round.live_read {
                    return Some(self.read(Stream::Live, after, round));
                }
                self.live.is_empty() && backlog_left
            }
        };
        let queue = if from_backlog {
            &mut self.backlog
        } else {
            &mut self.live
        };
        let record = queue.front()?;
        if let Err(wait) = self.limiter.try_take(record.payload.len(), now) {
            return Some(Effect::WaitUntil(now + wait));
        }
        let record = queue.pop_front()?;
        self.window.submit_batch(&record);
        self.last = Some(Kind::Batch);
        self.fill = Fill::Batches(Round::default());
        Some(Effect::Publish {
            topic: self.topics.meter.clone(),
            what: Submitted::Batch {
                seq: record.seq,
                readings: record.readings,
                bytes: record.payload.len(),
            },
            payload: record.payload,
            qos: QoS::AtLeastOnce,
            retain: false,
        })
    }

    fn read(&mut self, stream: Stream, after: Option<u64>, round: Round) -> Effect {
        self.fill = Fill::ReadingBatches { stream, round };
        Effect::ReadBatches {
            after,
            limit: self.read_ahead,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gridlink_protocol::Timestamp;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn ven() -> VenId {
        VenId::new("ven-1").unwrap()
    }

    fn status() -> Status {
        Status {
            ven_id: ven(),
            online: true,
            at: Timestamp::from_unix_ms(0).unwrap(),
            agent_version: "test".into(),
            backlog_batches: 0,
            dropped_readings: 0,
        }
    }

    fn limits(max_inflight: u16, publishes_per_s: u32, bytes_per_s: u32) -> Limits {
        Limits {
            max_inflight,
            publishes_per_s,
            bytes_per_s,
        }
    }

    /// The buffer, the DR outbox and rumqttc as the state machine sees
    /// them: answers its reads from maps, numbers its publishes in order
    /// (as rumqttc reports `Outgoing::Publish`), and records everything.
    struct World {
        topics: Topics,
        batches: BTreeMap<u64, Record>,
        outbox: BTreeMap<u64, Vec<u8>>,
        /// The packet id rumqttc gives the next publish it writes.
        next_pkid: u16,
        /// Number publishes as they are accepted (else call `write`).
        auto_number: bool,
        /// Publishes accepted and not yet numbered, oldest first.
        unwritten: VecDeque<Submitted>,
        /// Packet id of every publish written.
        pkids: Vec<(u16, Submitted)>,
        /// Refuse the publish after this many more accepted ones.
        refuse_after: Option<usize>,
        /// Fail the next buffer read.
        fail_read: bool,
    }

    impl World {
        fn new() -> Self {
            Self {
                topics: Topics::new(&ven(), &ven()),
                batches: BTreeMap::new(),
                outbox: BTreeMap::new(),
                next_pkid: 1,
                auto_number: true,
                unwritten: VecDeque::new(),
                pkids: Vec::new(),
                refuse_after: None,
                fail_read: false,
            }
        }

        /// Seals batches `seqs`, each with a payload of `bytes`.
        fn seal(&mut self, seqs: impl IntoIterator<Item = u64>, bytes: usize) {
            for seq in seqs {
                let record = Record {
                    seq,
                    payload: vec![0; bytes],
                    readings: 3,
                    oldest_ts_ms: 0,
                };
                self.batches.insert(seq, record);
            }
        }

        fn state(&self, limits: Limits, dr_outbox: bool, now: Instant) -> UplinkState {
            UplinkState::new(self.topics.clone(), limits, dr_outbox, now)
        }

        /// A CONNACK, then one fill.
        fn connect(&mut self, s: &mut UplinkState, session_present: bool, now: Instant) -> Run {
            let next_seq = self.batches.last_key_value().map_or(0, |(&k, _)| k + 1);
            self.connect_at(s, session_present, next_seq, now)
        }

        fn connect_at(
            &mut self,
            s: &mut UplinkState,
            session_present: bool,
            next_seq: u64,
            now: Instant,
        ) -> Run {
            s.handle(Event::Connected {
                session_present,
                next_seq,
                status: status(),
            });
            self.fill(s, now)
        }

        /// Polls until the fill ends, performing every effect as the I/O
        /// loop does.
        fn fill(&mut self, s: &mut UplinkState, now: Instant) -> Run {
            let mut run = Run::default();
            for _ in 0..10_000 {
                let Some(effect) = s.poll(now) else {
                    return run;
                };
                run.effects.push(effect.clone());
                match effect {
                    Effect::WaitUntil(at) => {
                        run.wait = Some(at);
                        return run;
                    }
                    Effect::Publish { topic, what, .. } => {
                        if self.refuse_after == Some(0) {
                            self.refuse_after = None;
                            s.handle(Event::Refused("request channel full".into()));
                            run.refused.push(self.label(&topic, what));
                            continue;
                        }
                        self.refuse_after = self.refuse_after.map(|n| n - 1);
                        run.published.push(self.label(&topic, what));
                        self.unwritten.push_back(what);
                        if self.auto_number {
                            self.write(s, 1);
                        }
                    }
                    Effect::Subscribe { .. } => {}
                    Effect::DeleteBatch { seq, .. } => {
                        self.batches.remove(&seq);
                    }
                    Effect::RemoveAck { key } => {
                        self.outbox.remove(&key);
                    }
                    Effect::CountAcks => s.handle(Event::AcksWaiting(self.outbox.len())),
                    Effect::ReadAcks { limit } => {
                        let acks = self.outbox.iter().take(limit);
                        let acks = acks.map(|(k, v)| (*k, v.clone())).collect();
                        s.handle(Event::Acks(Ok(acks)));
                    }
                    Effect::ReadBatches { after, limit } => {
                        if std::mem::take(&mut self.fail_read) {
                            let error = BufferError::Config("disk on fire".into());
                            s.handle(Event::Batches(Err(error)));
                            continue;
                        }
                        let from = after.map_or(0, |a| a + 1);
                        let records = self.batches.range(from..).take(limit);
                        let records = records.map(|(_, r)| r.clone()).collect();
                        s.handle(Event::Batches(Ok(records)));
                    }
                }
            }
            panic!("the fill does not end: {:?}", run.effects.last());
        }

        /// rumqttc writes the next `n` accepted publishes.
        fn write(&mut self, s: &mut UplinkState, n: usize) {
            for _ in 0..n {
                let what = self.unwritten.pop_front().expect("a publish to write");
                let pkid = self.next_pkid;
                self.next_pkid += 1;
                self.pkids.push((pkid, what));
                s.handle(Event::Written(pkid));
            }
        }

        /// The packet id batch `seq` was last written with.
        fn pkid_of(&self, seq: u64) -> u16 {
            self.pkids
                .iter()
                .rev()
                .find(|(_, what)| matches!(what, Submitted::Batch { seq: s, .. } if *s == seq))
                .map(|(pkid, _)| *pkid)
                .expect("batch written")
        }

        /// The broker's PUBACK for batch `seq`, then a fill.
        fn puback_batch(&mut self, s: &mut UplinkState, seq: u64, now: Instant) -> Run {
            s.handle(Event::PubAck(self.pkid_of(seq)));
            self.fill(s, now)
        }

        fn label(&self, topic: &str, what: Submitted) -> String {
            match what {
                Submitted::Batch { seq, .. } => format!("batch {seq}"),
                Submitted::Ack { key } => format!("ack {key}"),
                Submitted::Status => "status".into(),
                Submitted::Message if topic == self.topics.loads => "snapshot".into(),
                Submitted::Message => format!("message on {topic}"),
            }
        }
    }

    /// What one fill did.
    #[derive(Debug, Default)]
    struct Run {
        effects: Vec<Effect>,
        published: Vec<String>,
        refused: Vec<String>,
        wait: Option<Instant>,
    }

    fn shadow_get() -> String {
        format!("message on {}", Topic::shadow(ven(), ShadowOp::Get))
    }

    fn shadow_message() -> Outgoing {
        Outgoing {
            topic: Topic::shadow(ven(), ShadowOp::Get),
            payload: b"{}".to_vec(),
        }
    }

    fn batches(seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
        seqs.into_iter().map(|s| format!("batch {s}")).collect()
    }

    fn with_status(rest: Vec<String>) -> Vec<String> {
        let mut all = vec!["status".to_string()];
        all.extend(rest);
        all
    }

    fn is_delete(effect: &Effect) -> bool {
        matches!(effect, Effect::DeleteBatch { .. })
    }

    fn close_to(at: Instant, expected: Instant) -> bool {
        let gap = if at > expected {
            at - expected
        } else {
            expected - at
        };
        gap <= MS
    }

    #[test]
    fn connack_subscribes_and_publishes_the_online_status_first() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=2, 10);
        let mut s = world.state(limits(100, 0, 0), false, t0);
        assert_eq!(s.poll(t0), None, "nothing happens before a CONNACK");
        let run = world.connect(&mut s, false, t0);
        let subscribed: Vec<&str> = run
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Subscribe { topic } => Some(topic.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(subscribed, world.topics.subscriptions());
        assert!(subscribed.contains(&"ven/cmd/ven-1"));
        assert!(matches!(
            &run.effects[subscribed.len()],
            Effect::Publish { topic, retain: true, what: Submitted::Status, qos: QoS::AtLeastOnce, .. }
                if topic == "ven/status/ven-1"
        ));
        assert_eq!(run.published, with_status(batches(1..=2)));
        assert_eq!((s.connected(), s.generation()), (true, 1));
    }

    #[test]
    fn dr_acks_go_before_shadow_messages_the_snapshot_and_telemetry() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=3, 10);
        world.outbox.insert(7, b"ack seven".to_vec());
        world.outbox.insert(8, b"ack eight".to_vec());
        let mut s = world.state(limits(100, 0, 0), true, t0);
        s.handle(Event::Snapshot(Some(Arc::new(b"loads".to_vec()))));
        s.handle(Event::Outgoing(shadow_message()));
        let run = world.connect(&mut s, false, t0);
        let mut expected = with_status(vec![
            "ack 7".into(),
            "ack 8".into(),
            shadow_get(),
            "snapshot".into(),
        ]);
        expected.extend(batches(1..=3));
        assert_eq!(run.published, expected);

        // A new acknowledgement overtakes the telemetry that waits.
        world.seal(4..=5, 10);
        world.outbox.insert(9, b"ack nine".to_vec());
        let run = world.fill(&mut s, t0);
        let mut expected = vec!["ack 9".to_string()];
        expected.extend(batches(4..=5));
        assert_eq!(run.published, expected);
    }

    #[test]
    fn acks_in_flight_are_not_read_again() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.outbox.insert(1, b"ack".to_vec());
        let mut s = world.state(limits(100, 0, 0), true, t0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(vec!["ack 1".into()]));
        // Not acknowledged yet: counted, and not read or sent again.
        let run = world.fill(&mut s, t0);
        assert!(run.effects.contains(&Effect::CountAcks));
        assert!(
            !run.effects
                .iter()
                .any(|e| matches!(e, Effect::ReadAcks { .. }))
        );
        assert!(run.published.is_empty());
        // Its PUBACK removes exactly that acknowledgement from the outbox.
        let (pkid, _) = world.pkids[1];
        s.handle(Event::PubAck(pkid));
        let run = world.fill(&mut s, t0);
        assert_eq!(run.effects[0], Effect::RemoveAck { key: 1 });
        assert!(world.outbox.is_empty());
    }

    #[test]
    fn a_full_window_keeps_acks_ahead_of_everything_else() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=2, 10);
        for key in 0..3 {
            world.outbox.insert(key, vec![1; 4]);
        }
        let mut s = world.state(limits(3, 0, 0), true, t0);
        s.handle(Event::Snapshot(Some(Arc::new(b"loads".to_vec()))));
        let run = world.connect(&mut s, false, t0);
        // The status takes one place: two acknowledgements, and nothing else.
        assert_eq!(run.published, ["status", "ack 0", "ack 1"]);
        assert!(!s.window().has_room());
        // One PUBACK (the status's): the third acknowledgement, not the snapshot.
        s.handle(Event::PubAck(world.pkids[0].0));
        let run = world.fill(&mut s, t0);
        assert_eq!(run.published, ["ack 2"]);
    }

    #[test]
    fn live_data_gets_every_fourth_publish_while_the_backlog_drains() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=10, 10);
        let mut s = world.state(limits(100, 0, 0), false, t0);
        // CONNACK with next_seq 100; then three live batches are sealed.
        s.handle(Event::Connected {
            session_present: false,
            next_seq: 100,
            status: status(),
        });
        world.seal(100..=102, 10);
        let run = world.fill(&mut s, t0);
        assert_eq!(
            run.published,
            with_status(batches([1, 2, 3, 100, 4, 5, 6, 101, 7, 8, 9, 102, 10]))
        );
        // Live data sealed later goes out in order.
        world.seal(103..=104, 10);
        let run = world.fill(&mut s, t0);
        assert_eq!(run.published, batches(103..=104));
    }

    #[test]
    fn the_backlog_takes_the_live_slot_when_no_live_batch_waits() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=8, 10);
        let mut s = world.state(limits(100, 0, 0), false, t0);
        s.handle(Event::Connected {
            session_present: false,
            next_seq: 100,
            status: status(),
        });
        world.seal([100], 10);
        let run = world.fill(&mut s, t0);
        assert_eq!(
            run.published,
            with_status(batches([1, 2, 3, 100, 4, 5, 6, 7, 8]))
        );
    }

    #[test]
    fn the_publish_rate_holds_the_next_publish_back_until_a_token_is_there() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=4, 10);
        let mut s = world.state(limits(100, 2, 0), false, t0);
        // Two tokens: the status is not rate limited, two batches are.
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches(1..=2)));
        let at = run.wait.expect("told to wait");
        assert!(close_to(at, t0 + SECOND / 2), "{:?}", at - t0);
        // Not a moment early: asked again just before, the answer is the same.
        let early = world.fill(&mut s, at - MS * 2);
        assert!(early.published.is_empty());
        assert!(close_to(early.wait.expect("told to wait"), at));
        let run = world.fill(&mut s, at + MS);
        assert_eq!(run.published, batches([3]));
        let next = run.wait.expect("told to wait");
        assert!(close_to(next, at + SECOND / 2), "{:?}", next - at);
        assert_eq!(world.fill(&mut s, next + MS).published, batches([4]));
    }

    #[test]
    fn the_byte_rate_holds_the_next_publish_back_until_its_bytes_are_there() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=3, 400);
        let mut s = world.state(limits(100, 0, 1000), false, t0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches(1..=2)));
        // 200 bytes left, 400 needed: 0.2 s.
        let at = run.wait.expect("told to wait");
        assert!(close_to(at, t0 + SECOND / 5), "{:?}", at - t0);
        let early = world.fill(&mut s, at - MS * 2);
        assert!(early.published.is_empty());
        assert!(close_to(early.wait.expect("told to wait"), at));
        let run = world.fill(&mut s, at + MS);
        assert_eq!(run.published, batches([3]));
        assert_eq!(run.wait, None);
    }

    #[test]
    fn a_batch_larger_than_a_second_of_bytes_goes_when_the_bucket_is_full() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=2, 3000);
        let mut s = world.state(limits(100, 0, 1000), false, t0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches([1])));
        let at = run.wait.expect("told to wait");
        assert!(close_to(at, t0 + SECOND), "{:?}", at - t0);
        assert_eq!(world.fill(&mut s, at + MS).published, batches([2]));
    }

    #[test]
    fn the_rate_limits_pace_acks_and_shadow_messages_too() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.outbox.insert(1, vec![0; 10]);
        let mut s = world.state(limits(100, 1, 0), true, t0);
        for _ in 0..2 {
            s.handle(Event::Outgoing(shadow_message()));
        }
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, ["status", "ack 1"]);
        let at = run.wait.expect("told to wait");
        assert!(close_to(at, t0 + SECOND));
        let run = world.fill(&mut s, at + MS);
        assert_eq!(run.published, [shadow_get()]);
        let run = world.fill(&mut s, run.wait.expect("told to wait") + MS);
        assert_eq!(run.published, [shadow_get()]);
    }

    #[test]
    fn the_in_flight_window_holds_the_next_publish_until_a_puback() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=5, 10);
        let mut s = world.state(limits(3, 0, 0), false, t0);
        let run = world.connect(&mut s, false, t0);
        // The status and two batches fill the window; no wait, just full.
        assert_eq!(run.published, with_status(batches(1..=2)));
        assert_eq!(run.wait, None);
        assert_eq!(s.window().outstanding(), 3);
        assert!(world.fill(&mut s, t0).published.is_empty());
        // Each PUBACK makes room for exactly one more.
        let run = world.puback_batch(&mut s, 1, t0);
        assert_eq!(run.published, batches([3]));
        let run = world.puback_batch(&mut s, 2, t0);
        assert_eq!(run.published, batches([4]));
    }

    #[test]
    fn a_puback_deletes_exactly_that_batch() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=3, 10);
        let mut s = world.state(limits(100, 0, 0), false, t0);
        world.connect(&mut s, false, t0);
        let pkid = world.pkid_of(2);
        s.handle(Event::PubAck(pkid));
        let run = world.fill(&mut s, t0);
        let deletes: Vec<&Effect> = run.effects.iter().filter(|e| is_delete(e)).collect();
        assert_eq!(
            deletes,
            [&Effect::DeleteBatch {
                seq: 2,
                readings: 3,
                bytes: 10
            }]
        );
        assert!(run.published.is_empty());
        assert_eq!(world.batches.keys().copied().collect::<Vec<_>>(), [1, 3]);
        // A second PUBACK for the same id, or one for the status, deletes nothing.
        s.handle(Event::PubAck(pkid));
        s.handle(Event::PubAck(world.pkids[0].0));
        assert!(!world.fill(&mut s, t0).effects.iter().any(is_delete));
        assert_eq!(s.window().outstanding(), 2);
    }

    #[test]
    fn a_reconnect_with_the_session_kept_sends_nothing_twice_and_loses_nothing() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=5, 10);
        world.auto_number = false;
        let mut s = world.state(limits(10, 0, 0), false, t0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches(1..=5)));
        // rumqttc wrote the status and batches 1 and 2; the status is acknowledged.
        world.write(&mut s, 3);
        s.handle(Event::PubAck(world.pkids[0].0));
        s.handle(Event::Disconnected);
        assert_eq!(world.fill(&mut s, t0).effects, []);

        // The broker kept the session: nothing in flight is published again.
        world.seal([6], 10);
        let run = world.connect_at(&mut s, true, 6, t0);
        assert_eq!(run.published, with_status(batches([6])));
        // rumqttc retransmits pkids 2 and 3, then writes what it still held.
        for (pkid, _) in world.pkids.clone().into_iter().skip(1) {
            s.handle(Event::Written(pkid));
        }
        world.write(&mut s, 5);
        for seq in 1..=6 {
            let run = world.puback_batch(&mut s, seq, t0);
            let deletes: Vec<&Effect> = run.effects.iter().filter(|e| is_delete(e)).collect();
            assert!(matches!(deletes[..], [Effect::DeleteBatch { seq: s, .. }] if *s == seq));
            assert!(run.published.is_empty());
        }
        assert!(world.batches.is_empty());
        let (status_pkid, _) = world.pkids[world.pkids.len() - 2];
        assert_eq!(world.pkids[world.pkids.len() - 2].1, Submitted::Status);
        s.handle(Event::PubAck(status_pkid));
        assert_eq!(s.window().outstanding(), 0);
    }

    #[test]
    fn a_lost_session_sends_what_was_in_flight_again_once() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=3, 10);
        let mut s = world.state(limits(10, 0, 0), false, t0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches(1..=3)));
        s.handle(Event::PubAck(world.pkid_of(1)));
        world.fill(&mut s, t0);
        s.handle(Event::Disconnected);
        // No session: rumqttc dropped batches 2 and 3, so they go again, once.
        world.next_pkid = 1;
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches(2..=3)));
        assert!(world.fill(&mut s, t0).published.is_empty());
        for seq in 2..=3 {
            world.puback_batch(&mut s, seq, t0);
        }
        assert!(world.batches.is_empty());
    }

    #[test]
    fn batches_in_flight_are_skipped_when_the_backlog_is_read_again() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=40, 10);
        let mut s = world.state(limits(30, 0, 0), false, t0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches(1..=29)));
        // Session kept and window full; one PUBACK makes one place.
        s.handle(Event::Disconnected);
        world.connect_at(&mut s, true, 41, t0);
        s.handle(Event::PubAck(world.pkids[0].0));
        let run = world.puback_batch(&mut s, 1, t0);
        assert_eq!(run.published, batches([30]));
        let reads: Vec<Option<u64>> = run
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::ReadBatches { after, limit: 30 } => Some(*after),
                _ => None,
            })
            .collect();
        // The first page (2..=31) held batch 30; one read was enough.
        assert_eq!(reads, [None]);
        let run = world.puback_batch(&mut s, 2, t0);
        assert_eq!(run.published, batches([31]));
    }

    #[test]
    fn a_refused_batch_is_offered_again() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=3, 10);
        let mut s = world.state(limits(100, 0, 0), false, t0);
        world.refuse_after = Some(2); // the status and batch 1 pass
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, with_status(batches([1])));
        assert_eq!(run.refused, batches([2]));
        assert_eq!(run.wait, None);
        let run = world.fill(&mut s, t0);
        assert_eq!(run.published, batches(2..=3));
    }

    #[test]
    fn a_refused_ack_is_offered_again_and_a_refused_shadow_message_is_dropped() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.outbox.insert(4, vec![1]);
        let mut s = world.state(limits(100, 0, 0), true, t0);
        world.refuse_after = Some(1);
        let run = world.connect(&mut s, false, t0);
        assert_eq!((run.published.len(), run.refused.len()), (1, 1));
        assert_eq!(world.fill(&mut s, t0).published, ["ack 4"]);

        s.handle(Event::Outgoing(shadow_message()));
        world.refuse_after = Some(0);
        assert_eq!(world.fill(&mut s, t0).refused.len(), 1);
        assert!(world.fill(&mut s, t0).published.is_empty());
    }

    #[test]
    fn a_refused_status_is_not_tracked() {
        let t0 = Instant::now();
        let mut world = World::new();
        let mut s = world.state(limits(100, 0, 0), false, t0);
        world.refuse_after = Some(0);
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.refused, ["status"]);
        assert_eq!(s.window().outstanding(), 0);
    }

    #[test]
    fn the_load_snapshot_goes_once_per_change_and_after_every_connack() {
        let t0 = Instant::now();
        let mut world = World::new();
        let mut s = world.state(limits(100, 0, 0), false, t0);
        s.handle(Event::Snapshot(Some(Arc::new(b"old".to_vec()))));
        s.handle(Event::Snapshot(Some(Arc::new(b"new".to_vec()))));
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, ["status", "snapshot"]);
        assert!(run.effects.iter().any(
            |e| matches!(e, Effect::Publish { payload, what: Submitted::Message, .. } if payload == b"new")
        ));
        assert!(world.fill(&mut s, t0).published.is_empty());
        s.handle(Event::Snapshot(Some(Arc::new(b"newer".to_vec()))));
        assert_eq!(world.fill(&mut s, t0).published, ["snapshot"]);
        // Refused: sent at the next fill.
        s.handle(Event::Snapshot(Some(Arc::new(b"newest".to_vec()))));
        world.refuse_after = Some(0);
        assert_eq!(world.fill(&mut s, t0).refused, ["snapshot"]);
        assert_eq!(world.fill(&mut s, t0).published, ["snapshot"]);
        s.handle(Event::Disconnected);
        assert_eq!(
            world.connect(&mut s, true, t0).published,
            ["status", "snapshot"]
        );
        // The link closed: nothing more.
        s.handle(Event::Snapshot(None));
        assert!(world.fill(&mut s, t0).published.is_empty());
    }

    #[test]
    fn a_failed_buffer_read_is_retried_after_a_second() {
        let t0 = Instant::now();
        let mut world = World::new();
        world.seal(1..=2, 10);
        let mut s = world.state(limits(100, 0, 0), false, t0);
        world.fail_read = true;
        let run = world.connect(&mut s, false, t0);
        assert_eq!(run.published, ["status"]);
        assert_eq!(run.wait, Some(t0 + SECOND));
        let later = t0 + SECOND;
        assert_eq!(world.fill(&mut s, later).published, batches(1..=2));
    }

    #[test]
    fn shadow_messages_queue_up_to_a_bound_while_connected() {
        let t0 = Instant::now();
        let mut world = World::new();
        let mut s = world.state(limits(1, 0, 0), false, t0);
        assert!(!s.wants_outgoing(), "not while disconnected");
        world.connect(&mut s, false, t0);
        for _ in 0..OUTGOING_QUEUE {
            assert!(s.wants_outgoing());
            s.handle(Event::Outgoing(shadow_message()));
        }
        assert!(!s.wants_outgoing());
    }
}
