//! `/programs`: search (`targets`, `skip`, `limit`), create, get, replace,
//! delete. Only BL clients with dispatch rights write; VEN clients read the
//! programs their targets allow ([`super::privacy`]). Deleting a program
//! deletes its events, each cancelled at the gridlink VENs it was sent to.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::privacy::{self, TargetScope};
use super::{
    SearchQuery, VtnCaller, body_object, check_name, check_targets, finish, new_id, object, parse,
    path_id, store_error,
};
use crate::api::body::JsonBody;
use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::dr::{DrFilter, ProgramRecord, ProgramWrite};

/// The client fields of a `programRequest` this server reads (the others
/// are kept as sent).
#[derive(Debug, Deserialize)]
struct ProgramRequest {
    #[serde(rename = "programName")]
    program_name: String,
    #[serde(rename = "intervalPeriod", default)]
    _interval_period: Option<gridlink_protocol::IntervalPeriod>,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(rename = "payloadDescriptors", default)]
    _payload_descriptors: Option<Vec<Map<String, Value>>>,
}

/// The program as answered to `scope`'s caller (targets hidden for VENs).
pub(crate) fn program_json(record: &ProgramRecord, scope: &TargetScope) -> Value {
    let mut out = object(
        &record.id,
        "PROGRAM",
        record.created_ms,
        record.modified_ms,
        &record.body,
    );
    if !record.targets.is_empty() {
        let shown = scope.shown(&record.targets);
        if shown.is_empty() {
            out.remove("targets");
        } else {
            out.insert(
                "targets".into(),
                Value::Array(shown.into_iter().map(Value::String).collect()),
            );
        }
    }
    Value::Object(out)
}

fn program_write(map: Map<String, Value>) -> Result<ProgramWrite, ApiError> {
    let map = super::with_descriptor_types(map, "EVENT_PAYLOAD_DESCRIPTOR");
    super::check_spec("programRequest", &map)?;
    let request: ProgramRequest = parse(&map)?;
    check_name("programName", &request.program_name)?;
    let targets = request.targets.unwrap_or_default();
    check_targets("targets", &targets)?;
    Ok(ProgramWrite {
        name: request.program_name,
        targets,
        body: Value::Object(map),
    })
}

/// `GET /programs`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = SearchQuery::new(query)?;
    let mut errors = Vec::new();
    let (skip, limit) = query.paging(&mut errors);
    let targets = query.targets(&mut errors);
    finish(errors)?;
    let scope = privacy::scope(&state, &caller, &targets).await?;
    let mut filter = DrFilter {
        skip,
        limit,
        ..DrFilter::default()
    };
    match &scope {
        TargetScope::All => filter.targets = targets,
        TargetScope::Granted(granted) => filter.visible = Some(granted.clone()),
        TargetScope::Named(named) if named.is_empty() => return Ok(Json(Vec::new())),
        TargetScope::Named(named) => filter.targets = named.clone(),
    }
    let programs = state.store.programs(&filter).await?;
    Ok(Json(
        programs.iter().map(|p| program_json(p, &scope)).collect(),
    ))
}

/// `POST /programs`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    caller.may_dispatch()?;
    let write = program_write(body_object(body))?;
    let now = now_ms();
    let id = new_id("program", now)?;
    let record = state
        .store
        .create_program(&id, &write, now)
        .await
        .map_err(store_error)?;
    let json = program_json(&record, &TargetScope::All);
    super::notifiers::changed(
        &state,
        super::notifiers::Change::program(
            &record,
            program_json(&record, &TargetScope::All),
            "CREATE",
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

/// The program `id` if `caller` may read it (else 404, as if it did not
/// exist), with the caller's target rule.
async fn readable<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    id: gridlink_protocol::ObjectId,
) -> Result<(ProgramRecord, TargetScope), ApiError> {
    let scope = privacy::scope(state, caller, &[]).await?;
    match state.store.program(&id).await? {
        Some(record) if scope.admits(&record.targets) => Ok((record, scope)),
        _ => Err(ApiError::UnknownObject("program", id)),
    }
}

/// `GET /programs/{programID}`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    let (record, scope) = readable(&state, &caller, id).await?;
    Ok(Json(program_json(&record, &scope)))
}

/// `PUT /programs/{programID}`.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    caller.may_dispatch()?;
    let write = program_write(body_object(body))?;
    match state
        .store
        .update_program(&id, &write, now_ms())
        .await
        .map_err(store_error)?
    {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::program(
                    &record,
                    program_json(&record, &TargetScope::All),
                    "UPDATE",
                ),
            )
            .await;
            Ok(Json(program_json(&record, &TargetScope::All)))
        }
        None => Err(ApiError::UnknownObject("program", id)),
    }
}

/// `DELETE /programs/{programID}`: with its events (cancelled at the VENs).
pub(crate) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    caller.may_dispatch()?;
    match state.store.delete_program(&id, now_ms()).await? {
        Some((record, commands)) => {
            if !commands.is_empty() {
                state.dispatch_wake.notify_one();
            }
            super::notifiers::changed(
                &state,
                super::notifiers::Change::program(
                    &record,
                    program_json(&record, &TargetScope::All),
                    "DELETE",
                ),
            )
            .await;
            Ok(Json(program_json(&record, &TargetScope::All)))
        }
        None => Err(ApiError::UnknownObject("program", id)),
    }
}
