//! `GET /api/v1/events/{id}/status`: every target VEN's latest state and
//! history of acknowledgements, and the measured response.
//!
//! The measured response is computed by `crate::dispatch::response`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gridlink_protocol::{ObjectId, VenId};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::dispatch::response::{
    BASELINE_WINDOW_MS, Measured, Response, measure, percent, response,
};
use crate::model::clock::now_ms;
use crate::store::Store;
use crate::store::dr::AckRecord;

/// One acknowledgement in a VEN's history.
#[derive(Debug, Serialize)]
pub(crate) struct AckEntry {
    state: &'static str,
    at_ms: i64,
    reason: Option<String>,
    command_id: u64,
    received_ms: i64,
}

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
    let Measured { baseline, during } = match event.start_ms {
        Some(start) => {
            let until = event.end_ms.map_or(now, |end| end.min(now));
            measure(&*state.store, &event.vens, start, until).await?
        }
        None => Measured::default(),
    };
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
