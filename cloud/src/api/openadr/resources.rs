//! `/resources`: search (`resourceName`, `venID`, `targets`, `skip`,
//! `limit`), create, get, replace, delete.
//!
//! A resource belongs to a VEN (`venID`); its clientID is its VEN's. A VEN
//! client may leave `venID` out when it has exactly one VEN (its own is
//! meant), writes only resources of its own VENs and may not write
//! targets. `resourceName` is unique within its VEN (409). A gridlink VEN's
//! loads are its resources.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridlink_protocol::ObjectId;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::privacy::owned;
use super::privacy::{self, owns};
use super::vens::object_json;
use super::{
    SearchQuery, VtnCaller, body_object, check_name, check_targets, finish, new_id, parse, path_id,
    store_error,
};
use crate::api::body::JsonBody;
use crate::api::error::quoted;
use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::vtn::{ObjectFilter, ObjectKind, VtnObject};

/// The fields of a `resourceRequest` (either kind) this server reads.
#[derive(Debug, Deserialize)]
struct ResourceRequest {
    #[serde(rename = "clientID", default)]
    client_id: Option<String>,
    #[serde(rename = "resourceName")]
    resource_name: String,
    #[serde(rename = "venID", default)]
    ven_id: Option<ObjectId>,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Vec<gridlink_protocol::ValuesMap>>,
}

/// The VEN a new or replaced resource belongs to.
async fn parent_ven<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    ven_id: Option<ObjectId>,
) -> Result<VtnObject, ApiError> {
    let Some(ven_id) = ven_id else {
        let VtnCaller::Ven { client_id } = caller else {
            return Err(ApiError::invalid_param(
                "venID",
                "required: the resource's VEN",
            ));
        };
        let filter = ObjectFilter {
            client_id: Some(client_id.clone()),
            limit: 2,
            ..ObjectFilter::default()
        };
        let mut mine = state.store.objects(ObjectKind::Ven, &filter).await?;
        return match (mine.pop(), mine.is_empty()) {
            (Some(ven), true) => Ok(ven),
            (None, _) => Err(ApiError::invalid_param(
                "venID",
                "this client has no VEN: create one (POST /vens) first",
            )),
            (Some(_), false) => Err(ApiError::invalid_param(
                "venID",
                "required: this client has more than one VEN",
            )),
        };
    };
    match state.store.object(ObjectKind::Ven, &ven_id).await? {
        Some(ven) if owns(caller, ven.client_id.as_deref()) => Ok(ven),
        _ => Err(ApiError::invalid_param(
            "venID",
            format!("no VEN {} of this client", quoted(ven_id.as_str())),
        )),
    }
}

async fn resource_write<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    map: Map<String, Value>,
    id: ObjectId,
    existing: Option<&VtnObject>,
    now: i64,
) -> Result<VtnObject, ApiError> {
    let request: ResourceRequest = parse(&map)?;
    check_name("resourceName", &request.resource_name)?;
    let targets = request.targets.unwrap_or_default();
    check_targets("targets", &targets)?;
    let _ = request.attributes;
    let ven_id = request.ven_id.or_else(|| {
        existing
            .and_then(|e| e.parent.clone())
            .and_then(|p| ObjectId::new(p).ok())
    });
    let ven = parent_ven(state, caller, ven_id).await?;
    let targets = match caller {
        VtnCaller::Bl { .. } => targets,
        VtnCaller::Ven { .. } => {
            let kept = existing.map(|e| e.targets.clone()).unwrap_or_default();
            if !targets.is_empty() && targets != kept {
                return Err(ApiError::VtnForbidden(
                    "only BL clients may grant targets to a resource",
                ));
            }
            kept
        }
    };
    let client_id = match (caller, request.client_id) {
        (VtnCaller::Bl { .. }, Some(id)) => {
            check_name("clientID", &id)?;
            id
        }
        _ => ven.client_id.clone().unwrap_or_default(),
    };
    let mut body = map;
    body.insert("clientID".into(), Value::String(client_id.clone()));
    body.insert("venID".into(), Value::String(ven.id.to_string()));
    Ok(VtnObject {
        id,
        kind: ObjectKind::Resource,
        client_id: Some(client_id),
        name: Some(request.resource_name.clone()),
        parent: Some(ven.id.to_string()),
        program_id: None,
        unique_key: Some(format!("RESOURCE/{}/{}", ven.id, request.resource_name)),
        agent_ven: existing.and_then(|e| e.agent_ven.clone()),
        targets,
        created_ms: existing.map_or(now, |e| e.created_ms),
        modified_ms: now,
        body: Value::Object(body),
    })
}

/// `GET /resources`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = SearchQuery::new(query)?;
    let mut errors = Vec::new();
    let (skip, limit) = query.paging(&mut errors);
    let targets = query.targets(&mut errors);
    let name = query.name("resourceName", &mut errors);
    let ven = query.object_id("venID", &mut errors);
    finish(errors)?;
    state.store.sync_agents(now_ms()).await?;
    let filter = ObjectFilter {
        client_id: privacy::owner(&caller),
        name,
        parent: ven.map(|v| v.to_string()),
        targets,
        skip,
        limit,
        ..ObjectFilter::default()
    };
    let resources = state.store.objects(ObjectKind::Resource, &filter).await?;
    Ok(Json(resources.iter().map(object_json).collect()))
}

/// `POST /resources`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    caller.may_write_vens()?;
    let now = now_ms();
    let record = resource_write(
        &state,
        &caller,
        body_object(body),
        new_id("resource", now)?,
        None,
        now,
    )
    .await?;
    state
        .store
        .create_object(&record)
        .await
        .map_err(store_error)?;
    super::notifiers::changed(
        &state,
        super::notifiers::Change::owned(&record, object_json(&record), "CREATE"),
    )
    .await;
    Ok((StatusCode::CREATED, Json(object_json(&record))).into_response())
}

/// `GET /resources/{resourceID}`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "resourceID")?;
    let record = owned(&state, &caller, ObjectKind::Resource, id).await?;
    Ok(Json(object_json(&record)))
}

/// `PUT /resources/{resourceID}`.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "resourceID")?;
    caller.may_write_vens()?;
    let existing = owned(&state, &caller, ObjectKind::Resource, id.clone()).await?;
    let record = resource_write(
        &state,
        &caller,
        body_object(body),
        id.clone(),
        Some(&existing),
        now_ms(),
    )
    .await?;
    match state
        .store
        .update_object(&record)
        .await
        .map_err(store_error)?
    {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::owned(&record, object_json(&record), "UPDATE"),
            )
            .await;
            Ok(Json(object_json(&record)))
        }
        None => Err(ApiError::UnknownObject("resource", id)),
    }
}

/// `DELETE /resources/{resourceID}`.
pub(crate) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "resourceID")?;
    caller.may_write_vens()?;
    owned(&state, &caller, ObjectKind::Resource, id.clone()).await?;
    match state.store.delete_object(ObjectKind::Resource, &id).await? {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::owned(&record, object_json(&record), "DELETE"),
            )
            .await;
            Ok(Json(object_json(&record)))
        }
        None => Err(ApiError::UnknownObject("resource", id)),
    }
}
