//! `manifest.json`: what a day's export holds (per VEN: file, rows, first
//! and last reading, gaps), written after every data file.

use serde::{Deserialize, Serialize};

use super::{COLUMNS, ExportDay, ExportFormat, GENERATOR, iso_ms};
use crate::store::ExportSeries;
use gridlink_protocol::VenId;

/// The manifest's file name in the day's directory (or key prefix).
pub const MANIFEST_NAME: &str = "manifest.json";

/// Most gaps listed per VEN; `gap_count` counts them all.
pub const MAX_GAPS_LISTED: usize = 1000;

/// A day's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Start of the day (inclusive), ISO 8601.
    pub from: String,
    /// End of the day (exclusive), ISO 8601.
    pub to: String,
    /// `parquet` or `csv.gz`.
    pub format: String,
    /// The program and version that wrote it.
    pub generator: String,
    /// When it was written, ISO 8601.
    pub created: String,
    /// The gap factor used (see `[export] gap_factor`).
    pub gap_factor: u32,
    /// The columns of every file, in order.
    pub columns: Vec<String>,
    /// Sums over the VENs.
    pub totals: Totals,
    /// One entry per VEN with readings that day, by VEN id.
    pub vens: Vec<VenManifest>,
}

/// Sums over a day's VENs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// VEN files.
    pub vens: u64,
    /// Rows (readings) in all files.
    pub rows: u64,
    /// Bytes of all files.
    pub bytes: u64,
    /// Gaps found.
    pub gaps: u64,
}

/// One VEN's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenManifest {
    /// The VEN.
    pub ven_id: String,
    /// The file name in the day's directory.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Rows (readings).
    pub rows: u64,
    /// Series with readings that day.
    pub series: u64,
    /// Earliest reading, ms since the epoch.
    pub first_ts_ms: Option<i64>,
    /// Earliest reading, ISO 8601.
    pub first_ts: Option<String>,
    /// Latest reading, ms.
    pub last_ts_ms: Option<i64>,
    /// Latest reading, ISO 8601.
    pub last_ts: Option<String>,
    /// Gaps found (all of them, also those not listed).
    pub gap_count: u64,
    /// The first [`MAX_GAPS_LISTED`] gaps, by series then time.
    pub gaps: Vec<Gap>,
}

/// Two consecutive readings of a series further apart than the gap
/// factor times the series' usual interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The series' meter.
    pub meter: String,
    /// Its quantity.
    pub quantity: String,
    /// Its phase.
    pub phase: String,
    /// The reading before the gap, ms.
    pub after_ms: i64,
    /// The reading before the gap, ISO 8601.
    pub after: String,
    /// The reading after the gap, ms.
    pub before_ms: i64,
    /// The reading after the gap, ISO 8601.
    pub before: String,
    /// The series' usual interval that day (median), ms.
    pub interval_ms: i64,
}

impl Manifest {
    /// A manifest over `vens`, totals summed.
    pub(crate) fn new(
        day: ExportDay,
        format: ExportFormat,
        gap_factor: u32,
        vens: Vec<VenManifest>,
        created_ms: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Self {
        let totals = vens.iter().fold(Totals::default(), |t, v| Totals {
            vens: t.vens + 1,
            rows: t.rows + v.rows,
            bytes: t.bytes + v.bytes,
            gaps: t.gaps + v.gap_count,
        });
        Self {
            day: day.to_string(),
            from: iso_ms(from_ms),
            to: iso_ms(to_ms),
            format: format.as_str().to_owned(),
            generator: GENERATOR.to_owned(),
            created: iso_ms(created_ms),
            gap_factor,
            columns: COLUMNS.iter().map(|&c| c.to_owned()).collect(),
            totals,
            vens,
        }
    }
}

impl VenManifest {
    pub(crate) fn empty(ven_id: &VenId) -> Self {
        Self {
            ven_id: ven_id.to_string(),
            file: String::new(),
            bytes: 0,
            rows: 0,
            series: 0,
            first_ts_ms: None,
            first_ts: None,
            last_ts_ms: None,
            last_ts: None,
            gap_count: 0,
            gaps: Vec::new(),
        }
    }

    /// Counts `rows` readings from `first_ms` to `last_ms`.
    pub(crate) fn add_rows(&mut self, rows: u64, first_ms: i64, last_ms: i64) {
        self.rows += rows;
        if self.first_ts_ms.is_none_or(|f| first_ms < f) {
            self.first_ts_ms = Some(first_ms);
            self.first_ts = Some(iso_ms(first_ms));
        }
        if self.last_ts_ms.is_none_or(|l| last_ms > l) {
            self.last_ts_ms = Some(last_ms);
            self.last_ts = Some(iso_ms(last_ms));
        }
    }

    /// Adds a series' gaps, `(after_ms, before_ms, interval_ms)`.
    pub(crate) fn add_gaps(&mut self, series: &ExportSeries, gaps: Vec<(i64, i64, i64)>) {
        self.gap_count += gaps.len() as u64;
        let room = MAX_GAPS_LISTED.saturating_sub(self.gaps.len());
        self.gaps.extend(
            gaps.into_iter()
                .take(room)
                .map(|(after_ms, before_ms, interval_ms)| Gap {
                    meter: series.meter.clone(),
                    quantity: series.quantity.name().to_owned(),
                    phase: series.phase.name().to_owned(),
                    after_ms,
                    after: iso_ms(after_ms),
                    before_ms,
                    before: iso_ms(before_ms),
                    interval_ms,
                }),
        );
    }
}

/// Collects one series' reading times of a day (in order) and finds its
/// gaps.
#[derive(Debug, Default)]
pub(crate) struct GapTracker {
    times: Vec<i64>,
}

impl GapTracker {
    /// Appends reading times (ascending, after those seen).
    pub(crate) fn extend(&mut self, times: impl IntoIterator<Item = i64>) {
        self.times.extend(times);
    }

    /// The gaps `(after_ms, before_ms, interval_ms)`: consecutive readings
    /// more than `factor` times the median interval apart. A series needs
    /// at least three readings (two intervals) to have a usual interval.
    pub(crate) fn gaps(&self, factor: u32) -> Vec<(i64, i64, i64)> {
        find_gaps(&self.times, factor)
    }
}

fn find_gaps(times: &[i64], factor: u32) -> Vec<(i64, i64, i64)> {
    if times.len() < 3 {
        return Vec::new();
    }
    let mut intervals: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mid = (intervals.len() - 1) / 2;
    let (_, &mut median, _) = intervals.select_nth_unstable(mid);
    if median <= 0 {
        return Vec::new();
    }
    let limit = median.saturating_mul(i64::from(factor));
    times
        .windows(2)
        .filter(|w| w[1] - w[0] > limit)
        .map(|w| (w[0], w[1], median))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_intervals_past_the_factor_times_the_median() {
        // Every 10 s, then one 40 s hole and one 30 s (not a gap at factor 3).
        let times = [0, 10, 20, 30, 70, 80, 90, 120, 130];
        assert_eq!(find_gaps(&times, 3), vec![(30, 70, 10)]);
        assert_eq!(find_gaps(&times, 2), vec![(30, 70, 10), (90, 120, 10)]);
        assert!(
            find_gaps(&[0, 100], 2).is_empty(),
            "two readings: no usual interval"
        );
        assert!(find_gaps(&[], 2).is_empty());
        assert!(find_gaps(&[5, 5, 5], 2).is_empty(), "no interval at all");
    }
}
