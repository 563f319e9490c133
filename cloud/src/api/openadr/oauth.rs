//! OAuth 2.0 for the VTN (client credentials grant, RFC 6749 §4.4):
//! `GET /auth/server` names the token URL, `POST /auth/token` exchanges a
//! client id and secret (HTTP Basic, RFC 6749 §2.3.1, or the form body) for
//! a signed access token.
//!
//! The access token is a JWT (RFC 7519) signed with HS256 by a key the
//! database keeps (`vtn_signing_key`, made by the first process that needs
//! it, so every cloud process on one database accepts every token). Its
//! claims: `sub` the client id, `role` (`bl` or `ven`), `scope` (the spec's
//! scopes of that role), `iat`, `exp` ([`TOKEN_LIFETIME_S`] later) and
//! `iss` [`ISSUER`]. A request's token is checked for its signature, expiry
//! and issuer, and its client must still exist unrevoked.
//!
//! Clients are made by an admin: `gridlink-cloud client create` or `POST
//! /api/v1/openadr/clients` ([`issue_client`]); only the SHA-256 of the
//! secret is stored.

use std::fmt;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::auth::{RandomError, Unauthenticated, hash_token};
use crate::api::{ApiError, AppState, now_ms};
use crate::store::vtn::ClientRole;
use crate::store::{Store, StoreError};

/// Seconds an access token works.
pub const TOKEN_LIFETIME_S: u64 = 3600;
/// The `iss` claim of the VTN's tokens.
pub const ISSUER: &str = "gridlink-vtn";
/// What client secrets start with (so leaked ones are easy to find).
pub const SECRET_PREFIX: &str = "gls_";
/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/openadr3/3.1.0/auth/token";

/// The spec's scopes of a BL client.
pub const BL_SCOPES: &str = "read_all write_programs write_events write_subscriptions write_vens";
/// The spec's scopes of a VEN client.
pub const VEN_SCOPES: &str =
    "read_targets read_ven_objects write_reports write_subscriptions write_vens";

/// A new client's credentials, the secret shown once.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedClient {
    /// `c-` and 16 hex digits.
    pub client_id: String,
    /// `gls_` and 64 hex digits.
    pub secret: String,
    /// SHA-256 of the secret: what is stored.
    pub hash: [u8; 32],
}

impl fmt::Debug for IssuedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedClient")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Draws a new client id and secret.
pub fn issue_client() -> Result<IssuedClient, RandomError> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill(&mut id).map_err(|_| RandomError)?;
    rng.fill(&mut secret).map_err(|_| RandomError)?;
    let secret = format!("{SECRET_PREFIX}{}", hex(&secret));
    Ok(IssuedClient {
        client_id: format!("c-{}", hex(&id)),
        hash: hash_token(&secret),
        secret,
    })
}

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    scope: String,
    iss: String,
    iat: u64,
    exp: u64,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The client id (`sub`).
    pub client_id: String,
    /// Its role.
    pub role: ClientRole,
    /// When the token was issued, ms.
    pub issued_ms: i64,
}

/// The signing key, loaded (or made) once per process.
async fn key<S: Store>(state: &AppState<S>) -> Result<&[u8], ApiError> {
    state
        .vtn
        .key
        .get_or_try_init(|| async {
            let mut candidate = [0u8; 32];
            SystemRandom::new()
                .fill(&mut candidate)
                .map_err(|_| ApiError::Internal(Box::new(RandomError)))?;
            let key = state.store.signing_key(&candidate, now_ms()).await?;
            Ok::<_, ApiError>(key)
        })
        .await
        .map(Vec::as_slice)
}

/// Checks an access token: signature, issuer, expiry, and that its client
/// exists unrevoked with the same role.
pub async fn verify<S: Store>(state: &AppState<S>, token: &str) -> Result<Verified, ApiError> {
    let invalid = || ApiError::Unauthenticated(Unauthenticated::Invalid);
    let key = key(state).await?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "sub", "iss"]);
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .map_err(|_| invalid())?;
    let role = ClientRole::from_name(&data.claims.role).ok_or_else(invalid)?;
    let Some((client, _)) = state.store.client_with_secret(&data.claims.sub).await? else {
        return Err(invalid());
    };
    if client.revoked_ms.is_some() || client.role != role {
        return Err(invalid());
    }
    Ok(Verified {
        client_id: data.claims.sub,
        role,
        issued_ms: i64::try_from(data.claims.iat.saturating_mul(1000)).unwrap_or(i64::MAX),
    })
}

/// `GET /openadr3/3.1.0/auth/server`: the token endpoint's URL, on the
/// host and scheme the client called (`X-Forwarded-Proto` and
/// `X-Forwarded-Host` of a proxy first).
pub(crate) async fn server(headers: HeaderMap) -> Json<serde_json::Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let scheme = header("x-forwarded-proto")
        .filter(|s| s == "http" || s == "https")
        .unwrap_or_else(|| "http".into());
    let host = header("x-forwarded-host")
        .or_else(|| header(HOST.as_str()))
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or_else(|| "localhost".into());
    Json(json!({ "tokenURL": format!("{scheme}://{host}{TOKEN_PATH}") }))
}

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gridlink-vtn\""),
        );
    }
    response
}

/// The client credentials of a Basic header (RFC 6749 §2.3.1: each part
/// form-urlencoded).
fn basic(headers: &HeaderMap) -> Option<Result<(String, String), &'static str>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
        return Some(Err("the Basic credentials are not base64"));
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return Some(Err("the Basic credentials are not UTF-8"));
    };
    let Some((id, secret)) = text.split_once(':') else {
        return Some(Err("the Basic credentials have no ':'"));
    };
    let decode = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((decode(id), decode(secret))))
}

/// The members of a form body (`application/x-www-form-urlencoded`);
/// `None` if it is not UTF-8.
fn form(body: &[u8]) -> Option<Vec<(String, String)>> {
    std::str::from_utf8(body).ok()?;
    Some(
        form_urlencoded::parse(body)
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect(),
    )
}

/// Constant-time comparison of two hashes.
fn same_hash(a: &[u8], b: &[u8; 32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /openadr3/3.1.0/auth/token`.
pub(crate) async fn token<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match issue(&state, &headers, &body).await {
        Ok(response) => response,
        Err(TokenError::OAuth(status, error, description)) => {
            oauth_error(status, error, &description)
        }
        Err(TokenError::Api(error)) => error.into_response(),
    }
}

enum TokenError {
    OAuth(StatusCode, &'static str, String),
    Api(ApiError),
}

impl From<StoreError> for TokenError {
    fn from(error: StoreError) -> Self {
        Self::Api(error.into())
    }
}

impl From<ApiError> for TokenError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

fn invalid_request(description: impl Into<String>) -> TokenError {
    TokenError::OAuth(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        description.into(),
    )
}

/// The client id, secret and requested scope of a token request
/// (RFC 6749 §4.4.2, credentials per §2.3.1).
type Credentials = (String, String, Option<String>);

fn credentials(headers: &HeaderMap, body: &[u8]) -> Result<Credentials, TokenError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.split(';').next().is_some_and(|t| {
        t.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)",
        ));
    }
    let fields = form(body).ok_or_else(|| invalid_request("the body is not a valid form"))?;
    let mut grant_type = None;
    let mut form_id = None;
    let mut form_secret = None;
    let mut scope = None;
    for (name, value) in fields {
        let slot = match name.as_str() {
            "grant_type" => &mut grant_type,
            "client_id" => &mut form_id,
            "client_secret" => &mut form_secret,
            "scope" => &mut scope,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(invalid_request(format!("{name} is given more than once")));
        }
    }
    match grant_type.as_deref() {
        None => return Err(invalid_request("grant_type is missing")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(TokenError::OAuth(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported".into(),
            ));
        }
    }
    let (client_id, secret) = match (basic(headers), form_id, form_secret) {
        (Some(Err(why)), _, _) => {
            return Err(TokenError::OAuth(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                why.into(),
            ));
        }
        (Some(Ok(_)), Some(_), _) | (Some(Ok(_)), _, Some(_)) => {
            return Err(invalid_request(
                "the client credentials are given both in the Authorization header and in the \
                 body; use one (RFC 6749 §2.3)",
            ));
        }
        (Some(Ok(pair)), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return Err(TokenError::OAuth(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "no client credentials: send client_id and client_secret in a Basic \
                 Authorization header or in the body"
                    .into(),
            ));
        }
    };
    Ok((client_id, secret, scope))
}

async fn issue<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TokenError> {
    let (client_id, secret, scope) = credentials(headers, body)?;
    let refused = || {
        TokenError::OAuth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or a revoked client".into(),
        )
    };
    let Some((client, stored)) = state.store.client_with_secret(&client_id).await? else {
        return Err(refused());
    };
    if client.revoked_ms.is_some() || !same_hash(&stored, &hash_token(&secret)) {
        return Err(refused());
    }
    let scopes = match client.role {
        ClientRole::Bl => BL_SCOPES,
        ClientRole::Ven => VEN_SCOPES,
    };
    if let Some(asked) = scope.as_deref()
        && let Some(unknown) = asked
            .split(' ')
            .find(|s| !s.is_empty() && !scopes.split(' ').any(|g| g == *s))
    {
        return Err(TokenError::OAuth(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("scope {unknown:?} is not one of this client's scopes ({scopes})"),
        ));
    }
    let now_s = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let claims = Claims {
        sub: client.client_id.clone(),
        role: client.role.as_str().into(),
        scope: scopes.into(),
        iss: ISSUER.into(),
        iat: now_s,
        exp: now_s + TOKEN_LIFETIME_S,
    };
    let key = key(state).await?;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut response = Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_S,
        "scope": scopes,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_basic_credentials() {
        assert_eq!(
            form(b"grant_type=client_credentials&client_id=a%20b&scope=x+y").unwrap(),
            vec![
                ("grant_type".into(), "client_credentials".into()),
                ("client_id".into(), "a b".into()),
                ("scope".into(), "x y".into())
            ]
        );
        assert!(form(b"a=\xff").is_none());
        let mut headers = HeaderMap::new();
        // "c-1:s%3Ax" -> client c-1, secret "s:x".
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic Yy0xOnMlM0F4"),
        );
        assert_eq!(
            basic(&headers).unwrap().unwrap(),
            ("c-1".into(), "s:x".into())
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert!(basic(&headers).unwrap().is_err());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic(&headers).is_none());
    }

    #[test]
    fn issued_clients_are_random_and_hashed() {
        let a = issue_client().unwrap();
        let b = issue_client().unwrap();
        assert_ne!(a.client_id, b.client_id);
        assert!(a.secret.starts_with(SECRET_PREFIX) && a.secret.len() == 68);
        assert!(same_hash(&hash_token(&a.secret), &a.hash));
        assert!(!same_hash(&hash_token(&b.secret), &a.hash));
        assert!(!format!("{a:?}").contains(&a.secret));
    }
}
