//! `/api/v1/alerts`: the alerts the rules raised (`crate::alerts`), and
//! their acknowledgement by an operator.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::params::{self, ParamError, QueryParams};
use crate::api::auth::Caller;
use crate::model::alerts::{Alert, AlertFilter, AlertState, Rule};
use crate::store::Store;

/// Default `limit` of the list.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest `limit` of the list.
pub const MAX_ALERT_LIMIT: u32 = 1000;
/// Longest acknowledgement note, characters.
pub const MAX_NOTE_LEN: usize = 1000;

/// The answer of `GET /api/v1/alerts`.
#[derive(Debug, Serialize)]
pub(crate) struct AlertList {
    alerts: Vec<Alert>,
}

fn state(value: &str) -> Result<Option<AlertState>, ParamError> {
    match value {
        "open" => Ok(Some(AlertState::Open)),
        "resolved" => Ok(Some(AlertState::Resolved)),
        "all" => Ok(None),
        _ => Err(ParamError::UnknownAlertState),
    }
}

fn rule(value: &str) -> Result<Rule, ParamError> {
    Rule::from_name(value).ok_or(ParamError::UnknownRule)
}

fn limit(value: &str) -> Result<u32, ParamError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_ALERT_LIMIT).contains(n))
        .ok_or(ParamError::AlertLimit(MAX_ALERT_LIMIT))
}

/// `GET /api/v1/alerts?state=open|resolved|all&ven_id=..&rule=..&limit=..`.
pub(crate) async fn list<S: Store>(
    State(state_): State<AppState<S>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    let mut params = QueryParams::new(query, &["state", "ven_id", "rule", "limit"])?;
    let state = params.optional("state", state).flatten();
    let ven_id = params.optional("ven_id", params::ven_id);
    let rule = params.optional("rule", rule);
    let limit = params.optional("limit", limit).unwrap_or(DEFAULT_LIMIT);
    let filter = params.finish(Some(AlertFilter {
        state,
        ven_id,
        rule,
        limit,
    }))?;
    let alerts = state_.store.alerts(&filter).await?;
    Ok(Json(AlertList { alerts }))
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    super::params::path_positive_id(path, "must be a positive integer (an alert id)")
}

fn unknown(id: i64) -> ApiError {
    super::params::unknown_id("alert", id)
}

/// `GET /api/v1/alerts/{id}`.
pub(crate) async fn one<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Alert>, ApiError> {
    let id = path_id(path)?;
    state
        .store
        .alert(id)
        .await?
        .map(Json)
        .ok_or_else(|| unknown(id))
}

/// The optional note of an acknowledgement: an empty body, `{}` or
/// `{"note": "..."}`.
pub(crate) fn ack_note(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::InvalidBody {
        status: axum::http::StatusCode::BAD_REQUEST,
        detail: format!("the body is not JSON: {e}"),
    })?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::invalid_param(
            "body",
            "must be an object like {\"note\": \"...\"}",
        ));
    };
    let note = match object.remove("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(note)) => {
            if note.chars().count() > MAX_NOTE_LEN
                || note.chars().any(|c| c.is_control() && c != '\n')
            {
                return Err(ApiError::invalid_param(
                    "note",
                    format!("at most {MAX_NOTE_LEN} characters without control characters"),
                ));
            }
            Some(note)
        }
        Some(_) => return Err(ApiError::invalid_param("note", "must be a string")),
    };
    if let Some(field) = object.keys().next() {
        return Err(ApiError::invalid_param(
            field.clone(),
            "unknown field; expected note",
        ));
    }
    Ok(note)
}

/// `POST /api/v1/alerts/{id}/ack` with an optional `{"note": "..."}`.
pub(crate) async fn acknowledge<S: Store>(
    State(state): State<AppState<S>>,
    Extension(Caller(token)): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<Json<Alert>, ApiError> {
    let id = path_id(path)?;
    let note = ack_note(&body)?;
    state
        .store
        .acknowledge_alert(id, &token.name, note.as_deref(), super::now_ms())
        .await?
        .map(Json)
        .ok_or_else(|| unknown(id))
}

/// The `OpenAPI` description of the alert routes.
pub(crate) fn describe(operation: super::Operation) -> Option<Value> {
    use super::Operation;
    use serde_json::json;

    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let ok = |description: &str, name: &str| json!({ "description": description, "content": { "application/json": { "schema": schema(name) } } });
    let bad_request = json!({ "$ref": "#/components/responses/BadRequest" });
    let not_found = json!({
        "description": "No such alert (`unknown-object`).",
        "content": { "application/problem+json": { "schema": schema("Problem") } }
    });
    let id_path = json!({
        "name": "id", "in": "path", "required": true, "description": "The alert's id.",
        "schema": { "type": "integer", "minimum": 1 }
    });
    let rules: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    let query = |name: &str, description: &str, schema: Value| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema });
    Some(match operation {
        Operation::ListAlerts => json!({
            "tags": ["alerts"],
            "summary": "Alerts, newest first",
            "parameters": [
                query("state", "`open`, `resolved` or `all` (default).",
                      json!({ "type": "string", "enum": ["open", "resolved", "all"], "default": "all" })),
                query("ven_id", "Only alerts of this VEN.", schema("VenId")),
                query("rule", "Only alerts of this rule.", json!({ "type": "string", "enum": rules })),
                query("limit", &format!("At most this many (default {DEFAULT_LIMIT})."),
                      json!({ "type": "integer", "minimum": 1, "maximum": MAX_ALERT_LIMIT, "default": DEFAULT_LIMIT })),
            ],
            "responses": { "200": ok("The alerts.", "AlertList"), "400": bad_request }
        }),
        Operation::GetAlert => json!({
            "tags": ["alerts"],
            "summary": "One alert",
            "parameters": [id_path],
            "responses": { "200": ok("The alert.", "Alert"), "400": bad_request, "404": not_found }
        }),
        Operation::AckAlert => json!({
            "tags": ["alerts"],
            "summary": "Acknowledge an alert (operator, admin)",
            "description": "Sets `acknowledged_ms` and `acknowledged_by` (the token's name); the alert \
                stays open until its condition clears. Repeating it updates both. The body is optional.",
            "parameters": [id_path],
            "requestBody": {
                "required": false,
                "content": { "application/json": { "schema": schema("AlertAck") } }
            },
            "responses": { "200": ok("The alert, acknowledged.", "Alert"), "400": bad_request, "404": not_found }
        }),
        _ => return None,
    })
}

/// The `OpenAPI` schemas of the alert routes.
pub(crate) fn schemas() -> Value {
    use serde_json::json;

    let rules: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
    let nullable = |kind: &str, description: &str| json!({ "type": [kind, "null"], "description": description });
    json!({
        "Alert": {
            "type": "object",
            "required": ["id", "rule", "severity", "subject", "ven_id", "event_id", "project_id", "state",
                         "opened_ms", "resolved_ms", "acknowledged_ms", "acknowledged_by", "message", "details"],
            "properties": {
                "id": { "type": "integer" },
                "rule": { "type": "string", "enum": rules },
                "severity": { "type": "string", "enum": ["critical", "warning", "info"] },
                "subject": { "type": "string", "description": "The key the rule is about: a VEN id, \
                    `ven/meter/quantity/phase`, `event/ven`, ... One open alert per rule and subject." },
                "ven_id": nullable("string", "The VEN concerned."),
                "event_id": nullable("string", "The DR event concerned."),
                "project_id": nullable("integer", "The project concerned."),
                "state": { "type": "string", "enum": ["open", "resolved"] },
                "opened_ms": { "type": "integer", "description": "ms since the Unix epoch." },
                "resolved_ms": nullable("integer", "When it resolved."),
                "acknowledged_ms": nullable("integer", "When it was acknowledged."),
                "acknowledged_by": nullable("string", "The name of the token that acknowledged it."),
                "message": { "type": "string" },
                "details": { "type": "object", "description": "Rule-specific." }
            }
        },
        "AlertList": {
            "type": "object",
            "required": ["alerts"],
            "properties": { "alerts": { "type": "array", "items": { "$ref": "#/components/schemas/Alert" } } }
        },
        "AlertAck": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "note": {
                "type": "string", "maxLength": MAX_NOTE_LEN,
                "description": "Line breaks allowed; no other control characters.",
                "pattern": "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*$"
            } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_notes() {
        assert_eq!(ack_note(b"").unwrap(), None);
        assert_eq!(ack_note(b"{}").unwrap(), None);
        assert_eq!(
            ack_note(br#"{"note":"on it"}"#).unwrap().as_deref(),
            Some("on it")
        );
        for bad in [&b"[1]"[..], br#"{"note":3}"#, br#"{"nope":1}"#, b"{"] {
            assert!(ack_note(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
