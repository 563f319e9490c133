//! API keys for HTTP ingest, managed by admins: `POST /api/v1/api-keys`
//! (the key is in this one answer, sent with `Cache-Control: no-store`),
//! `GET /api/v1/api-keys` (without secrets) and `DELETE
//! /api/v1/api-keys/{id}` (revoke).
//!
//! A key is `gli_`, the key's id in decimal, `_`, and 64 lowercase hex
//! digits of a 32-byte secret from the system's random number generator:
//! `gli_12_9f86d0...`. The store keeps the SHA-256 of the secret part
//! only. A request's key is looked up by its id (not secret) and its
//! secret's hash compared with the stored one in constant time
//! ([`authenticate_api_key`]), so neither the lookup nor the comparison
//! tells a guesser how much of a secret was right.
//!
//! ```
//! use gridlink_cloud::api::{ApiKeySecret, parse_api_key};
//!
//! let secret = ApiKeySecret::generate()?;
//! let key = secret.key(42);
//! assert!(key.starts_with("gli_42_") && key.len() == "gli_42_".len() + 64);
//! let (id, part) = parse_api_key(&key).unwrap();
//! assert_eq!((id, part), (42, secret.secret()));
//! assert!(parse_api_key("gli_42_xyz").is_none());
//! # Ok::<(), gridlink_cloud::api::auth::RandomError>(())
//! ```

use std::fmt;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gridlink_protocol::VenId;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, InvalidParam};
use super::now_ms;
use crate::api::auth::{self, Caller, RandomError, check_token_name};
use crate::store::{
    ApiKeyRecord, MAX_API_KEY_VENS, MAX_CUSTOMER_LEN, NewApiKey, Store, StoredApiKey,
};

/// What every API key starts with (API tokens start with `glk_`).
pub const API_KEY_PREFIX: &str = "gli_";
/// The header HTTP ingest reads the key from.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Random bytes in a key's secret.
const SECRET_BYTES: usize = 32;

/// A new key's secret: shown once (inside the key), only its hash stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret {
    secret: String,
    hash: [u8; 32],
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl ApiKeySecret {
    /// Draws 32 bytes from the system's random number generator.
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = [0u8; SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| RandomError)?;
        let secret = bytes.iter().fold(String::with_capacity(64), |mut out, b| {
            use fmt::Write as _;
            let _ = write!(out, "{b:02x}");
            out
        });
        let hash = auth::hash_token(&secret);
        Ok(Self { secret, hash })
    }

    /// The secret part (64 hex digits).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// SHA-256 of the secret part: what the store keeps.
    pub const fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The whole key of the stored key `id`: `gli_{id}_{secret}`.
    pub fn key(&self, id: i64) -> String {
        format!("{API_KEY_PREFIX}{id}_{}", self.secret)
    }
}

/// The id and secret part of a well-formed key; `None` otherwise.
pub fn parse_api_key(key: &str) -> Option<(i64, &str)> {
    let (id, secret) = key.strip_prefix(API_KEY_PREFIX)?.split_once('_')?;
    let well_formed = !id.is_empty()
        && id.len() <= 18
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() == 2 * SECRET_BYTES
        && secret
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return None;
    }
    Some((id.parse().ok()?, secret))
}

/// Equality of two hashes in time independent of where they differ.
fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// The stored, unrevoked key a request's `x-api-key` header names, or
/// [`ApiError::InvalidApiKey`] whatever is wrong with it (missing,
/// malformed, unknown id, wrong secret, revoked). A database failure is
/// [`ApiError::Unavailable`] (503).
pub async fn authenticate_api_key<S: Store>(
    store: &S,
    headers: &HeaderMap,
) -> Result<ApiKeyRecord, ApiError> {
    let key = headers
        .get(API_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .ok_or(ApiError::InvalidApiKey)?;
    let (id, secret) = parse_api_key(key).ok_or(ApiError::InvalidApiKey)?;
    let hash = auth::hash_token(secret);
    let Some(StoredApiKey {
        record,
        hash: stored,
    }) = store.api_key(id).await?
    else {
        return Err(ApiError::InvalidApiKey);
    };
    if !hashes_equal(&hash, &stored) || record.revoked_ms.is_some() {
        return Err(ApiError::InvalidApiKey);
    }
    Ok(record)
}

/// The body of `POST /api/v1/api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyRequest {
    name: String,
    customer: String,
    ven_ids: Vec<String>,
}

/// A key as listed (never with its secret).
#[derive(Debug, Serialize)]
pub(crate) struct ApiKeyView {
    id: i64,
    name: String,
    customer: String,
    ven_ids: Vec<String>,
    created_ms: i64,
    revoked_ms: Option<i64>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            customer: record.customer,
            ven_ids: record
                .ven_ids
                .iter()
                .map(|v| v.as_str().to_owned())
                .collect(),
            created_ms: record.created_ms,
            revoked_ms: record.revoked_ms,
        }
    }
}

/// The answer of `POST /api/v1/api-keys`: the key as listed and, once,
/// the key itself.
#[derive(Debug, Serialize)]
pub(crate) struct ApiKeyCreated {
    #[serde(flatten)]
    view: ApiKeyView,
    key: String,
}

/// The answer of `GET /api/v1/api-keys`.
#[derive(Debug, Serialize)]
pub(crate) struct ApiKeyList {
    api_keys: Vec<ApiKeyView>,
}

/// Checks a request; every bad field is named.
fn check(request: ApiKeyRequest) -> Result<(String, String, Vec<VenId>), ApiError> {
    let mut errors = Vec::new();
    if let Err(reason) = check_token_name(&request.name) {
        errors.push(InvalidParam::new("name", reason.to_string()));
    }
    if request.customer.trim().is_empty()
        || request.customer.chars().count() > MAX_CUSTOMER_LEN
        || request.customer.chars().any(char::is_control)
    {
        errors.push(InvalidParam::new(
            "customer",
            format!("must be 1 to {MAX_CUSTOMER_LEN} characters without control characters"),
        ));
    }
    if request.ven_ids.is_empty() || request.ven_ids.len() > MAX_API_KEY_VENS {
        errors.push(InvalidParam::new(
            "ven_ids",
            format!("must name 1 to {MAX_API_KEY_VENS} VENs"),
        ));
    }
    let mut vens = Vec::with_capacity(request.ven_ids.len());
    for (i, ven) in request.ven_ids.into_iter().enumerate() {
        match VenId::new(ven) {
            Ok(ven) => vens.push(ven),
            Err(e) => errors.push(InvalidParam::new(format!("ven_ids[{i}]"), e.to_string())),
        }
    }
    if errors.is_empty() {
        vens.sort();
        vens.dedup();
        Ok((request.name, request.customer, vens))
    } else {
        Err(ApiError::InvalidParams(errors))
    }
}

/// `POST /api/v1/api-keys` with `{"name": "...", "customer": "...",
/// "ven_ids": ["..."]}`: 201 with the key, registering unknown VENs.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(Caller(caller)): axum::Extension<Caller>,
    JsonBody(request): JsonBody<ApiKeyRequest>,
) -> Result<Response, ApiError> {
    let (name, customer, ven_ids) = check(request)?;
    let secret = ApiKeySecret::generate().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let new = NewApiKey {
        name,
        customer,
        ven_ids,
        hash: secret.hash(),
    };
    let record = state.store.create_api_key(&new, now_ms()).await?;
    tracing::info!(
        api_key = record.id,
        name = record.name,
        customer = record.customer,
        vens = record.ven_ids.len(),
        by = caller.id,
        "API key created"
    );
    let created = ApiKeyCreated {
        key: secret.key(record.id),
        view: record.into(),
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /api/v1/api-keys`: every key, revoked ones too, by id.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = state.store.api_keys().await?;
    Ok(Json(ApiKeyList {
        api_keys: keys.into_iter().map(ApiKeyView::from).collect(),
    }))
}

/// `DELETE /api/v1/api-keys/{id}`: revokes the key at once (204; again
/// for a revoked key); 404 for an unknown id.
pub(crate) async fn revoke<S: Store>(
    State(state): State<AppState<S>>,
    axum::Extension(Caller(caller)): axum::Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = super::params::path_positive_id(path, "must be a key id (a positive integer)")?;
    match state.store.revoke_api_key(id, now_ms()).await? {
        Some(record) => {
            tracing::info!(api_key = record.id, by = caller.id, "API key revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(super::params::unknown_id("API key", id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_malformed_ones_are_refused() {
        let secret = ApiKeySecret::generate().unwrap();
        let other = ApiKeySecret::generate().unwrap();
        assert_ne!(secret.secret(), other.secret());
        assert_eq!(secret.hash(), auth::hash_token(secret.secret()));
        let key = secret.key(7);
        assert_eq!(parse_api_key(&key), Some((7, secret.secret())));
        assert!(!format!("{secret:?}").contains(secret.secret()));
        let hex = "ab".repeat(32);
        for bad in [
            format!("glk_{hex}"),
            format!("gli_{hex}"),
            format!("gli_x_{hex}"),
            format!("gli__{hex}"),
            format!("gli_1_{}", &hex[1..]),
            format!("gli_1_{hex}0"),
            format!("gli_1_{}", hex.to_uppercase()),
            format!("gli_-1_{hex}"),
            format!("gli_{}_{hex}", "9".repeat(19)),
        ] {
            assert_eq!(parse_api_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_comparison() {
        let a = [3u8; 32];
        let mut b = a;
        assert!(hashes_equal(&a, &b));
        b[31] ^= 1;
        assert!(!hashes_equal(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!hashes_equal(&a, &b));
    }

    #[test]
    fn requests_name_each_bad_field() {
        let request = ApiKeyRequest {
            name: String::new(),
            customer: "ACME".into(),
            ven_ids: vec!["ok-1".into(), "not/ok".into()],
        };
        let Err(ApiError::InvalidParams(errors)) = check(request) else {
            panic!("refused");
        };
        let names: Vec<&str> = errors.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["name", "ven_ids[1]"]);
        let request = ApiKeyRequest {
            name: "n".into(),
            customer: "ACME".into(),
            ven_ids: vec!["b".into(), "a".into(), "b".into()],
        };
        let (_, _, vens) = check(request).unwrap();
        assert_eq!(
            vens.iter().map(VenId::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
