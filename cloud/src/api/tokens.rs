//! `POST /api/v1/tokens`: issue an API token (admin only). The secret is
//! in this one answer (sent with `Cache-Control: no-store`); only its hash
//! is stored.

use axum::Json;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, InvalidParam};
use crate::auth::{self, Caller, check_token_name};
use crate::store::{Role, Store};

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    name: String,
    role: String,
}

/// The answer: the stored record and, once, the secret.
#[derive(Debug, Serialize)]
pub(crate) struct TokenCreated {
    id: i64,
    name: String,
    role: &'static str,
    created_ms: i64,
    token: String,
}

/// `POST /api/v1/tokens` with `{"name": "...", "role": "viewer"}`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(Caller(caller)): axum::Extension<Caller>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    if let Err(reason) = check_token_name(&request.name) {
        errors.push(InvalidParam::new("name", reason));
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
    let Some(role) = role.filter(|_| errors.is_empty()) else {
        return Err(ApiError::InvalidParams(errors));
    };
    let issued = auth::issue_token().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let record = state
        .store
        .create_token(&request.name, role, &issued.hash)
        .await?;
    tracing::info!(
        token = record.id,
        name = record.name,
        role = record.role.as_str(),
        by = caller.id,
        "API token created"
    );
    let created = TokenCreated {
        id: record.id,
        name: record.name,
        role: record.role.as_str(),
        created_ms: record.created_ms,
        token: issued.secret,
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
