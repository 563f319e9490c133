//! The durable buffer: every reading is on stable storage before anything
//! else happens to it, and a batch leaves only after the broker's PUBACK.
//!
//! ```text
//! acquisition --try_send--> channel --> run_writer --append--> journal (sled tree)
//!                                           |                      | seal: one transaction
//!                                           '--seal--> batches (sled tree, key = batch_seq)
//!                                                          | pending (oldest first)
//!                                 uplink --publish--> broker --PUBACK--> ack: removed
//! ```
//!
//! # Where data becomes durable
//!
//! * [`Buffer::append`] returns `Ok` only after the readings are in the
//!   journal tree, sled has flushed its log (`Db::flush`), and every file
//!   of the buffer plus its directory has been `fsync`ed. sled's flush
//!   alone uses `sync_file_range`, which does not reach stable storage
//!   (sled#1351), and sled never syncs its blob files: see
//!   [`storage::DirSync`]. **This is the durability point of a reading.**
//! * [`Buffer::seal`] moves the whole journal into encoded batches in one
//!   sled transaction across the journal, batch and counter trees, then
//!   flushes and `fsync`s again. A crash leaves either the journal entries
//!   or the batches, never both and never neither. A batch becomes visible
//!   to [`Buffer::pending`] only after that `fsync`, so nothing is
//!   published that a power failure could take back.
//! * [`Buffer::ack`] removes a batch without syncing. The removal reaches
//!   the disk with the next append or seal (or a clean shutdown); if a crash
//!   takes it back, the batch is sent again and the cloud drops it as a
//!   duplicate of `(ven_id, batch_seq)`.
//!
//! # What a power failure or `kill -9` can lose
//!
//! Exactly the readings whose `append` had not returned: the group the
//! writer had drained from the channel and was appending, plus the polls
//! queued in the channel behind it. Each of the two is at most the
//! channel's capacity in polls, so the bound is twice the capacity; in
//! time, it is the polls that arrived during the last sync and the one in
//! progress (one `append` takes one sled flush plus the `fsync`s: about
//! 0.1 ms on the development machine's cached virtual disk, and more on a
//! gateway's SD card or eMMC, so measure there with the bench). While the
//! disk fails and the writer retries, the in-flight group stays in memory
//! and the channel fills: acquisition's `try_send` then fails and counts
//! what does not fit in `readings_overflowed` at once, so nothing is lost
//! without being counted. Readings acquisition has not sent yet are not the
//! buffer's. Nothing that `append` returned for is lost, and nothing is
//! duplicated in the buffer (`tests/buffer.rs` kills a writer with
//! `SIGKILL` in a loop and checks both).
//!
//! # Bounds
//!
//! The buffer holds at most [`BufferConfig::max_bytes`] of keys and values
//! (journal plus sealed batches, counted in memory and recomputed on open;
//! enforced within every append and seal, with no slack). When an append would go over, the oldest data goes
//! first: sealed batches oldest first, then the oldest journal entries,
//! counted in `readings_dropped` and logged at most every 30 s. An append
//! never blocks and never fails for lack of room. sled's files take more
//! than this on disk (its log is written in 512 KiB segments and cleaned
//! lazily, often 2-3 times the live data): size `max_bytes` to a fraction of
//! the free space.
//!
//! # Damage
//!
//! Every journal entry and batch carries a CRC-32 ([`format`]). A value
//! that fails it, or a batch that does not decode, is removed, counted in
//! `buffer_corruptions`, logged and skipped. A buffer sled cannot open
//! (corrupt files, a panic while recovering) is renamed to
//! `<path>.corrupt-<unix_ms>` and a fresh one is opened in its place, with
//! sequence numbers continuing above the old ones ([`storage::SeqFloor`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use gridlink_agent::buffer::{Buffer, BufferConfig};
//! use gridlink_agent::metrics::Metrics;
//! use gridlink_protocol::VenId;
//!
//! let buffer = Buffer::open(
//!     BufferConfig {
//!         path: "/var/lib/gridlink/buffer".into(),
//!         max_bytes: 512 << 20,
//!         cache_bytes: 4 << 20,
//!         ven_id: VenId::new("ven-1")?,
//!         max_payload_bytes: gridlink_protocol::MAX_PAYLOAD_BYTES,
//!     },
//!     Arc::new(Metrics::default()),
//! )?;
//! buffer.append(&[/* readings of one poll */])?; // durable from here on
//! buffer.seal()?;
//! for record in buffer.pending(None, 10)? {
//!     // publish record.payload, wait for the PUBACK, then:
//!     buffer.ack(record.seq)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod format;
mod seal;
mod storage;
mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gridlink_protocol::telemetry::{MAX_TS_MS, MIN_TS_MS};
use gridlink_protocol::{
    EncodeError, MAX_PAYLOAD_BYTES, Point, Series, TelemetryBatch, VenId, WireMessage,
};
use sled::Transactional;
use sled::transaction::TransactionError;

use crate::metrics::{Metrics, now_ms};
use crate::reading::Reading;
use format::{Corrupt, Header, SeriesKey, SeriesPoints};
use storage::{DirSync, SEQ_FLOOR_STEP, SeqFloor};

pub use writer::run_writer;

/// Smallest accepted [`BufferConfig::max_payload_bytes`].
pub const MIN_PAYLOAD_BYTES: usize = 1024;

/// Key of the next free `batch_seq` in the counter tree.
const NEXT_SEQ_KEY: &[u8] = b"next_batch_seq";

/// Bytes a key costs in the byte total.
const KEY_BYTES: u64 = 8;

/// At most one "buffer full" warning per this interval.
const DROP_WARN_EVERY: Duration = Duration::from_secs(30);

/// How long `open` waits for sled's lock (released a moment after the
/// previous `Buffer` in this process is dropped).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Where and how big the buffer is.
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// The sled directory (created if missing).
    pub path: PathBuf,
    /// Most bytes of journal and sealed batches to hold; the oldest data is
    /// dropped beyond it. At least twice `max_payload_bytes`.
    pub max_bytes: u64,
    /// sled's page cache in bytes (gateway RAM: a few MiB).
    pub cache_bytes: u64,
    /// The VEN every batch is from.
    pub ven_id: VenId,
    /// Largest encoded batch, at most [`MAX_PAYLOAD_BYTES`] and at least
    /// [`MIN_PAYLOAD_BYTES`].
    pub max_payload_bytes: usize,
}

impl BufferConfig {
    fn validate(&self) -> Result<(), BufferError> {
        if !(MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&self.max_payload_bytes) {
            return Err(BufferError::Config(format!(
                "max_payload_bytes is {}; it must be {MIN_PAYLOAD_BYTES}..={MAX_PAYLOAD_BYTES}",
                self.max_payload_bytes
            )));
        }
        if self.max_bytes < 2 * self.max_payload_bytes as u64 {
            return Err(BufferError::Config(format!(
                "max_bytes is {}; it must be at least twice max_payload_bytes ({})",
                self.max_bytes, self.max_payload_bytes
            )));
        }
        Ok(())
    }
}

/// A sealed batch waiting for the broker's PUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its `batch_seq`, also its key in the buffer.
    pub seq: u64,
    /// The encoded `TelemetryBatch` (`0x01` + postcard), ready to publish
    /// on `oadr/meter/{venId}`.
    pub payload: Vec<u8>,
    /// Readings in the batch.
    pub readings: u32,
    /// Timestamp of its oldest reading, ms since the Unix epoch.
    pub oldest_ts_ms: i64,
}

/// What the buffer holds, from its in-memory totals (no scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    /// Sealed batches waiting for a PUBACK.
    pub records: u64,
    /// Bytes of keys and values held, journal and batches (the bounded
    /// quantity).
    pub bytes: u64,
    /// Readings in the journal, not yet sealed.
    pub journal_readings: u64,
    /// Bytes of the journal.
    pub journal_bytes: u64,
    /// Readings in sealed batches.
    pub sealed_readings: u64,
    /// Timestamp of the oldest reading not yet acknowledged.
    pub oldest_unsent_ms: Option<i64>,
    /// Durable syncs (flush + `fsync`) done since open: appends and seals.
    pub syncs: u64,
    /// Readings dropped at seal time because their series already had a
    /// reading with the same timestamp, since open.
    pub duplicates_dropped: u64,
    /// Readings refused by `append` because no valid batch could carry them
    /// (bad meter name, exponent or timestamp), since open.
    pub readings_rejected: u64,
}

/// Why a buffer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The configuration cannot work.
    #[error("invalid buffer configuration: {0}")]
    Config(String),
    /// Another process (or another `Buffer` in this one) holds the buffer.
    #[error("buffer {path} is in use: {source}")]
    Locked {
        /// The buffer directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// The buffer could not be opened and could not be moved aside.
    #[error("buffer {path} cannot be opened ({cause}), and moving it aside failed: {source}")]
    MoveAside {
        /// The buffer directory.
        path: PathBuf,
        /// Why it could not be opened.
        cause: String,
        /// Why the rename failed.
        source: io::Error,
    },
    /// sled failed to read or write.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A file operation (`fsync`, the sequence floor) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A batch could not be encoded (a bug: `append` refuses what cannot be
    /// encoded).
    #[error("encoding a batch: {0}")]
    Encode(#[from] EncodeError),
}

/// The durable buffer of one VEN. `Send + Sync`: share it in an `Arc`
/// between the writer task and the uplink.
///
/// [`append`](Self::append) and [`seal`](Self::seal) are serialized with
/// each other; [`pending`](Self::pending) and [`ack`](Self::ack) run
/// beside them. Every method blocks on disk I/O: call them from
/// `spawn_blocking` or a thread, as [`run_writer`] does.
pub struct Buffer {
    db: sled::Db,
    journal: sled::Tree,
    batches: sled::Tree,
    meta: sled::Tree,
    dir: PathBuf,
    ven_id: VenId,
    max_bytes: u64,
    max_payload_bytes: usize,
    metrics: Arc<Metrics>,
    /// Held by `append` and `seal` for their whole run; taken before `index`.
    writer: Mutex<WriterState>,
    /// Totals and per-record sizes; held only for short in-memory updates
    /// and the sled removals that must agree with them.
    index: Mutex<Index>,
    syncs: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("dir", &self.dir)
            .field("ven_id", &self.ven_id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

// The writer task and the uplink share one buffer.
const _: fn() = || {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Buffer>();
};

struct WriterState {
    next_journal_key: u64,
    /// The first `batch_seq` not issued yet.
    next_seq: u64,
    /// Every `batch_seq` below this may be issued without touching the
    /// floor file.
    seq_floor: u64,
    sync: DirSync,
}

/// Size and age of one stored value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    readings: u32,
    oldest_ts_ms: i64,
}

impl Entry {
    fn new(header: Header, value_len: usize) -> Self {
        Self {
            bytes: KEY_BYTES + value_len as u64,
            readings: header.readings,
            oldest_ts_ms: header.oldest_ts_ms,
        }
    }
}

#[derive(Default)]
struct Index {
    journal: BTreeMap<u64, Entry>,
    batches: BTreeMap<u64, Entry>,
    journal_bytes: u64,
    batch_bytes: u64,
    journal_readings: u64,
    sealed_readings: u64,
    /// Multiset of every value's oldest timestamp.
    oldest: BTreeMap<i64, u32>,
    /// Batches with `seq` below this are durable and may be published.
    visible_end: u64,
    drops: DropLog,
}

/// Dropped data not yet reported in a warning.
#[derive(Default)]
struct DropLog {
    last_warning: Option<Instant>,
    readings: u64,
    values: u64,
}

impl Index {
    fn total_bytes(&self) -> u64 {
        self.journal_bytes + self.batch_bytes
    }

    fn add_oldest(&mut self, ts: i64) {
        *self.oldest.entry(ts).or_default() += 1;
    }

    fn remove_oldest(&mut self, ts: i64) {
        if let Some(n) = self.oldest.get_mut(&ts) {
            *n -= 1;
            if *n == 0 {
                self.oldest.remove(&ts);
            }
        }
    }

    fn insert_journal(&mut self, key: u64, entry: Entry) {
        self.journal_bytes += entry.bytes;
        self.journal_readings += u64::from(entry.readings);
        self.add_oldest(entry.oldest_ts_ms);
        if let Some(old) = self.journal.insert(key, entry) {
            self.forget_journal(old);
        }
    }

    fn remove_journal(&mut self, key: u64) -> Option<Entry> {
        let entry = self.journal.remove(&key)?;
        self.forget_journal(entry);
        Some(entry)
    }

    fn forget_journal(&mut self, entry: Entry) {
        self.journal_bytes -= entry.bytes;
        self.journal_readings -= u64::from(entry.readings);
        self.remove_oldest(entry.oldest_ts_ms);
    }

    fn insert_batch(&mut self, seq: u64, entry: Entry) {
        self.batch_bytes += entry.bytes;
        self.sealed_readings += u64::from(entry.readings);
        self.add_oldest(entry.oldest_ts_ms);
        if let Some(old) = self.batches.insert(seq, entry) {
            self.forget_batch(old);
        }
    }

    fn remove_batch(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.batches.remove(&seq)?;
        self.forget_batch(entry);
        Some(entry)
    }

    fn forget_batch(&mut self, entry: Entry) {
        self.batch_bytes -= entry.bytes;
        self.sealed_readings -= u64::from(entry.readings);
        self.remove_oldest(entry.oldest_ts_ms);
    }
}

/// Why sled could not be opened.
enum OpenFailure {
    /// The directory is locked by someone else: leave it alone.
    Locked(sled::Error),
    /// An I/O error that says nothing about the buffer's contents (no
    /// permission, disk full): leave it alone too.
    Io(sled::Error),
    /// The buffer is damaged: move it aside.
    Unusable(String),
}

/// A sled database with its trees, and what a scan found in them.
struct Opened {
    db: sled::Db,
    journal: sled::Tree,
    batches: sled::Tree,
    meta: sled::Tree,
    index: Index,
    corrupt_journal: Vec<(u64, Corrupt)>,
    corrupt_batches: Vec<(u64, Corrupt)>,
    stored_next_seq: Option<u64>,
    next_journal_key: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn be_key(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Opened {
    fn open(dir: &Path, cache_bytes: u64) -> Result<Self, OpenFailure> {
        let started = Instant::now();
        loop {
            let attempt = catch_unwind(AssertUnwindSafe(|| Self::open_once(dir, cache_bytes)));
            match attempt {
                Ok(Err(OpenFailure::Locked(_))) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(result) => return result,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(ToString::to_string)
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    return Err(OpenFailure::Unusable(format!(
                        "sled panicked while opening it: {what}"
                    )));
                }
            }
        }
    }

    fn open_once(dir: &Path, cache_bytes: u64) -> Result<Self, OpenFailure> {
        let classify = |e: sled::Error| match e {
            e if is_lock_error(&e) => OpenFailure::Locked(e),
            sled::Error::Io(io)
                if !matches!(
                    io.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                OpenFailure::Io(sled::Error::Io(io))
            }
            e => OpenFailure::Unusable(e.to_string()),
        };
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            // We flush and fsync at our own durability points; a background
            // flusher would only add writes.
            .flush_every_ms(None)
            .open()
            .map_err(classify)?;
        let journal = db.open_tree("journal").map_err(classify)?;
        let batches = db.open_tree("batches").map_err(classify)?;
        let meta = db.open_tree("meta").map_err(classify)?;

        let mut index = Index::default();
        let mut corrupt_journal = Vec::new();
        let mut next_journal_key = 0;
        for item in &journal {
            let (key, value) = item.map_err(classify)?;
            let Some(key) = be_key(&key) else {
                return Err(OpenFailure::Unusable(format!(
                    "journal key of {} bytes",
                    key.len()
                )));
            };
            next_journal_key = key + 1;
            match format::unframe(&value) {
                Ok((header, _)) => index.insert_journal(key, Entry::new(header, value.len())),
                Err(e) => corrupt_journal.push((key, e)),
            }
        }
        let mut corrupt_batches = Vec::new();
        for item in &batches {
            let (key, value) = item.map_err(classify)?;
            let Some(seq) = be_key(&key) else {
                return Err(OpenFailure::Unusable(format!(
                    "batch key of {} bytes",
                    key.len()
                )));
            };
            match format::unframe(&value) {
                Ok((header, _)) => index.insert_batch(seq, Entry::new(header, value.len())),
                Err(e) => corrupt_batches.push((seq, e)),
            }
        }
        let stored_next_seq = match meta.get(NEXT_SEQ_KEY).map_err(classify)? {
            None => None,
            Some(value) => Some(be_key(&value).ok_or_else(|| {
                OpenFailure::Unusable(format!("sequence counter of {} bytes", value.len()))
            })?),
        };
        Ok(Self {
            db,
            journal,
            batches,
            meta,
            index,
            corrupt_journal,
            corrupt_batches,
            stored_next_seq,
            next_journal_key,
        })
    }
}

impl Buffer {
    /// Opens the buffer at `config.path`, creating it if needed.
    ///
    /// If sled cannot open it (corrupt files, a panic while recovering),
    /// the directory is renamed to `<path>.corrupt-<unix_ms>` (logged as an
    /// error naming both paths and the cause, counted in
    /// `buffer_corruptions`) and a fresh buffer is opened in its place.
    /// A buffer locked by another process, or one the agent may not read,
    /// is left alone and reported as an error. Damaged records are removed
    /// and counted. The byte totals are computed here, once.
    pub fn open(config: BufferConfig, metrics: Arc<Metrics>) -> Result<Self, BufferError> {
        config.validate()?;
        // Without a trailing slash, so `<path>.corrupt-..` is a sibling.
        let dir: PathBuf = config.path.components().collect();
        let (opened, moved_to) = Self::open_or_move_aside(&dir, config.cache_bytes, &metrics)?;
        storage::sync_parent(&dir).map_err(|source| BufferError::Io {
            path: dir.clone(),
            source,
        })?;

        // The sequence counter is sled's. Where sled has none, the floor
        // file says whether seqs were issued before: in the buffer that was
        // just set aside, or in this one, whose sled files then lost data
        // without an error (sled recovers a garbled log as empty). A
        // brand-new buffer starts at the clock in microseconds, above
        // anything a buffer deleted by hand could have issued.
        let floor_dir = moved_to.as_deref().unwrap_or(&dir);
        let floor = SeqFloor::read(floor_dir).unwrap_or_else(|error| {
            tracing::warn!(path = %floor_dir.display(), %error, "cannot read the sequence floor");
            None
        });
        let after_batches = opened
            .index
            .batches
            .last_key_value()
            .map_or(0, |(&seq, _)| seq + 1);
        let next_seq = match (opened.stored_next_seq, floor) {
            (Some(stored), _) => stored,
            (None, Some(floor)) => {
                if moved_to.is_none() {
                    tracing::error!(
                        buffer = %dir.display(),
                        floor,
                        "the buffer's sequence counter is gone although it was written: \
                         sled lost data; continuing above the last floor"
                    );
                    metrics.buffer_corruptions.fetch_add(1, Ordering::Relaxed);
                }
                floor
            }
            (None, None) => now_ms().max(0) as u64 * 1000,
        }
        .max(after_batches);
        if opened.stored_next_seq != Some(next_seq) {
            opened.meta.insert(NEXT_SEQ_KEY, &next_seq.to_be_bytes())?;
        }

        let Opened {
            db,
            journal,
            batches,
            meta,
            mut index,
            corrupt_journal,
            corrupt_batches,
            next_journal_key,
            ..
        } = opened;
        index.visible_end = next_seq;
        let buffer = Self {
            db,
            journal,
            batches,
            meta,
            ven_id: config.ven_id,
            max_bytes: config.max_bytes,
            max_payload_bytes: config.max_payload_bytes,
            metrics,
            writer: Mutex::new(WriterState {
                next_journal_key,
                next_seq,
                seq_floor: if moved_to.is_some() {
                    0
                } else {
                    floor.unwrap_or(0)
                },
                sync: DirSync::default(),
            }),
            index: Mutex::new(index),
            syncs: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dir,
        };
        for (key, cause) in corrupt_journal {
            buffer.discard_journal(key, &cause)?;
        }
        for (seq, cause) in corrupt_batches {
            buffer.discard_batch(seq, &cause)?;
        }
        {
            let mut writer = lock(&buffer.writer);
            // Whatever the last run left unsynced, and the counter of a
            // fresh buffer, are durable before anything is published; then
            // the floor (written after the counter, so a crash in between
            // cannot look like lost data on the next start).
            buffer.sync(&mut writer)?;
            buffer.reserve_seqs(&mut writer, next_seq)?;
        }
        let mut index = lock(&buffer.index);
        buffer.make_room(&mut index, 0)?;
        buffer.publish_gauges(&index);
        drop(index);
        Ok(buffer)
    }

    /// Opens sled at `dir`; if it is damaged, moves it aside and opens a
    /// fresh one, returning where the old one went.
    fn open_or_move_aside(
        dir: &Path,
        cache_bytes: u64,
        metrics: &Metrics,
    ) -> Result<(Opened, Option<PathBuf>), BufferError> {
        let failure = |f: OpenFailure| match f {
            OpenFailure::Locked(source) => BufferError::Locked {
                path: dir.to_path_buf(),
                source,
            },
            OpenFailure::Io(e) => BufferError::Sled(e),
            OpenFailure::Unusable(cause) => BufferError::Sled(sled::Error::Unsupported(cause)),
        };
        match Opened::open(dir, cache_bytes) {
            Ok(opened) => Ok((opened, None)),
            Err(OpenFailure::Unusable(cause)) => {
                let aside = storage::move_aside(dir, now_ms()).map_err(|source| {
                    BufferError::MoveAside {
                        path: dir.to_path_buf(),
                        cause: cause.clone(),
                        source,
                    }
                })?;
                tracing::error!(
                    buffer = %dir.display(),
                    moved_to = %aside.display(),
                    %cause,
                    "the buffer cannot be opened: moved it aside and started a fresh one; \
                     the readings in it will not be sent"
                );
                metrics.buffer_corruptions.fetch_add(1, Ordering::Relaxed);
                Ok((
                    Opened::open(dir, cache_bytes).map_err(failure)?,
                    Some(aside),
                ))
            }
            Err(f) => Err(failure(f)),
        }
    }

    /// Appends `readings` to the journal and makes them durable before it
    /// returns: sled insert, `flush`, `fsync` of every file and the
    /// directory. This is where a reading becomes safe.
    ///
    /// If the buffer would go over `max_bytes`, the oldest data is dropped
    /// first (sealed batches, then journal entries) and counted; the append
    /// itself never fails for lack of room. Readings no batch could carry
    /// (invalid meter name, exponent outside -9..=9, timestamp outside
    /// 1970..=9999) are refused, logged and counted in
    /// [`BufferStats::readings_rejected`]. On an error nothing of this call
    /// is kept: retry with the same readings.
    pub fn append(&self, readings: &[Reading]) -> Result<(), BufferError> {
        let series = self.accept(readings);
        if series.is_empty() {
            return Ok(());
        }
        let (mut header, mut value) = format::journal_value(&series);
        if KEY_BYTES + value.len() as u64 > self.max_bytes {
            (header, value) = self.shrink_to_fit(series, value.len());
        }
        let mut writer = lock(&self.writer);
        let key = writer.next_journal_key;
        {
            let mut index = lock(&self.index);
            self.make_room(&mut index, KEY_BYTES + value.len() as u64)?;
            let entry = Entry::new(header, value.len());
            self.journal.insert(key.to_be_bytes(), value)?;
            index.insert_journal(key, entry);
            self.publish_gauges(&index);
        }
        writer.next_journal_key += 1;
        if let Err(e) = self.sync(&mut writer) {
            // Not durable: take the entry out again so the caller's retry
            // does not store it twice.
            let mut index = lock(&self.index);
            match self.journal.remove(key.to_be_bytes()) {
                Ok(_) => {
                    index.remove_journal(key);
                }
                Err(remove) => {
                    tracing::error!(
                        error = %remove,
                        "could not take back an append that failed to sync"
                    );
                }
            }
            self.publish_gauges(&index);
            return Err(e);
        }
        self.metrics
            .readings_stored
            .fetch_add(u64::from(header.readings), Ordering::Relaxed);
        Ok(())
    }

    /// Seals the journal: everything in it becomes one or more encoded
    /// `TelemetryBatch`es (series per meter, quantity, phase and exponent,
    /// points sorted by time, exact duplicate timestamps dropped keeping
    /// the first, each payload at most `max_payload_bytes`), numbered from a
    /// counter that never goes back, not even across restarts.
    ///
    /// The journal entries, the batches and the counter change in one sled
    /// transaction, then the buffer is flushed and `fsync`ed: a crash
    /// leaves either the journal or the batches. Returns the new batches'
    /// sequence numbers (none if the journal was empty).
    pub fn seal(&self) -> Result<Vec<u64>, BufferError> {
        let mut writer = lock(&self.writer);
        let mut keys = Vec::new();
        let mut entries = Vec::new();
        let mut corrupt = Vec::new();
        for item in &self.journal {
            let (key, value) = item?;
            let Some(k) = be_key(&key) else { continue };
            match format::read_journal(&value) {
                Ok((_, series)) => entries.push(series),
                Err(e) => corrupt.push((k, e)),
            }
            keys.push(key);
        }
        if keys.is_empty() {
            // A seal whose sync failed left durable-but-hidden batches:
            // sync now and report them as new.
            let hidden = lock(&self.index).visible_end;
            if hidden >= writer.next_seq {
                return Ok(Vec::new());
            }
            self.sync(&mut writer)?;
            let index = lock(&self.index);
            return Ok(index.batches.range(hidden..).map(|(&seq, _)| seq).collect());
        }
        let sealed = seal::seal(
            entries,
            &self.ven_id,
            writer.next_seq,
            self.max_payload_bytes,
        )?;
        self.reserve_seqs(&mut writer, sealed.next_seq)?;

        let next_seq = sealed.next_seq.to_be_bytes();
        (&self.journal, &self.batches, &self.meta)
            .transaction(|(journal, batches, meta)| {
                for key in &keys {
                    journal.remove(key)?;
                }
                for batch in &sealed.batches {
                    batches.insert(&batch.seq.to_be_bytes(), batch.value.as_slice())?;
                }
                meta.insert(NEXT_SEQ_KEY, &next_seq)?;
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => BufferError::Sled(e),
                TransactionError::Abort(()) => BufferError::Sled(sled::Error::ReportableBug(
                    "seal transaction aborted".into(),
                )),
            })?;

        {
            let mut index = lock(&self.index);
            for key in keys.iter().filter_map(|k| be_key(k)) {
                index.remove_journal(key);
            }
            for batch in &sealed.batches {
                index.insert_batch(batch.seq, Entry::new(batch.header, batch.value.len()));
            }
            // Batches may take a little more than the journal they replace.
            self.make_room(&mut index, 0)?;
            self.publish_gauges(&index);
        }
        writer.next_seq = sealed.next_seq;
        for (key, cause) in &corrupt {
            tracing::error!(journal_key = key, %cause, "removed a corrupt journal entry while sealing");
        }
        self.metrics
            .buffer_corruptions
            .fetch_add(corrupt.len() as u64, Ordering::Relaxed);
        if sealed.duplicates > 0 {
            self.duplicates
                .fetch_add(sealed.duplicates, Ordering::Relaxed);
            self.metrics
                .readings_duplicate
                .fetch_add(sealed.duplicates, Ordering::Relaxed);
            tracing::warn!(
                duplicates = sealed.duplicates,
                "dropped readings whose series already had a reading at the same timestamp"
            );
        }
        self.sync(&mut writer)?;
        Ok(sealed.batches.iter().map(|b| b.seq).collect())
    }

    /// Sealed, durable batches with `seq > after` (`None`: from the
    /// oldest), oldest first, at most `limit`.
    ///
    /// A batch that fails its checksum or does not decode is removed,
    /// counted in `buffer_corruptions`, logged and skipped.
    pub fn pending(&self, after: Option<u64>, limit: usize) -> Result<Vec<Record>, BufferError> {
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(seq) => seq + 1,
        };
        let end = lock(&self.index).visible_end;
        let mut records = Vec::new();
        if start >= end || limit == 0 {
            return Ok(records);
        }
        for item in self.batches.range(start.to_be_bytes()..end.to_be_bytes()) {
            let (key, value) = item?;
            let Some(seq) = be_key(&key) else { continue };
            match format::read_publishable(seq, &value) {
                Ok(record) => {
                    records.push(record);
                    if records.len() == limit {
                        break;
                    }
                }
                Err(cause) => self.discard_batch(seq, &cause)?,
            }
        }
        Ok(records)
    }

    /// Removes batch `seq` after the broker's PUBACK and returns it, or
    /// `None` if it is not there (already acknowledged, or dropped because
    /// the buffer was full). Not synced: see the module docs.
    ///
    /// The published-readings metrics are the uplink's to count.
    pub fn ack(&self, seq: u64) -> Result<Option<Record>, BufferError> {
        let mut index = lock(&self.index);
        let Some(value) = self.batches.remove(seq.to_be_bytes())? else {
            return Ok(None);
        };
        index.remove_batch(seq);
        self.publish_gauges(&index);
        drop(index);
        match format::read_record(seq, &value) {
            Ok(record) => Ok(Some(record)),
            Err(cause) => {
                tracing::error!(seq, %cause, "an acknowledged batch was corrupt in the buffer");
                self.metrics
                    .buffer_corruptions
                    .fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Counts and sizes, from memory.
    pub fn stats(&self) -> BufferStats {
        let index = lock(&self.index);
        BufferStats {
            records: index.batches.len() as u64,
            bytes: index.total_bytes(),
            journal_readings: index.journal_readings,
            journal_bytes: index.journal_bytes,
            sealed_readings: index.sealed_readings,
            oldest_unsent_ms: index.oldest.first_key_value().map(|(&ts, _)| ts),
            syncs: self.syncs.load(Ordering::Relaxed),
            duplicates_dropped: self.duplicates.load(Ordering::Relaxed),
            readings_rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// The `batch_seq` from which batches are new: every batch below it
    /// that still exists is already returned by [`pending`](Self::pending),
    /// and every batch sealed from now on gets this number or a higher one.
    pub fn next_seq(&self) -> u64 {
        lock(&self.index).visible_end
    }

    /// The VEN every batch is from.
    pub fn ven_id(&self) -> &VenId {
        &self.ven_id
    }

    /// The buffer's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Largest payload a sealed batch may have.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// Opens (or creates) a further tree in the buffer's database, for
    /// state that must be exactly as durable as the readings (the DR
    /// timeline and its acknowledgement outbox). Names starting with
    /// `dr_` are free; the buffer's own trees are `journal`, `batches`
    /// and `meta`.
    pub fn open_tree(&self, name: &str) -> Result<sled::Tree, BufferError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Flushes sled and `fsync`s its files, as an append does: whatever
    /// was written to any tree of the database before this call is on
    /// stable storage when it returns.
    pub fn make_durable(&self) -> Result<(), BufferError> {
        let mut writer = lock(&self.writer);
        self.sync(&mut writer)
    }

    /// Flushes sled and `fsync`s its files; afterwards every batch sealed
    /// so far may be published.
    fn sync(&self, writer: &mut WriterState) -> Result<(), BufferError> {
        self.db.flush()?;
        writer
            .sync
            .sync(&self.dir)
            .map_err(|source| BufferError::Io {
                path: self.dir.clone(),
                source,
            })?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        lock(&self.index).visible_end = writer.next_seq;
        Ok(())
    }

    /// Makes sure the floor file is above every seq below `next_seq`
    /// before any of them is stored.
    fn reserve_seqs(&self, writer: &mut WriterState, next_seq: u64) -> Result<(), BufferError> {
        if next_seq <= writer.seq_floor && writer.seq_floor > 0 {
            return Ok(());
        }
        let floor = next_seq.saturating_add(SEQ_FLOOR_STEP);
        SeqFloor::write(&self.dir, floor).map_err(|source| BufferError::Io {
            path: self.dir.join(storage::SEQ_FLOOR_FILE),
            source,
        })?;
        writer.seq_floor = floor;
        Ok(())
    }

    /// Groups `readings` into series in arrival order, refusing those no
    /// batch could carry.
    fn accept(&self, readings: &[Reading]) -> Vec<SeriesPoints> {
        let mut series: Vec<SeriesPoints> = Vec::new();
        let mut positions: HashMap<SeriesKey, usize> = HashMap::new();
        let mut refused: HashSet<SeriesKey> = HashSet::new();
        let mut rejected = 0u64;
        let mut first_reason = None;
        for r in readings {
            let key = SeriesKey {
                meter: Arc::clone(&r.meter),
                quantity: r.quantity,
                phase: r.phase,
                exponent: r.exponent,
            };
            let point = Point {
                ts_ms: r.ts_ms,
                raw: r.raw,
            };
            if !(MIN_TS_MS..=MAX_TS_MS).contains(&r.ts_ms) {
                rejected += 1;
                first_reason.get_or_insert_with(|| {
                    format!(
                        "meter {:?}: timestamp {} ms is outside 1970..=9999",
                        r.meter, r.ts_ms
                    )
                });
                continue;
            }
            if let Some(&i) = positions.get(&key) {
                series[i].1.push(point);
                continue;
            }
            if refused.contains(&key) {
                rejected += 1;
                continue;
            }
            if let Err(reason) = self.check_series(&key) {
                rejected += 1;
                first_reason.get_or_insert(reason);
                refused.insert(key);
                continue;
            }
            positions.insert(key.clone(), series.len());
            series.push((key, vec![point]));
        }
        if rejected > 0 {
            self.rejected.fetch_add(rejected, Ordering::Relaxed);
            self.metrics
                .readings_rejected
                .fetch_add(rejected, Ordering::Relaxed);
            tracing::error!(
                rejected,
                first = first_reason.unwrap_or_default(),
                "refused readings that no telemetry batch can carry"
            );
        }
        series
    }

    /// Whether a series with this key passes the protocol's validation.
    fn check_series(&self, key: &SeriesKey) -> Result<(), String> {
        let probe = TelemetryBatch {
            ven_id: self.ven_id.clone(),
            batch_seq: 0,
            series: vec![Series {
                meter: key.meter.to_string(),
                quantity: key.quantity,
                phase: key.phase,
                exponent: key.exponent,
                points: vec![Point {
                    ts_ms: MIN_TS_MS,
                    raw: 0,
                }],
            }],
        };
        probe.validate().map_err(|e| e.to_string())
    }

    /// Keeps the newest readings of an append too big for the whole buffer.
    fn shrink_to_fit(&self, series: Vec<SeriesPoints>, mut len: usize) -> (Header, Vec<u8>) {
        let mut flat: Vec<(SeriesKey, Point)> = series
            .into_iter()
            .flat_map(|(key, points)| points.into_iter().map(move |p| (key.clone(), p)))
            .collect();
        let total = flat.len();
        flat.sort_by_key(|(_, p)| p.ts_ms);
        let budget = self.max_bytes.saturating_sub(KEY_BYTES);
        let mut keep = total;
        loop {
            // Proportionally fewer, 10% under, and always fewer than before.
            let scaled = keep as u64 * budget / len.max(1) as u64 * 9 / 10;
            keep = (scaled as usize).clamp(1, keep.saturating_sub(1).max(1));
            let mut regrouped: Vec<SeriesPoints> = Vec::new();
            let mut positions: HashMap<&SeriesKey, usize> = HashMap::new();
            for (key, point) in &flat[total - keep..] {
                if let Some(&i) = positions.get(key) {
                    regrouped[i].1.push(*point);
                } else {
                    positions.insert(key, regrouped.len());
                    regrouped.push((key.clone(), vec![*point]));
                }
            }
            let (header, value) = format::journal_value(&regrouped);
            if value.len() as u64 <= budget || keep == 1 {
                self.note_dropped(&mut lock(&self.index), (total - keep) as u64, 0);
                return (header, value);
            }
            len = value.len();
        }
    }

    /// Drops the oldest data until `incoming` more bytes fit in
    /// `max_bytes`.
    fn make_room(&self, index: &mut Index, incoming: u64) -> Result<(), BufferError> {
        let mut readings = 0u64;
        let mut values = 0u64;
        while index.total_bytes() + incoming > self.max_bytes {
            if let Some((&seq, _)) = index.batches.first_key_value() {
                self.batches.remove(seq.to_be_bytes())?;
                if let Some(entry) = index.remove_batch(seq) {
                    readings += u64::from(entry.readings);
                }
            } else if let Some((&key, _)) = index.journal.first_key_value() {
                self.journal.remove(key.to_be_bytes())?;
                if let Some(entry) = index.remove_journal(key) {
                    readings += u64::from(entry.readings);
                }
            } else {
                break;
            }
            values += 1;
        }
        if values > 0 {
            self.note_dropped(index, readings, values);
        }
        Ok(())
    }

    /// Counts dropped readings and warns, at most every 30 s.
    fn note_dropped(&self, index: &mut Index, readings: u64, values: u64) {
        self.metrics
            .readings_dropped
            .fetch_add(readings, Ordering::Relaxed);
        let log = &mut index.drops;
        log.readings += readings;
        log.values += values;
        if log
            .last_warning
            .is_none_or(|at| at.elapsed() >= DROP_WARN_EVERY)
        {
            tracing::warn!(
                dropped_readings = log.readings,
                dropped_values = log.values,
                max_bytes = self.max_bytes,
                "buffer full: dropped the oldest readings (counted since the last warning)"
            );
            log.last_warning = Some(Instant::now());
            log.readings = 0;
            log.values = 0;
        }
    }

    fn discard_journal(&self, key: u64, cause: &Corrupt) -> Result<(), BufferError> {
        let mut index = lock(&self.index);
        self.journal.remove(key.to_be_bytes())?;
        index.remove_journal(key);
        self.publish_gauges(&index);
        drop(index);
        tracing::error!(journal_key = key, %cause, "removed a corrupt journal entry");
        self.metrics
            .buffer_corruptions
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn discard_batch(&self, seq: u64, cause: &Corrupt) -> Result<(), BufferError> {
        let mut index = lock(&self.index);
        let removed = self.batches.remove(seq.to_be_bytes())?.is_some();
        let readings = index.remove_batch(seq).map(|e| e.readings);
        self.publish_gauges(&index);
        drop(index);
        if removed {
            tracing::error!(seq, readings, %cause, "removed a corrupt batch from the buffer");
            self.metrics
                .buffer_corruptions
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn publish_gauges(&self, index: &Index) {
        let m = &self.metrics;
        m.buffer_records
            .store(index.batches.len() as u64, Ordering::Relaxed);
        m.buffer_bytes.store(index.total_bytes(), Ordering::Relaxed);
        m.oldest_unsent_ms.store(
            index.oldest.first_key_value().map_or(0, |(&ts, _)| ts),
            Ordering::Relaxed,
        );
    }
}
