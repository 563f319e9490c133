//! How journal entries and sealed batches are laid out in sled, each behind
//! a CRC-32.
//!
//! Every value starts with the same 17-byte header:
//!
//! ```text
//! u32 LE  crc32 of everything after it
//! u8      format version (1)
//! u32 LE  readings in the value
//! i64 LE  oldest reading's timestamp, ms since the Unix epoch
//! ...     body
//! ```
//!
//! The body of a sealed batch is the encoded `TelemetryBatch` payload,
//! exactly as it is published. The body of a journal entry is postcard of
//! a list of series, each with its points in the protocol's compact column
//! codec (in arrival order, not yet sorted or deduplicated). One entry
//! holds one group commit of a few polls, so each series' column restarts
//! in every entry: on a multi-meter site the journal costs about 20 bytes a
//! reading against about 6 once sealed (measured with 100 meters).

use std::sync::Arc;

use gridlink_protocol::compact::{self, ColumnError};
use gridlink_protocol::{DecodeError, Phase, Point, Quantity, TelemetryBatch, decode};
use serde::{Deserialize, Serialize};

use super::Record;

/// Bytes before the body of every stored value.
pub(super) const HEADER_LEN: usize = 4 + 1 + 4 + 8;

/// The format version written in every value.
const VERSION: u8 = 1;

/// The (meter, quantity, phase, exponent) a reading belongs to: one column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct SeriesKey {
    /// The meter's name.
    pub meter: Arc<str>,
    /// What was measured.
    pub quantity: Quantity,
    /// On which phase.
    pub phase: Phase,
    /// Decimal exponent of the resolution.
    pub exponent: i8,
}

/// Readings of one series, in the order they were appended.
pub(super) type SeriesPoints = (SeriesKey, Vec<Point>);

/// What the header of a stored value says about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Readings in the value.
    pub readings: u32,
    /// Timestamp of the oldest of them.
    pub oldest_ts_ms: i64,
}

/// Why a stored value was found unusable.
#[derive(Debug, thiserror::Error)]
pub(super) enum Corrupt {
    /// Too short to hold the header.
    #[error("value is {0} bytes, shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    /// The stored checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// The format version is not one this agent writes.
    #[error("unknown format version {0}")]
    Version(u8),
    /// The journal entry's body is not postcard of a series list.
    #[error("journal entry body: {0}")]
    JournalBody(postcard::Error),
    /// A journal series' column does not decode.
    #[error("journal series {index}: {source}")]
    JournalColumn {
        /// Position of the series in the entry.
        index: usize,
        /// What was wrong.
        source: ColumnError,
    },
    /// The batch payload does not decode as a `TelemetryBatch`.
    #[error("batch payload: {0}")]
    Payload(DecodeError),
    /// The payload's `batch_seq` is not the key it is stored under.
    #[error("payload has batch_seq {found}, but it is stored under {key}")]
    Seq {
        /// The key in the tree.
        key: u64,
        /// The `batch_seq` in the payload.
        found: u64,
    },
    /// The header's reading count disagrees with the body.
    #[error("header says {header} readings, the body has {body}")]
    Count {
        /// Count in the header.
        header: u32,
        /// Count in the body.
        body: usize,
    },
}

/// Prepends the header and checksum to `body`.
pub(super) fn frame(header: Header, body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER_LEN + body.len());
    value.extend_from_slice(&[0; 4]);
    value.push(VERSION);
    value.extend_from_slice(&header.readings.to_le_bytes());
    value.extend_from_slice(&header.oldest_ts_ms.to_le_bytes());
    value.extend_from_slice(body);
    let crc = crc32fast::hash(&value[4..]);
    value[..4].copy_from_slice(&crc.to_le_bytes());
    value
}

/// Checks the checksum and version of a stored value and splits it into
/// header and body.
pub(super) fn unframe(value: &[u8]) -> Result<(Header, &[u8]), Corrupt> {
    if value.len() < HEADER_LEN {
        return Err(Corrupt::Short(value.len()));
    }
    let (crc, rest) = value.split_at(4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(rest);
    if stored != computed {
        return Err(Corrupt::Checksum { stored, computed });
    }
    if rest[0] != VERSION {
        return Err(Corrupt::Version(rest[0]));
    }
    let mut readings = [0; 4];
    readings.copy_from_slice(&rest[1..5]);
    let mut oldest = [0; 8];
    oldest.copy_from_slice(&rest[5..13]);
    let header = Header {
        readings: u32::from_le_bytes(readings),
        oldest_ts_ms: i64::from_le_bytes(oldest),
    };
    Ok((header, &rest[13..]))
}

#[derive(Serialize, Deserialize)]
struct JournalSeries<'a> {
    meter: &'a str,
    quantity: Quantity,
    phase: Phase,
    exponent: i8,
    columns: &'a [u8],
}

/// The stored form of a journal entry holding `series` (none empty).
pub(super) fn journal_value(series: &[SeriesPoints]) -> (Header, Vec<u8>) {
    let columns: Vec<Vec<u8>> = series
        .iter()
        .map(|(_, points)| {
            let mut out = Vec::with_capacity(points.len() * 3 + 8);
            compact::encode_points(points, &mut out);
            out
        })
        .collect();
    let wire: Vec<JournalSeries<'_>> = series
        .iter()
        .zip(&columns)
        .map(|((key, _), columns)| JournalSeries {
            meter: &key.meter,
            quantity: key.quantity,
            phase: key.phase,
            exponent: key.exponent,
            columns,
        })
        .collect();
    // Serializing borrowed strings, enums and byte slices into a Vec
    // cannot fail; an empty body would be caught as corrupt when read.
    let body = postcard::to_allocvec(&wire).unwrap_or_default();
    let readings: usize = series.iter().map(|(_, p)| p.len()).sum();
    let header = Header {
        readings: u32::try_from(readings).unwrap_or(u32::MAX),
        oldest_ts_ms: oldest(series.iter().flat_map(|(_, p)| p)),
    };
    (header, frame(header, &body))
}

/// Reads a journal entry back.
pub(super) fn read_journal(value: &[u8]) -> Result<(Header, Vec<SeriesPoints>), Corrupt> {
    let (header, body) = unframe(value)?;
    let wire: Vec<JournalSeries<'_>> = postcard::from_bytes(body).map_err(Corrupt::JournalBody)?;
    let mut series = Vec::with_capacity(wire.len());
    let mut count = 0;
    for (index, s) in wire.into_iter().enumerate() {
        let points = compact::decode_points(s.columns)
            .map_err(|source| Corrupt::JournalColumn { index, source })?;
        count += points.len();
        let key = SeriesKey {
            meter: Arc::from(s.meter),
            quantity: s.quantity,
            phase: s.phase,
            exponent: s.exponent,
        };
        series.push((key, points));
    }
    if count != header.readings as usize {
        return Err(Corrupt::Count {
            header: header.readings,
            body: count,
        });
    }
    Ok((header, series))
}

/// Reads a sealed batch's header, checking only its checksum: what
/// acknowledging needs.
pub(super) fn read_record(seq: u64, value: &[u8]) -> Result<Record, Corrupt> {
    let (header, payload) = unframe(value)?;
    Ok(Record {
        seq,
        payload: payload.to_vec(),
        readings: header.readings,
        oldest_ts_ms: header.oldest_ts_ms,
    })
}

/// Reads a sealed batch and checks that its payload decodes, carries the
/// sequence number it is stored under and holds the readings its header
/// claims: what publishing needs.
pub(super) fn read_publishable(seq: u64, value: &[u8]) -> Result<Record, Corrupt> {
    let record = read_record(seq, value)?;
    let batch: TelemetryBatch = decode(&record.payload).map_err(Corrupt::Payload)?;
    if batch.batch_seq != seq {
        return Err(Corrupt::Seq {
            key: seq,
            found: batch.batch_seq,
        });
    }
    if batch.reading_count() != record.readings as usize {
        return Err(Corrupt::Count {
            header: record.readings,
            body: batch.reading_count(),
        });
    }
    Ok(record)
}

/// The stored form of a sealed batch.
pub(super) fn batch_value(batch: &TelemetryBatch, payload: &[u8]) -> (Header, Vec<u8>) {
    let header = Header {
        readings: u32::try_from(batch.reading_count()).unwrap_or(u32::MAX),
        oldest_ts_ms: oldest(batch.series.iter().flat_map(|s| &s.points)),
    };
    (header, frame(header, payload))
}

/// The smallest timestamp of `points`, or 0 if there are none.
fn oldest<'a>(points: impl Iterator<Item = &'a Point>) -> i64 {
    points.map(|p| p.ts_ms).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::VenId;

    use super::*;

    fn key(meter: &str, quantity: Quantity) -> SeriesKey {
        SeriesKey {
            meter: Arc::from(meter),
            quantity,
            phase: Phase::Total,
            exponent: -1,
        }
    }

    fn entry() -> Vec<SeriesPoints> {
        vec![
            (
                key("main", Quantity::ActivePower),
                vec![
                    Point {
                        ts_ms: 2_000,
                        raw: 15,
                    },
                    Point {
                        ts_ms: 1_000,
                        raw: -3,
                    },
                    Point {
                        ts_ms: 1_000,
                        raw: 7,
                    },
                ],
            ),
            (
                key("pv", Quantity::Voltage),
                vec![Point {
                    ts_ms: 1_500,
                    raw: i64::MIN,
                }],
            ),
        ]
    }

    #[test]
    fn journal_entries_round_trip_unsorted_and_duplicated_points() {
        let (header, value) = journal_value(&entry());
        assert_eq!(
            header,
            Header {
                readings: 4,
                oldest_ts_ms: 1_000
            }
        );
        let (read_header, series) = read_journal(&value).unwrap();
        assert_eq!(read_header, header);
        assert_eq!(series, entry());
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let (_, value) = journal_value(&entry());
        for byte in 0..value.len() {
            for bit in 0..8 {
                let mut bad = value.clone();
                bad[byte] ^= 1 << bit;
                assert!(read_journal(&bad).is_err(), "byte {byte} bit {bit}");
            }
        }
        for len in 0..value.len() {
            assert!(read_journal(&value[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn a_checksummed_value_with_a_bad_body_is_corrupt() {
        let header = Header {
            readings: 1,
            oldest_ts_ms: 5,
        };
        let value = frame(header, b"not postcard of a series list");
        assert!(matches!(
            read_journal(&value),
            Err(Corrupt::JournalBody(_) | Corrupt::JournalColumn { .. })
        ));
        assert!(matches!(
            read_publishable(1, &value),
            Err(Corrupt::Payload(_))
        ));
        let record = read_record(9, &value).unwrap();
        assert_eq!(
            (record.seq, record.readings, record.oldest_ts_ms),
            (9, 1, 5)
        );
    }

    #[test]
    fn a_batch_under_the_wrong_key_or_count_is_corrupt() {
        let mut series =
            gridlink_protocol::Series::new("main", Quantity::ActivePower, Phase::Total, 0);
        series.push(1_000, 1.0);
        series.push(2_000, 2.0);
        let batch = TelemetryBatch {
            ven_id: VenId::new("ven-1").unwrap(),
            batch_seq: 7,
            series: vec![series],
        };
        let payload =
            gridlink_protocol::encode(&batch, gridlink_protocol::Encoding::Postcard).unwrap();
        let (header, value) = batch_value(&batch, &payload);
        assert_eq!(header.readings, 2);
        assert_eq!(header.oldest_ts_ms, 1_000);
        assert_eq!(read_publishable(7, &value).unwrap().payload, payload);
        assert!(matches!(
            read_publishable(8, &value),
            Err(Corrupt::Seq { key: 8, found: 7 })
        ));
        let lying = frame(
            Header {
                readings: 3,
                ..header
            },
            &payload,
        );
        assert!(matches!(
            read_publishable(7, &lying),
            Err(Corrupt::Count { header: 3, body: 2 })
        ));
    }
}
