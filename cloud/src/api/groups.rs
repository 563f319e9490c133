//! `GET` and `PUT /api/v1/vens/{id}/groups`: the groups a VEN belongs to,
//! which OpenADR event and program targets may name. `PUT` (installer,
//! admin) replaces them and registers the VEN if it is not known yet, so
//! an event can target a VEN before it has ever connected.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gridlink_protocol::VenId;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::JsonBody;
use super::error::ApiError;
use super::params;
use crate::store::Store;
use crate::store::dr::check_groups;

/// The body of `PUT /api/v1/vens/{id}/groups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupsRequest {
    groups: Vec<String>,
}

/// A VEN's groups.
#[derive(Debug, Serialize)]
pub(crate) struct Groups {
    ven_id: VenId,
    groups: Vec<String>,
}

fn path_ven_id(path: Result<Path<String>, PathRejection>) -> Result<VenId, ApiError> {
    let Path(id) = path.map_err(|r| ApiError::invalid_param("id", r.body_text()))?;
    params::ven_id(&id).map_err(|reason| ApiError::invalid_param("id", reason.to_string()))
}

/// `GET /api/v1/vens/{id}/groups`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Groups>, ApiError> {
    let ven_id = path_ven_id(path)?;
    if state.store.ven(&ven_id).await?.is_none() {
        return Err(ApiError::UnknownVen(ven_id));
    }
    let groups = state.store.ven_groups(&ven_id).await?;
    Ok(Json(Groups { ven_id, groups }))
}

/// `PUT /api/v1/vens/{id}/groups` with `{"groups": ["north", ...]}`.
pub(crate) async fn put<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<GroupsRequest>,
) -> Result<Json<Groups>, ApiError> {
    let ven_id = path_ven_id(path)?;
    let mut groups = request.groups;
    groups.sort();
    groups.dedup();
    check_groups(&groups).map_err(|e| ApiError::invalid_param("groups", e.to_string()))?;
    state.store.set_ven_groups(&ven_id, &groups).await?;
    Ok(Json(Groups { ven_id, groups }))
}
