//! `GET /api/v1/me`: who the bearer token is and what it may do, so the
//! dashboard shows only the actions the role allows.
//!
//! Any valid token may ask (also a `ven` token, whose permission list is
//! empty); the handler authenticates the token itself, as the route needs
//! no [`Permission`].

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::api::auth::{self, Permission};
use crate::store::Store;

/// The answer of `GET /api/v1/me`.
#[derive(Debug, Serialize)]
pub(crate) struct Me {
    /// The token's name.
    name: String,
    /// Its role (`viewer`, `operator`, `installer`, `admin`, `ven`).
    role: &'static str,
    /// What the role allows, as [`permission_name`] writes it.
    permissions: Vec<String>,
    /// The token's id.
    token_id: i64,
    /// When the token was made, ms since the Unix epoch.
    created_ms: i64,
}

/// A permission's name in answers: its variant in `snake_case`
/// (`read_telemetry`, `dispatch`, `manage_tokens`).
pub(crate) fn permission_name(permission: Permission) -> String {
    let debug = format!("{permission:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// `GET /api/v1/me`.
pub(crate) async fn me<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Json<Me>, ApiError> {
    let token = auth::authenticate(&*state.store, &headers).await?;
    let permissions = Permission::ALL
        .into_iter()
        .filter(|&p| auth::allows(token.role, p))
        .map(permission_name)
        .collect();
    Ok(Json(Me {
        name: token.name,
        role: token.role.as_str(),
        permissions,
        token_id: token.id,
        created_ms: token.created_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_are_snake_case() {
        assert_eq!(permission_name(Permission::ReadTelemetry), "read_telemetry");
        assert_eq!(permission_name(Permission::Dispatch), "dispatch");
        assert_eq!(permission_name(Permission::ManageTokens), "manage_tokens");
        for p in Permission::ALL {
            let name = permission_name(p);
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }
}
