//! The measured response of a DR event, computed in one place for the
//! event status (`GET /api/v1/events/{id}/status`), the projects' DR
//! revenue and the `dr_no_shed` alert rule.
//!
//! # Measured response
//!
//! Per VEN, from its raw `active_power` / `total` readings (the site's
//! grid meter):
//!
//! * `baseline_w`: the mean over the [`BASELINE_WINDOW_MS`] (15 minutes)
//!   before the event's start;
//! * `during_w`: the mean from the start until the end, or until now while
//!   the event runs (`null` before it starts or without readings);
//! * `shed_w` = `baseline_w` − `during_w` (positive: less consumed), and
//!   `shed_pct` = `shed_w` / `baseline_w` × 100 (`null` if the baseline is
//!   not positive).
//!
//! Only the site meter counts: the `site_meter` registered with
//! `PUT /api/v1/vens/{id}`, or without one the VEN's only `active_power` /
//! `total` series. A VEN with several such series (sub-meters) and no
//! registered site meter is not measured, rather than measured wrong: its
//! means are `null` and `unmeasured_reason` says why.
//!
//! `total` sums `baseline_w`, `during_w` and `shed_w` over the VENs that
//! have both means, and gives the percentage of the summed baseline.

use std::collections::BTreeMap;

use gridlink_protocol::VenId;
use serde::Serialize;

use crate::store::StoreError;
use crate::store::dr::{DrStore, PowerMean};

/// How far before the event's start the baseline is averaged.
pub const BASELINE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// Each VEN's site power before and during an event (VENs without
/// readings are absent; see [`DrStore::site_power`]).
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Mean over the [`BASELINE_WINDOW_MS`] before the start.
    pub baseline: BTreeMap<VenId, PowerMean>,
    /// Mean from the start until `until_ms`.
    pub during: BTreeMap<VenId, PowerMean>,
}

impl Measured {
    /// VENs with both means, with their shed (baseline − during), W.
    pub fn sheds(&self) -> impl Iterator<Item = (&VenId, &PowerMean, &PowerMean, f64)> {
        self.baseline.iter().filter_map(|(ven, b)| {
            self.during
                .get(ven)
                .map(|d| (ven, b, d, b.mean_w - d.mean_w))
        })
    }
}

/// Measures `vens` for an event starting at `start_ms`: the baseline
/// window before it, and `[start_ms, until_ms)` (nothing if `until_ms` is
/// not after the start).
pub async fn measure<S: DrStore + ?Sized + Sync>(
    store: &S,
    vens: &[VenId],
    start_ms: i64,
    until_ms: i64,
) -> Result<Measured, StoreError> {
    let baseline = store
        .site_power(vens, start_ms - BASELINE_WINDOW_MS, start_ms)
        .await?;
    let during = if until_ms > start_ms {
        store.site_power(vens, start_ms, until_ms).await?
    } else {
        Vec::new()
    };
    Ok(Measured {
        baseline: baseline.into_iter().collect(),
        during: during.into_iter().collect(),
    })
}

/// Load before and during the event.
#[derive(Debug, Serialize, Default)]
pub struct Response {
    /// Mean site power in the baseline window, W.
    pub baseline_w: Option<f64>,
    /// Mean site power since the start, W.
    pub during_w: Option<f64>,
    /// `baseline_w` − `during_w`, W (positive: less consumed).
    pub shed_w: Option<f64>,
    /// `shed_w` as a percentage of a positive `baseline_w`.
    pub shed_pct: Option<f64>,
    /// Readings averaged for the baseline.
    pub baseline_readings: u64,
    /// Readings averaged since the start.
    pub during_readings: u64,
    /// Why a started event has no measured response for the VEN; `None`
    /// when measured (and always in `total`).
    pub unmeasured_reason: Option<&'static str>,
}

/// The `unmeasured_reason` of a VEN without site-meter readings before the start.
const NO_BASELINE: &str = "no readings of the site meter in the baseline window (the registered \
    site_meter; without one, the VEN's only active_power/total series: a VEN with several meters \
    and no registered site_meter is not measured)";
/// The `unmeasured_reason` of a VEN without site-meter readings since the start.
const NO_DURING: &str = "no readings of the site meter since the event's start (the registered \
    site_meter; without one, the VEN's only active_power/total series: a VEN with several meters \
    and no registered site_meter is not measured)";

/// A VEN's response; `started`: the event's start has passed, so both
/// means are due.
pub fn response(baseline: Option<PowerMean>, during: Option<PowerMean>, started: bool) -> Response {
    let shed = match (baseline, during) {
        (Some(b), Some(d)) => Some(b.mean_w - d.mean_w),
        _ => None,
    };
    Response {
        baseline_w: baseline.map(|b| b.mean_w),
        during_w: during.map(|d| d.mean_w),
        shed_w: shed,
        shed_pct: percent(shed, baseline.map(|b| b.mean_w)),
        baseline_readings: baseline.map_or(0, |b| b.readings),
        during_readings: during.map_or(0, |d| d.readings),
        unmeasured_reason: match (started, baseline, during) {
            (false, ..) | (true, Some(_), Some(_)) => None,
            (true, None, _) => Some(NO_BASELINE),
            (true, Some(_), None) => Some(NO_DURING),
        },
    }
}

/// `shed` as a percentage of a positive `baseline`.
pub fn percent(shed: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (shed, baseline) {
        (Some(s), Some(b)) if b > 0.0 => Some(s / b * 100.0),
        _ => None,
    }
}
