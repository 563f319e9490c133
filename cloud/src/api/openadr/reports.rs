//! `/reports`: search (`programID`, `eventID`, `clientName`, `skip`,
//! `limit`), create, get, replace, delete.
//!
//! VEN clients write reports (the spec's `write_reports` scope is theirs
//! alone) about events they can read; the VTN writes the caller's clientID
//! and the event's program. A VEN reads its own reports, BL all of them.
//! Reports of gridlink VENs are written by the VTN from their
//! acknowledgements (see `store::dr`'s `record_ack`).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridlink_protocol::{ObjectId, Timestamp, ValuesMap};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::privacy;
use super::privacy::owned;
use super::vens::object_json;
use super::{
    SearchQuery, VtnCaller, body_object, check_duration, check_name, finish, new_id, parse,
    path_id, store_error,
};
use crate::api::body::JsonBody;
use crate::api::error::quoted;
use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::vtn::{ObjectFilter, ObjectKind, VtnObject};

/// A report's or interval's `intervalPeriod` (durations checked against
/// the spec's pattern, calendar ones included).
#[derive(Debug, Deserialize)]
struct Period {
    #[serde(rename = "start", default)]
    _start: Option<Timestamp>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(rename = "randomizeStart", default)]
    randomize_start: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReportInterval {
    #[serde(rename = "id")]
    _id: i32,
    #[serde(rename = "intervalPeriod", default)]
    interval_period: Option<Period>,
    #[serde(rename = "payloads")]
    _payloads: Vec<ValuesMap>,
}

#[derive(Debug, Deserialize)]
struct ReportResource {
    #[serde(rename = "resourceName")]
    resource_name: String,
    #[serde(rename = "intervalPeriod", default)]
    interval_period: Option<Period>,
    intervals: Vec<ReportInterval>,
}

#[derive(Debug, Deserialize)]
struct PayloadDescriptor {
    #[serde(rename = "payloadType")]
    payload_type: String,
}

/// The fields of a `reportRequest`.
#[derive(Debug, Deserialize)]
struct ReportRequest {
    #[serde(rename = "eventID")]
    event_id: ObjectId,
    #[serde(rename = "clientName")]
    client_name: String,
    #[serde(rename = "reportName", default)]
    _report_name: Option<String>,
    #[serde(rename = "payloadDescriptors", default)]
    payload_descriptors: Option<Vec<PayloadDescriptor>>,
    resources: Vec<ReportResource>,
}

fn check_period(field: &str, period: Option<&Period>) -> Result<(), ApiError> {
    let Some(period) = period else { return Ok(()) };
    for (name, value) in [
        ("duration", &period.duration),
        ("randomizeStart", &period.randomize_start),
    ] {
        if let Some(value) = value {
            check_duration(&format!("{field}.{name}"), value)?;
        }
    }
    Ok(())
}

async fn report_write<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    map: Map<String, Value>,
    id: ObjectId,
    existing: Option<&VtnObject>,
    now: i64,
) -> Result<VtnObject, ApiError> {
    let VtnCaller::Ven { client_id } = caller else {
        return Err(ApiError::VtnForbidden(
            "only VEN clients write reports (the spec's write_reports scope)",
        ));
    };
    let map = super::with_descriptor_types(map, "REPORT_PAYLOAD_DESCRIPTOR");
    super::check_spec("reportRequest", &map)?;
    let request: ReportRequest = parse(&map)?;
    check_name("clientName", &request.client_name)?;
    for (i, d) in request.payload_descriptors.iter().flatten().enumerate() {
        check_name(
            &format!("payloadDescriptors[{i}].payloadType"),
            &d.payload_type,
        )?;
    }
    for (i, resource) in request.resources.iter().enumerate() {
        check_name(
            &format!("resources[{i}].resourceName"),
            &resource.resource_name,
        )?;
        check_period(
            &format!("resources[{i}].intervalPeriod"),
            resource.interval_period.as_ref(),
        )?;
        for (j, interval) in resource.intervals.iter().enumerate() {
            check_period(
                &format!("resources[{i}].intervals[{j}].intervalPeriod"),
                interval.interval_period.as_ref(),
            )?;
        }
    }
    let scope = privacy::scope(state, caller, &[]).await?;
    let event = match state.store.event(&request.event_id).await? {
        Some(event) if scope.admits(&event.targets) => event,
        _ => {
            return Err(ApiError::invalid_param(
                "eventID",
                format!(
                    "no event {} this client can read",
                    quoted(request.event_id.as_str())
                ),
            ));
        }
    };
    Ok(VtnObject {
        id,
        kind: ObjectKind::Report,
        client_id: Some(client_id.clone()),
        name: Some(request.client_name),
        parent: Some(event.id.to_string()),
        program_id: Some(event.program_id.to_string()),
        unique_key: None,
        agent_ven: None,
        targets: Vec::new(),
        created_ms: existing.map_or(now, |e| e.created_ms),
        modified_ms: now,
        body: Value::Object(map),
    })
}

/// A report as answered: with its program (`programID` is not part of the
/// schema, so it is not added) and clientID.
fn report_json(record: &VtnObject) -> Value {
    object_json(record)
}

/// `GET /reports`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = SearchQuery::new(query)?;
    let mut errors = Vec::new();
    let (skip, limit) = query.paging(&mut errors);
    let program = query.object_id("programID", &mut errors);
    let event = query.object_id("eventID", &mut errors);
    let name = query.name("clientName", &mut errors);
    finish(errors)?;
    let filter = ObjectFilter {
        client_id: privacy::owner(&caller),
        name,
        parent: event.map(|e| e.to_string()),
        program_id: program.map(|p| p.to_string()),
        skip,
        limit,
        ..ObjectFilter::default()
    };
    let reports = state.store.objects(ObjectKind::Report, &filter).await?;
    Ok(Json(reports.iter().map(report_json).collect()))
}

/// `POST /reports`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let record = report_write(
        &state,
        &caller,
        body_object(body),
        new_id("report", now)?,
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
    Ok((StatusCode::CREATED, Json(report_json(&record))).into_response())
}

/// `GET /reports/{reportID}`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "reportID")?;
    let record = owned(&state, &caller, ObjectKind::Report, id).await?;
    Ok(Json(report_json(&record)))
}

/// `PUT /reports/{reportID}`.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "reportID")?;
    let existing = owned(&state, &caller, ObjectKind::Report, id.clone()).await?;
    let record = report_write(
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
            Ok(Json(report_json(&record)))
        }
        None => Err(ApiError::UnknownObject("report", id)),
    }
}

/// `DELETE /reports/{reportID}`.
pub(crate) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "reportID")?;
    if !caller.is_ven() {
        return Err(ApiError::VtnForbidden(
            "only VEN clients write reports (the spec's write_reports scope)",
        ));
    }
    owned(&state, &caller, ObjectKind::Report, id.clone()).await?;
    match state.store.delete_object(ObjectKind::Report, &id).await? {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::owned(&record, object_json(&record), "DELETE"),
            )
            .await;
            Ok(Json(report_json(&record)))
        }
        None => Err(ApiError::UnknownObject("report", id)),
    }
}
