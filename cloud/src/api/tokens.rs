//! `/api/v1/tokens` (admin only): issue an API token (`POST`; the secret
//! is in this one answer, sent with `Cache-Control: no-store`, and only its
//! hash is stored), list them without secrets (`GET`) and revoke one
//! (`DELETE /api/v1/tokens/{id}`).
//!
//! A token issued here expires: after [`DEFAULT_TOKEN_LIFETIME_S`] (90
//! days) unless the request sets `expires_in_s` or `expires_ms` (at most
//! [`MAX_TOKEN_LIFETIME_S`] ahead). Only the CLI issues tokens that never
//! expire (`gridlink-cloud token create --no-expiry`), as tokens stored
//! before expiry existed keep working without one.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use serde_json::{Value, json};

use super::body::JsonBody;
use super::error::{ApiError, InvalidParam};
use super::{AppState, Operation, now_ms};
use crate::api::auth::{self, Caller, check_token_name};
use crate::store::{Role, Store, TokenRecord};

/// How long a token issued through the API lives when the request does
/// not say: 90 days.
pub const DEFAULT_TOKEN_LIFETIME_S: u64 = 90 * 86_400;
/// The longest lifetime a token may be issued with: 10 years (365-day).
pub const MAX_TOKEN_LIFETIME_S: u64 = 10 * 365 * 86_400;

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    name: String,
    role: String,
    /// Seconds from now until it expires.
    #[serde(default)]
    expires_in_s: Option<u64>,
    /// When it expires, ms since the Unix epoch.
    #[serde(default)]
    expires_ms: Option<i64>,
}

/// The answer: the stored record and, once, the secret.
#[derive(Debug, Serialize)]
pub(crate) struct TokenCreated {
    #[serde(flatten)]
    view: TokenView,
    token: String,
}

/// A token as listed: never its secret or hash.
#[derive(Debug, Serialize)]
pub(crate) struct TokenView {
    id: i64,
    name: String,
    role: &'static str,
    created_ms: i64,
    expires_ms: Option<i64>,
    revoked_ms: Option<i64>,
    /// Neither revoked nor expired now.
    active: bool,
}

impl TokenView {
    fn new(record: TokenRecord, now_ms: i64) -> Self {
        Self {
            active: record.is_active(now_ms),
            id: record.id,
            name: record.name,
            role: record.role.as_str(),
            created_ms: record.created_ms,
            expires_ms: record.expires_ms,
            revoked_ms: record.revoked_ms,
        }
    }
}

/// The answer of `GET /api/v1/tokens`.
#[derive(Debug, Serialize)]
pub(crate) struct TokenList {
    tokens: Vec<TokenView>,
}

/// When a requested token expires: `expires_in_s` or `expires_ms` (not
/// both), else the default lifetime; never past the longest one.
fn expiry(request: &TokenRequest, now_ms: i64, errors: &mut Vec<InvalidParam>) -> Option<i64> {
    let max_ms = i64::try_from(MAX_TOKEN_LIFETIME_S * 1000).unwrap_or(i64::MAX);
    match (request.expires_in_s, request.expires_ms) {
        (Some(_), Some(_)) => {
            errors.push(InvalidParam::new(
                "expires_ms",
                "give expires_in_s or expires_ms, not both",
            ));
            None
        }
        (Some(seconds), None) => {
            if (1..=MAX_TOKEN_LIFETIME_S).contains(&seconds) {
                Some(now_ms.saturating_add(i64::try_from(seconds * 1000).unwrap_or(max_ms)))
            } else {
                errors.push(InvalidParam::new(
                    "expires_in_s",
                    format!("must be 1 to {MAX_TOKEN_LIFETIME_S} seconds"),
                ));
                None
            }
        }
        (None, Some(at)) => {
            if at > now_ms && at <= now_ms.saturating_add(max_ms) {
                Some(at)
            } else {
                errors.push(InvalidParam::new(
                    "expires_ms",
                    format!(
                        "must be in the future, at most {MAX_TOKEN_LIFETIME_S} seconds from now"
                    ),
                ));
                None
            }
        }
        (None, None) => Some(
            now_ms.saturating_add(i64::try_from(DEFAULT_TOKEN_LIFETIME_S * 1000).unwrap_or(max_ms)),
        ),
    }
}

/// `POST /api/v1/tokens` with `{"name": "...", "role": "viewer"}`
/// and optionally `"expires_in_s"` or `"expires_ms"`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(Caller(caller)): axum::Extension<Caller>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    if let Err(reason) = check_token_name(&request.name) {
        errors.push(InvalidParam::new("name", reason.to_string()));
    }
    let role = Role::from_name(&request.role);
    if role.is_none() {
        let names: Vec<&str> = Role::ALL.into_iter().map(Role::as_str).collect();
        errors.push(InvalidParam::new(
            "role",
            format!(
                "unknown role {}; expected one of {}",
                super::error::quoted(&request.role),
                names.join(", ")
            ),
        ));
    }
    let now = now_ms();
    let expires_ms = expiry(&request, now, &mut errors);
    let Some(role) = role.filter(|_| errors.is_empty()) else {
        return Err(ApiError::InvalidParams(errors));
    };
    let issued = auth::issue_token().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let record = state
        .store
        .create_expiring_token(&request.name, role, &issued.hash, now, expires_ms)
        .await?;
    tracing::info!(
        token = record.id,
        name = record.name,
        role = record.role.as_str(),
        by = caller.id,
        "API token created"
    );
    let created = TokenCreated {
        view: TokenView::new(record, now),
        token: issued.secret,
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/tokens`: every token (revoked and expired ones too), by id.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<TokenList>, ApiError> {
    let now = now_ms();
    let tokens = state.store.tokens().await?;
    Ok(Json(TokenList {
        tokens: tokens.into_iter().map(|t| TokenView::new(t, now)).collect(),
    }))
}

/// `DELETE /api/v1/tokens/{id}`: revokes the token at once (204; again for
/// a revoked token); 404 for an unknown id; 409 for the last active admin
/// token.
pub(crate) async fn revoke<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(Caller(caller)): axum::Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = super::params::path_positive_id(path, "must be a token id (a positive integer)")?;
    match state.store.revoke_token(id, now_ms()).await? {
        Some(record) => {
            tracing::info!(token = record.id, by = caller.id, "API token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(super::params::unknown_id("API token", id)),
    }
}

/// The `OpenAPI` descriptions of listing and revoking tokens.
pub(crate) fn describe(operation: Operation) -> Option<Value> {
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
        })
    };
    Some(match operation {
        Operation::ListTokens => json!({
            "tags": ["auth"],
            "summary": "List the API tokens (admin)",
            "description": "Every token, revoked and expired ones too, by id; never a secret or hash.",
            "responses": {
                "200": {
                    "description": "The tokens.",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/TokenList" } } }
                }
            }
        }),
        Operation::RevokeToken => json!({
            "tags": ["auth"],
            "summary": "Revoke an API token (admin)",
            "description": "The token is refused (401) from the next request on. Revoking a revoked \
                token answers 204 again. The last active admin token cannot be revoked (409): no one \
                could manage tokens through the API any more.",
            "parameters": [{
                "name": "id", "in": "path", "required": true, "description": "The token's id.",
                "schema": { "type": "integer", "minimum": 1 }
            }],
            "responses": {
                "204": { "description": "Revoked." },
                "400": { "$ref": "#/components/responses/BadRequest" },
                "404": problem("No such token (`unknown-object`)."),
                "409": problem("It is the last active admin token (`conflict`).")
            }
        }),
        _ => return None,
    })
}

/// The `OpenAPI` schemas of the token list.
pub(crate) fn schemas() -> Value {
    let roles: Vec<&str> = Role::ALL.into_iter().map(Role::as_str).collect();
    let nullable = |kind: &str, description: &str| json!({ "type": [kind, "null"], "description": description });
    json!({
        "Token": {
            "type": "object",
            "required": ["id", "name", "role", "created_ms", "expires_ms", "revoked_ms", "active"],
            "properties": {
                "id": { "type": "integer" },
                "name": { "type": "string" },
                "role": { "type": "string", "enum": roles },
                "created_ms": { "type": "integer" },
                "expires_ms": nullable("integer", "When it stops working; null: never."),
                "revoked_ms": nullable("integer", "When it was revoked; null: not revoked."),
                "active": { "type": "boolean", "description": "Neither revoked nor expired now." }
            }
        },
        "TokenList": {
            "type": "object",
            "required": ["tokens"],
            "properties": { "tokens": { "type": "array", "items": { "$ref": "#/components/schemas/Token" } } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(expires_in_s: Option<u64>, expires_ms: Option<i64>) -> TokenRequest {
        TokenRequest {
            name: "n".into(),
            role: "viewer".into(),
            expires_in_s,
            expires_ms,
        }
    }

    #[test]
    fn expiries() {
        let now = 1_000_000;
        let mut errors = Vec::new();
        let default = i64::try_from(DEFAULT_TOKEN_LIFETIME_S * 1000).unwrap();
        assert_eq!(
            expiry(&request(None, None), now, &mut errors),
            Some(now + default)
        );
        assert_eq!(
            expiry(&request(Some(60), None), now, &mut errors),
            Some(now + 60_000)
        );
        assert_eq!(
            expiry(&request(None, Some(now + 5)), now, &mut errors),
            Some(now + 5)
        );
        assert!(errors.is_empty());
        for bad in [
            request(Some(60), Some(now + 5)),
            request(Some(0), None),
            request(Some(MAX_TOKEN_LIFETIME_S + 1), None),
            request(None, Some(now)),
        ] {
            let mut errors = Vec::new();
            assert_eq!(expiry(&bad, now, &mut errors), None);
            assert_eq!(errors.len(), 1, "{bad:?}");
        }
    }
}
