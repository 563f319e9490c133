//! The audit trail of the API: every write a token holder makes (POST,
//! PUT, PATCH, DELETE under a bearer token) is recorded in `audit_log`
//! ([`AuditStore`]) by one layer, [`record`], around each write route, and
//! admins read it at `GET /api/v1/audit` ([`list`]).
//!
//! What is recorded: the caller's token (id, name) and role, the action
//! ([`action`]: `event.create`, `token.revoke`, ...), the object's type and
//! id (from the path, or for a create from the `id` of the answer), the
//! request id (`x-request-id`, see `request_id`), the method, path and
//! status of the answer, and a summary: the request's JSON body with every
//! member whose name suggests a secret replaced by `"<redacted>"`, or only
//! its member names when it is longer than [`MAX_SUMMARY_BYTES`]. Answers
//! are never stored (a token's or API key's secret is in the answer only).
//!
//! Refused writes are recorded too, with their status: a 403 (the role may
//! not), a 4xx from the handler (invalid body, unknown object, conflict)
//! and a 5xx. A request without a valid token (401) has no actor and is not
//! recorded. HTTP ingest (`POST /api/v1/ingest`, API keys) is not recorded:
//! it is telemetry, not a change of configuration, and the batches are
//! already kept with their idempotency keys.
//!
//! When the audit row cannot be written the layer fails closed: the
//! answer to a successful write becomes a 500 problem and the entry is
//! logged at error level with everything it would have stored. The write
//! itself has committed by then (the handlers own their transactions), so
//! the client sees that something is wrong and the log keeps the record;
//! the row is missing only while the database refuses the one insert the
//! write before it just managed.

use axum::Json;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::params::{self, ParamError, QueryParams};
use super::request_id::RequestId;
use super::{ApiError, AppState, Operation, now_ms};
use crate::api::auth::Caller;
use crate::store::{
    AuditActor, AuditEntry, AuditQuery, AuditRecord, MAX_AUDIT_LIMIT, Store, StoreError,
};

/// Longest request summary stored as it is; a longer body is summarised by
/// its member names.
pub const MAX_SUMMARY_BYTES: usize = 4096;
/// Largest request body the layer reads (axum's default body limit, which
/// the handlers' JSON extractors apply anyway).
const MAX_BODY_BYTES: usize = 2 << 20;
/// Default `limit` of `GET /api/v1/audit`.
pub const DEFAULT_AUDIT_LIMIT: u32 = 50;

/// The action and object type recorded for a write operation; `None` for
/// reads and for HTTP ingest.
pub const fn action(operation: Operation) -> Option<(&'static str, &'static str)> {
    Some(match operation {
        Operation::RegisterVen => ("ven.register", "ven"),
        Operation::SetVenGroups => ("ven.set_groups", "ven"),
        Operation::PatchShadow => ("shadow.update", "shadow"),
        Operation::CreateToken => ("token.create", "token"),
        Operation::RevokeToken => ("token.revoke", "token"),
        Operation::CreateProgram => ("program.create", "program"),
        Operation::UpdateProgram => ("program.update", "program"),
        Operation::DeleteProgram => ("program.delete", "program"),
        Operation::CreateEvent => ("event.create", "event"),
        Operation::UpdateEvent => ("event.update", "event"),
        Operation::DeleteEvent => ("event.delete", "event"),
        Operation::CreateProject => ("project.create", "project"),
        Operation::UpdateProject => ("project.update", "project"),
        Operation::AddFinanceEntry => ("finance_entry.create", "finance_entry"),
        Operation::DeleteFinanceEntry => ("finance_entry.delete", "finance_entry"),
        Operation::CreateApiKey => ("api_key.create", "api_key"),
        Operation::RevokeApiKey => ("api_key.revoke", "api_key"),
        Operation::AckAlert => ("alert.ack", "alert"),
        Operation::CreateReport => ("report.create", "report"),
        Operation::UpdateReport => ("report.update", "report"),
        Operation::DeleteReport => ("report.delete", "report"),
        Operation::CreateSubscription => ("subscription.create", "subscription"),
        Operation::UpdateSubscription => ("subscription.update", "subscription"),
        Operation::DeleteSubscription => ("subscription.delete", "subscription"),
        Operation::CreateOadrVen => ("openadr_ven.create", "openadr_ven"),
        Operation::UpdateOadrVen => ("openadr_ven.update", "openadr_ven"),
        Operation::DeleteOadrVen => ("openadr_ven.delete", "openadr_ven"),
        Operation::CreateResource => ("resource.create", "resource"),
        Operation::UpdateResource => ("resource.update", "resource"),
        Operation::DeleteResource => ("resource.delete", "resource"),
        Operation::CreateVtnClient => ("openadr_client.create", "openadr_client"),
        Operation::RevokeVtnClient => ("openadr_client.revoke", "openadr_client"),
        _ => return None,
    })
}

/// The path parameter naming the object of `operation`; `None` where a
/// create's answer names it.
const fn object_param(operation: Operation) -> Option<&'static str> {
    match operation {
        Operation::UpdateProgram | Operation::DeleteProgram => Some("programID"),
        Operation::UpdateEvent | Operation::DeleteEvent => Some("eventID"),
        Operation::UpdateReport | Operation::DeleteReport => Some("reportID"),
        Operation::UpdateSubscription | Operation::DeleteSubscription => Some("subscriptionID"),
        Operation::UpdateOadrVen | Operation::DeleteOadrVen => Some("venID"),
        Operation::UpdateResource | Operation::DeleteResource => Some("resourceID"),
        Operation::DeleteFinanceEntry => Some("entry_id"),
        Operation::CreateToken
        | Operation::CreateProgram
        | Operation::CreateEvent
        | Operation::CreateProject
        | Operation::AddFinanceEntry
        | Operation::CreateApiKey
        | Operation::CreateReport
        | Operation::CreateSubscription
        | Operation::CreateOadrVen
        | Operation::CreateResource
        | Operation::CreateVtnClient => None,
        _ => Some("id"),
    }
}

/// The value of the path parameter `name` of `template` in `path`.
fn path_param(template: &str, path: &str, name: &str) -> Option<String> {
    let wanted = format!("{{{name}}}");
    // From the end, so the VTN's routes also served at the root match.
    template
        .rsplit('/')
        .zip(path.rsplit('/'))
        .find(|(t, _)| *t == wanted)
        .map(|(_, value)| value.to_owned())
}

/// Whether a JSON member's name suggests a secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "key",
        "credential",
        "authorization",
    ]
    .iter()
    .any(|word| name.contains(word))
        && !matches!(name.as_str(), "token_id" | "key_id")
}

/// `value` with every member whose name suggests a secret redacted, at any
/// depth.
fn redacted(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, v)| {
                    if is_secret_name(&name) {
                        (name, Value::String("<redacted>".into()))
                    } else {
                        (name, redacted(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redacted).collect()),
        other => other,
    }
}

/// The stored summary of a request body: its JSON, redacted, or its
/// member names when long; `{}` for an empty body, and a note for a body
/// that is not JSON (its bytes are not stored).
pub(crate) fn summary(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return json!({});
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return json!({ "body": "not JSON", "bytes": body.len() });
    };
    let value = redacted(value);
    if value.to_string().len() <= MAX_SUMMARY_BYTES {
        return value;
    }
    match value {
        Value::Object(map) => {
            json!({ "truncated": true, "bytes": body.len(), "members": map.keys().collect::<Vec<_>>() })
        }
        _ => json!({ "truncated": true, "bytes": body.len() }),
    }
}

/// The `id` member of a JSON answer, as text.
fn answered_id(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(body).ok()?.get("id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The state of [`record`]: the app and the route's operation.
pub(crate) struct AuditRoute<S> {
    /// The app, for its store.
    pub state: AppState<S>,
    /// The write being recorded.
    pub operation: Operation,
}

impl<S> Clone for AuditRoute<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            operation: self.operation,
        }
    }
}

/// Middleware around a write route, outside `auth::require` (which leaves
/// the [`Caller`] in the answer): runs the request and records it.
pub(crate) async fn record<S: Store + 'static>(
    State(route): State<AuditRoute<S>>,
    request: Request,
    next: Next,
) -> Response {
    let Some((action, object_type)) = action(route.operation) else {
        return next.run(request).await;
    };
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(String::new, |id| id.0.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            return ApiError::InvalidBody {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                detail: format!(
                    "the body is not readable or larger than {MAX_BODY_BYTES} bytes: {error}"
                ),
            }
            .into_response();
        }
    };
    let summary = summary(&body);
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let Some(Caller(caller)) = response.extensions().get::<Caller>().cloned() else {
        // No valid token: nobody to record.
        return response;
    };
    let status = response.status();
    let (response, object_id) = match object_param(route.operation) {
        Some(name) => (response, path_param(route.operation.path(), &path, name)),
        None if status.is_success() => {
            let (parts, body) = response.into_parts();
            match to_bytes(body, usize::MAX).await {
                Ok(bytes) => {
                    let id = answered_id(&bytes);
                    (Response::from_parts(parts, Body::from(bytes)), id)
                }
                Err(error) => {
                    tracing::error!(%error, "reading an answer to audit it");
                    (Response::from_parts(parts, Body::from(Bytes::new())), None)
                }
            }
        }
        None => (response, None),
    };
    let entry = AuditEntry {
        at_ms: now_ms(),
        token_id: caller.id,
        token_name: caller.name,
        role: caller.role,
        action: action.to_owned(),
        object_type: object_type.to_owned(),
        object_id,
        request_id,
        method: method.as_str().to_owned(),
        path,
        status: status.as_u16(),
        summary,
    };
    // A database that just answered the write may blip: a few quick
    // retries before the write is answered as failed (its row is logged).
    let mut recorded = route.state.store.record_audit(&entry).await;
    for delay_ms in [50, 200, 800] {
        if !matches!(recorded, Err(StoreError::Unavailable(_))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        recorded = route.state.store.record_audit(&entry).await;
    }
    match recorded {
        Ok(_) => response,
        Err(error) => {
            tracing::error!(
                %error,
                entry = ?entry,
                "the audit trail refused an entry; the write is answered with 500"
            );
            if status.is_success() {
                ApiError::Internal(Box::new(error)).into_response()
            } else {
                response
            }
        }
    }
}

/// One entry as `GET /api/v1/audit` answers it.
#[derive(Debug, Serialize)]
pub(crate) struct AuditView {
    id: i64,
    at_ms: i64,
    actor: ActorView,
    role: &'static str,
    action: String,
    object_type: String,
    object_id: Option<String>,
    request_id: String,
    method: String,
    path: String,
    status: u16,
    summary: Value,
}

/// Who made a write.
#[derive(Debug, Serialize)]
struct ActorView {
    token_id: i64,
    token_name: String,
}

impl From<AuditRecord> for AuditView {
    fn from(record: AuditRecord) -> Self {
        let entry = record.entry;
        Self {
            id: record.id,
            at_ms: entry.at_ms,
            actor: ActorView {
                token_id: entry.token_id,
                token_name: entry.token_name,
            },
            role: entry.role.as_str(),
            action: entry.action,
            object_type: entry.object_type,
            object_id: entry.object_id,
            request_id: entry.request_id,
            method: entry.method,
            path: entry.path,
            status: entry.status,
            summary: entry.summary,
        }
    }
}

/// The answer of `GET /api/v1/audit`.
#[derive(Debug, Serialize)]
pub(crate) struct AuditList {
    entries: Vec<AuditView>,
}

/// The parameters of `GET /api/v1/audit`.
const LIST_PARAMS: [&str; 8] = [
    "from",
    "to",
    "actor",
    "action",
    "object_type",
    "object_id",
    "skip",
    "limit",
];

fn text(value: &str) -> Result<String, ParamError> {
    if value.is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control) {
        Err(ParamError::AuditText)
    } else {
        Ok(value.to_owned())
    }
}

fn actor(value: &str) -> Result<AuditActor, ParamError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value
            .parse()
            .map(AuditActor::TokenId)
            .map_err(|_| ParamError::TokenIdOutOfRange)
    } else {
        text(value).map(AuditActor::TokenName)
    }
}

fn skip(value: &str) -> Result<u32, ParamError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| i32::try_from(*n).is_ok())
        .ok_or(ParamError::Skip)
}

fn limit(value: &str) -> Result<u32, ParamError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_AUDIT_LIMIT).contains(n))
        .ok_or(ParamError::AuditLimit(MAX_AUDIT_LIMIT))
}

/// `GET /api/v1/audit?from=..&to=..&actor=..&action=..&object_type=..&object_id=..&skip=..&limit=..`:
/// entries newest first.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let mut params = QueryParams::new(query, &LIST_PARAMS)?;
    let from_ms = params.optional("from", params::time);
    let to_ms = params.optional("to", params::time);
    let actor = params.optional("actor", actor);
    let action = params.optional("action", text);
    let object_type = params.optional("object_type", text);
    let object_id = params.optional("object_id", text);
    let skip = params.optional("skip", skip).unwrap_or(0);
    let limit = params
        .optional("limit", limit)
        .unwrap_or(DEFAULT_AUDIT_LIMIT);
    if let (Some(from), Some(to)) = (from_ms, to_ms)
        && from >= to
    {
        params.reject("to", "must be after from");
    }
    let query = params.finish(Some(AuditQuery {
        from_ms,
        to_ms,
        actor,
        action,
        object_type,
        object_id,
        skip,
        limit,
    }))?;
    let entries = state.store.audit_entries(&query).await?;
    Ok(Json(AuditList {
        entries: entries.into_iter().map(AuditView::from).collect(),
    }))
}

/// The `OpenAPI` description of `GET /api/v1/audit`.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    if operation != Operation::ListAudit {
        return None;
    }
    let query = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    Some(json!({
        "tags": ["audit"],
        "summary": "The audit trail of writes, newest first (admin)",
        "description": "Every POST, PUT, PATCH and DELETE made with a bearer token (HTTP ingest \
            excepted): who, when, what, the request id and the status of the answer, refused \
            writes included. The trail is append-only: the API has no route to change it and \
            the database refuses UPDATE and DELETE.",
        "parameters": [
            query("from", "Entries at or after this time (ms since the Unix epoch, or RFC 3339).",
                  json!({ "type": ["integer", "string"] })),
            query("to", "Entries before this time (ms since the Unix epoch, or RFC 3339).",
                  json!({ "type": ["integer", "string"] })),
            query("actor", "A token id (digits) or a token name.", json!({ "type": "string" })),
            query("action", "An action, e.g. `event.create`, `token.revoke`.", json!({ "type": "string" })),
            query("object_type", "An object type, e.g. `event`, `token`, `ven`.", json!({ "type": "string" })),
            query("object_id", "An object's id.", json!({ "type": "string" })),
            query("skip", "Entries skipped, newest first.", json!({ "type": "integer", "minimum": 0, "default": 0 })),
            query("limit", &format!("At most this many (default {DEFAULT_AUDIT_LIMIT})."),
                  json!({ "type": "integer", "minimum": 1, "maximum": MAX_AUDIT_LIMIT, "default": DEFAULT_AUDIT_LIMIT })),
        ],
        "responses": {
            "200": {
                "description": "The entries.",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/AuditList" } } }
            },
            "400": { "$ref": "#/components/responses/BadRequest" }
        }
    }))
}

/// The `OpenAPI` schemas of the audit trail.
pub(crate) fn schemas() -> Value {
    let nullable = |kind: &str, description: &str| json!({ "type": [kind, "null"], "description": description });
    let mut schemas = Map::new();
    schemas.insert(
        "AuditEntry".into(),
        json!({
            "type": "object",
            "required": ["id", "at_ms", "actor", "role", "action", "object_type", "object_id",
                         "request_id", "method", "path", "status", "summary"],
            "properties": {
                "id": { "type": "integer" },
                "at_ms": { "type": "integer", "description": "When the API answered, ms since the Unix epoch." },
                "actor": {
                    "type": "object",
                    "required": ["token_id", "token_name"],
                    "properties": {
                        "token_id": { "type": "integer" },
                        "token_name": { "type": "string", "description": "The token's name at the time." }
                    }
                },
                "role": { "type": "string", "description": "The caller's role at the time." },
                "action": { "type": "string", "description": "`object.verb`: `event.create`, `token.revoke`, ..." },
                "object_type": { "type": "string" },
                "object_id": nullable("string", "The object's id, when known (not for a refused create)."),
                "request_id": { "type": "string", "description": "The `x-request-id` of the request." },
                "method": { "type": "string" },
                "path": { "type": "string" },
                "status": { "type": "integer", "description": "The HTTP status answered." },
                "summary": { "description": "The request's JSON body with secrets redacted, or its member names when long." }
            }
        }),
    );
    schemas.insert(
        "AuditList".into(),
        json!({
            "type": "object",
            "required": ["entries"],
            "properties": { "entries": { "type": "array", "items": { "$ref": "#/components/schemas/AuditEntry" } } }
        }),
    );
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    fn is_write(method: &Method) -> bool {
        matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }

    #[test]
    fn every_write_but_ingest_is_audited() {
        for operation in Operation::ALL {
            let audited = action(operation).is_some();
            // A token request changes nothing (the tokens are not stored).
            let write = is_write(&operation.method())
                && !matches!(operation, Operation::Ingest | Operation::AuthToken);
            assert_eq!(audited, write, "{operation:?}");
            if let Some(name) = object_param(operation).filter(|_| audited) {
                assert!(
                    operation.path().contains(&format!("{{{name}}}")),
                    "{operation:?}"
                );
            }
        }
    }

    #[test]
    fn path_params_are_found() {
        assert_eq!(
            path_param(
                "/api/v1/projects/{id}/finances/{entry_id}",
                "/api/v1/projects/3/finances/9",
                "entry_id"
            )
            .as_deref(),
            Some("9")
        );
        assert_eq!(path_param("/api/v1/tokens", "/api/v1/tokens", "id"), None);
    }

    #[test]
    fn summaries_redact_secrets_and_stay_short() {
        let body = br#"{"name":"n","webhook":{"url":"u","secret":"s"},"api_key":"k","token_id":3}"#;
        assert_eq!(
            summary(body),
            json!({"name":"n","webhook":{"url":"u","secret":"<redacted>"},"api_key":"<redacted>","token_id":3})
        );
        assert_eq!(summary(b""), json!({}));
        assert_eq!(summary(b"nope")["body"], "not JSON");
        let long = json!({ "a": "x".repeat(MAX_SUMMARY_BYTES), "b": 1 }).to_string();
        assert_eq!(
            summary(long.as_bytes()),
            json!({ "truncated": true, "bytes": long.len(), "members": ["a", "b"] })
        );
    }

    #[test]
    fn created_ids_are_read_from_answers() {
        assert_eq!(answered_id(br#"{"id":7}"#).as_deref(), Some("7"));
        assert_eq!(answered_id(br#"{"id":"e1"}"#).as_deref(), Some("e1"));
        assert_eq!(answered_id(b"[]"), None);
    }
}
