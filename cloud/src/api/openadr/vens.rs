//! `/vens`: search (`venName`, `targets`, `skip`, `limit`), create, get,
//! replace, delete.
//!
//! BL creates a VEN for a client (`clientID` in the body, a
//! `BlVenRequest`) and may grant it targets; a VEN client creates its own
//! (`VenVenRequest`: the VTN writes the caller's clientID) and may not
//! write targets. `venName` is unique (409). A VEN client sees and changes
//! only its own VENs; others answer 404. Every gridlink VEN (MQTT agent)
//! is a `ven` here too, named by its VEN id ([`crate::store::VtnStore::sync_agents`]).
//! Deleting a VEN deletes its resources.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridlink_protocol::ObjectId;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::privacy::{self, owned};
use super::{
    SearchQuery, VtnCaller, body_object, check_name, check_targets, finish, new_id, object, parse,
    path_id, store_error,
};
use crate::api::body::JsonBody;
use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::vtn::{ObjectFilter, ObjectKind, VtnObject};

/// The fields of a `venRequest` (either kind) this server reads.
#[derive(Debug, Deserialize)]
struct VenRequest {
    #[serde(rename = "clientID", default)]
    client_id: Option<String>,
    #[serde(rename = "venName")]
    ven_name: String,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Vec<gridlink_protocol::ValuesMap>>,
}

/// A VEN-owned object as answered: metadata, `clientID`, the fields.
pub(crate) fn object_json(record: &VtnObject) -> Value {
    let mut out = object(
        &record.id,
        record.kind.as_str(),
        record.created_ms,
        record.modified_ms,
        &record.body,
    );
    if let Some(client_id) = &record.client_id {
        out.insert("clientID".into(), Value::String(client_id.clone()));
    }
    if record.targets.is_empty() {
        out.remove("targets");
    } else {
        out.insert(
            "targets".into(),
            Value::Array(record.targets.iter().cloned().map(Value::String).collect()),
        );
    }
    Value::Object(out)
}

/// The stored VEN for a request by `caller`; `existing` when replacing.
fn ven_write(
    caller: &VtnCaller,
    map: Map<String, Value>,
    id: ObjectId,
    existing: Option<&VtnObject>,
    now: i64,
) -> Result<VtnObject, ApiError> {
    let request: VenRequest = parse(&map)?;
    check_name("venName", &request.ven_name)?;
    let targets = request.targets.unwrap_or_default();
    check_targets("targets", &targets)?;
    let _ = request.attributes;
    let client_id = match caller {
        VtnCaller::Bl { .. } => match request.client_id {
            Some(id) => {
                check_name("clientID", &id)?;
                id
            }
            None => match existing.and_then(|e| e.client_id.clone()) {
                Some(id) => id,
                None => {
                    return Err(ApiError::invalid_param(
                        "clientID",
                        "required when BL creates a VEN: the client id of the VEN's OAuth \
                         client (a BlVenRequest)",
                    ));
                }
            },
        },
        VtnCaller::Ven { client_id } => {
            let kept = existing.map(|e| e.targets.clone()).unwrap_or_default();
            if !targets.is_empty() && targets != kept {
                return Err(ApiError::VtnForbidden(
                    "only BL clients may grant targets to a VEN",
                ));
            }
            if request.client_id.as_ref().is_some_and(|c| c != client_id) {
                return Err(ApiError::VtnForbidden(
                    "a VEN client may only write VENs with its own clientID",
                ));
            }
            client_id.clone()
        }
    };
    let targets = match (caller, existing) {
        (VtnCaller::Ven { .. }, Some(e)) => e.targets.clone(),
        _ => targets,
    };
    let mut body = map;
    body.insert("clientID".into(), Value::String(client_id.clone()));
    Ok(VtnObject {
        id,
        kind: ObjectKind::Ven,
        client_id: Some(client_id),
        name: Some(request.ven_name.clone()),
        parent: None,
        program_id: None,
        unique_key: Some(format!("VEN/{}", request.ven_name)),
        agent_ven: existing.and_then(|e| e.agent_ven.clone()),
        targets,
        created_ms: existing.map_or(now, |e| e.created_ms),
        modified_ms: now,
        body: Value::Object(body),
    })
}

/// `GET /vens`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = SearchQuery::new(query)?;
    let mut errors = Vec::new();
    let (skip, limit) = query.paging(&mut errors);
    let targets = query.targets(&mut errors);
    let name = query.name("venName", &mut errors);
    finish(errors)?;
    state.store.sync_agents(now_ms()).await?;
    let filter = ObjectFilter {
        client_id: privacy::owner(&caller),
        name,
        targets,
        skip,
        limit,
        ..ObjectFilter::default()
    };
    let vens = state.store.objects(ObjectKind::Ven, &filter).await?;
    Ok(Json(vens.iter().map(object_json).collect()))
}

/// `POST /vens`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    caller.may_write_vens()?;
    let now = now_ms();
    let record = ven_write(&caller, body_object(body), new_id("ven", now)?, None, now)?;
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

/// `GET /vens/{venID}`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "venID")?;
    let record = owned(&state, &caller, ObjectKind::Ven, id).await?;
    Ok(Json(object_json(&record)))
}

/// `PUT /vens/{venID}`.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "venID")?;
    caller.may_write_vens()?;
    let existing = owned(&state, &caller, ObjectKind::Ven, id.clone()).await?;
    let record = ven_write(
        &caller,
        body_object(body),
        id.clone(),
        Some(&existing),
        now_ms(),
    )?;
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
        None => Err(ApiError::UnknownObject("ven", id)),
    }
}

/// `DELETE /vens/{venID}`: with its resources.
pub(crate) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "venID")?;
    caller.may_write_vens()?;
    owned(&state, &caller, ObjectKind::Ven, id.clone()).await?;
    match state.store.delete_object(ObjectKind::Ven, &id).await? {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::owned(&record, object_json(&record), "DELETE"),
            )
            .await;
            Ok(Json(object_json(&record)))
        }
        None => Err(ApiError::UnknownObject("ven", id)),
    }
}
