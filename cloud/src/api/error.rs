//! The one error type of the HTTP API, answered as an RFC 7807 problem
//! document (`application/problem+json`).
//!
//! Internal causes (database errors) are logged, never sent: the client
//! gets the status, a stable `type`, a title and a detail written for it.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gridlink_protocol::VenId;
use serde::Serialize;

use crate::api::auth::{Permission, Unauthenticated};
use crate::store::{Role, StoreError};

/// The media type of problem documents (RFC 7807 §6.1).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Prefix of every problem `type`; the slug after it names the problem.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:gridlink:problem:";
/// Seconds a client should wait before retrying when the database is down.
const RETRY_AFTER_S: &str = "5";

/// `text` as a JSON string literal, for quoting what a client sent in a
/// message: `"a\u0001b"`, never Rust's debug form (`"a\u{1}b"`).
pub(crate) fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// One rejected query, path or body parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidParam {
    /// The parameter's name as the client sent it (`step`, `from`, `id`).
    pub name: String,
    /// What is wrong and what is accepted.
    pub reason: String,
}

impl InvalidParam {
    /// A rejected parameter.
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// Everything an API request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable bearer token (401).
    #[error("unauthenticated: {}", match .0 {
        Unauthenticated::Missing => "no bearer token",
        Unauthenticated::Invalid => "invalid bearer token",
    })]
    Unauthenticated(Unauthenticated),
    /// The token's role lacks the route's permission (403).
    #[error("role {} may not {}", role.as_str(), permission.description())]
    Forbidden {
        /// The caller's role.
        role: Role,
        /// What the route needs.
        permission: Permission,
    },
    /// The OpenADR client may not do this (403): why.
    #[error("forbidden: {0}")]
    VtnForbidden(&'static str),
    /// Query or path parameters that are not acceptable (400), each named.
    #[error("invalid parameters: {}", .0.iter().map(|p| format!("{}: {}", p.name, p.reason)).collect::<Vec<_>>().join("; "))]
    InvalidParams(Vec<InvalidParam>),
    /// A request body that is not acceptable: 400 (syntax), 413 (too
    /// large), 415 (not JSON) or 422 (does not fit the schema).
    #[error("invalid body ({status}): {detail}")]
    InvalidBody {
        /// The status to answer with.
        status: StatusCode,
        /// What is wrong, for the client.
        detail: String,
    },
    /// No such VEN (404).
    #[error("unknown VEN {0}")]
    UnknownVen(VenId),
    /// The VEN has no device shadow yet (404).
    #[error("no shadow for {0}")]
    NoShadow(VenId),
    /// This cloud does not run the device shadow (`shadow.enabled =
    /// false`: the broker's shadow service keeps it) (503).
    #[error("the device shadow is not served here")]
    ShadowOff,
    /// No such OpenADR object (404): its kind (`program`, `event`) and id.
    #[error("unknown {0} {1}")]
    UnknownObject(&'static str, gridlink_protocol::ObjectId),
    /// No route has this path (404).
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not with this method (405).
    #[error("method {0} not allowed")]
    MethodNotAllowed(Method),
    /// A unique constraint refused the write (409).
    #[error("conflict: {0}")]
    Conflict(#[source] StoreError),
    /// The store refused a value (422).
    #[error("unprocessable: {0}")]
    Unprocessable(#[source] StoreError),
    /// The database is unreachable (503, with `Retry-After`).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// No valid `x-api-key` (missing, malformed, unknown or revoked: the
    /// answer does not say which) (401).
    #[error("no valid API key")]
    InvalidApiKey,
    /// The API key may not write this VEN (403).
    #[error("the API key may not write VEN {0}")]
    VenNotAllowed(VenId),
    /// The API key sent more requests than its rate allows (429, with
    /// `Retry-After`).
    #[error("rate limited; retry after {0} s")]
    RateLimited(u64),
    /// Anything else (500); logged, never described to the client.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// One invalid parameter.
    pub fn invalid_param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParams(vec![InvalidParam::new(name, reason)])
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::VenNotAllowed(_) | Self::VtnForbidden(_) => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidParams(_) => StatusCode::BAD_REQUEST,
            Self::InvalidBody { status, .. } => *status,
            Self::UnknownVen(_)
            | Self::UnknownObject(..)
            | Self::NoShadow(_)
            | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) | Self::ShadowOff => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's slug (after [`PROBLEM_TYPE_PREFIX`]).
    pub const fn slug(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) | Self::InvalidApiKey => "unauthenticated",
            Self::Forbidden { .. } | Self::VenNotAllowed(_) | Self::VtnForbidden(_) => "forbidden",
            Self::RateLimited(_) => "rate-limited",
            Self::InvalidParams(_) => "invalid-parameter",
            Self::InvalidBody { .. } => "invalid-body",
            Self::UnknownVen(_) => "unknown-ven",
            Self::UnknownObject(..) => "unknown-object",
            Self::NoShadow(_) => "no-shadow",
            Self::ShadowOff => "shadow-off",
            Self::NoRoute(_) => "not-found",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::Unprocessable(_) => "unprocessable",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) | Self::InvalidApiKey => "Authentication required",
            Self::Forbidden { .. } | Self::VenNotAllowed(_) | Self::VtnForbidden(_) => "Forbidden",
            Self::RateLimited(_) => "Too many requests",
            Self::InvalidParams(_) => "Invalid parameter",
            Self::InvalidBody { .. } => "Invalid request body",
            Self::UnknownVen(_) => "Unknown VEN",
            Self::UnknownObject(..) => "Unknown object",
            Self::NoShadow(_) => "No shadow",
            Self::ShadowOff => "Shadow not served here",
            Self::NoRoute(_) => "Not found",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::Conflict(_) => "Conflict",
            Self::Unprocessable(_) => "Unprocessable value",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Unauthenticated(Unauthenticated::Missing) => {
                "this route needs an `Authorization: Bearer <token>` header".into()
            }
            Self::Unauthenticated(Unauthenticated::Invalid) => {
                "the bearer token is not valid".into()
            }
            Self::Forbidden { role, permission } => format!(
                "a token with role {} may not {}",
                role.as_str(),
                permission.description()
            ),
            Self::VtnForbidden(why) => (*why).to_owned(),
            Self::InvalidApiKey => {
                "this route needs a valid, unrevoked API key in the `x-api-key` header".into()
            }
            Self::VenNotAllowed(ven) => {
                format!(
                    "ven_id: this API key may not write VEN {}",
                    quoted(ven.as_str())
                )
            }
            Self::RateLimited(seconds) => {
                format!(
                    "this API key sent more requests than its rate allows; retry in {seconds} s"
                )
            }
            Self::InvalidParams(params) => params
                .iter()
                .map(|p| format!("{}: {}", p.name, p.reason))
                .collect::<Vec<_>>()
                .join("; "),
            Self::InvalidBody { detail, .. } => detail.clone(),
            Self::UnknownVen(ven) => format!("no VEN {} is known", quoted(ven.as_str())),
            Self::UnknownObject(kind, id) => format!("no {kind} {} exists", quoted(id.as_str())),
            Self::NoShadow(ven) => format!("No shadow exists with name: {ven}"),
            Self::ShadowOff => {
                "this cloud does not run the device shadow (shadow.enabled = false): \
                the broker's shadow service (AWS IoT) keeps it"
                    .into()
            }
            Self::NoRoute(path) => {
                format!("no route for {path}; the routes are listed in /openapi.json")
            }
            Self::MethodNotAllowed(method) => {
                format!("{method} is not allowed here; see the Allow header")
            }
            Self::Conflict(StoreError::Conflict(reason))
            | Self::Unprocessable(StoreError::Invalid(reason)) => reason.clone(),
            Self::Conflict(_) => "the request conflicts with what is stored".into(),
            Self::Unprocessable(_) => "the request refers to something that does not exist".into(),
            Self::Unavailable(_) => "the database is unavailable; retry later".into(),
            Self::Internal(_) => "an internal error occurred; it has been logged".into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            StoreError::UniqueViolation(_) | StoreError::Conflict(_) => Self::Conflict(error),
            StoreError::ForeignKeyViolation(_) | StoreError::Invalid(_) => {
                Self::Unprocessable(error)
            }
            _ => Self::Internal(Box::new(error)),
        }
    }
}

/// The body of a problem response.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid_params: Option<Vec<InvalidParam>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(_) => tracing::error!(error = %ErrorChain(&self), "request failed"),
            Self::Unavailable(_) => tracing::warn!(error = %ErrorChain(&self), "request failed"),
            Self::Conflict(_) | Self::Unprocessable(_) => {
                tracing::info!(error = %ErrorChain(&self), "request refused by the store");
            }
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let problem = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.detail(),
            instance: match &self {
                Self::NoRoute(path) => Some(path.clone()),
                _ => None,
            },
            invalid_params: match &self {
                Self::InvalidParams(params) => Some(params.clone()),
                // What a body problem is about: the header for a 415, the
                // body itself otherwise.
                Self::InvalidBody { status, detail } => Some(vec![InvalidParam::new(
                    if *status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                        "Content-Type"
                    } else {
                        "body"
                    },
                    detail.clone(),
                )]),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        match &self {
            Self::Unauthenticated(Unauthenticated::Missing) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gridlink\""),
                );
            }
            Self::Unauthenticated(Unauthenticated::Invalid) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"gridlink\", error=\"invalid_token\""),
                );
            }
            Self::Unavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
            }
            Self::InvalidApiKey => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("ApiKey realm=\"gridlink\", header=\"x-api-key\""),
                );
            }
            Self::RateLimited(seconds) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*seconds));
            }
            _ => {}
        }
        response
    }
}

/// Displays an error with its causes: `a: b: c`.
struct ErrorChain<'e>(&'e (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn invalid_params_are_named_in_detail_and_extension() {
        let error = ApiError::InvalidParams(vec![
            InvalidParam::new("step", "too small"),
            InvalidParam::new("from", "not a time"),
        ]);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        let json = body(response).await;
        assert_eq!(json["type"], "urn:gridlink:problem:invalid-parameter");
        assert_eq!(json["status"], 400);
        assert_eq!(json["detail"], "step: too small; from: not a time");
        assert_eq!(json["invalid_params"][1]["name"], "from");
        assert!(json.get("instance").is_none());
    }

    #[tokio::test]
    async fn internal_causes_are_not_leaked() {
        let error = ApiError::from(StoreError::Database(sqlx::Error::Protocol(
            "secret table xyz".into(),
        )));
        assert!(matches!(error, ApiError::Internal(_)));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body(response).await.to_string();
        assert!(!text.contains("xyz"), "{text}");
    }

    #[tokio::test]
    async fn unavailable_database_is_503_with_retry_after() {
        let response =
            ApiError::from(StoreError::Unavailable(sqlx::Error::PoolTimedOut)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "5");
        let response = ApiError::from(StoreError::from(sqlx::Error::PoolTimedOut)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn unauthenticated_answers_carry_the_bearer_challenge() {
        let response = ApiError::Unauthenticated(Unauthenticated::Missing).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"gridlink\""
        );
        let response = ApiError::Unauthenticated(Unauthenticated::Invalid).into_response();
        assert!(
            response.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        let response = ApiError::Forbidden {
            role: Role::Viewer,
            permission: Permission::ManageTokens,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(
            body(response).await["detail"],
            "a token with role viewer may not manage API tokens"
        );
    }

    #[test]
    fn store_invalid_is_422_with_its_reason() {
        let error = ApiError::from(StoreError::Invalid("name too long".into()));
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.detail(), "name too long");
    }
}
