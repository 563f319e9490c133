//! The in-memory map from series key to `series.id`, so steady-state ingest
//! does no lookup.
//!
//! Entries are added only after the transaction that created or found them
//! has committed, so the map never holds an id a rollback took back. Rows of
//! `series` are never deleted, so an entry never goes stale; only the
//! exponent can change, and a batch with another exponent than the cached
//! one goes through the upsert again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use gridlink_protocol::{Phase, Quantity, Series, VenId};

use super::{phase_code, quantity_code};

/// What identifies a series: `UNIQUE (ven_id, meter, quantity, phase)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SeriesKey {
    /// The VEN.
    pub ven_id: String,
    /// The meter's name.
    pub meter: String,
    /// The quantity.
    pub quantity: Quantity,
    /// The phase.
    pub phase: Phase,
}

impl SeriesKey {
    /// The key of `series` sent by `ven_id`.
    pub fn of(ven_id: &VenId, series: &Series) -> Self {
        Self {
            ven_id: ven_id.as_str().to_owned(),
            meter: series.meter.clone(),
            quantity: series.quantity,
            phase: series.phase,
        }
    }

    /// `quantity` as stored.
    pub fn quantity_code(&self) -> i16 {
        quantity_code(self.quantity)
    }

    /// `phase` as stored.
    pub fn phase_code(&self) -> i16 {
        phase_code(self.phase)
    }
}

/// A committed `series` row: its id and exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesRow {
    /// `series.id`.
    pub id: i64,
    /// `series.exponent`.
    pub exponent: i8,
}

/// Series key to committed row, shared by all of a store's tasks.
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    rows: Mutex<HashMap<SeriesKey, SeriesRow>>,
}

impl SeriesCache {
    /// The committed row of `key`.
    pub fn get(&self, key: &SeriesKey) -> Option<SeriesRow> {
        // The map is valid after any panic (inserts only), so a poisoned
        // lock is used as it is.
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// Adds rows whose transaction has committed.
    pub fn extend(&self, rows: impl IntoIterator<Item = (SeriesKey, SeriesRow)>) {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(rows);
    }
}
