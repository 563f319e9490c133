//! The compact column codec for telemetry series (wire format v1).
//!
//! One series is one `(meter, quantity, phase)` column. Its points are
//! written as a byte string:
//!
//! ```text
//! varint  n                      number of points, >= 1
//! zvarint t0                     first timestamp, ms since the Unix epoch
//! tokens                         n - 1 timestamp delta-of-deltas: a non-zero
//!                                dod is written as zvarint(dod); a run of
//!                                `run` zero dods as the byte 0 followed by
//!                                varint(run - 1)
//! zvarint v0                     first scaled value
//! zvarint dv * (n - 1)           value deltas
//! ```
//!
//! `varint` is unsigned LEB128 (at most 10 bytes), `zvarint` is LEB128 of
//! the zigzag-mapped signed value. Deltas use wrapping two's-complement
//! arithmetic, so every `i64` round-trips exactly. A regularly polled meter
//! costs a few bytes for all its timestamps and about one byte per value.
//!
//! Decoding is defensive: the declared count may not exceed the bytes left
//! (every value costs at least one byte), so a hostile count cannot make the
//! decoder allocate more than the payload justifies.

use crate::telemetry::Point;

/// Why a series' column bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    /// The bytes ended before the declared points were read.
    #[error("truncated: column bytes end while reading {0}")]
    Truncated(&'static str),
    /// A varint is longer than 10 bytes or overflows 64 bits.
    #[error("varint longer than 64 bits while reading {0}")]
    VarintOverflow(&'static str),
    /// The column declares zero points.
    #[error("column declares no points")]
    Empty,
    /// The declared count cannot fit in the bytes that follow.
    #[error("column declares {declared} points but only {available} bytes follow")]
    CountTooLarge {
        /// Points declared.
        declared: u64,
        /// Bytes left after the count.
        available: usize,
    },
    /// A run of zero delta-of-deltas is longer than the points left.
    #[error("timestamp run of {run} overruns the {left} points left")]
    RunOverflow {
        /// Run length in the token.
        run: u64,
        /// Points still to be decoded.
        left: u64,
    },
    /// Bytes are left after the last value.
    #[error("{0} unexpected bytes after the last value")]
    Trailing(usize),
}

const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zero_run(out: &mut Vec<u8>, run: u64) {
    if run > 0 {
        out.push(0);
        put_varint(out, run - 1);
    }
}

/// Appends the column encoding of `points` to `out`.
///
/// `points` must not be empty; timestamps are expected to increase, but any
/// sequence of `i64` pairs round-trips exactly.
pub fn encode_points(points: &[Point], out: &mut Vec<u8>) {
    debug_assert!(!points.is_empty(), "a series has at least one point");
    put_varint(out, points.len() as u64);
    let Some(first) = points.first() else { return };
    put_varint(out, zigzag(first.ts_ms));

    let mut prev_ts = first.ts_ms;
    let mut prev_delta = 0i64;
    let mut zero_run = 0u64;
    for p in &points[1..] {
        let delta = p.ts_ms.wrapping_sub(prev_ts);
        let dod = delta.wrapping_sub(prev_delta);
        prev_ts = p.ts_ms;
        prev_delta = delta;
        if dod == 0 {
            zero_run += 1;
            continue;
        }
        put_zero_run(out, zero_run);
        zero_run = 0;
        // dod != 0, so its zigzag code is never the run marker 0.
        put_varint(out, zigzag(dod));
    }
    put_zero_run(out, zero_run);

    let mut prev = 0i64;
    for p in points {
        put_varint(out, zigzag(p.raw.wrapping_sub(prev)));
        prev = p.raw;
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn varint(&mut self, what: &'static str) -> Result<u64, ColumnError> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or(ColumnError::Truncated(what))?;
            self.pos += 1;
            let low = u64::from(byte & 0x7f);
            if i == 9 && low > 1 {
                return Err(ColumnError::VarintOverflow(what));
            }
            value |= low << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ColumnError::VarintOverflow(what))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// Decodes a column written by [`encode_points`]. Never panics.
pub fn decode_points(bytes: &[u8]) -> Result<Vec<Point>, ColumnError> {
    let mut r = Reader { bytes, pos: 0 };
    let n = r.varint("the point count")?;
    if n == 0 {
        return Err(ColumnError::Empty);
    }
    // Each point needs at least one value byte, plus one byte for t0.
    if n > r.remaining() as u64 {
        return Err(ColumnError::CountTooLarge {
            declared: n,
            available: r.remaining(),
        });
    }
    let n = n as usize;
    let mut points = Vec::with_capacity(n);

    let mut ts = unzigzag(r.varint("the first timestamp")?);
    points.push(Point { ts_ms: ts, raw: 0 });
    let mut delta = 0i64;
    while points.len() < n {
        let token = r.varint("a timestamp delta")?;
        if token == 0 {
            let run = r.varint("a timestamp run")?.saturating_add(1);
            let left = (n - points.len()) as u64;
            if run > left {
                return Err(ColumnError::RunOverflow { run, left });
            }
            for _ in 0..run {
                ts = ts.wrapping_add(delta);
                points.push(Point { ts_ms: ts, raw: 0 });
            }
        } else {
            delta = delta.wrapping_add(unzigzag(token));
            ts = ts.wrapping_add(delta);
            points.push(Point { ts_ms: ts, raw: 0 });
        }
    }

    let mut value = 0i64;
    for p in &mut points {
        value = value.wrapping_add(unzigzag(r.varint("a value")?));
        p.raw = value;
    }
    match r.remaining() {
        0 => Ok(points),
        extra => Err(ColumnError::Trailing(extra)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, i64)]) -> Vec<Point> {
        v.iter().map(|&(ts_ms, raw)| Point { ts_ms, raw }).collect()
    }

    fn round_trip(points: &[Point]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_points(points, &mut buf);
        assert_eq!(decode_points(&buf).as_deref(), Ok(points));
        buf
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_codes() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
        for v in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn regular_series_costs_about_a_byte_per_value() {
        let points: Vec<Point> = (0..3600)
            .map(|i| Point {
                ts_ms: 1_700_000_000_000 + i * 1000,
                raw: 2300 + (i % 7) - 3,
            })
            .collect();
        let buf = round_trip(&points);
        // count (2) + t0 (6) + first dod (2) + one run (3) + 3600 values.
        assert!(buf.len() <= 3600 + 16, "{} bytes", buf.len());
    }

    #[test]
    fn gaps_and_jitter_and_extremes_round_trip() {
        round_trip(&pts(&[(5, 1)]));
        round_trip(&pts(&[
            (0, i64::MIN),
            (1, i64::MAX),
            (3, 0),
            (1_000_000, -1),
        ]));
        round_trip(&pts(&[
            (1000, 1),
            (2000, 1),
            (3000, 1),
            (7000, 2),
            (8003, 2),
            (8999, 2),
        ]));
        round_trip(&pts(&[(i64::MIN, 0), (i64::MAX, 0), (i64::MIN, 0)]));
        round_trip(&pts(&[
            (0, 0),
            (1 << 62, 0),
            (i64::MAX, 0),
            (-(1 << 62), 0),
        ]));
    }

    #[test]
    fn hostile_inputs_are_errors() {
        assert_eq!(
            decode_points(&[]),
            Err(ColumnError::Truncated("the point count"))
        );
        assert_eq!(decode_points(&[0]), Err(ColumnError::Empty));
        assert_eq!(
            decode_points(&[0xff, 0xff, 0xff, 0x7f, 0]),
            Err(ColumnError::CountTooLarge {
                declared: 0x0fff_ffff,
                available: 1
            })
        );
        assert_eq!(
            decode_points(&[0x80; 11]),
            Err(ColumnError::VarintOverflow("the point count"))
        );
        // 2 points, t0 = 0, a run of 5 zero dods.
        assert_eq!(
            decode_points(&[2, 0, 0, 4, 0, 0]),
            Err(ColumnError::RunOverflow { run: 5, left: 1 })
        );
        // 1 point, t0, value, then junk.
        assert_eq!(decode_points(&[1, 0, 0, 7]), Err(ColumnError::Trailing(1)));
        assert_eq!(
            decode_points(&[2, 0, 1, 4]),
            Err(ColumnError::Truncated("a value"))
        );
        assert_eq!(
            decode_points(&[2, 0, 0]),
            Err(ColumnError::Truncated("a timestamp run"))
        );
    }
}
