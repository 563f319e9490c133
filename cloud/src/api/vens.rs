//! `/api/v1/vens`, `/api/v1/vens/{id}` and `/api/v1/vens/{id}/loads`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gridlink_protocol::VenId;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::params;
use crate::store::{LoadRecord, Store, VenRecord};

/// A VEN as the API shows it.
#[derive(Debug, Serialize)]
#[expect(
    clippy::struct_field_names,
    reason = "the field names are the API's JSON names"
)]
pub(crate) struct Ven {
    ven_id: VenId,
    online: Option<bool>,
    last_seen_ms: Option<i64>,
    last_reading_ms: Option<i64>,
    ingest_lag_ms: Option<i64>,
    agent_version: Option<String>,
    site: Option<String>,
    site_meter: Option<String>,
}

impl From<VenRecord> for Ven {
    fn from(record: VenRecord) -> Self {
        Self {
            ven_id: record.ven_id,
            online: record.online,
            last_seen_ms: record.last_seen_ms,
            last_reading_ms: record.last_reading_ms,
            ingest_lag_ms: record.ingest_lag_ms,
            agent_version: record.agent_version,
            site: record.site,
            site_meter: record.site_meter,
        }
    }
}

/// The answer of `GET /api/v1/vens`.
#[derive(Debug, Serialize)]
pub(crate) struct VenList {
    vens: Vec<Ven>,
}

/// A load as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Load {
    name: String,
    on: bool,
    power_w: Option<f64>,
    setpoint: Option<f64>,
    controllable: bool,
    last_change_ms: Option<i64>,
    cause: serde_json::Value,
    snapshot_ms: i64,
}

impl From<LoadRecord> for Load {
    fn from(record: LoadRecord) -> Self {
        Self {
            name: record.name,
            on: record.on,
            power_w: record.power_w,
            setpoint: record.setpoint,
            controllable: record.controllable,
            last_change_ms: record.last_change_ms,
            cause: record.cause,
            snapshot_ms: record.snapshot_ms,
        }
    }
}

/// The answer of `GET /api/v1/vens/{id}/loads`.
#[derive(Debug, Serialize)]
pub(crate) struct LoadList {
    ven_id: VenId,
    loads: Vec<Load>,
}

pub(crate) fn path_ven_id(path: Result<Path<String>, PathRejection>) -> Result<VenId, ApiError> {
    let Path(id) =
        path.map_err(|rejection| ApiError::invalid_param("id", rejection.body_text()))?;
    params::ven_id(&id).map_err(|reason| ApiError::invalid_param("id", reason.to_string()))
}

/// `GET /api/v1/vens`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<VenList>, ApiError> {
    let vens = state.store.vens().await?;
    Ok(Json(VenList {
        vens: vens.into_iter().map(Ven::from).collect(),
    }))
}

/// `GET /api/v1/vens/{id}`.
pub(crate) async fn one<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Ven>, ApiError> {
    let ven_id = path_ven_id(path)?;
    match state.store.ven(&ven_id).await? {
        Some(record) => Ok(Json(record.into())),
        None => Err(ApiError::UnknownVen(ven_id)),
    }
}

/// `GET /api/v1/vens/{id}/loads`.
pub(crate) async fn loads<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<LoadList>, ApiError> {
    let ven_id = path_ven_id(path)?;
    if state.store.ven(&ven_id).await?.is_none() {
        return Err(ApiError::UnknownVen(ven_id));
    }
    let loads = state.store.loads(&ven_id).await?;
    Ok(Json(LoadList {
        ven_id,
        loads: loads.into_iter().map(Load::from).collect(),
    }))
}
