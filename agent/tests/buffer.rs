//! The durable buffer against real sled on real files, with real fsync:
//! a model-based test, the byte bound, damaged files and records, a writer
//! killed with SIGKILL, and the writer task.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gridlink_agent::buffer::{Buffer, BufferConfig, BufferError, Record, run_writer};
use gridlink_agent::metrics::Metrics;
use gridlink_agent::reading::Reading;
use gridlink_protocol::{Phase, Quantity, TelemetryBatch, VenId, decode};
use proptest::prelude::*;
use tokio::sync::{Notify, mpsc};

const T0: i64 = 1_700_000_000_000;

/// One reading as a comparable value: meter, quantity, phase, exponent,
/// timestamp, raw value.
type Flat = (String, Quantity, Phase, i8, i64, i64);

fn config(dir: &Path, max_bytes: u64, max_payload_bytes: usize) -> BufferConfig {
    BufferConfig {
        path: dir.join("buffer"),
        max_bytes,
        cache_bytes: 4 << 20,
        ven_id: VenId::new("ven-test").expect("valid VEN id"),
        max_payload_bytes,
    }
}

fn open(config: &BufferConfig) -> (Buffer, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let buffer = Buffer::open(config.clone(), Arc::clone(&metrics)).expect("open the buffer");
    (buffer, metrics)
}

fn reading(meter: &str, quantity: Quantity, exponent: i8, ts_ms: i64, raw: i64) -> Reading {
    Reading {
        meter: Arc::from(meter),
        quantity,
        phase: Phase::Total,
        exponent,
        ts_ms,
        raw,
    }
}

fn flat(r: &Reading) -> Flat {
    (
        r.meter.to_string(),
        r.quantity,
        r.phase,
        r.exponent,
        r.ts_ms,
        r.raw,
    )
}

/// The readings of a record, checked against its header.
fn record_readings(record: &Record) -> Vec<Flat> {
    let batch: TelemetryBatch = decode(&record.payload).expect("a stored batch decodes");
    assert_eq!(batch.batch_seq, record.seq);
    assert_eq!(batch.ven_id.as_str(), "ven-test");
    let mut out = Vec::new();
    for s in &batch.series {
        for p in &s.points {
            out.push((
                s.meter.clone(),
                s.quantity,
                s.phase,
                s.exponent,
                p.ts_ms,
                p.raw,
            ));
        }
    }
    assert_eq!(out.len(), record.readings as usize, "seq {}", record.seq);
    assert_eq!(
        out.iter().map(|r| r.4).min(),
        Some(record.oldest_ts_ms),
        "seq {}",
        record.seq
    );
    out
}

/// Seals and returns every sealed reading, each once, and the seqs.
fn drain_view(buffer: &Buffer) -> (Vec<Flat>, Vec<u64>) {
    buffer.seal().expect("seal");
    let records = buffer.pending(None, usize::MAX).expect("pending");
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    (records.iter().flat_map(record_readings).collect(), seqs)
}

fn counts(readings: &[Flat]) -> BTreeMap<&Flat, usize> {
    let mut map = BTreeMap::new();
    for r in readings {
        *map.entry(r).or_default() += 1;
    }
    map
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone)]
enum Op {
    Append { polls: usize, per_poll: usize },
    Seal,
    Pending { after: Option<usize>, limit: usize },
    Ack { pick: usize },
    AckUnknown,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..4, 1usize..40).prop_map(|(polls, per_poll)| Op::Append { polls, per_poll }),
        2 => Just(Op::Seal),
        2 => (proptest::option::of(0usize..64), 1usize..6).prop_map(|(after, limit)| Op::Pending { after, limit }),
        2 => (0usize..64).prop_map(|pick| Op::Ack { pick }),
        1 => Just(Op::AckUnknown),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    /// Readings appended and not acknowledged.
    live: BTreeSet<Flat>,
    /// Every seq `seal` returned, in order.
    sealed: Vec<u64>,
    acked: HashSet<u64>,
    next_reading: i64,
    appended: u64,
}

impl Model {
    fn readings(&mut self, n: usize, salt: u64) -> Vec<Reading> {
        const METERS: [&str; 3] = ["main", "pv", "ev.charger"];
        const QUANTITIES: [Quantity; 3] = [
            Quantity::ActivePower,
            Quantity::Voltage,
            Quantity::EnergyImport,
        ];
        (0..n)
            .map(|i| {
                let k = self.next_reading;
                self.next_reading += 1;
                let h = (k as u64 ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                // Timestamps unique per reading but not in append order.
                let ts = T0 + (k ^ 5) * 1000;
                let exponent = if h.is_multiple_of(7) { -1 } else { 0 };
                let r = reading(
                    METERS[(h >> 8) as usize % 3],
                    QUANTITIES[(h >> 16) as usize % 3],
                    exponent,
                    ts,
                    (h >> 20) as i64 - (1 << 43) + i as i64,
                );
                self.live.insert(flat(&r));
                r
            })
            .collect()
    }

    /// `pending` returns live batches only, in order, after `after`.
    fn check_pending(&self, buffer: &Buffer, after: Option<usize>, limit: usize) {
        let after = after.and_then(|i| self.sealed.get(i).copied());
        let records = buffer.pending(after, limit).expect("pending");
        assert!(records.len() <= limit);
        let mut prev = after;
        for record in &records {
            assert!(prev.is_none_or(|p| record.seq > p));
            prev = Some(record.seq);
            assert!(
                !self.acked.contains(&record.seq),
                "acked {} came back",
                record.seq
            );
            for r in record_readings(record) {
                assert!(self.live.contains(&r), "{r:?} is not live");
            }
        }
    }

    /// Acknowledges one of the sealed seqs: the first time it returns the
    /// batch, whose readings leave the model; after that, nothing.
    fn ack(&mut self, buffer: &Buffer, pick: usize) {
        if self.sealed.is_empty() {
            return;
        }
        let seq = self.sealed[pick % self.sealed.len()];
        let acked = buffer.ack(seq).expect("ack");
        if self.acked.contains(&seq) {
            assert_eq!(acked, None, "seq {seq} acked twice");
        } else {
            let record = acked.unwrap_or_else(|| panic!("sealed seq {seq} is missing"));
            for r in record_readings(&record) {
                assert!(self.live.remove(&r), "{r:?} acked but not live");
            }
            self.acked.insert(seq);
        }
    }
}

/// Drops the buffer and opens it again: the totals computed on open match
/// the ones kept in memory.
fn reopen(buffer: Buffer, config: &BufferConfig) -> (Buffer, Arc<Metrics>) {
    let before = buffer.stats();
    drop(buffer);
    let (buffer, metrics) = open(config);
    let after = buffer.stats();
    assert_eq!(
        (
            after.records,
            after.bytes,
            after.journal_readings,
            after.sealed_readings,
            after.oldest_unsent_ms
        ),
        (
            before.records,
            before.bytes,
            before.journal_readings,
            before.sealed_readings,
            before.oldest_unsent_ms
        ),
    );
    (buffer, metrics)
}

fn run_model(ops: &[Op], salt: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), 64 << 20, 2048);
    let (mut buffer, mut metrics) = open(&config);
    let mut model = Model {
        live: BTreeSet::new(),
        sealed: Vec::new(),
        acked: HashSet::new(),
        next_reading: 0,
        appended: 0,
    };
    let mut stored = 0;
    for op in ops {
        match *op {
            Op::Append { polls, per_poll } => {
                let readings = model.readings(polls * per_poll, salt);
                model.appended += readings.len() as u64;
                buffer.append(&readings).expect("append");
            }
            Op::Seal => {
                let seqs = buffer.seal().expect("seal");
                for seq in seqs {
                    assert!(
                        model.sealed.last().is_none_or(|&last| seq > last),
                        "seq {seq} after {:?}",
                        model.sealed.last()
                    );
                    model.sealed.push(seq);
                }
            }
            Op::Pending { after, limit } => model.check_pending(&buffer, after, limit),
            Op::Ack { pick } => model.ack(&buffer, pick),
            Op::AckUnknown => {
                let seq = model.sealed.last().map_or(u64::MAX / 2, |s| s + 1_000_000);
                assert_eq!(buffer.ack(seq).expect("ack"), None);
            }
            Op::Reopen => {
                stored += metrics.readings_stored.load(Ordering::Relaxed);
                (buffer, metrics) = reopen(buffer, &config);
            }
        }
        let stats = buffer.stats();
        assert_eq!(metrics.buffer_bytes.load(Ordering::Relaxed), stats.bytes);
        assert_eq!(
            metrics.buffer_records.load(Ordering::Relaxed),
            stats.records
        );
        assert_eq!(
            metrics.oldest_unsent_ms.load(Ordering::Relaxed),
            model.live.iter().map(|r| r.4).min().unwrap_or(0)
        );
    }
    stored += metrics.readings_stored.load(Ordering::Relaxed);
    assert_eq!(stored, model.appended);

    let (readings, seqs) = drain_view(&buffer);
    for seq in &seqs {
        assert!(!model.acked.contains(seq), "acked {seq} came back");
    }
    let seen = counts(&readings);
    assert!(seen.values().all(|&n| n == 1), "duplicated readings");
    assert_eq!(
        seen.keys().copied().cloned().collect::<BTreeSet<_>>(),
        model.live
    );
    assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.readings_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(buffer.stats().duplicates_dropped, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn buffer_matches_a_model_across_restarts(ops in proptest::collection::vec(op(), 1..40), salt in any::<u64>()) {
        run_model(&ops, salt);
    }
}

#[test]
fn a_fixed_sequence_through_the_model() {
    use Op::{Ack, AckUnknown, Append, Pending, Reopen, Seal};
    run_model(
        &[
            Append {
                polls: 3,
                per_poll: 39,
            },
            Reopen,
            Seal,
            Append {
                polls: 2,
                per_poll: 10,
            },
            Pending {
                after: None,
                limit: 5,
            },
            Ack { pick: 0 },
            Reopen,
            Ack { pick: 0 },
            AckUnknown,
            Seal,
            Pending {
                after: Some(0),
                limit: 2,
            },
            Reopen,
            Append {
                polls: 1,
                per_poll: 1,
            },
        ],
        42,
    );
}

// ---------------------------------------------------------------- values

#[test]
fn sealing_sorts_deduplicates_and_refuses_what_cannot_be_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, metrics) = open(&config(dir.path(), 1 << 20, 4096));
    buffer
        .append(&[
            reading("main", Quantity::ActivePower, 0, T0 + 2000, 20),
            reading("main", Quantity::ActivePower, 0, T0 + 1000, 10),
            reading("bad meter", Quantity::ActivePower, 0, T0, 1),
            reading("main", Quantity::Voltage, 12, T0, 1),
            reading("main", Quantity::Current, 0, -1, 1),
        ])
        .unwrap();
    buffer
        .append(&[
            reading("main", Quantity::ActivePower, 0, T0 + 1000, 99),
            reading("main", Quantity::ActivePower, 0, T0 + 3000, 30),
        ])
        .unwrap();
    assert_eq!(metrics.readings_stored.load(Ordering::Relaxed), 4);
    let (readings, seqs) = drain_view(&buffer);
    assert_eq!(seqs.len(), 1);
    let values: Vec<(i64, i64)> = readings.iter().map(|r| (r.4, r.5)).collect();
    assert_eq!(values, [(T0 + 1000, 10), (T0 + 2000, 20), (T0 + 3000, 30)]);
    let stats = buffer.stats();
    assert_eq!(stats.duplicates_dropped, 1);
    assert_eq!(stats.readings_rejected, 3);
    assert_eq!(stats.journal_readings, 0);
    assert_eq!(stats.sealed_readings, 3);
    assert_eq!(stats.oldest_unsent_ms, Some(T0 + 1000));
}

#[test]
fn batches_fit_the_payload_limit_and_seqs_survive_acks_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 8 << 20, 1024);
    let mut last = 0;
    for round in 0..3 {
        let (buffer, _) = open(&config);
        assert!(
            buffer.next_seq() > last,
            "{} after {last}",
            buffer.next_seq()
        );
        let readings: Vec<Reading> = (0..3000)
            .map(|i| {
                reading(
                    "main",
                    Quantity::ActivePower,
                    0,
                    T0 + (round * 3000 + i) * 1000,
                    i * 7919 % 10007,
                )
            })
            .collect();
        buffer.append(&readings).unwrap();
        let seqs = buffer.seal().unwrap();
        assert!(seqs.len() > 2, "{} batches", seqs.len());
        assert!(seqs[0] > last, "{} after {last}", seqs[0]);
        last = *seqs.last().unwrap();
        assert_eq!(buffer.next_seq(), last + 1);
        for record in buffer.pending(None, usize::MAX).unwrap() {
            assert!(
                record.payload.len() <= 1024,
                "{} bytes",
                record.payload.len()
            );
            assert_eq!(buffer.ack(record.seq).unwrap().unwrap().seq, record.seq);
        }
        assert_eq!(buffer.stats().records, 0);
        assert_eq!(buffer.stats().bytes, 0);
    }
}

#[test]
fn configuration_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    for (max_bytes, payload) in [(1 << 20, 100), (1 << 20, 200_000), (3000, 2048)] {
        let err =
            Buffer::open(config(dir.path(), max_bytes, payload), Arc::clone(&metrics)).unwrap_err();
        assert!(matches!(err, BufferError::Config(_)), "{err}");
    }
}

#[test]
fn a_second_open_of_the_same_buffer_is_refused_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 4096);
    let (buffer, _) = open(&config);
    buffer
        .append(&[reading("main", Quantity::ActivePower, 0, T0, 1)])
        .unwrap();
    let err = Buffer::open(config.clone(), Arc::new(Metrics::default())).unwrap_err();
    assert!(matches!(err, BufferError::Locked { .. }), "{err}");
    assert_eq!(moved_aside(dir.path()), Vec::<PathBuf>::new());
    assert_eq!(buffer.stats().journal_readings, 1);
}

// ---------------------------------------------------------------- bound

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 32 * 1024;
    let (buffer, metrics) = open(&config(dir.path(), max_bytes, 2048));
    let mut next = 0i64;
    let mut appended = 0u64;
    let mut newest = Vec::new();
    for round in 0..200 {
        // Noisy values: 3-4 bytes a reading, so 32 KiB holds ~9000.
        let readings: Vec<Reading> = (0..100)
            .map(|_| {
                next += 1;
                let raw = (next.wrapping_mul(0x5851_f42d_4c95_7f2d) >> 33) % 1_000_000;
                reading("main", Quantity::ActivePower, 0, T0 + next * 1000, raw)
            })
            .collect();
        appended += readings.len() as u64;
        buffer.append(&readings).unwrap();
        newest = readings;
        if round % 5 == 4 {
            buffer.seal().unwrap();
        }
        let stats = buffer.stats();
        assert!(
            stats.bytes <= max_bytes,
            "round {round}: {} bytes",
            stats.bytes
        );
        assert_eq!(metrics.buffer_bytes.load(Ordering::Relaxed), stats.bytes);
    }
    let dropped = metrics.readings_dropped.load(Ordering::Relaxed);
    assert!(dropped > appended / 3, "dropped {dropped} of {appended}");

    let (readings, _) = drain_view(&buffer);
    assert!(buffer.stats().bytes <= max_bytes);
    // Every reading is either still here or counted as dropped.
    assert_eq!(readings.len() as u64 + dropped, appended);
    let kept: HashSet<i64> = readings.iter().map(|r| r.4).collect();
    for r in &newest {
        assert!(
            kept.contains(&r.ts_ms),
            "newest reading at {} was dropped",
            r.ts_ms
        );
    }
    // The oldest went first: what is kept is one contiguous newest range.
    let oldest_kept = *kept.iter().min().unwrap();
    assert_eq!(
        kept.len() as i64,
        (T0 + next * 1000 - oldest_kept) / 1000 + 1
    );
    assert_eq!(
        metrics.oldest_unsent_ms.load(Ordering::Relaxed),
        oldest_kept
    );
}

#[test]
fn one_append_bigger_than_the_buffer_keeps_its_newest_readings() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 8 * 1024;
    let (buffer, metrics) = open(&config(dir.path(), max_bytes, 2048));
    let readings: Vec<Reading> = (0..20_000)
        .rev()
        .map(|i| {
            reading(
                "main",
                Quantity::ActivePower,
                0,
                T0 + i * 1000,
                i * 7919 % 1_000_003,
            )
        })
        .collect();
    buffer.append(&readings).unwrap();
    let stats = buffer.stats();
    assert!(stats.bytes <= max_bytes, "{} bytes", stats.bytes);
    let dropped = metrics.readings_dropped.load(Ordering::Relaxed);
    assert_eq!(stats.journal_readings + dropped, 20_000);
    assert!(
        stats.journal_readings > 500,
        "kept {}",
        stats.journal_readings
    );
    let (kept, _) = drain_view(&buffer);
    let newest_dropped = T0 + (dropped as i64 - 1) * 1000;
    assert!(kept.iter().all(|r| r.4 > newest_dropped));
    assert!(kept.iter().any(|r| r.4 == T0 + 19_999 * 1000));
}

// ---------------------------------------------------------------- damage

fn moved_aside(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(root)
        .expect("list the dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .expect("a file name")
                .to_string_lossy()
                .starts_with("buffer.corrupt-")
        })
        .collect();
    found.sort();
    found
}

/// A buffer with two sealed batches and some journal; returns the last seq.
fn fill(config: &BufferConfig) -> u64 {
    let (buffer, _) = open(config);
    for part in 0..2 {
        let readings: Vec<Reading> = (0..500)
            .map(|i| {
                reading(
                    "main",
                    Quantity::ActivePower,
                    0,
                    T0 + (part * 500 + i) * 1000,
                    i * 31 % 977,
                )
            })
            .collect();
        buffer.append(&readings).expect("append");
        buffer.seal().expect("seal");
    }
    buffer
        .append(&[reading("pv", Quantity::ActivePower, 0, T0, 5)])
        .expect("append");
    buffer
        .pending(None, usize::MAX)
        .expect("pending")
        .last()
        .expect("a sealed batch")
        .seq
}

#[test]
fn a_buffer_sled_cannot_open_is_moved_aside_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 4096);
    let last_seq = fill(&config);
    let sled_dir = dir.path().join("buffer");
    fs::write(sled_dir.join("db"), vec![0xA5; 64 * 1024]).unwrap();
    fs::write(sled_dir.join("conf"), b"segment_size: banana\n\xff\xfe").unwrap();

    let (buffer, metrics) = open(&config);
    assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 1);
    let aside = moved_aside(dir.path());
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("db").exists(), "the damaged files are kept");
    assert_eq!(buffer.stats().bytes, 0);
    assert_eq!(buffer.pending(None, 10).unwrap(), vec![]);

    buffer
        .append(&[reading("main", Quantity::ActivePower, 0, T0, 1)])
        .unwrap();
    let seqs = buffer.seal().unwrap();
    assert_eq!(seqs.len(), 1);
    assert!(
        seqs[0] > last_seq,
        "fresh buffer reused seq {} (old ones went to {last_seq})",
        seqs[0]
    );
    drop(buffer);

    // The fresh buffer is an ordinary one from now on.
    let (buffer, metrics) = open(&config);
    assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 0);
    assert_eq!(buffer.pending(None, 10).unwrap().len(), 1);
}

#[test]
fn a_log_sled_silently_forgets_still_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 4096);
    let last_seq = fill(&config);
    // sled recovers a log of garbage as an empty database, without error.
    fs::write(dir.path().join("buffer").join("db"), vec![0x5A; 256 * 1024]).unwrap();

    let (buffer, metrics) = open(&config);
    assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 1);
    buffer
        .append(&[reading("main", Quantity::ActivePower, 0, T0, 1)])
        .unwrap();
    let seqs = buffer.seal().unwrap();
    assert!(
        seqs[0] > last_seq,
        "seq {} reused (old ones went to {last_seq})",
        seqs[0]
    );
}

/// Rewrites one stored value with sled directly, the buffer closed.
fn tamper(config: &BufferConfig, tree: &str, key: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let db = sled::open(&config.path).expect("open sled");
    let tree = db.open_tree(tree).expect("open the tree");
    let mut value = tree
        .get(key.to_be_bytes())
        .expect("read the value")
        .expect("present")
        .to_vec();
    change(&mut value);
    tree.insert(key.to_be_bytes(), value)
        .expect("write the value");
    db.flush().expect("flush");
}

#[test]
fn corrupt_records_are_removed_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1 << 20, 1024);
    let (buffer, _) = open(&config);
    let readings: Vec<Reading> = (0..2000)
        .map(|i| {
            reading(
                "main",
                Quantity::ActivePower,
                0,
                T0 + i * 1000,
                i * 7919 % 10007,
            )
        })
        .collect();
    buffer.append(&readings).unwrap();
    let seqs = buffer.seal().unwrap();
    assert!(seqs.len() >= 4, "{seqs:?}");
    buffer.append(&readings[..10]).unwrap();
    buffer.append(&readings[10..20]).unwrap();
    let before = buffer.stats();
    drop(buffer);

    // A flipped bit in a batch and in a journal entry: caught by the CRC.
    tamper(&config, "batches", seqs[1], |v| {
        let mid = v.len() / 2;
        v[mid] ^= 0x04;
    });
    tamper(&config, "journal", 1, |v| {
        let last = v.len() - 1;
        v[last] ^= 0x80;
    });
    // A batch whose checksum is right but whose payload is not a batch:
    // caught when it is about to be published.
    tamper(&config, "batches", seqs[2], |v| {
        v.truncate(17);
        v.extend_from_slice(b"\x01not a telemetry batch");
        let crc = crc32fast::hash(&v[4..]);
        v[..4].copy_from_slice(&crc.to_le_bytes());
    });

    let (buffer, metrics) = open(&config);
    assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 2);
    assert_eq!(buffer.stats().records, before.records - 1);
    assert_eq!(buffer.stats().journal_readings, 10);
    let pending = buffer.pending(None, usize::MAX).unwrap();
    assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 3);
    let published: Vec<u64> = pending.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|s| *s != seqs[1] && *s != seqs[2])
        .collect();
    assert_eq!(published, expected);
    assert_eq!(buffer.stats().records, expected.len() as u64);
    assert_eq!(
        metrics.buffer_records.load(Ordering::Relaxed),
        expected.len() as u64
    );
    for record in &pending {
        record_readings(record);
    }
    assert!(moved_aside(dir.path()).is_empty());
}

// ---------------------------------------------------------------- crash

const CRASH_DIR: &str = "GRIDLINK_BUFFER_CRASH_DIR";
const CRASH_ROUND: &str = "GRIDLINK_BUFFER_CRASH_ROUND";
const CRASH_POLL: i64 = 12;

fn crash_meter(round: u32) -> String {
    format!("round{round}")
}

/// The writer the crash test kills: appends polls of 12 readings forever,
/// sealing every 7th, and after each append that returned writes how many
/// it completed to a side file (fsynced).
#[test]
#[ignore = "child process of appended_readings_survive_sigkill; started by it"]
fn crash_child() {
    let dir =
        PathBuf::from(std::env::var(CRASH_DIR).expect("run by appended_readings_survive_sigkill"));
    let round: u32 = std::env::var(CRASH_ROUND).unwrap().parse().unwrap();
    let config = config(&dir, 256 << 20, 4096);
    let (buffer, _) = open(&config);
    let side = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join(format!("completed-{round}")))
        .unwrap();
    let meter = crash_meter(round);
    for poll in 0i64.. {
        let readings: Vec<Reading> = (0..CRASH_POLL)
            .map(|i| {
                reading(
                    &meter,
                    Quantity::ActivePower,
                    0,
                    T0 + (poll * CRASH_POLL + i) * 1000,
                    poll * 100 + i,
                )
            })
            .collect();
        buffer.append(&readings).unwrap();
        side.write_all_at(&(poll + 1).to_le_bytes(), 0).unwrap();
        side.sync_data().unwrap();
        if poll % 7 == 6 {
            buffer.seal().unwrap();
        }
    }
}

#[test]
fn appended_readings_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 256 << 20, 4096);
    let exe = std::env::current_exe().unwrap();
    let mut max_seq = 0;
    let mut seen_seqs = BTreeSet::new();
    for round in 0..4u32 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, dir.path())
            .env(CRASH_ROUND, round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let side = dir.path().join(format!("completed-{round}"));
        // Let it get going, then kill it in the middle of whatever it does.
        let started = Instant::now();
        while read_completed(&side) < 20 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the child made no progress"
            );
            assert!(child.try_wait().unwrap().is_none(), "the child exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + u64::from(round) * 97));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let completed = read_completed(&side);

        let (buffer, metrics) = open(&config);
        assert_eq!(metrics.buffer_corruptions.load(Ordering::Relaxed), 0);
        let (readings, seqs) = drain_view(&buffer);
        let seen = counts(&readings);
        assert!(
            seen.values().all(|&n| n == 1),
            "round {round}: duplicated readings"
        );
        for seq in &seqs {
            if seen_seqs.insert(*seq) {
                assert!(
                    *seq > max_seq,
                    "round {round}: new seq {seq} not above {max_seq}"
                );
            }
        }
        max_seq = seqs.last().copied().unwrap_or(max_seq);
        for earlier in 0..=round {
            let meter = crash_meter(earlier);
            let done = if earlier == round {
                completed
            } else {
                read_completed(&dir.path().join(format!("completed-{earlier}")))
            };
            let got: BTreeSet<i64> = readings
                .iter()
                .filter(|r| r.0 == meter)
                .map(|r| r.4)
                .collect();
            for k in 0..done * CRASH_POLL {
                assert!(
                    got.contains(&(T0 + k * 1000)),
                    "round {earlier}: reading {k} of {} lost",
                    done * CRASH_POLL
                );
            }
            // At most the poll in flight at the kill is there beyond them.
            assert!(
                got.len() as i64 <= (done + 1) * CRASH_POLL,
                "round {earlier}: {} readings",
                got.len()
            );
        }
    }
}

fn read_completed(side: &Path) -> i64 {
    match fs::read(side) {
        Ok(bytes) if bytes.len() == 8 => i64::from_le_bytes(bytes.try_into().expect("eight bytes")),
        _ => 0,
    }
}

// ---------------------------------------------------------------- writer

fn poll(n: i64) -> Vec<Reading> {
    (0..12)
        .map(|i| {
            reading(
                "main",
                Quantity::ActivePower,
                0,
                T0 + (n * 12 + i) * 1000,
                n + i,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_groups_polls_into_few_syncs_and_seals_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, metrics) = open(&config(dir.path(), 64 << 20, 4096));
    let buffer = Arc::new(buffer);
    let sealed = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(1024);
    // A backlog before the writer starts: one append must take it all.
    for n in 0..300 {
        tx.try_send(poll(n)).unwrap();
    }
    let writer = tokio::spawn(run_writer(
        Arc::clone(&buffer),
        rx,
        Duration::from_hours(1),
        Arc::clone(&sealed),
    ));
    for n in 300..500 {
        tx.send(poll(n)).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(metrics.readings_stored.load(Ordering::Relaxed), 500 * 12);
    let stats = buffer.stats();
    assert_eq!(
        stats.journal_readings, 0,
        "closing the channel seals the rest"
    );
    assert_eq!(stats.sealed_readings, 500 * 12);
    assert!(
        stats.syncs < 60,
        "{} syncs for 500 polls: no group commit",
        stats.syncs
    );
    tokio::time::timeout(Duration::from_secs(1), sealed.notified())
        .await
        .unwrap();
    let (readings, _) = drain_view(&buffer);
    assert_eq!(readings.len(), 500 * 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_seals_on_its_interval_while_the_channel_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 64 << 20, 64 * 1024));
    let buffer = Arc::new(buffer);
    let sealed = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(16);
    let writer = tokio::spawn(run_writer(
        Arc::clone(&buffer),
        rx,
        Duration::from_millis(200),
        Arc::clone(&sealed),
    ));
    for n in 0..3 {
        tx.send(poll(n)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), sealed.notified())
            .await
            .unwrap();
        let pending = buffer.pending(None, usize::MAX).unwrap();
        let total: u32 = pending.iter().map(|r| r.readings).sum();
        assert_eq!(total, (n as u32 + 1) * 12);
    }
    assert!(!writer.is_finished());
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_seals_early_when_the_journal_holds_a_full_payload() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 64 << 20, 1024));
    let buffer = Arc::new(buffer);
    let sealed = Arc::new(Notify::new());
    let (tx, rx) = mpsc::channel(16);
    let writer = tokio::spawn(run_writer(
        Arc::clone(&buffer),
        rx,
        Duration::from_hours(1),
        Arc::clone(&sealed),
    ));
    // Let the first tick (at start) pass, then send more than a payload.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let big: Vec<Reading> = (0..2000)
        .map(|i| {
            reading(
                "main",
                Quantity::ActivePower,
                0,
                T0 + i * 1000,
                i * 7919 % 10007,
            )
        })
        .collect();
    tx.send(big).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), sealed.notified())
        .await
        .unwrap();
    assert_eq!(buffer.stats().journal_readings, 0);
    assert!(buffer.stats().records > 1);
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .unwrap()
        .unwrap();
}
