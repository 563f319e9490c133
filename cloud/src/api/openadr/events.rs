//! `/events`: search (`programID`, `targets`, `skip`, `limit`, and
//! gridlink's `active`), create, get, replace, delete.
//!
//! The VTN accepts every event the spec does: any payload type (the spec's
//! enumerations, private `x-...` strings; gridlink agents opt out of those
//! they cannot execute), no `intervals`, durations in years and months,
//! targets that are opaque strings. It refuses what the schema refuses,
//! values of the known payload types that break the Definition's rules
//! (`SIMPLE` is one integer 0 to 3, ...) and a `programID` that names no
//! program, each as a 400 naming the field.
//!
//! An event without targets takes its program's. Its targets are resolved
//! to the gridlink VENs they name (a VEN id, or a group a VEN is in); those
//! are sent the event through the command outbox, committed with the event
//! (see `store::dr`), and the dispatcher is woken. An event with no targets
//! at all is for every OpenADR client that reads it, and is sent to no
//! gridlink VEN: fleet-wide load control must name its VENs or groups. An
//! event without intervals (nothing to execute) is not sent to them either.
//!
//! Years and months have no fixed length: for the VENs' copy a duration
//! `PnYnM...` is turned into the exact span from the interval's start (its
//! own, the event's, or now) in UTC; the stored event keeps what was sent.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridlink_protocol::{
    Event, EventPayloadDescriptor, Interval, IntervalPeriod, IsoDuration, ObjectId, Timestamp,
    ValidationError,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::privacy::{self, TargetScope};
use super::{
    SearchQuery, VtnCaller, body_object, check_targets, finish, new_id, object, parse, path_id,
    store_error,
};
use crate::api::body::JsonBody;
use crate::api::error::{InvalidParam, quoted};
use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::dr::{DrFilter, EventRecord, EventWrite};

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
    report_descriptors: Option<Vec<ReportDescriptor>>,
    #[serde(rename = "payloadDescriptors", default)]
    payload_descriptors: Option<Vec<EventPayloadDescriptor>>,
    #[serde(rename = "intervalPeriod", default)]
    interval_period: Option<IntervalPeriod>,
    #[serde(default)]
    intervals: Vec<Interval>,
}

/// The fields of a `reportDescriptor` this server checks.
#[derive(Debug, Deserialize)]
struct ReportDescriptor {
    #[serde(rename = "payloadType")]
    payload_type: String,
    #[serde(default)]
    targets: Option<Vec<String>>,
}

/// The event as answered to `scope`'s caller: its targets are the
/// effective ones (its program's when it has none of its own), hidden for
/// VENs as [`TargetScope::shown`] says.
pub(crate) fn event_json(record: &EventRecord, scope: &TargetScope) -> Value {
    let mut out = object(
        &record.id,
        "EVENT",
        record.created_ms,
        record.modified_ms,
        &record.body,
    );
    let shown = scope.shown(&record.targets);
    if shown.is_empty() {
        out.remove("targets");
    } else {
        out.insert(
            "targets".into(),
            Value::Array(shown.into_iter().map(Value::String).collect()),
        );
    }
    Value::Object(out)
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
    if event.intervals.is_empty() {
        // No intervals: the event's own period, if any, is its span.
        let start = cursor;
        let end = match (start, default.and_then(|p| p.duration)) {
            (Some(s), Some(d)) => d
                .millis()
                .map(|d| s.saturating_add(i64::try_from(d).unwrap_or(i64::MAX))),
            _ => None,
        };
        return (start, end);
    }
    (start, end.filter(|&e| e != i64::MIN))
}

/// A duration of the form `PnYnM...` split into years, months and the rest
/// (`P...` with a fixed length); `None` if it has no years or months, or is
/// `P9999Y` (infinity).
pub(crate) fn calendar_part(text: &str) -> Option<(u32, u32, String)> {
    let body = text.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    let mut years = 0u32;
    let mut months = 0u32;
    let mut rest = String::new();
    let mut number = String::new();
    for c in date.chars() {
        match c {
            '0'..='9' => number.push(c),
            'Y' => years = std::mem::take(&mut number).parse().ok()?,
            'M' => months = std::mem::take(&mut number).parse().ok()?,
            _ => {
                rest.push_str(&std::mem::take(&mut number));
                rest.push(c);
            }
        }
    }
    if !number.is_empty() || (years == 0 && months == 0) || (text == "P9999Y") {
        return None;
    }
    let mut fixed = format!("P{rest}");
    if let Some(time) = time {
        fixed.push('T');
        fixed.push_str(time);
    }
    if fixed == "P" {
        fixed = "PT0S".into();
    }
    Some((years, months, fixed))
}

/// `start_ms` plus `years` and `months` in the UTC calendar (the day of
/// the month kept, or the month's last day if it is shorter).
fn add_calendar(start_ms: i64, years: u32, months: u32) -> Option<i64> {
    use time::{Month, OffsetDateTime};
    let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_ms) * 1_000_000).ok()?;
    let total = i64::from(start.year()) * 12
        + i64::from(u8::from(start.month()) - 1)
        + i64::from(years) * 12
        + i64::from(months);
    let year = i32::try_from(total.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(total.rem_euclid(12) + 1).ok()?).ok()?;
    let day = start.day().min(time::util::days_in_month(month, year));
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let end = start.replace_date(date);
    i64::try_from(end.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The event's JSON with every calendar duration of an interval period
/// replaced by its exact length from that period's start (`0001-01-01`:
/// now); an error names the field whose duration cannot be placed in time.
fn fixed_durations(map: &Map<String, Value>, now: i64) -> Result<Map<String, Value>, ApiError> {
    let mut map = map.clone();
    let start_of = |period: &Map<String, Value>| {
        period
            .get("start")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Timestamp>().ok())
            .map(|t| if t.is_now() { now } else { t.unix_ms() })
    };
    let event_start = map
        .get("intervalPeriod")
        .and_then(Value::as_object)
        .and_then(start_of);
    let fix = |period: &mut Map<String, Value>, field: &str, default_start: Option<i64>| {
        let start = start_of(period).or(default_start).unwrap_or(now);
        for key in ["duration", "randomizeStart"] {
            let Some((years, months, rest)) = period
                .get(key)
                .and_then(Value::as_str)
                .and_then(calendar_part)
            else {
                continue;
            };
            let rest: IsoDuration =
                rest.parse()
                    .map_err(|e: gridlink_protocol::time::TimeError| {
                        ApiError::invalid_param(format!("{field}.{key}"), e.to_string())
                    })?;
            let Some(end) = add_calendar(start, years, months) else {
                return Err(ApiError::invalid_param(
                    format!("{field}.{key}"),
                    "the duration ends beyond the year 9999",
                ));
            };
            let ms = u64::try_from(end - start)
                .unwrap_or(0)
                .saturating_add(rest.millis().unwrap_or(0));
            period.insert(
                key.into(),
                Value::String(IsoDuration::from_millis(ms).to_string()),
            );
        }
        Ok(())
    };
    if let Some(Value::Object(period)) = map.get_mut("intervalPeriod") {
        fix(period, "intervalPeriod", None)?;
    }
    if let Some(Value::Array(intervals)) = map.get_mut("intervals") {
        for (i, interval) in intervals.iter_mut().enumerate() {
            if let Some(Value::Object(period)) = interval
                .as_object_mut()
                .and_then(|i| i.get_mut("intervalPeriod"))
            {
                fix(
                    period,
                    &format!("intervals[{i}].intervalPeriod"),
                    event_start,
                )?;
            }
        }
    }
    if let Some((years, months, rest)) = map
        .get("duration")
        .and_then(Value::as_str)
        .and_then(calendar_part)
    {
        let rest: IsoDuration = rest
            .parse()
            .map_err(|e: gridlink_protocol::time::TimeError| {
                ApiError::invalid_param("duration", e.to_string())
            })?;
        let start = event_start.unwrap_or(now);
        let end = add_calendar(start, years, months)
            .ok_or_else(|| ApiError::invalid_param("duration", "ends beyond the year 9999"))?;
        let ms = u64::try_from(end - start)
            .unwrap_or(0)
            .saturating_add(rest.millis().unwrap_or(0));
        map.insert(
            "duration".into(),
            Value::String(IsoDuration::from_millis(ms).to_string()),
        );
    }
    Ok(map)
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

/// Checks the names and targets of report descriptors.
fn check_report_descriptors(descriptors: &[ReportDescriptor]) -> Result<(), ApiError> {
    for (i, d) in descriptors.iter().enumerate() {
        if d.payload_type.is_empty() || d.payload_type.chars().count() > super::MAX_NAME_LEN {
            return Err(ApiError::invalid_param(
                format!("reportDescriptors[{i}].payloadType"),
                "1 to 128 characters",
            ));
        }
        check_targets(
            &format!("reportDescriptors[{i}].targets"),
            d.targets.as_deref().unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// Parses and checks an event request against the spec and the store.
async fn event_write<S: Store>(
    state: &AppState<S>,
    map: Map<String, Value>,
    now: i64,
) -> Result<EventWrite, ApiError> {
    let map = super::with_descriptor_types(map, "EVENT_PAYLOAD_DESCRIPTOR");
    super::check_spec("eventRequest", &map)?;
    let request: EventRequest = parse(&fixed_durations(&map, now)?)?;
    check_report_descriptors(request.report_descriptors.as_deref().unwrap_or_default())?;
    let _ = request.duration;
    let Some(program) = state.store.program(&request.program_id).await? else {
        return Err(ApiError::invalid_param(
            "programID",
            format!("no program {}", quoted(request.program_id.as_str())),
        ));
    };
    let explicit = request.targets.clone().unwrap_or_default();
    check_targets("targets", &explicit)?;
    let targets = if explicit.is_empty() {
        program.targets.clone()
    } else {
        explicit
    };
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
    event.validate_content().map_err(|e| field_error(&e))?;
    // An event without intervals holds nothing to execute: it is kept for
    // the OpenADR clients that read it, and no gridlink VEN is sent it (one
    // that had it is sent a cancel).
    let vens: BTreeSet<_> = if event.intervals.is_empty() {
        BTreeSet::new()
    } else {
        let resolved = state.store.resolve_targets(&targets).await?;
        resolved.into_iter().flatten().collect()
    };
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

/// `GET /events`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = SearchQuery::new(query)?;
    let mut errors = Vec::new();
    let (skip, limit) = query.paging(&mut errors);
    let targets = query.targets(&mut errors);
    let program_id = query.object_id("programID", &mut errors);
    let active_at = match query.one("active") {
        None | Some("false") => None,
        Some("true") => Some(now_ms()),
        Some(_) => {
            errors.push(InvalidParam::new("active", "true or false"));
            None
        }
    };
    finish(errors)?;
    let scope = privacy::scope(&state, &caller, &targets).await?;
    let mut filter = DrFilter {
        program_id,
        active_at,
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
    let events = state.store.events(&filter).await?;
    Ok(Json(events.iter().map(|e| event_json(e, &scope)).collect()))
}

/// `POST /events`: stores the event and its commands.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    caller.may_dispatch()?;
    let now = now_ms();
    let write = event_write(&state, body_object(body), now).await?;
    let id = new_id("event", now)?;
    let (record, commands) = state
        .store
        .create_event(&id, &write, now)
        .await
        .map_err(store_error)?;
    state.dispatch_wake.notify_one();
    tracing::info!(event = %id, vens = commands.len(), "event created");
    super::notifiers::changed(
        &state,
        super::notifiers::Change::event(&record, event_json(&record, &TargetScope::All), "CREATE"),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(event_json(&record, &TargetScope::All)),
    )
        .into_response())
}

/// `GET /events/{eventID}`: 404 for a VEN the event is not visible to.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "eventID")?;
    let scope = privacy::scope(&state, &caller, &[]).await?;
    match state.store.event(&id).await? {
        Some(record) if scope.admits(&record.targets) => Ok(Json(event_json(&record, &scope))),
        _ => Err(ApiError::UnknownObject("event", id)),
    }
}

/// `PUT /events/{eventID}`: the VENs get the new version; VENs no longer
/// targeted get a cancel.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "eventID")?;
    caller.may_dispatch()?;
    let now = now_ms();
    let map = body_object(body);
    if state.store.event(&id).await?.is_none() {
        return Err(ApiError::UnknownObject("event", id));
    }
    let write = event_write(&state, map, now).await?;
    match state
        .store
        .update_event(&id, &write, now)
        .await
        .map_err(store_error)?
    {
        Some((record, _)) => {
            state.dispatch_wake.notify_one();
            super::notifiers::changed(
                &state,
                super::notifiers::Change::event(
                    &record,
                    event_json(&record, &TargetScope::All),
                    "UPDATE",
                ),
            )
            .await;
            Ok(Json(event_json(&record, &TargetScope::All)))
        }
        None => Err(ApiError::UnknownObject("event", id)),
    }
}

/// `DELETE /events/{eventID}`: cancels it at every VEN.
pub(crate) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "eventID")?;
    caller.may_dispatch()?;
    match state.store.delete_event(&id, now_ms()).await? {
        Some((record, _)) => {
            state.dispatch_wake.notify_one();
            super::notifiers::changed(
                &state,
                super::notifiers::Change::event(
                    &record,
                    event_json(&record, &TargetScope::All),
                    "DELETE",
                ),
            )
            .await;
            Ok(Json(event_json(&record, &TargetScope::All)))
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
        let bare = event(r#"{"id":"e","programID":"p","intervals":[]}"#);
        assert_eq!(span(&bare, 42), (None, None));
    }

    #[test]
    fn calendar_durations_become_exact() {
        assert_eq!(calendar_part("P1M"), Some((0, 1, "PT0S".into())));
        assert_eq!(calendar_part("P1Y2M3DT4H"), Some((1, 2, "P3DT4H".into())));
        assert_eq!(calendar_part("PT1M"), None);
        assert_eq!(calendar_part("P9999Y"), None);
        assert_eq!(calendar_part("P2W"), None);
        // 2026-01-31 + 1 month = 2026-02-28 (28 days); + 1 year = 365 days.
        let jan31 = 1_769_817_600_000;
        assert_eq!(add_calendar(jan31, 0, 1), Some(jan31 + 28 * 86_400_000));
        assert_eq!(add_calendar(jan31, 1, 0), Some(jan31 + 365 * 86_400_000));
        let Value::Object(map) = serde_json::json!({
            "programID": "p",
            "intervalPeriod": {"start": "2026-01-31T00:00:00Z", "duration": "P1M"},
            "intervals": [{"id": 0, "intervalPeriod": {"duration": "P1MT1H"}, "payloads": []}]
        }) else {
            unreachable!()
        };
        let fixed = fixed_durations(&map, 0).unwrap();
        assert_eq!(fixed["intervalPeriod"]["duration"], "P28D");
        assert_eq!(
            fixed["intervals"][0]["intervalPeriod"]["duration"],
            "P28DT1H"
        );
    }
}
