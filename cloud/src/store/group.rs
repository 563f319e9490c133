//! What both backends derive from a group of batches before writing it:
//! validation, the idempotency keys to claim, the per-VEN freshness update,
//! the series to resolve and the readings to insert.
//!
//! Everything that must be sorted is sorted here, so every transaction
//! locks rows in the same order (batch keys, VENs, series, readings,
//! rollup buckets) and two ingest processes cannot deadlock each other.

use std::collections::{BTreeMap, HashMap};

use gridlink_protocol::telemetry::{EXPONENT_RANGE, MAX_TS_MS, MIN_TS_MS};

use super::cache::SeriesKey;
use super::{IngestBatch, StoreError};

/// Checks what the schema relies on: timestamps in the protocol's range
/// (non-negative, so `ts - ts % width` is the bucket start) and exponents
/// in -9..=9.
pub(crate) fn validate(batches: &[IngestBatch]) -> Result<(), StoreError> {
    for batch in batches {
        for series in &batch.series {
            if !EXPONENT_RANGE.contains(&series.exponent) {
                return Err(StoreError::Invalid(format!(
                    "batch {} of {}: series {:?} has exponent {} outside -9..=9",
                    batch.batch_seq, batch.ven_id, series.meter, series.exponent
                )));
            }
            if let Some(point) = series
                .points
                .iter()
                .find(|p| !(MIN_TS_MS..=MAX_TS_MS).contains(&p.ts_ms))
            {
                return Err(StoreError::Invalid(format!(
                    "batch {} of {}: series {:?} has timestamp {} ms outside 1970-01-01..9999-12-31",
                    batch.batch_seq, batch.ven_id, series.meter, point.ts_ms
                )));
            }
        }
    }
    Ok(())
}

/// A `(ven_id, batch_seq)` to claim in `ingested_batches`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim<'a> {
    /// Index of the batch in the group.
    pub index: usize,
    /// The VEN.
    pub ven_id: &'a str,
    /// `batch_seq` bit for bit as a BIGINT.
    pub batch_seq: i64,
    /// Receive time, ms.
    pub received_ms: i64,
    /// Readings in the batch.
    pub readings: i64,
}

/// The first batch of each key in the group (a repeated key is a duplicate
/// without asking the database), sorted by key.
pub(crate) fn claims(batches: &[IngestBatch]) -> Vec<Claim<'_>> {
    let mut first: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    for (index, batch) in batches.iter().enumerate() {
        first
            .entry((batch.ven_id.as_str(), batch.batch_seq))
            .or_insert(index);
    }
    first
        .into_iter()
        .map(|((ven_id, batch_seq), index)| Claim {
            index,
            ven_id,
            // u64 -> i64 bit for bit: the key only needs to be unique.
            batch_seq: batch_seq as i64,
            received_ms: batches[index].received_ms,
            readings: batches[index]
                .series
                .iter()
                .map(|s| s.points.len() as i64)
                .sum(),
        })
        .collect()
}

/// A VEN's freshness after the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VenUpdate<'a> {
    /// The VEN.
    pub ven_id: &'a str,
    /// Latest receive time of any of its batches in the group (duplicates
    /// included: they are messages too).
    pub last_seen: i64,
    /// Newest reading of its new batches.
    pub last_reading: Option<i64>,
    /// Receive time minus reading time of the new batch holding that reading.
    pub ingest_lag: Option<i64>,
}

/// One update per VEN in the group, sorted by VEN.
pub(crate) fn ven_updates<'a>(batches: &'a [IngestBatch], is_new: &[bool]) -> Vec<VenUpdate<'a>> {
    let mut by_ven: BTreeMap<&str, VenUpdate<'_>> = BTreeMap::new();
    for (batch, &new) in batches.iter().zip(is_new) {
        let ven_id = batch.ven_id.as_str();
        let update = by_ven.entry(ven_id).or_insert(VenUpdate {
            ven_id,
            last_seen: batch.received_ms,
            last_reading: None,
            ingest_lag: None,
        });
        update.last_seen = update.last_seen.max(batch.received_ms);
        if !new {
            continue;
        }
        let newest = batch
            .series
            .iter()
            .filter_map(|s| s.points.last().map(|p| p.ts_ms))
            .max();
        if let Some(newest) = newest
            && update.last_reading.is_none_or(|known| newest >= known)
        {
            update.last_reading = Some(newest);
            update.ingest_lag = Some(batch.received_ms.saturating_sub(newest));
        }
    }
    by_ven.into_values().collect()
}

/// The series of the new batches, sorted, each with the exponent of the
/// last new batch carrying it.
pub(crate) fn series_keys(batches: &[IngestBatch], is_new: &[bool]) -> Vec<(SeriesKey, i8)> {
    let mut keys: BTreeMap<SeriesKey, i8> = BTreeMap::new();
    for (batch, _) in batches.iter().zip(is_new).filter(|(_, new)| **new) {
        for series in &batch.series {
            keys.insert(SeriesKey::of(&batch.ven_id, series), series.exponent);
        }
    }
    keys.into_iter().collect()
}

/// One raw reading as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// `series.id`.
    pub series_id: i64,
    /// Reading time, ms.
    pub ts: i64,
    /// `raw * 10^exponent`.
    pub value: f64,
}

/// The readings of the new batches, sorted by (series, ts), each
/// (series, ts) once: the first in group order wins.
///
/// `ids` must hold every key [`series_keys`] returned.
pub(crate) fn readings(
    batches: &[IngestBatch],
    is_new: &[bool],
    ids: &HashMap<SeriesKey, i64>,
) -> Vec<Reading> {
    let count = batches
        .iter()
        .zip(is_new)
        .filter(|(_, new)| **new)
        .map(|(b, _)| b.series.iter().map(|s| s.points.len()).sum::<usize>())
        .sum();
    let mut readings = Vec::with_capacity(count);
    for (batch, _) in batches.iter().zip(is_new).filter(|(_, new)| **new) {
        for series in &batch.series {
            let series_id = *ids
                .get(&SeriesKey::of(&batch.ven_id, series))
                .expect("every series of a new batch was resolved before its readings");
            readings.extend(series.points.iter().map(|&point| Reading {
                series_id,
                ts: point.ts_ms,
                value: series.value(point),
            }));
        }
    }
    // Stable: equal keys keep group order, and dedup keeps the first.
    readings.sort_by_key(|r| (r.series_id, r.ts));
    readings.dedup_by_key(|r| (r.series_id, r.ts));
    readings
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::{Phase, Quantity, Series, VenId};

    use super::*;

    fn batch(ven: &str, seq: u64, received_ms: i64, points: &[(i64, i64)]) -> IngestBatch {
        let mut series = Series::new("main", Quantity::ActivePower, Phase::Total, 0);
        series.points = points
            .iter()
            .map(|&(ts_ms, raw)| gridlink_protocol::Point { ts_ms, raw })
            .collect();
        IngestBatch {
            ven_id: VenId::new(ven).unwrap(),
            batch_seq: seq,
            received_ms,
            series: vec![series],
        }
    }

    #[test]
    fn claims_are_sorted_and_first_wins() {
        let batches = [
            batch("b", 2, 10, &[(1, 1)]),
            batch("a", 9, 11, &[(1, 1), (2, 2)]),
            batch("b", 2, 12, &[(1, 1)]),
            batch("b", u64::MAX, 13, &[(1, 1)]),
        ];
        let claims = claims(&batches);
        let keys: Vec<_> = claims
            .iter()
            .map(|c| (c.ven_id, c.batch_seq, c.index))
            .collect();
        assert_eq!(keys, [("a", 9, 1), ("b", 2, 0), ("b", -1, 3)]);
        assert_eq!(claims[0].readings, 2);
    }

    #[test]
    fn ven_update_takes_newest_reading_of_new_batches() {
        let batches = [
            batch("a", 1, 5_000, &[(1_000, 1), (2_000, 1)]),
            batch("a", 2, 4_000, &[(3_000, 1)]),
            batch("a", 3, 9_000, &[(8_000, 1)]),
        ];
        let updates = ven_updates(&batches, &[true, true, false]);
        assert_eq!(
            updates,
            [VenUpdate {
                ven_id: "a",
                last_seen: 9_000,
                last_reading: Some(3_000),
                ingest_lag: Some(1_000),
            }]
        );
    }

    #[test]
    fn readings_keep_the_first_of_a_repeated_timestamp() {
        let batches = [
            batch("a", 1, 0, &[(2, 20), (3, 30)]),
            batch("a", 2, 0, &[(1, 10), (2, 99)]),
        ];
        let keys = series_keys(&batches, &[true, true]);
        assert_eq!(keys.len(), 1);
        let ids = HashMap::from([(keys[0].0.clone(), 7)]);
        let got: Vec<_> = readings(&batches, &[true, true], &ids)
            .iter()
            .map(|r| (r.ts, r.value))
            .collect();
        assert_eq!(got, [(1, 10.0), (2, 20.0), (3, 30.0)]);
        assert!(readings(&batches, &[false, false], &ids).is_empty());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut bad = batch("a", 1, 0, &[(-1, 1)]);
        let err = validate(std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("timestamp -1 ms"), "{err}");
        bad.series[0].points[0].ts_ms = 0;
        bad.series[0].exponent = 10;
        let err = validate(&[bad]).unwrap_err().to_string();
        assert!(err.contains("exponent 10"), "{err}");
    }
}
