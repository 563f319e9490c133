//! Turning journal readings into publishable batches: no I/O.

use std::collections::{BTreeMap, HashSet};

use gridlink_protocol::{
    EncodeError, Encoding, Phase, Point, Quantity, Series, TelemetryBatch, VenId, encode,
};

use super::format::{self, Header, SeriesKey, SeriesPoints};

/// What must be unique within one batch.
type SeriesId = (String, Quantity, Phase);

/// One batch ready to be stored.
pub(super) struct SealedBatch {
    /// Its `batch_seq`.
    pub seq: u64,
    /// What its header says.
    pub header: Header,
    /// The value to store (header, checksum and payload).
    pub value: Vec<u8>,
}

/// What sealing the journal produced.
pub(super) struct Sealed {
    /// The batches, `seq` consecutive from the first free one.
    pub batches: Vec<SealedBatch>,
    /// Readings dropped because an earlier reading of the same series had
    /// the same timestamp.
    pub duplicates: u64,
    /// The first sequence number not used.
    pub next_seq: u64,
}

/// Groups the readings of `entries` (journal entries, oldest first) into
/// series sorted by time, drops exact duplicate timestamps within a series
/// (keeping the one appended first), and cuts the result into encoded
/// batches of at most `max_payload_bytes`, numbered from `first_seq`.
///
/// A series key that differs only in its exponent (the meter's resolution
/// changed in the config) goes into a separate batch, because a batch holds
/// at most one series per (meter, quantity, phase).
pub(super) fn seal(
    entries: impl IntoIterator<Item = Vec<SeriesPoints>>,
    ven_id: &VenId,
    first_seq: u64,
    max_payload_bytes: usize,
) -> Result<Sealed, EncodeError> {
    let mut columns: BTreeMap<SeriesKey, Vec<Point>> = BTreeMap::new();
    for entry in entries {
        for (key, points) in entry {
            columns.entry(key).or_default().extend(points);
        }
    }

    let mut duplicates = 0u64;
    // Batches being filled, each with the (meter, quantity, phase) it has.
    let mut groups: Vec<(HashSet<SeriesId>, Vec<Series>)> = Vec::new();
    for (key, mut points) in columns {
        // Stable: among equal timestamps the first appended stays first.
        points.sort_by_key(|p| p.ts_ms);
        let before = points.len();
        points.dedup_by_key(|p| p.ts_ms);
        duplicates += (before - points.len()) as u64;

        let series = Series {
            meter: key.meter.to_string(),
            quantity: key.quantity,
            phase: key.phase,
            exponent: key.exponent,
            points,
        };
        let id = (series.meter.clone(), series.quantity, series.phase);
        match groups.iter_mut().find(|(ids, _)| !ids.contains(&id)) {
            Some((ids, group)) => {
                ids.insert(id);
                group.push(series);
            }
            None => groups.push((HashSet::from([id]), vec![series])),
        }
    }

    let mut next_seq = first_seq;
    let mut batches = Vec::new();
    for (_, series) in groups {
        let batch = TelemetryBatch {
            ven_id: ven_id.clone(),
            batch_seq: next_seq,
            series,
        };
        for part in batch.split_to_fit(max_payload_bytes)? {
            let payload = encode(&part, Encoding::Postcard)?;
            if payload.len() > max_payload_bytes {
                return Err(EncodeError::TooLarge {
                    size: payload.len(),
                    max: max_payload_bytes,
                });
            }
            let (header, value) = format::batch_value(&part, &payload);
            next_seq = part.batch_seq + 1;
            batches.push(SealedBatch {
                seq: part.batch_seq,
                header,
                value,
            });
        }
    }
    Ok(Sealed {
        batches,
        duplicates,
        next_seq,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gridlink_protocol::decode;

    use super::*;

    fn key(meter: &str, exponent: i8) -> SeriesKey {
        SeriesKey {
            meter: Arc::from(meter),
            quantity: Quantity::ActivePower,
            phase: Phase::L1,
            exponent,
        }
    }

    fn points(pairs: &[(i64, i64)]) -> Vec<Point> {
        pairs
            .iter()
            .map(|&(ts_ms, raw)| Point { ts_ms, raw })
            .collect()
    }

    fn decoded(sealed: &Sealed) -> Vec<TelemetryBatch> {
        sealed
            .batches
            .iter()
            .map(|b| {
                let record = format::read_publishable(b.seq, &b.value).unwrap();
                decode(&record.payload).unwrap()
            })
            .collect()
    }

    #[test]
    fn sorts_by_time_and_keeps_the_first_of_duplicate_timestamps() {
        let ven = VenId::new("ven-1").unwrap();
        let entries = vec![
            vec![(key("main", 0), points(&[(3_000, 30), (1_000, 10)]))],
            vec![(
                key("main", 0),
                points(&[(2_000, 20), (1_000, 99), (3_000, 98)]),
            )],
        ];
        let sealed = seal(entries, &ven, 40, 4096).unwrap();
        assert_eq!(sealed.duplicates, 2);
        assert_eq!(sealed.next_seq, 41);
        let batches = decoded(&sealed);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].batch_seq, 40);
        assert_eq!(
            batches[0].series[0].points,
            points(&[(1_000, 10), (2_000, 20), (3_000, 30)])
        );
        assert_eq!(sealed.batches[0].header.readings, 3);
        assert_eq!(sealed.batches[0].header.oldest_ts_ms, 1_000);
    }

    #[test]
    fn a_changed_exponent_goes_into_its_own_batch() {
        let ven = VenId::new("ven-1").unwrap();
        let entries = vec![vec![
            (key("main", 0), points(&[(1_000, 1)])),
            (key("main", -1), points(&[(2_000, 15)])),
            (key("pv", 0), points(&[(1_000, 4)])),
        ]];
        let sealed = seal(entries, &ven, 0, 4096).unwrap();
        let batches = decoded(&sealed);
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches.iter().map(|b| b.batch_seq).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(
            batches
                .iter()
                .map(TelemetryBatch::reading_count)
                .sum::<usize>(),
            3
        );
        for b in &batches {
            let keys: HashSet<_> = b.series.iter().map(Series::key).collect();
            assert_eq!(keys.len(), b.series.len());
        }
    }

    #[test]
    fn large_journals_are_cut_into_payloads_that_fit() {
        let ven = VenId::new("ven-1").unwrap();
        let entries: Vec<Vec<SeriesPoints>> = (0..50)
            .map(|e| {
                (0..4)
                    .map(|m| {
                        let pts = (0..200).map(|i| Point {
                            ts_ms: 1_700_000_000_000 + (e * 200 + i) * 1000,
                            raw: (i * 7919 + m * 104_729) % 100_003,
                        });
                        (key(&format!("m{m}"), 0), pts.collect())
                    })
                    .collect()
            })
            .collect();
        let sealed = seal(entries, &ven, 100, 2048).unwrap();
        assert!(sealed.batches.len() > 4, "{} batches", sealed.batches.len());
        let mut seq = 100;
        let mut total = 0;
        for b in &sealed.batches {
            assert_eq!(b.seq, seq);
            seq += 1;
            assert!(b.value.len() - format::HEADER_LEN <= 2048);
            total += b.header.readings;
        }
        assert_eq!(sealed.next_seq, seq);
        assert_eq!(total, 50 * 4 * 200);
    }

    #[test]
    fn nothing_to_seal_uses_no_sequence_number() {
        let ven = VenId::new("ven-1").unwrap();
        let sealed = seal(Vec::new(), &ven, 5, 4096).unwrap();
        assert!(sealed.batches.is_empty());
        assert_eq!(sealed.next_seq, 5);
    }
}
