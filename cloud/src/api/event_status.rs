//! `GET /api/v1/events/{id}/status`: every target VEN's latest state and
//! history of acknowledgements, and the measured response.
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

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gridlink_protocol::{ObjectId, VenId};
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, now_ms};
use crate::store::Store;
use crate::store::dr::{AckRecord, PowerMean};

/// How far before the event's start the baseline is averaged.
pub const BASELINE_WINDOW_MS: i64 = 15 * 60 * 1000;

/// One acknowledgement in a VEN's history.
#[derive(Debug, Serialize)]
pub(crate) struct AckEntry {
    state: &'static str,
    at_ms: i64,
    reason: Option<String>,
    command_id: u64,
    received_ms: i64,
}

/// Load before and during the event.
#[derive(Debug, Serialize, Default)]
pub(crate) struct Response {
    baseline_w: Option<f64>,
    during_w: Option<f64>,
    shed_w: Option<f64>,
    shed_pct: Option<f64>,
    baseline_readings: u64,
    during_readings: u64,
    /// Why a started event has no measured response for the VEN; `None`
    /// when measured (and always in `total`).
    unmeasured_reason: Option<&'static str>,
}

/// The `unmeasured_reason` of a VEN without site-meter readings before the start.
const NO_BASELINE: &str = "no readings of the site meter in the baseline window (the registered \
    site_meter; without one, the VEN's only active_power/total series: a VEN with several meters \
    and no registered site_meter is not measured)";
/// The `unmeasured_reason` of a VEN without site-meter readings since the start.
const NO_DURING: &str = "no readings of the site meter since the event's start (the registered \
    site_meter; without one, the VEN's only active_power/total series: a VEN with several meters \
    and no registered site_meter is not measured)";

/// One target VEN.
#[derive(Debug, Serialize)]
pub(crate) struct VenStatus {
    ven_id: VenId,
    /// The latest state (by the VEN's time), `null` before the first ack.
    state: Option<&'static str>,
    at_ms: Option<i64>,
    reason: Option<String>,
    history: Vec<AckEntry>,
    response: Response,
}

/// The answer.
#[derive(Debug, Serialize)]
pub(crate) struct EventStatus {
    event_id: ObjectId,
    program_id: ObjectId,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    baseline_window_ms: i64,
    /// VENs per latest state (`none` for no ack yet).
    states: BTreeMap<&'static str, u64>,
    vens: Vec<VenStatus>,
    total: Response,
}

/// A VEN's response; `started`: the event's start has passed, so both
/// means are due.
fn response(baseline: Option<PowerMean>, during: Option<PowerMean>, started: bool) -> Response {
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

fn percent(shed: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (shed, baseline) {
        (Some(s), Some(b)) if b > 0.0 => Some(s / b * 100.0),
        _ => None,
    }
}

/// `GET /api/v1/events/{id}/status`.
pub(crate) async fn status<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EventStatus>, ApiError> {
    let Path(id) = path.map_err(|r| ApiError::invalid_param("id", r.body_text()))?;
    let id = ObjectId::new(id).map_err(|e| ApiError::invalid_param("id", e.to_string()))?;
    let Some(event) = state.store.event(&id).await? else {
        return Err(ApiError::UnknownObject("event", id));
    };
    let acks = state.store.event_acks(&id).await?;
    let now = now_ms();
    let started = event.start_ms.is_some_and(|start| start < now);
    let (baseline, during) = match event.start_ms {
        Some(start) => {
            let baseline = state
                .store
                .site_power(&event.vens, start - BASELINE_WINDOW_MS, start)
                .await?;
            let until = event.end_ms.map_or(now, |end| end.min(now));
            let during = if until > start {
                state.store.site_power(&event.vens, start, until).await?
            } else {
                Vec::new()
            };
            (baseline, during)
        }
        None => (Vec::new(), Vec::new()),
    };
    let baseline: BTreeMap<VenId, PowerMean> = baseline.into_iter().collect();
    let during: BTreeMap<VenId, PowerMean> = during.into_iter().collect();
    let mut by_ven: BTreeMap<VenId, Vec<AckRecord>> = BTreeMap::new();
    for ack in acks {
        by_ven.entry(ack.ven_id.clone()).or_default().push(ack);
    }
    let mut states = BTreeMap::new();
    let mut total = Response::default();
    let (mut sum_b, mut sum_d, mut counted) = (0.0, 0.0, false);
    let mut vens = Vec::with_capacity(event.vens.len());
    for ven in &event.vens {
        let mut history = by_ven.remove(ven).unwrap_or_default();
        history.sort_by_key(|a| (a.at_ms, a.received_ms, a.command_id));
        let latest = history.last();
        *states
            .entry(latest.map_or("none", |a| a.state.name()))
            .or_insert(0) += 1;
        let b = baseline.get(ven).copied();
        let d = during.get(ven).copied();
        if let (Some(b), Some(d)) = (b, d) {
            sum_b += b.mean_w;
            sum_d += d.mean_w;
            total.baseline_readings += b.readings;
            total.during_readings += d.readings;
            counted = true;
        }
        vens.push(VenStatus {
            ven_id: ven.clone(),
            state: latest.map(|a| a.state.name()),
            at_ms: latest.map(|a| a.at_ms),
            reason: latest.and_then(|a| a.reason.clone()),
            history: history
                .into_iter()
                .map(|a| AckEntry {
                    state: a.state.name(),
                    at_ms: a.at_ms,
                    reason: a.reason,
                    command_id: a.command_id,
                    received_ms: a.received_ms,
                })
                .collect(),
            response: response(b, d, started),
        });
    }
    if counted {
        total.baseline_w = Some(sum_b);
        total.during_w = Some(sum_d);
        total.shed_w = Some(sum_b - sum_d);
        total.shed_pct = percent(total.shed_w, total.baseline_w);
    }
    Ok(Json(EventStatus {
        event_id: event.id,
        program_id: event.program_id,
        start_ms: event.start_ms,
        end_ms: event.end_ms,
        baseline_window_ms: BASELINE_WINDOW_MS,
        states,
        vens,
        total,
    }))
}
