//! The single task that owns appends: group commit and sealing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::MissedTickBehavior;

use super::{Buffer, BufferError};
use crate::reading::Reading;

/// First wait after a failed append or seal.
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A generous estimate of a reading's size once sealed (measured 1.4-6
/// bytes, see the protocol benchmark and the footprint bench).
const SEALED_BYTES_PER_READING: u64 = 6;

/// Moves readings from acquisition into the buffer until the channel
/// closes.
///
/// It waits for a poll's readings, then drains everything already queued
/// into the same [`Buffer::append`]: one `fsync` for all the polls that
/// arrived while the previous one was syncing (group commit), so the writer
/// keeps up however slow the disk is, as long as one sync is shorter than
/// the channel's capacity in polls. It seals every `seal_interval` (the
/// first time right away, for a journal left by the previous run) and as
/// soon as the journal holds a full payload's worth, and calls
/// `sealed.notify_one()` after every seal that produced batches, so the
/// uplink wakes up. When the channel closes it appends what is left, seals
/// and returns.
///
/// sled runs on the blocking pool (`spawn_blocking`), never on the runtime.
/// A failed append or seal is logged and retried with a backoff from 50 ms
/// to 5 s, with the same readings, until it succeeds: nothing is dropped
/// here. Meanwhile the channel fills and acquisition counts what does not
/// fit in `readings_overflowed`. A shutdown that cannot wait for a broken
/// disk should put a time-out around this task.
pub async fn run_writer(
    buffer: Arc<Buffer>,
    mut rx: mpsc::Receiver<Vec<Reading>>,
    seal_interval: Duration,
    sealed: Arc<Notify>,
) {
    let mut ticker = tokio::time::interval(seal_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // The tick first: it is ready once per interval, so it cannot
            // starve the channel, but a busy channel cannot starve it.
            biased;
            _ = ticker.tick() => seal(&buffer, &sealed).await,
            first = rx.recv() => {
                let Some(mut readings) = first else { break };
                while let Ok(more) = rx.try_recv() {
                    readings.extend(more);
                }
                append(&buffer, readings).await;
                // Seal early when the journal would fill a payload. Journal
                // bytes overstate the sealed size about fourfold (each entry
                // restarts its columns), so count readings at the sealed
                // size instead.
                if buffer.stats().journal_readings * SEALED_BYTES_PER_READING >= buffer.max_payload_bytes() as u64 {
                    seal(&buffer, &sealed).await;
                    ticker.reset();
                }
            }
        }
    }
    seal(&buffer, &sealed).await;
}

async fn append(buffer: &Arc<Buffer>, readings: Vec<Reading>) {
    if readings.is_empty() {
        return;
    }
    let readings = Arc::new(readings);
    let buffer = Arc::clone(buffer);
    retry("append", move || buffer.append(&readings)).await;
}

async fn seal(buffer: &Arc<Buffer>, sealed: &Notify) {
    let buffer = Arc::clone(buffer);
    let seqs = retry("seal", move || buffer.seal()).await;
    if !seqs.is_empty() {
        tracing::debug!(batches = seqs.len(), first = seqs[0], "sealed");
        sealed.notify_one();
    }
}

/// Runs `op` on the blocking pool until it succeeds.
async fn retry<T, F>(what: &'static str, op: F) -> T
where
    T: Send + 'static,
    F: Fn() -> Result<T, BufferError> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let mut wait = RETRY_FIRST;
    loop {
        let attempt = Arc::clone(&op);
        match tokio::task::spawn_blocking(move || attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(error)) => {
                tracing::error!(%error, retry_in_ms = wait.as_millis() as u64, "buffer {what} failed; retrying");
            }
            Err(panic) => {
                tracing::error!(error = %panic, retry_in_ms = wait.as_millis() as u64, "buffer {what} panicked; retrying");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}
