//! The publish window: which batch goes next, which packet id acknowledges
//! which submission, and what a lost session means. Pure bookkeeping, no
//! I/O and no clock.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::buffer::Record;

/// One in every `LIVE_SHARE` publishes goes to live data while a backlog drains.
pub(super) const LIVE_SHARE: u32 = 4;

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

    /// The most unacknowledged publishes at once.
    pub(super) fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    /// DR acknowledgements submitted and not yet acknowledged.
    pub(super) fn acks_in_flight(&self) -> usize {
        self.in_flight_acks.len()
    }

    /// Highest backlog seq submitted on this connection (None: none yet).
    pub(super) fn backlog_after(&self) -> Option<u64> {
        self.backlog_after
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
    /// live data gets one slot in `LIVE_SHARE` (4).
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
}
