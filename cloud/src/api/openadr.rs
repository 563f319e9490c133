//! OpenADR 3.1 programs and events: `/openadr3/3.1.0/programs` and
//! `/openadr3/3.1.0/events` (create, search with the spec's filters and
//! `skip`/`limit`, get, replace, delete), with the spec's schemas: the
//! request fields as sent, plus `id`, `createdDateTime`,
//! `modificationDateTime` and `objectType` assigned by the server.
//!
//! Events are validated before anything is stored, each error a 400
//! problem naming the field (`intervalPeriod.randomizeStart`,
//! `intervals[0].payloads[0].type`, `targets[1]`, `programID`): the
//! schema (a negative duration — an end before the start — or a malformed
//! `randomizeStart` does not parse), [`Event::validate`], payload types
//! limited to `SIMPLE`, `IMPORT_CAPACITY_LIMIT`, `EXPORT_CAPACITY_LIMIT`,
//! `DISPATCH_SETPOINT` and `PRICE`, a program that exists, and targets that
//! each select at least one VEN (its id, or a group it is in). An event
//! without targets takes its program's.
//!
//! A created, replaced or deleted event is committed together with its
//! commands to the VENs (see `store::dr`); the dispatcher is then woken to
//! publish them.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridlink_protocol::{
    Event, EventPayloadDescriptor, Interval, IntervalPeriod, IsoDuration, ObjectId, PayloadType,
    Timestamp, ValidationError,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::body::JsonBody;
use super::error::{ApiError, InvalidParam, quoted};
use super::{AppState, now_ms};
use crate::store::Store;
use crate::store::dr::{DrFilter, EventRecord, EventWrite, ProgramRecord, ProgramWrite};

/// Most objects one search returns (the spec's `limit` maximum).
pub const MAX_LIMIT: u32 = 50;
/// Most objects a search may skip (the stores page with a 32-bit offset).
pub const MAX_SKIP: u32 = i32::MAX as u32;
/// The payload types this system dispatches.
pub const PAYLOAD_TYPES: [&str; 5] = [
    "SIMPLE",
    "IMPORT_CAPACITY_LIMIT",
    "EXPORT_CAPACITY_LIMIT",
    "DISPATCH_SETPOINT",
    "PRICE",
];
/// Fields the server sets; ignored in requests.
const SERVER_FIELDS: [&str; 4] = [
    "id",
    "createdDateTime",
    "modificationDateTime",
    "objectType",
];

/// The client fields of an `eventRequest`, parsed with their paths.
#[derive(Debug, Deserialize)]
struct EventRequest {
    #[serde(rename = "programID")]
    program_id: ObjectId,
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    #[serde(default)]
    duration: Option<IsoDuration>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(rename = "reportDescriptors", default)]
    _report_descriptors: Option<Vec<Value>>,
    #[serde(rename = "payloadDescriptors", default)]
    payload_descriptors: Option<Vec<EventPayloadDescriptor>>,
    #[serde(rename = "intervalPeriod", default)]
    interval_period: Option<IntervalPeriod>,
    intervals: Vec<Interval>,
}

/// The client fields of a `programRequest` this server reads.
#[derive(Debug, Deserialize)]
struct ProgramRequest {
    #[serde(rename = "programName")]
    program_name: String,
    #[serde(rename = "intervalPeriod", default)]
    _interval_period: Option<IntervalPeriod>,
    #[serde(default)]
    targets: Option<Vec<String>>,
}

/// A new server-assigned object id: the prefix, the creation time in ms and
/// a per-process sequence number (so ids sort in creation order within a
/// process, also within one millisecond, as searches list by creation time
/// then id), and 8 random hex digits.
fn new_id(prefix: &str, now_ms: i64) -> Result<ObjectId, ApiError> {
    use std::fmt::Write as _;
    use std::sync::atomic::{AtomicU16, Ordering};
    static SEQUENCE: AtomicU16 = AtomicU16::new(0);
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("the system random generator failed".into()))?;
    let mut id = format!(
        "{prefix}-{now_ms:012x}{:04x}",
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    ObjectId::new(id).map_err(|e| ApiError::Internal(Box::new(e)))
}

/// The body's object without the server-set fields (ignored in requests).
fn body_object(body: Map<String, Value>) -> Map<String, Value> {
    let mut map = body;
    for field in SERVER_FIELDS {
        map.remove(field);
    }
    map
}

/// Deserializes `map` as `T`, naming the failing field.
fn parse<T: for<'de> Deserialize<'de>>(map: &Map<String, Value>) -> Result<T, ApiError> {
    super::body::from_value(Value::Object(map.clone()))
}

fn path_id(
    path: Result<Path<String>, PathRejection>,
    name: &'static str,
) -> Result<ObjectId, ApiError> {
    let Path(id) =
        path.map_err(|rejection| ApiError::invalid_param(name, rejection.body_text()))?;
    ObjectId::new(id).map_err(|e| ApiError::invalid_param(name, e.to_string()))
}

fn object(
    id: &ObjectId,
    object_type: &str,
    created_ms: i64,
    modified_ms: i64,
    body: &Value,
) -> Value {
    let time =
        |ms: i64| Timestamp::from_unix_ms(ms).map_or(Value::Null, |t| Value::String(t.to_string()));
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id.to_string()));
    out.insert("createdDateTime".into(), time(created_ms));
    out.insert("modificationDateTime".into(), time(modified_ms));
    out.insert("objectType".into(), Value::String(object_type.into()));
    if let Value::Object(fields) = body {
        for (k, v) in fields {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Value::Object(out)
}

fn program_json(record: &ProgramRecord) -> Value {
    object(
        &record.id,
        "PROGRAM",
        record.created_ms,
        record.modified_ms,
        &record.body,
    )
}

fn event_json(record: &EventRecord) -> Value {
    object(
        &record.id,
        "EVENT",
        record.created_ms,
        record.modified_ms,
        &record.body,
    )
}

/// The search filters: `targets` (repeatable), `skip`, `limit`, and for
/// events `programID` and `active`.
fn filter(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    events: bool,
) -> Result<DrFilter, ApiError> {
    let Query(pairs) =
        query.map_err(|rejection| ApiError::invalid_param("query", rejection.body_text()))?;
    let allowed: &[&str] = if events {
        &["programID", "targets", "skip", "limit", "active"]
    } else {
        &["targets", "skip", "limit"]
    };
    let mut filter = DrFilter {
        limit: MAX_LIMIT,
        ..DrFilter::default()
    };
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            errors.push(InvalidParam::new(
                &name,
                format!("unknown parameter; expected one of {}", allowed.join(", ")),
            ));
            continue;
        }
        if name != "targets" && !seen.insert(name.clone()) {
            errors.push(InvalidParam::new(&name, "given more than once"));
            continue;
        }
        match name.as_str() {
            "targets" => {
                if value.is_empty() || value.chars().count() > 128 {
                    errors.push(InvalidParam::new(&name, "a target is 1 to 128 characters"));
                } else {
                    filter.targets.push(value);
                }
            }
            "programID" => match ObjectId::new(value) {
                Ok(id) => filter.program_id = Some(id),
                Err(e) => errors.push(InvalidParam::new(&name, e.to_string())),
            },
            "skip" => match value.parse::<u32>() {
                Ok(skip) if skip <= MAX_SKIP => filter.skip = skip,
                _ => errors.push(InvalidParam::new(
                    &name,
                    format!("an integer from 0 to {MAX_SKIP}"),
                )),
            },
            "limit" => match value.parse::<u32>() {
                Ok(limit) if limit <= MAX_LIMIT => filter.limit = limit,
                _ => errors.push(InvalidParam::new(
                    &name,
                    format!("an integer from 0 to {MAX_LIMIT}"),
                )),
            },
            "active" => match value.as_str() {
                "true" => filter.active_at = Some(now_ms()),
                "false" => filter.active_at = None,
                _ => errors.push(InvalidParam::new(&name, "true or false")),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(ApiError::InvalidParams(errors))
    }
}

fn check_targets(targets: &[String]) -> Result<(), ApiError> {
    for (i, t) in targets.iter().enumerate() {
        if t.is_empty() || t.chars().count() > 128 || t.chars().any(char::is_control) {
            return Err(ApiError::invalid_param(
                format!("targets[{i}]"),
                "a target is 1 to 128 characters without control characters",
            ));
        }
    }
    Ok(())
}

fn program_write(map: Map<String, Value>) -> Result<ProgramWrite, ApiError> {
    let request: ProgramRequest = parse(&map)?;
    let name_len = request.program_name.chars().count();
    if name_len == 0 || name_len > 128 {
        return Err(ApiError::invalid_param(
            "programName",
            "1 to 128 characters",
        ));
    }
    let targets = request.targets.unwrap_or_default();
    check_targets(&targets)?;
    Ok(ProgramWrite {
        name: request.program_name,
        targets,
        body: Value::Object(map),
    })
}

/// `GET /openadr3/3.1.0/programs`.
pub(crate) async fn list_programs<S: Store>(
    State(state): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let filter = filter(query, false)?;
    let programs = state.store.programs(&filter).await?;
    Ok(Json(programs.iter().map(program_json).collect()))
}

/// `POST /openadr3/3.1.0/programs`.
pub(crate) async fn create_program<S: Store>(
    State(state): State<AppState<S>>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let write = program_write(body_object(body))?;
    let now = now_ms();
    let id = new_id("program", now)?;
    let record = state.store.create_program(&id, &write, now).await?;
    Ok((StatusCode::CREATED, Json(program_json(&record))).into_response())
}

/// `GET /openadr3/3.1.0/programs/{programID}`.
pub(crate) async fn get_program<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    match state.store.program(&id).await? {
        Some(record) => Ok(Json(program_json(&record))),
        None => Err(ApiError::UnknownObject("program", id)),
    }
}

/// `PUT /openadr3/3.1.0/programs/{programID}`.
pub(crate) async fn update_program<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    let write = program_write(body_object(body))?;
    match state.store.update_program(&id, &write, now_ms()).await? {
        Some(record) => Ok(Json(program_json(&record))),
        None => Err(ApiError::UnknownObject("program", id)),
    }
}

/// `DELETE /openadr3/3.1.0/programs/{programID}`: 409 while it has events.
pub(crate) async fn delete_program<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "programID")?;
    match state.store.delete_program(&id).await? {
        Some(record) => Ok(Json(program_json(&record))),
        None => Err(ApiError::UnknownObject("program", id)),
    }
}

/// Start and end (ms) spanned by the intervals; `None` end: open-ended.
/// Intervals without their own start follow each other from the event's.
fn span(event: &Event, now: i64) -> (Option<i64>, Option<i64>) {
    let resolve = |t: Timestamp| if t.is_now() { now } else { t.unix_ms() };
    let default = event.interval_period.as_ref();
    let mut cursor = default.and_then(|p| p.start).map(resolve);
    let mut start: Option<i64> = None;
    let mut end: Option<i64> = Some(i64::MIN);
    for interval in &event.intervals {
        let own = interval.interval_period.as_ref();
        let begin = own.and_then(|p| p.start).map(resolve).or(cursor);
        let duration = own
            .and_then(|p| p.duration)
            .or_else(|| default.and_then(|p| p.duration));
        let finish = match (begin, duration.and_then(IsoDuration::millis)) {
            (Some(b), Some(d)) => Some(b.saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
            _ => None,
        };
        if let Some(b) = begin {
            start = Some(start.map_or(b, |s| s.min(b)));
        }
        end = match (end, finish) {
            (Some(e), Some(f)) => Some(e.max(f)),
            _ => None,
        };
        cursor = finish;
    }
    (start, end.filter(|&e| e != i64::MIN))
}

fn field_error(error: &ValidationError) -> ApiError {
    match error {
        ValidationError::Field { field, reason } => ApiError::invalid_param(
            field.strip_prefix("event.").unwrap_or(field),
            reason.clone(),
        ),
        other => ApiError::invalid_param("body", other.to_string()),
    }
}

/// Parses and checks an event request against the spec and the store.
async fn event_write<S: Store>(
    state: &AppState<S>,
    map: Map<String, Value>,
    now: i64,
) -> Result<EventWrite, ApiError> {
    let request: EventRequest = parse(&map)?;
    for (i, d) in request.payload_descriptors.iter().flatten().enumerate() {
        if !PAYLOAD_TYPES.contains(&d.payload_type.as_str()) {
            return Err(ApiError::invalid_param(
                format!("payloadDescriptors[{i}].payloadType"),
                unknown_type(&d.payload_type),
            ));
        }
    }
    for (i, interval) in request.intervals.iter().enumerate() {
        for (j, payload) in interval.payloads.iter().enumerate() {
            if !PAYLOAD_TYPES.contains(&payload.payload_type.as_str()) {
                return Err(ApiError::invalid_param(
                    format!("intervals[{i}].payloads[{j}].type"),
                    unknown_type(&payload.payload_type),
                ));
            }
        }
    }
    let _ = request.duration;
    let Some(program) = state.store.program(&request.program_id).await? else {
        return Err(ApiError::invalid_param(
            "programID",
            format!("no program {}", quoted(request.program_id.as_str())),
        ));
    };
    let explicit = request.targets.clone().unwrap_or_default();
    check_targets(&explicit)?;
    let (targets, inherited) = if explicit.is_empty() {
        (program.targets.clone(), true)
    } else {
        (explicit, false)
    };
    if targets.is_empty() {
        return Err(ApiError::invalid_param(
            "targets",
            "no targets on the event or its program: name VENs or groups",
        ));
    }
    let event = Event {
        id: ObjectId::new("pending").map_err(|e| ApiError::Internal(Box::new(e)))?,
        program_id: request.program_id.clone(),
        event_name: request.event_name,
        priority: request.priority,
        targets: targets.clone(),
        payload_descriptors: request.payload_descriptors.unwrap_or_default(),
        interval_period: request.interval_period,
        intervals: request.intervals,
    };
    event.validate().map_err(|e| field_error(&e))?;
    let resolved = state.store.resolve_targets(&targets).await?;
    let mut vens = BTreeSet::new();
    for (i, selected) in resolved.into_iter().enumerate() {
        if selected.is_empty() {
            let name = if inherited {
                "targets".to_owned()
            } else {
                format!("targets[{i}]")
            };
            return Err(ApiError::invalid_param(
                name,
                format!("{} names no known VEN and no group", quoted(&targets[i])),
            ));
        }
        vens.extend(selected);
    }
    let (start_ms, end_ms) = span(&event, now);
    Ok(EventWrite {
        program_id: request.program_id,
        start_ms,
        end_ms,
        priority: event.priority.map(i64::from),
        targets,
        vens: vens.into_iter().collect(),
        body: Value::Object(map),
        event,
    })
}

fn unknown_type(payload_type: &PayloadType) -> String {
    format!(
        "unknown payload type {}; expected one of {}",
        quoted(payload_type.as_str()),
        PAYLOAD_TYPES.join(", ")
    )
}

/// `GET /openadr3/3.1.0/events`.
pub(crate) async fn list_events<S: Store>(
    State(state): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let filter = filter(query, true)?;
    let events = state.store.events(&filter).await?;
    Ok(Json(events.iter().map(event_json).collect()))
}

/// `POST /openadr3/3.1.0/events`: stores the event and its commands.
pub(crate) async fn create_event<S: Store>(
    State(state): State<AppState<S>>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let write = event_write(&state, body_object(body), now).await?;
    let id = new_id("event", now)?;
    let (record, commands) = state.store.create_event(&id, &write, now).await?;
    state.dispatch_wake.notify_one();
    tracing::info!(event = %id, vens = commands.len(), "event created");
    Ok((StatusCode::CREATED, Json(event_json(&record))).into_response())
}

/// `GET /openadr3/3.1.0/events/{eventID}`.
pub(crate) async fn get_event<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "eventID")?;
    match state.store.event(&id).await? {
        Some(record) => Ok(Json(event_json(&record))),
        None => Err(ApiError::UnknownObject("event", id)),
    }
}

/// `PUT /openadr3/3.1.0/events/{eventID}`: the VENs get the new version;
/// VENs no longer targeted get a cancel.
pub(crate) async fn update_event<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "eventID")?;
    let now = now_ms();
    let map = body_object(body);
    if state.store.event(&id).await?.is_none() {
        return Err(ApiError::UnknownObject("event", id));
    }
    let write = event_write(&state, map, now).await?;
    match state.store.update_event(&id, &write, now).await? {
        Some((record, _)) => {
            state.dispatch_wake.notify_one();
            Ok(Json(event_json(&record)))
        }
        None => Err(ApiError::UnknownObject("event", id)),
    }
}

/// `DELETE /openadr3/3.1.0/events/{eventID}`: cancels it at every VEN.
pub(crate) async fn delete_event<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "eventID")?;
    match state.store.delete_event(&id, now_ms()).await? {
        Some((record, _)) => {
            state.dispatch_wake.notify_one();
            Ok(Json(event_json(&record)))
        }
        None => Err(ApiError::UnknownObject("event", id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Event {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn span_follows_sequential_intervals() {
        let e = event(
            r#"{"id":"e","programID":"p","intervalPeriod":{"start":"2026-01-01T00:00:00Z","duration":"PT1H"},
                "intervals":[{"id":0,"payloads":[]},{"id":1,"payloads":[]}]}"#,
        );
        let t0 = 1_767_225_600_000;
        assert_eq!(span(&e, 0), (Some(t0), Some(t0 + 7_200_000)));
        let open = event(
            r#"{"id":"e","programID":"p","intervalPeriod":{"start":"0001-01-01T00:00:00Z","duration":"P9999Y"},
                "intervals":[{"id":0,"payloads":[]}]}"#,
        );
        assert_eq!(span(&open, 42), (Some(42), None));
    }
}
