//! Telemetry: batches of meter readings, one column per series.

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeErrorKind, MAX_PAYLOAD_BYTES, WireMessage, postcard_body};
use crate::compact;
use crate::error::ValidationError;
use crate::names::check_name;
use crate::quantity::{Phase, Quantity};
use crate::ven_id::VenId;

/// Smallest accepted timestamp: the Unix epoch.
pub const MIN_TS_MS: i64 = 0;
/// Largest accepted timestamp: 9999-12-31T23:59:59.999Z.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;
/// Accepted range of the decimal exponent of a series.
pub const EXPONENT_RANGE: std::ops::RangeInclusive<i8> = -9..=9;
/// Longest meter name.
pub const MAX_METER_NAME_LEN: usize = 64;

/// One reading: a time and a scaled integer value.
///
/// The value in the quantity's unit is `raw * 10^exponent` of its
/// [`Series`]. Keeping the meter's own resolution as an integer makes every
/// encoding lossless and lets the compact codec store small deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// The value in units of `10^exponent` of the quantity's unit.
    pub raw: i64,
}

/// The readings of one quantity on one phase of one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// The meter's name from the agent's config (1-64 of `[A-Za-z0-9_.:-]`).
    pub meter: String,
    /// What is measured.
    pub quantity: Quantity,
    /// Where it is measured.
    pub phase: Phase,
    /// Decimal exponent of the resolution: value = `raw * 10^exponent`
    /// (-1 = 0.1 V, -2 = 0.01 Hz, 0 = 1 W).
    pub exponent: i8,
    /// The readings, timestamps strictly increasing.
    pub points: Vec<Point>,
}

impl Series {
    /// An empty series to push readings into.
    pub fn new(meter: impl Into<String>, quantity: Quantity, phase: Phase, exponent: i8) -> Self {
        Self {
            meter: meter.into(),
            quantity,
            phase,
            exponent,
            points: Vec::new(),
        }
    }

    /// Quantizes `value` to this series' resolution and appends it.
    ///
    /// Returns the stored point, or `None` if the value is not finite or
    /// does not fit an `i64` at this resolution.
    pub fn push(&mut self, ts_ms: i64, value: f64) -> Option<Point> {
        let point = Point {
            ts_ms,
            raw: quantize(value, self.exponent)?,
        };
        self.points.push(point);
        Some(point)
    }

    /// The value of `point` in the quantity's unit.
    pub fn value(&self, point: Point) -> f64 {
        point.raw as f64 * 10f64.powi(i32::from(self.exponent))
    }

    /// The key that must be unique within a batch.
    pub fn key(&self) -> (&str, Quantity, Phase) {
        (&self.meter, self.quantity, self.phase)
    }

    fn validate(&self, index: usize) -> Result<(), ValidationError> {
        check_name(
            "meter name",
            &self.meter,
            MAX_METER_NAME_LEN,
            &['_', '.', ':', '-'],
        )
        .map_err(|reason| ValidationError::Series { index, reason })?;
        if !EXPONENT_RANGE.contains(&self.exponent) {
            return Err(ValidationError::Series {
                index,
                reason: format!("exponent {} is outside -9..=9", self.exponent),
            });
        }
        let Some(first) = self.points.first() else {
            return Err(ValidationError::Series {
                index,
                reason: "series has no points".into(),
            });
        };
        let mut prev: Option<i64> = None;
        for (i, p) in self.points.iter().enumerate() {
            if !(MIN_TS_MS..=MAX_TS_MS).contains(&p.ts_ms) {
                return Err(ValidationError::Series {
                    index,
                    reason: format!(
                        "point {i}: timestamp {} ms is outside 1970-01-01..9999-12-31",
                        p.ts_ms
                    ),
                });
            }
            if prev.is_some_and(|prev| p.ts_ms <= prev) {
                return Err(ValidationError::Series {
                    index,
                    reason: format!(
                        "point {i}: timestamp {} ms does not increase (previous {} ms)",
                        p.ts_ms,
                        prev.unwrap_or(first.ts_ms)
                    ),
                });
            }
            prev = Some(p.ts_ms);
        }
        Ok(())
    }
}

/// Quantizes `value` to `10^exponent` resolution, rounding half away from zero.
pub fn quantize(value: f64, exponent: i8) -> Option<i64> {
    // 2^63 is exactly representable as f64; anything at or beyond it (or
    // below -2^63) does not fit an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let scaled = (value / 10f64.powi(i32::from(exponent))).round();
    (-LIMIT..LIMIT).contains(&scaled).then_some(scaled as i64)
}

/// The largest `batch_seq` a VEN may send: `2^63 - 1`. The numbers from
/// `2^63` on are the cloud's own, for batches that arrive over HTTP ingest,
/// so an MQTT batch can never claim (and silently shadow) one of them.
/// An agent's counter starts at 0 and would need 2.9 billion years at 100
/// batches a second to get here.
pub const MAX_BATCH_SEQ: u64 = (1 << 63) - 1;

/// A batch of readings from one VEN: the `oadr/meter/{venId}` payload.
///
/// `batch_seq` strictly increases per VEN and is persisted by the agent, so
/// the cloud can store each batch exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryBatch {
    /// The sending VEN; must equal the topic's.
    pub ven_id: VenId,
    /// Per-VEN sequence number of this batch, at most [`MAX_BATCH_SEQ`].
    pub batch_seq: u64,
    /// The columns; at most one per (meter, quantity, phase).
    pub series: Vec<Series>,
}

impl TelemetryBatch {
    /// Number of readings in the batch.
    pub fn reading_count(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }

    /// Splits the batch into batches whose postcard encoding fits in
    /// `max_bytes` (at most [`MAX_PAYLOAD_BYTES`]), cutting series by time
    /// where one alone is too big.
    ///
    /// The parts get consecutive sequence numbers starting at this batch's
    /// `batch_seq`; the caller's next free sequence number is the last part's
    /// plus one. A batch that already fits comes back as it is.
    pub fn split_to_fit(self, max_bytes: usize) -> Result<Vec<Self>, crate::EncodeError> {
        let max_bytes = max_bytes.min(MAX_PAYLOAD_BYTES);
        self.validate().map_err(crate::EncodeError::Invalid)?;
        // Version byte + ven id + seq (10) + series count (5): a bound on
        // everything in a payload that is not a series.
        let overhead = 1 + self.ven_id.as_str().len() + 2 + 10 + 5;
        let budget = max_bytes.saturating_sub(overhead);

        let mut pieces = Vec::new();
        for series in self.series {
            split_series(series, budget, &mut pieces)?;
        }

        let mut parts: Vec<Vec<Series>> = Vec::new();
        let mut used = budget; // forces a new part for the first piece
        for (size, piece) in pieces {
            if used + size > budget {
                parts.push(Vec::new());
                used = 0;
            }
            used += size;
            if let Some(part) = parts.last_mut() {
                part.push(piece);
            }
        }
        Ok(parts
            .into_iter()
            .zip(self.batch_seq..)
            .map(|(series, batch_seq)| Self {
                ven_id: self.ven_id.clone(),
                batch_seq,
                series,
            })
            .collect())
    }
}

/// Appends `series` to `out` as pieces of at most `budget` encoded bytes,
/// halving it by time while it is too big.
fn split_series(
    series: Series,
    budget: usize,
    out: &mut Vec<(usize, Series)>,
) -> Result<(), crate::EncodeError> {
    let size = WireSeries::encoded_len(&series);
    if size <= budget {
        out.push((size, series));
        return Ok(());
    }
    if series.points.len() < 2 {
        return Err(crate::EncodeError::TooLarge { size, max: budget });
    }
    let mut first = series;
    let rest = first.points.split_off(first.points.len() / 2);
    let second = Series {
        points: rest,
        ..first.clone_header()
    };
    split_series(first, budget, out)?;
    split_series(second, budget, out)
}

impl Series {
    fn clone_header(&self) -> Self {
        Self {
            meter: self.meter.clone(),
            quantity: self.quantity,
            phase: self.phase,
            exponent: self.exponent,
            points: Vec::new(),
        }
    }
}

/// The postcard form of a batch: series columns as compact byte strings.
#[derive(Serialize, Deserialize)]
struct WireBatch<'a> {
    ven_id: &'a str,
    batch_seq: u64,
    #[serde(borrow)]
    series: Vec<WireSeries<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireSeries<'a> {
    meter: &'a str,
    quantity: Quantity,
    phase: Phase,
    exponent: i8,
    columns: &'a [u8],
}

impl WireSeries<'_> {
    /// Exact postcard size of one series entry.
    fn encoded_len(series: &Series) -> usize {
        let mut columns = Vec::new();
        compact::encode_points(&series.points, &mut columns);
        let wire = WireSeries {
            meter: &series.meter,
            quantity: series.quantity,
            phase: series.phase,
            exponent: series.exponent,
            columns: &columns,
        };
        postcard::experimental::serialized_size(&wire).unwrap_or(usize::MAX)
    }
}

impl WireMessage for TelemetryBatch {
    const NAME: &'static str = "TelemetryBatch";

    fn validate(&self) -> Result<(), ValidationError> {
        if self.batch_seq > MAX_BATCH_SEQ {
            return Err(ValidationError::field(
                "batch_seq",
                format!(
                    "{} is above {MAX_BATCH_SEQ}: numbers from 2^63 on belong to the cloud's HTTP ingest",
                    self.batch_seq
                ),
            ));
        }
        if self.series.is_empty() {
            return Err(ValidationError::EmptyBatch);
        }
        let mut keys = std::collections::HashSet::with_capacity(self.series.len());
        for (index, series) in self.series.iter().enumerate() {
            series.validate(index)?;
            if !keys.insert(series.key()) {
                return Err(ValidationError::Series {
                    index,
                    reason: format!(
                        "duplicate series for meter {:?}, {} on {:?}",
                        series.meter,
                        series.quantity.name(),
                        series.phase
                    ),
                });
            }
        }
        Ok(())
    }

    fn write_postcard(&self, out: Vec<u8>) -> Result<Vec<u8>, postcard::Error> {
        let columns: Vec<Vec<u8>> = self
            .series
            .iter()
            .map(|s| {
                let mut buf = Vec::with_capacity(s.points.len() * 2 + 8);
                compact::encode_points(&s.points, &mut buf);
                buf
            })
            .collect();
        let wire = WireBatch {
            ven_id: self.ven_id.as_str(),
            batch_seq: self.batch_seq,
            series: self
                .series
                .iter()
                .zip(&columns)
                .map(|(s, columns)| WireSeries {
                    meter: &s.meter,
                    quantity: s.quantity,
                    phase: s.phase,
                    exponent: s.exponent,
                    columns,
                })
                .collect(),
        };
        postcard::to_extend(&wire, out)
    }

    fn read_postcard(body: &[u8]) -> Result<Self, DecodeErrorKind> {
        let wire: WireBatch<'_> = postcard_body(body)?;
        let ven_id = VenId::new(wire.ven_id).map_err(DecodeErrorKind::VenId)?;
        let series = wire
            .series
            .into_iter()
            .enumerate()
            .map(|(index, w)| {
                let points = compact::decode_points(w.columns)
                    .map_err(|source| DecodeErrorKind::Column { index, source })?;
                Ok(Series {
                    meter: w.meter.to_owned(),
                    quantity: w.quantity,
                    phase: w.phase,
                    exponent: w.exponent,
                    points,
                })
            })
            .collect::<Result<_, DecodeErrorKind>>()?;
        Ok(Self {
            ven_id,
            batch_seq: wire.batch_seq,
            series,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Encoding, decode, encode};

    fn batch(points_per_series: i64) -> TelemetryBatch {
        let mut series = Vec::new();
        for (meter, quantity) in [
            ("main", Quantity::ActivePower),
            ("main", Quantity::Voltage),
            ("pv", Quantity::ActivePower),
        ] {
            let mut s = Series::new(meter, quantity, Phase::Total, 0);
            for i in 0..points_per_series {
                s.push(1_700_000_000_000 + i * 1000, (i * 37 % 1000) as f64);
            }
            series.push(s);
        }
        TelemetryBatch {
            ven_id: VenId::new("ven-1").unwrap(),
            batch_seq: 7,
            series,
        }
    }

    #[test]
    fn batch_seq_from_2_pow_63_is_refused_in_both_formats() {
        let mut b = batch(2);
        b.batch_seq = MAX_BATCH_SEQ;
        for encoding in [Encoding::Postcard, Encoding::Json] {
            let bytes = encode(&b, encoding).unwrap();
            assert_eq!(decode::<TelemetryBatch>(&bytes).unwrap(), b);
        }
        // What an MQTT VEN sent to claim HTTP ingest's first number: the
        // bytes are edited by hand, since `encode` refuses them too.
        let claimed = MAX_BATCH_SEQ + 2;
        let json = String::from_utf8(encode(&b, Encoding::Json).unwrap())
            .unwrap()
            .replace(&MAX_BATCH_SEQ.to_string(), &claimed.to_string())
            .into_bytes();
        let error = decode::<TelemetryBatch>(&json).unwrap_err().to_string();
        assert!(error.contains("batch_seq"), "{error}");
        b.batch_seq = claimed;
        assert!(encode(&b, Encoding::Postcard).is_err());
    }

    #[test]
    fn quantize_rounds_and_refuses_non_finite() {
        assert_eq!(quantize(230.04, -1), Some(2300));
        assert_eq!(quantize(230.05, -1), Some(2301));
        assert_eq!(quantize(-12.5, 0), Some(-13));
        assert_eq!(quantize(49.99, -2), Some(4999));
        assert_eq!(quantize(f64::NAN, 0), None);
        assert_eq!(quantize(f64::INFINITY, 0), None);
        assert_eq!(quantize(1e30, 0), None);
        let s = Series::new("m", Quantity::Voltage, Phase::L1, -1);
        assert!(
            (s.value(Point {
                ts_ms: 0,
                raw: 2301
            }) - 230.1)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut b = batch(3);
        b.series[1].points[2].ts_ms = b.series[1].points[1].ts_ms;
        let err = b.validate().unwrap_err().to_string();
        assert!(
            err.contains("series 1")
                && err.contains("point 2")
                && err.contains("does not increase"),
            "{err}"
        );

        let mut b = batch(3);
        b.series[2].meter = "main".into();
        b.series[2].quantity = Quantity::Voltage;
        assert!(
            b.validate()
                .unwrap_err()
                .to_string()
                .contains("duplicate series")
        );

        let mut b = batch(3);
        b.series[0].points.clear();
        assert!(b.validate().unwrap_err().to_string().contains("no points"));

        let mut b = batch(3);
        b.series[0].exponent = 12;
        assert!(
            b.validate()
                .unwrap_err()
                .to_string()
                .contains("exponent 12")
        );

        let mut b = batch(3);
        b.series[0].meter = "a b".into();
        assert!(b.validate().unwrap_err().to_string().contains("meter name"));

        let mut b = batch(1);
        b.series[0].points[0].ts_ms = -5;
        assert!(b.validate().unwrap_err().to_string().contains("outside"));

        let b = TelemetryBatch {
            series: vec![],
            ..batch(1)
        };
        assert_eq!(b.validate(), Err(ValidationError::EmptyBatch));
    }

    #[test]
    fn split_keeps_every_reading_in_order_and_fits() {
        let b = batch(30_000);
        let total = b.reading_count();
        let original = b.clone();
        assert!(encode(&b, Encoding::Postcard).is_ok() || total > 0);
        let parts = b.split_to_fit(4096).unwrap();
        assert!(parts.len() > 3, "{} parts", parts.len());
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.batch_seq, 7 + i as u64);
            let bytes = encode(part, Encoding::Postcard).unwrap();
            assert!(bytes.len() <= 4096, "part {i}: {} bytes", bytes.len());
            assert_eq!(&decode::<TelemetryBatch>(&bytes).unwrap(), part);
        }
        assert_eq!(
            parts
                .iter()
                .map(TelemetryBatch::reading_count)
                .sum::<usize>(),
            total
        );
        for s in &original.series {
            let rejoined: Vec<Point> = parts
                .iter()
                .flat_map(|p| p.series.iter().filter(|x| x.key() == s.key()))
                .flat_map(|x| x.points.iter().copied())
                .collect();
            assert_eq!(rejoined, s.points);
        }
    }

    #[test]
    fn split_of_a_small_batch_is_the_batch() {
        let b = batch(10);
        assert_eq!(b.clone().split_to_fit(MAX_PAYLOAD_BYTES).unwrap(), vec![b]);
    }

    #[test]
    fn split_refuses_an_unsplittable_point() {
        let err = batch(10).split_to_fit(20).unwrap_err();
        assert!(matches!(err, crate::EncodeError::TooLarge { .. }), "{err}");
    }
}
