//! The OpenADR 3.1 VTN under `/openadr3/3.1.0` (and, for clients that
//! assume a VTN at the root of its host, at `/` too): every operation of
//! the specification (`cloud/openadr3/openadr3.yaml`, vendored), with its
//! bodies, query parameters, status codes and problem answers.
//!
//! - [`oauth`]: `/auth/server`, `/auth/token` (client credentials → JWT);
//! - [`caller`]: who calls (BL or VEN client; OAuth or an `/api/v1` token);
//! - [`privacy`]: what a VEN client may see (its own objects; programs and
//!   events whose targets it was granted, or that have none);
//! - [`programs`], [`events`] (dispatched to the gridlink VENs they
//!   target through the command outbox), [`vens`], [`resources`],
//!   [`reports`], [`subscriptions`], [`notifiers`].
//!
//! Requests are read as the spec allows: server-set fields (`id`,
//! `createdDateTime`, `modificationDateTime`, `objectType`) are ignored,
//! `null` members are dropped (the schema's default for every nullable
//! field), unknown query parameters are ignored. Objects are answered with
//! their metadata and the fields as accepted.

pub(crate) mod caller;
pub(crate) mod events;
pub(crate) mod notifiers;
pub mod oauth;
pub(crate) mod privacy;
pub(crate) mod programs;
pub(crate) mod reports;
pub(crate) mod resources;
pub(crate) mod subscriptions;
pub(crate) mod vens;

use axum::extract::Path;
use axum::extract::Query;
use axum::extract::rejection::{PathRejection, QueryRejection};
use gridlink_protocol::{ObjectId, Timestamp};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ApiError;
use super::error::InvalidParam;

pub use caller::VtnCaller;

/// Where the VTN is served (it is also served at the root).
pub use crate::api::OPENADR_BASE_PATH as BASE_PATH;
/// Most objects one search returns (the spec's `limit` maximum).
pub const MAX_LIMIT: u32 = 50;
/// Most objects a search may skip (the stores page with a 32-bit offset).
pub const MAX_SKIP: u32 = i32::MAX as u32;
/// The payload types gridlink agents execute; events may carry any other
/// type (the spec's or a private one), which agents opt out of.
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
/// The longest string the spec allows for names, targets and ids.
pub const MAX_NAME_LEN: usize = 128;

/// A new server-assigned object id: the prefix, the creation time in ms and
/// a per-process sequence number (so ids sort in creation order within a
/// process, also within one millisecond, as searches list by creation time
/// then id), and 8 random hex digits.
pub(crate) fn new_id(prefix: &str, now_ms: i64) -> Result<ObjectId, ApiError> {
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

/// `value` without `null` members, at any depth (a nullable field's
/// default is null: leaving it out says the same, and stored objects then
/// always fit the schema).
pub(crate) fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The body's object without the server-set fields and nulls.
pub(crate) fn body_object(body: Map<String, Value>) -> Map<String, Value> {
    let Value::Object(mut map) = without_nulls(Value::Object(body)) else {
        return Map::new();
    };
    for field in SERVER_FIELDS {
        map.remove(field);
    }
    map
}

/// Deserializes `map` as `T`, naming the failing field.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(map: &Map<String, Value>) -> Result<T, ApiError> {
    super::body::from_value(Value::Object(map.clone()))
}

/// Gives each payload descriptor of `map` that has no `objectType` the one
/// its place implies (`EVENT_PAYLOAD_DESCRIPTOR` in programs and events,
/// `REPORT_PAYLOAD_DESCRIPTOR` in reports): the schema requires it, 3.0
/// clients and gridlink's own tools leave it out, and the stored object
/// then conforms.
pub(crate) fn with_descriptor_types(mut map: Map<String, Value>, kind: &str) -> Map<String, Value> {
    if let Some(Value::Array(items)) = map.get_mut("payloadDescriptors") {
        for item in items {
            if let Value::Object(descriptor) = item {
                descriptor
                    .entry("objectType")
                    .or_insert_with(|| Value::String(kind.to_owned()));
            }
        }
    }
    map
}

/// Checks a request body against the spec's schema `schema`
/// (`programRequest`, ...) with a JSON Schema validator: every violation
/// is reported at once, each naming its field (400).
pub(crate) fn check_spec(schema: &str, map: &Map<String, Value>) -> Result<(), ApiError> {
    let body = Value::Object(map.clone());
    finish(
        crate::api::openapi::openadr::request_violations(schema, &body)
            .into_iter()
            .map(|(name, reason)| InvalidParam::new(name, reason))
            .collect(),
    )
}

/// An object id from the path, as a 400 naming `name` when malformed.
pub(crate) fn path_id(
    path: Result<Path<String>, PathRejection>,
    name: &'static str,
) -> Result<ObjectId, ApiError> {
    let Path(id) =
        path.map_err(|rejection| ApiError::invalid_param(name, rejection.body_text()))?;
    ObjectId::new(id).map_err(|e| ApiError::invalid_param(name, e.to_string()))
}

/// An RFC 3339 time, or null for a time out of range.
fn time(ms: i64) -> Value {
    Timestamp::from_unix_ms(ms).map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// An object as answered: its metadata, then the accepted fields.
pub(crate) fn object(
    id: &ObjectId,
    object_type: &str,
    created_ms: i64,
    modified_ms: i64,
    body: &Value,
) -> Map<String, Value> {
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
    out
}

/// The query of a search, read leniently: unknown parameters are ignored
/// (clients send 3.0-style and extra filters), known ones must be valid.
pub(crate) struct SearchQuery {
    pairs: Vec<(String, String)>,
}

impl SearchQuery {
    /// The pairs of the query.
    pub(crate) fn new(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Self, ApiError> {
        let Query(pairs) =
            query.map_err(|rejection| ApiError::invalid_param("query", rejection.body_text()))?;
        Ok(Self { pairs })
    }

    /// Every value of `name` (repeatable parameters such as `targets`;
    /// `targets=a,b` is read as two targets too).
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The last value of `name`.
    pub(crate) fn one(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `skip` and `limit` (default 0 and [`MAX_LIMIT`]).
    pub(crate) fn paging(&self, errors: &mut Vec<InvalidParam>) -> (u32, u32) {
        let mut skip = 0;
        let mut limit = MAX_LIMIT;
        if let Some(value) = self.one("skip") {
            match value.parse::<u32>() {
                Ok(v) if v <= MAX_SKIP => skip = v,
                _ => errors.push(InvalidParam::new(
                    "skip",
                    format!("an integer from 0 to {MAX_SKIP}"),
                )),
            }
        }
        if let Some(value) = self.one("limit") {
            match value.parse::<u32>() {
                Ok(v) if v <= MAX_LIMIT => limit = v,
                _ => errors.push(InvalidParam::new(
                    "limit",
                    format!("an integer from 0 to {MAX_LIMIT}"),
                )),
            }
        }
        (skip, limit)
    }

    /// An object id parameter.
    pub(crate) fn object_id(&self, name: &str, errors: &mut Vec<InvalidParam>) -> Option<ObjectId> {
        let value = self.one(name)?;
        match ObjectId::new(value) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(InvalidParam::new(name, e.to_string()));
                None
            }
        }
    }

    /// A name parameter (1 to 128 characters).
    pub(crate) fn name(&self, name: &str, errors: &mut Vec<InvalidParam>) -> Option<String> {
        let value = self.one(name)?;
        if value.is_empty() || value.chars().count() > MAX_NAME_LEN {
            errors.push(InvalidParam::new(name, "1 to 128 characters"));
            return None;
        }
        Some(value.to_owned())
    }

    /// The `targets` filter.
    pub(crate) fn targets(&self, errors: &mut Vec<InvalidParam>) -> Vec<String> {
        let targets = self.all("targets");
        if targets.iter().any(|t| t.chars().count() > MAX_NAME_LEN) {
            errors.push(InvalidParam::new(
                "targets",
                "a target is 1 to 128 characters",
            ));
        }
        targets
    }
}

/// Ok, or the collected parameter errors as one 400.
pub(crate) fn finish(errors: Vec<InvalidParam>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidParams(errors))
    }
}

/// Checks a list of targets: each 1 to 128 characters without control
/// characters; `field` names the list in the error.
pub(crate) fn check_targets(field: &str, targets: &[String]) -> Result<(), ApiError> {
    for (i, t) in targets.iter().enumerate() {
        if t.is_empty() || t.chars().count() > MAX_NAME_LEN || t.chars().any(char::is_control) {
            return Err(ApiError::invalid_param(
                format!("{field}[{i}]"),
                "a target is 1 to 128 characters without control characters",
            ));
        }
    }
    Ok(())
}

/// Checks a required or optional name field: 1 to 128 characters.
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let len = name.chars().count();
    if len == 0 || len > MAX_NAME_LEN {
        return Err(ApiError::invalid_param(field, "1 to 128 characters"));
    }
    Ok(())
}

/// A problem answer of the VTN as the spec types it: `application/json`
/// (the rest of the API answers `application/problem+json`).
pub(crate) async fn problem_as_json(
    mut response: axum::response::Response,
) -> axum::response::Response {
    use axum::http::HeaderValue;
    use axum::http::header::CONTENT_TYPE;
    if response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v == super::PROBLEM_CONTENT_TYPE)
    {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// Checks a duration against the spec's pattern (ISO 8601, years and
/// months included, optionally negative).
pub(crate) fn check_duration(field: &str, text: &str) -> Result<(), ApiError> {
    let positive = text.strip_prefix('-').unwrap_or(text);
    let fixed =
        events::calendar_part(positive).map_or_else(|| positive.to_owned(), |(_, _, rest)| rest);
    fixed
        .parse::<gridlink_protocol::IsoDuration>()
        .map(|_| ())
        .map_err(|e| ApiError::invalid_param(field, e.to_string()))
}

/// A store error as the spec answers it: a taken name or a conflict is 409,
/// a value the store refuses 400.
pub(crate) fn store_error(error: crate::store::StoreError) -> ApiError {
    use crate::store::StoreError;
    match error {
        StoreError::Invalid(reason) => ApiError::invalid_param("body", reason),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nulls_and_server_fields_are_dropped() {
        let Value::Object(map) = json!({
            "id": "x", "objectType": "EVENT", "programID": "p", "eventName": null,
            "intervalPeriod": null, "intervals": [{"id": 0, "intervalPeriod": null, "payloads": []}]
        }) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(body_object(map)),
            json!({"programID": "p", "intervals": [{"id": 0, "payloads": []}]})
        );
    }
}
