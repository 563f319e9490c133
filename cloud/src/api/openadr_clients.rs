//! `/api/v1/openadr/clients` (admin only): the OAuth 2.0 clients of the
//! OpenADR VTN. `POST` makes one (`{"name": ..., "role": "bl" | "ven"}`;
//! the secret is in this one answer, sent with `Cache-Control: no-store`),
//! `GET` lists them without secrets, `DELETE .../{clientID}` revokes one
//! (its access tokens stop working at once). `gridlink-cloud client
//! create|list|revoke` does the same on the server.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::check_token_name;
use super::body::JsonBody;
use super::error::ApiError;
use super::openadr::oauth::issue_client;
use super::{AppState, now_ms};
use crate::store::Store;
use crate::store::vtn::{ClientRole, VtnClient};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientRequest {
    name: String,
    role: String,
}

/// A client as listed.
pub fn client_json(client: &VtnClient) -> Value {
    json!({
        "clientID": client.client_id,
        "name": client.name,
        "role": client.role.as_str(),
        "created_ms": client.created_ms,
        "revoked_ms": client.revoked_ms,
        "active": client.revoked_ms.is_none(),
    })
}

/// `POST /api/v1/openadr/clients`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    JsonBody(request): JsonBody<ClientRequest>,
) -> Result<Response, ApiError> {
    check_token_name(&request.name).map_err(|e| ApiError::invalid_param("name", e.to_string()))?;
    let role = ClientRole::from_name(&request.role)
        .ok_or_else(|| ApiError::invalid_param("role", "bl or ven"))?;
    let issued = issue_client().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let client = state
        .store
        .create_client(
            &issued.client_id,
            &request.name,
            role,
            &issued.hash,
            now_ms(),
        )
        .await?;
    let mut body = client_json(&client);
    body["clientSecret"] = Value::String(issued.secret);
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/openadr/clients`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<Value>, ApiError> {
    let clients = state.store.clients().await?;
    Ok(Json(
        json!({ "clients": clients.iter().map(client_json).collect::<Vec<_>>() }),
    ))
}

/// `DELETE /api/v1/openadr/clients/{clientID}`.
pub(crate) async fn revoke<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = path.map_err(|r| ApiError::invalid_param("id", r.body_text()))?;
    match state.store.revoke_client(&id, now_ms()).await? {
        Some(client) => Ok(Json(client_json(&client))),
        None => Err(match gridlink_protocol::ObjectId::new(id) {
            Ok(id) => ApiError::UnknownObject("OpenADR client", id),
            Err(e) => ApiError::invalid_param("id", format!("not a client id: {e}")),
        }),
    }
}

/// The `OpenAPI` descriptions of the client routes.
pub(crate) fn describe(operation: super::Operation) -> Option<Value> {
    use super::Operation;
    let client = json!({ "type": "object", "required": ["clientID", "name", "role", "created_ms", "active"],
        "properties": {
            "clientID": { "type": "string" }, "name": { "type": "string" },
            "role": { "enum": ["bl", "ven"] }, "created_ms": { "type": "integer" },
            "revoked_ms": { "type": ["integer", "null"] }, "active": { "type": "boolean" },
            "clientSecret": { "type": "string", "description": "Only in the answer to POST." }
        } });
    let answer = |description: &str, schema: &Value| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    Some(match operation {
        Operation::CreateVtnClient => json!({
            "tags": ["auth"],
            "summary": "Make an OpenADR OAuth client (admin)",
            "description": "A business-logic (`bl`) or VEN (`ven`) client of the VTN. The secret is \
                in this answer only; the client exchanges it at /openadr3/3.1.0/auth/token.",
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "additionalProperties": false, "required": ["name", "role"],
                "properties": { "name": { "type": "string", "minLength": 1, "maxLength": 128 },
                                "role": { "enum": ["bl", "ven"] } } } } } },
            "responses": { "201": answer("The client and its secret.", &client) }
        }),
        Operation::ListVtnClients => json!({
            "tags": ["auth"],
            "summary": "List the OpenADR OAuth clients (admin)",
            "responses": { "200": answer("The clients, never a secret.", &json!({
                "type": "object", "required": ["clients"],
                "properties": { "clients": { "type": "array", "items": client } } })) }
        }),
        Operation::RevokeVtnClient => json!({
            "tags": ["auth"],
            "summary": "Revoke an OpenADR OAuth client (admin): its tokens stop working",
            "parameters": [{ "name": "id", "in": "path", "required": true,
                             "description": "The client id.", "schema": { "type": "string" } }],
            "responses": { "200": answer("The revoked client.", &client),
                           "404": { "description": "No such client (`unknown-object`).",
                                    "content": { "application/problem+json": {
                                        "schema": { "$ref": "#/components/schemas/Problem" } } } } }
        }),
        _ => return None,
    })
}
