//! Where DR state becomes durable: the timeline's state and the outbox of
//! acknowledgements, in two trees of the buffer's sled database.
//!
//! [`DrStore::save`] writes the state and the new acknowledgements, then
//! flushes sled and `fsync`s its files ([`Buffer::make_durable`]). Only
//! after it returns is a command acknowledged to the broker (PUBACK) or an
//! acknowledgement offered to
//! the uplink. An acknowledgement leaves the outbox when the broker's
//! PUBACK for it arrives ([`DrStore::remove_ack`], not synced: a crash
//! that takes the removal back sends it once more).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use gridlink_protocol::{CommandAck, Encoding, encode};
use tokio::sync::Notify;

use super::timeline::TimelineState;
use crate::buffer::{Buffer, BufferError};

/// Key of the timeline state in its tree.
const STATE_KEY: &[u8] = b"timeline";

/// Why DR state could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled or the fsync failed.
    #[error("DR store: {0}")]
    Buffer(#[from] BufferError),
    /// sled failed.
    #[error("DR store: sled: {0}")]
    Sled(#[from] sled::Error),
    /// The stored state does not decode (written by an incompatible version).
    #[error("DR store: stored state does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// The durable DR state and acknowledgement outbox. Blocking (sled): call
/// from `crate::blocking::off_the_runtime`.
#[derive(Debug)]
pub struct DrStore {
    buffer: Arc<Buffer>,
    state: sled::Tree,
    outbox: sled::Tree,
    next_key: AtomicU64,
    /// Acknowledgements in the outbox (kept here: sled's `len` walks the tree).
    waiting: AtomicUsize,
    /// Signalled when acknowledgements were added.
    pub acks_added: Notify,
}

impl DrStore {
    /// Opens the DR trees in `buffer`'s database.
    pub fn open(buffer: Arc<Buffer>) -> Result<Self, StoreError> {
        let state = buffer.open_tree("dr_state")?;
        let outbox = buffer.open_tree("dr_outbox")?;
        let next_key = match outbox.last()? {
            Some((key, _)) => key_of(&key).map_or(0, |k| k + 1),
            None => 0,
        };
        let waiting = outbox.iter().count();
        Ok(Self {
            buffer,
            state,
            outbox,
            next_key: AtomicU64::new(next_key),
            waiting: AtomicUsize::new(waiting),
            acks_added: Notify::new(),
        })
    }

    /// The persisted timeline state, if any.
    pub fn load(&self) -> Result<Option<TimelineState>, StoreError> {
        match self.state.get(STATE_KEY)? {
            Some(bytes) => Ok(Some(postcard::from_bytes(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `state` and appends `acks` to the outbox, then makes both
    /// durable. Acknowledgements that do not encode are logged and left out.
    pub fn save(&self, state: &TimelineState, acks: &[CommandAck]) -> Result<(), StoreError> {
        let bytes = postcard::to_allocvec(state)?;
        self.state.insert(STATE_KEY, bytes)?;
        for ack in acks {
            match encode(ack, Encoding::Postcard) {
                Ok(payload) => {
                    let key = self.next_key.fetch_add(1, Ordering::Relaxed);
                    self.outbox.insert(key.to_be_bytes(), payload)?;
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::error!(%error, ?ack, "acknowledgement does not encode; dropped");
                }
            }
        }
        self.buffer.make_durable()?;
        if !acks.is_empty() {
            self.acks_added.notify_one();
        }
        Ok(())
    }

    /// Up to `limit` acknowledgements in order, as `(key, payload)`.
    pub fn pending_acks(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.outbox.iter().take(limit) {
            let (key, value) = item?;
            if let Some(key) = key_of(&key) {
                out.push((key, value.to_vec()));
            }
        }
        Ok(out)
    }

    /// Acknowledgements waiting for the broker.
    pub fn outbox_len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The broker acknowledged the acknowledgement `key`.
    pub fn remove_ack(&self, key: u64) -> Result<(), StoreError> {
        if self.outbox.remove(key.to_be_bytes())?.is_some() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn key_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}
