//! Rollup aggregates (count, sum, min, max, last) and how two of them merge.
//!
//! A bucket's row is the merge of the aggregates of every reading in it, in
//! any order: counts and sums add, min and max take the extreme, and `last`
//! is the value with the greatest timestamp. That is what lets late data
//! merge into an old bucket, and a coarser rollup be the merge of the finer
//! one's deltas. PostgreSQL does the same merge in SQL
//! (`ON CONFLICT DO UPDATE`); SQLite's ingest computes the deltas here.

use std::collections::BTreeMap;

use super::Resolution;
use super::group::Reading;

/// The aggregate of the readings of one series in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Aggregate {
    /// Readings.
    pub count: i64,
    /// Sum of the values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Time of the newest reading.
    pub last_ts: i64,
    /// Value of the newest reading.
    pub last_value: f64,
}

impl Aggregate {
    /// One reading.
    pub fn of(reading: &Reading) -> Self {
        Self {
            count: 1,
            sum: reading.value,
            min: reading.value,
            max: reading.value,
            last_ts: reading.ts,
            last_value: reading.value,
        }
    }

    /// Adds `other`'s readings to this aggregate.
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.last_ts > self.last_ts {
            self.last_ts = other.last_ts;
            self.last_value = other.last_value;
        }
    }
}

/// Rollup deltas keyed by (series id, bucket start).
pub(crate) type Buckets = BTreeMap<(i64, i64), Aggregate>;

/// The deltas of `readings` for the 1-minute, 15-minute and 1-hour rollups.
pub(crate) fn deltas(readings: &[Reading]) -> [(Resolution, Buckets); 3] {
    let mut minute = Buckets::new();
    for reading in readings {
        let bucket = reading.ts - reading.ts % Resolution::Minute.bucket_ms();
        let add = Aggregate::of(reading);
        minute
            .entry((reading.series_id, bucket))
            .and_modify(|agg| agg.merge(&add))
            .or_insert(add);
    }
    let quarter = coarsen(&minute, Resolution::QuarterHour);
    let hour = coarsen(&quarter, Resolution::Hour);
    [
        (Resolution::Minute, minute),
        (Resolution::QuarterHour, quarter),
        (Resolution::Hour, hour),
    ]
}

/// Merges finer buckets into `to`'s (whose width is a multiple of theirs).
fn coarsen(finer: &Buckets, to: Resolution) -> Buckets {
    let mut coarser = Buckets::new();
    for (&(series_id, bucket), agg) in finer {
        coarser
            .entry((series_id, bucket - bucket % to.bucket_ms()))
            .and_modify(|into| into.merge(agg))
            .or_insert(*agg);
    }
    coarser
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts: i64, value: f64) -> Reading {
        Reading {
            series_id: 1,
            ts,
            value,
        }
    }

    #[test]
    fn merge_order_does_not_matter() {
        let readings = [
            reading(5, 2.0),
            reading(1, -3.0),
            reading(9, 0.5),
            reading(3, 7.0),
        ];
        let mut forward = Aggregate::of(&readings[0]);
        readings[1..]
            .iter()
            .for_each(|r| forward.merge(&Aggregate::of(r)));
        let mut backward = Aggregate::of(&readings[3]);
        readings[..3]
            .iter()
            .rev()
            .for_each(|r| backward.merge(&Aggregate::of(r)));
        for agg in [forward, backward] {
            assert_eq!((agg.count, agg.sum, agg.min, agg.max), (4, 6.5, -3.0, 7.0));
            assert_eq!((agg.last_ts, agg.last_value), (9, 0.5));
        }
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "last is copied, not computed")]
    fn deltas_per_resolution() {
        // 14:59:59.999, 15:00:00 and 15:14:00 of day 0, and 16:00.
        let t = |h: i64, m: i64, ms: i64| h * 3_600_000 + m * 60_000 + ms;
        let readings = [
            reading(t(14, 59, 59_999), 1.0),
            reading(t(15, 0, 0), 2.0),
            reading(t(15, 14, 0), 3.0),
            reading(t(16, 0, 0), 4.0),
        ];
        let [(_, minute), (_, quarter), (_, hour)] = deltas(&readings);
        assert_eq!(minute.len(), 4);
        let counts = |b: &Buckets| {
            b.iter()
                .map(|(&(_, bucket), a)| (bucket, a.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            counts(&quarter),
            [(t(14, 45, 0), 1), (t(15, 0, 0), 2), (t(16, 0, 0), 1)]
        );
        assert_eq!(
            counts(&hour),
            [(t(14, 0, 0), 1), (t(15, 0, 0), 2), (t(16, 0, 0), 1)]
        );
        assert_eq!(quarter[&(1, t(15, 0, 0))].last_value, 3.0);
    }
}
