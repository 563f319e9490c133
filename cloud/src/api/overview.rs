//! `GET /api/v1/overview`: the dashboard's first page in one request.
//!
//! Per VEN: online state, last seen, ingest lag (receive time minus the
//! newest reading's own time, of the newest batch), its site meter's
//! latest active power split into import and export, and the events
//! running now (started, not ended, not deleted). Network totals: the sum
//! of import and export over the VENs, VEN counts by state, events running.
//!
//! Power comes from [`OverviewStore::latest_site_power`]: the site meter as
//! the measured response of events chooses it (the registered
//! `site_meter`, or the VEN's only `active_power` / `total` series).
//! `power_ts_ms` says how old it is: a VEN that went silent keeps its
//! last figure, and the totals include it (the page marks stale values).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use gridlink_protocol::VenId;
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, MAX_LIMIT, now_ms};
use crate::store::Store;
use crate::store::dr::DrFilter;

/// An event running now, as the overview lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActiveEvent {
    /// The event's id.
    id: String,
    /// Its `eventName`, if it has one.
    name: Option<String>,
    /// Its start, ms.
    start_ms: Option<i64>,
    /// Its end, ms (`null`: open-ended).
    end_ms: Option<i64>,
}

/// One VEN of the overview.
#[derive(Debug, Serialize)]
pub(crate) struct VenOverview {
    ven_id: VenId,
    site: Option<String>,
    online: Option<bool>,
    last_seen_ms: Option<i64>,
    last_reading_ms: Option<i64>,
    ingest_lag_ms: Option<i64>,
    /// Site-meter active power now, W (positive import, negative export).
    power_w: Option<f64>,
    /// `max(power_w, 0)`.
    import_w: Option<f64>,
    /// `max(-power_w, 0)`.
    export_w: Option<f64>,
    /// The time of that reading, ms.
    power_ts_ms: Option<i64>,
    active_events: Vec<ActiveEvent>,
}

/// Network-wide figures.
#[derive(Debug, Serialize, Default)]
pub(crate) struct Totals {
    import_w: f64,
    export_w: f64,
    vens_total: usize,
    vens_online: usize,
    vens_offline: usize,
    /// VENs never heard from (no status yet).
    vens_unknown: usize,
    /// VENs with a site-meter figure (summed in `import_w` / `export_w`).
    vens_metered: usize,
    active_events: usize,
}

/// The answer of `GET /api/v1/overview`.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    /// When the answer was made, ms.
    now_ms: i64,
    vens: Vec<VenOverview>,
    totals: Totals,
}

/// Events not ended at `now` and already started, in pages of
/// [`MAX_LIMIT`].
async fn running_events<S: Store>(
    store: &S,
    now: i64,
) -> Result<Vec<crate::store::dr::EventRecord>, ApiError> {
    let mut running = Vec::new();
    let mut skip = 0u32;
    loop {
        let page = store
            .events(&DrFilter {
                active_at: Some(now),
                skip,
                limit: MAX_LIMIT,
                ..DrFilter::default()
            })
            .await?;
        let full = page.len() >= MAX_LIMIT as usize;
        skip = skip.saturating_add(MAX_LIMIT);
        running.extend(
            page.into_iter()
                .filter(|e| e.start_ms.is_some_and(|start| start <= now)),
        );
        if !full {
            return Ok(running);
        }
    }
}

/// `GET /api/v1/overview`.
pub(crate) async fn overview<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<Overview>, ApiError> {
    let now = now_ms();
    let vens = state.store.vens().await?;
    let power: BTreeMap<VenId, (i64, f64)> = state
        .store
        .latest_site_power()
        .await?
        .into_iter()
        .map(|p| (p.ven_id, (p.ts_ms, p.value_w)))
        .collect();
    let events = running_events(&*state.store, now).await?;
    let mut by_ven: BTreeMap<&VenId, Vec<ActiveEvent>> = BTreeMap::new();
    for event in &events {
        let active = ActiveEvent {
            id: event.id.as_str().to_owned(),
            name: event
                .body
                .get("eventName")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            start_ms: event.start_ms,
            end_ms: event.end_ms,
        };
        for ven in &event.vens {
            by_ven.entry(ven).or_default().push(active.clone());
        }
    }
    let mut totals = Totals {
        vens_total: vens.len(),
        active_events: events.len(),
        ..Totals::default()
    };
    let mut out = Vec::with_capacity(vens.len());
    for ven in &vens {
        match ven.online {
            Some(true) => totals.vens_online += 1,
            Some(false) => totals.vens_offline += 1,
            None => totals.vens_unknown += 1,
        }
        let site_power = power.get(&ven.ven_id).copied();
        let (import_w, export_w) = site_power.map_or((None, None), |(_, w)| {
            (Some(w.max(0.0)), Some((-w).max(0.0)))
        });
        if site_power.is_some() {
            totals.vens_metered += 1;
            totals.import_w += import_w.unwrap_or(0.0);
            totals.export_w += export_w.unwrap_or(0.0);
        }
        out.push(VenOverview {
            ven_id: ven.ven_id.clone(),
            site: ven.site.clone(),
            online: ven.online,
            last_seen_ms: ven.last_seen_ms,
            last_reading_ms: ven.last_reading_ms,
            ingest_lag_ms: ven.ingest_lag_ms,
            power_w: site_power.map(|(_, w)| w),
            import_w,
            export_w,
            power_ts_ms: site_power.map(|(ts, _)| ts),
            active_events: by_ven.remove(&ven.ven_id).unwrap_or_default(),
        });
    }
    Ok(Json(Overview {
        now_ms: now,
        vens: out,
        totals,
    }))
}
