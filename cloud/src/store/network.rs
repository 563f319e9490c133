//! Network-wide statistics, maintained by ingest.
//!
//! `network_stats` holds, per rollup resolution and bucket, the sum over
//! VENs of their mean total active power, split by sign (a VEN's mean is the
//! sum of the means of its `active_power` / `Total` series in the bucket),
//! and the number of VENs with such data. A VEN's contribution to a bucket
//! changes whenever its rollup row does, so ingest reads the VEN's rollup
//! rows of the buckets it touches before merging (it holds the VEN's row
//! lock, so nobody else changes them), computes the contribution before and
//! after the merge, and adds the difference. Differences add up in any
//! order, so they can go to any of several rows ("shards") per bucket,
//! which keeps concurrent ingest transactions off one hot row; a read sums
//! the shards. A query over months therefore reads `buckets x shards` rows,
//! however many VENs there are.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gridlink_protocol::{Phase, Quantity};

use super::Resolution;
use super::cache::SeriesKey;
use super::rollup::Buckets;

/// Whether a series counts for the network statistics.
pub(crate) fn counts(key: &SeriesKey) -> bool {
    key.quantity == Quantity::ActivePower && key.phase == Phase::Total
}

/// One stored rollup row of a counted series, as read before the merge.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredRollup {
    /// Bucket width, ms.
    pub bucket_ms: i64,
    /// The series' VEN.
    pub ven_id: String,
    /// The series.
    pub series_id: i64,
    /// Bucket start.
    pub bucket: i64,
    /// Readings in the bucket.
    pub count: i64,
    /// Their sum.
    pub sum: f64,
}

/// What ingest must read before merging: the VENs with counted series in
/// the group and, per resolution, the buckets those series touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Touched {
    /// The VENs, sorted.
    pub vens: Vec<String>,
    /// Bucket starts per resolution (1 min, 15 min, 1 h), sorted.
    pub buckets: [Vec<i64>; 3],
}

impl Touched {
    /// Nothing counted was touched.
    pub fn is_empty(&self) -> bool {
        self.vens.is_empty()
    }
}

/// The VENs and buckets the rollup `deltas` touch through counted series
/// (`counted`: series id to VEN).
pub(crate) fn touched(
    deltas: &[(Resolution, Buckets); 3],
    counted: &HashMap<i64, &str>,
) -> Touched {
    let mut vens = BTreeSet::new();
    let mut buckets: [BTreeSet<i64>; 3] = Default::default();
    for ((_, deltas), buckets) in deltas.iter().zip(&mut buckets) {
        for &(series_id, bucket) in deltas.keys() {
            if let Some(ven) = counted.get(&series_id) {
                vens.insert(*ven);
                buckets.insert(bucket);
            }
        }
    }
    Touched {
        vens: vens.into_iter().map(str::to_owned).collect(),
        buckets: buckets.map(|b| b.into_iter().collect()),
    }
}

/// A change of one `network_stats` bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NetworkDelta {
    /// Bucket width, ms.
    pub bucket_ms: i64,
    /// Bucket start.
    pub bucket: i64,
    /// Change of the import sum, W.
    pub import_w: f64,
    /// Change of the export sum, W.
    pub export_w: f64,
    /// Change of the number of VENs reporting.
    pub vens_reporting: i64,
}

/// A VEN's (import, export, reporting) in a bucket from its series'
/// (count, sum): the sign of the summed means decides import or export.
fn contribution(series: &BTreeMap<i64, (i64, f64)>) -> (f64, f64, i64) {
    let mean: f64 = series
        .values()
        .filter(|(count, _)| *count > 0)
        .map(|&(count, sum)| sum / count as f64)
        .sum();
    let reporting = series.values().any(|(count, _)| *count > 0);
    (mean.max(0.0), (-mean).max(0.0), i64::from(reporting))
}

/// The changes to `network_stats` when `rollup_deltas` are merged into
/// rollups that held `stored` (every row of a counted series of a touched
/// VEN in a touched bucket). Sorted by (width, bucket); buckets whose
/// statistics do not change are left out.
pub(crate) fn changes(
    stored: &[StoredRollup],
    rollup_deltas: &[(Resolution, Buckets); 3],
    counted: &HashMap<i64, &str>,
) -> Vec<NetworkDelta> {
    // (width, bucket, VEN) -> series -> (count, sum), before the merge.
    type PerVen<'a> = BTreeMap<(i64, i64, &'a str), BTreeMap<i64, (i64, f64)>>;
    let mut before: PerVen<'_> = BTreeMap::new();
    for row in stored {
        before
            .entry((row.bucket_ms, row.bucket, row.ven_id.as_str()))
            .or_default()
            .insert(row.series_id, (row.count, row.sum));
    }
    let mut after = before.clone();
    for (resolution, buckets) in rollup_deltas {
        let width = resolution.bucket_ms();
        for (&(series_id, bucket), agg) in buckets {
            let Some(ven) = counted.get(&series_id) else {
                continue;
            };
            // The same additions the database's merge does.
            let (count, sum) = after
                .entry((width, bucket, ven))
                .or_default()
                .entry(series_id)
                .or_insert((0, 0.0));
            *count += agg.count;
            *sum += agg.sum;
        }
    }
    let mut changes: BTreeMap<(i64, i64), NetworkDelta> = BTreeMap::new();
    for (&(bucket_ms, bucket, ven), series) in &after {
        let new = contribution(series);
        let old = before
            .get(&(bucket_ms, bucket, ven))
            .map_or((0.0, 0.0, 0), contribution);
        if new == old {
            continue;
        }
        let change = changes.entry((bucket_ms, bucket)).or_insert(NetworkDelta {
            bucket_ms,
            bucket,
            import_w: 0.0,
            export_w: 0.0,
            vens_reporting: 0,
        });
        change.import_w += new.0 - old.0;
        change.export_w += new.1 - old.1;
        change.vens_reporting += new.2 - old.2;
    }
    changes.into_values().collect()
}

/// Rows per bucket that concurrent PostgreSQL transactions spread their
/// changes over (SQLite, with one writer, uses one).
pub(crate) const SHARDS: u64 = 8;

/// A shard for one transaction's changes, at random.
pub(crate) fn pick_shard() -> i16 {
    use std::hash::{BuildHasher as _, RandomState};
    (RandomState::new().hash_one(std::time::Instant::now()) % SHARDS) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::group::Reading;
    use crate::store::rollup;

    fn stored(
        bucket_ms: i64,
        ven: &str,
        series_id: i64,
        bucket: i64,
        count: i64,
        sum: f64,
    ) -> StoredRollup {
        StoredRollup {
            bucket_ms,
            ven_id: ven.into(),
            series_id,
            bucket,
            count,
            sum,
        }
    }

    #[test]
    fn a_vens_contribution_moves_between_import_and_export() {
        // VEN a: series 1 (counted) had 2 readings summing 200 W in minute
        // 0 (import 100); now 2 readings of -400 W arrive: mean -150, export.
        // Series 2 (not counted) changes nothing. VEN b reports for the
        // first time in minute 1.
        let counted = HashMap::from([(1, "a"), (3, "b")]);
        let readings = [
            Reading {
                series_id: 1,
                ts: 10_000,
                value: -400.0,
            },
            Reading {
                series_id: 1,
                ts: 20_000,
                value: -400.0,
            },
            Reading {
                series_id: 2,
                ts: 20_000,
                value: 9e9,
            },
            Reading {
                series_id: 3,
                ts: 70_000,
                value: 50.0,
            },
        ];
        let deltas = rollup::deltas(&readings);
        let touched = touched(&deltas, &counted);
        assert_eq!(touched.vens, ["a", "b"]);
        assert_eq!(touched.buckets, [vec![0, 60_000], vec![0], vec![0]]);

        let before = [
            stored(60_000, "a", 1, 0, 2, 200.0),
            stored(900_000, "a", 1, 0, 2, 200.0),
            stored(3_600_000, "a", 1, 0, 2, 200.0),
        ];
        let changes = changes(&before, &deltas, &counted);
        let minute: Vec<_> = changes.iter().filter(|c| c.bucket_ms == 60_000).collect();
        assert_eq!(minute.len(), 2);
        assert_eq!(
            (
                minute[0].bucket,
                minute[0].import_w,
                minute[0].export_w,
                minute[0].vens_reporting
            ),
            (0, -100.0, 150.0, 0)
        );
        assert_eq!(
            (
                minute[1].bucket,
                minute[1].import_w,
                minute[1].export_w,
                minute[1].vens_reporting
            ),
            (60_000, 50.0, 0.0, 1)
        );
        // The quarter hour holds both VENs' readings: a moves from 100 W
        // import to 150 W export, b adds 50 W import.
        let quarter = changes.iter().find(|c| c.bucket_ms == 900_000).unwrap();
        assert_eq!(
            (quarter.import_w, quarter.export_w, quarter.vens_reporting),
            (-50.0, 150.0, 1)
        );
    }

    #[test]
    fn unchanged_contributions_are_left_out() {
        let counted = HashMap::from([(1, "a")]);
        let deltas = rollup::deltas(&[Reading {
            series_id: 1,
            ts: 0,
            value: 100.0,
        }]);
        let before = [
            stored(60_000, "a", 1, 0, 1, 100.0),
            stored(900_000, "a", 1, 0, 1, 100.0),
            stored(3_600_000, "a", 1, 0, 1, 100.0),
        ];
        assert!(changes(&before, &deltas, &counted).is_empty());
    }

    #[test]
    fn shards_are_in_range() {
        for _ in 0..100 {
            assert!((0..SHARDS as i16).contains(&pick_shard()));
        }
    }
}
