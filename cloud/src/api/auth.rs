//! API tokens, roles and who may do what.
//!
//! A token is 32 random bytes, shown once as `glk_` followed by 64
//! lowercase hex digits. Only its SHA-256 is stored
//! ([`Store::create_token`]), and a request's token is looked up by that
//! hash ([`Store::token`]); since callers cannot choose what the hash of a
//! guess starts with, the lookup leaks nothing useful through its timing.
//!
//! Requests carry it as `Authorization: Bearer glk_...`. [`require`] is the
//! axum middleware that turns it into the caller's [`TokenRecord`]: 401 with
//! `WWW-Authenticate: Bearer` when it is missing or unknown, 403 when the
//! token's role lacks the route's [`Permission`] ([`allows`]).
//!
//! ```
//! use gridlink_cloud::api::auth::{self, Permission};
//! use gridlink_cloud::store::Role;
//!
//! let token = auth::issue_token()?;
//! assert!(token.secret.starts_with("glk_") && token.secret.len() == 68);
//! assert_eq!(auth::hash_token(&token.secret), token.hash);
//! assert!(auth::allows(Role::Viewer, Permission::ReadTelemetry));
//! assert!(!auth::allows(Role::Viewer, Permission::ManageTokens));
//! # Ok::<(), auth::RandomError>(())
//! ```

use std::fmt;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::api::{ApiError, AppState};
use crate::store::{MAX_TOKEN_NAME_LEN, Role, Store, TokenRecord};

/// What every token starts with, so leaked tokens are easy to find by
/// secret scanners.
pub const TOKEN_PREFIX: &str = "glk_";
/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Something a route needs the caller's role to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read VENs, loads, time series and network statistics.
    ReadTelemetry,
    /// Register VENs and their loads.
    RegisterVens,
    /// Create, change and cancel DR programs and events.
    Dispatch,
    /// Create API tokens.
    ManageTokens,
    /// Change a VEN's desired settings through its device shadow.
    ConfigureVens,
    /// Create and change energy projects and their finance entries.
    ManageProjects,
    /// Acknowledge alerts.
    AcknowledgeAlerts,
    /// Read the audit trail of writes (`GET /api/v1/audit`).
    ReadAuditLog,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Self; 8] = [
        Self::ReadTelemetry,
        Self::RegisterVens,
        Self::Dispatch,
        Self::ManageTokens,
        Self::ConfigureVens,
        Self::ManageProjects,
        Self::AcknowledgeAlerts,
        Self::ReadAuditLog,
    ];

    /// What the permission lets a caller do, for messages ("read telemetry").
    pub const fn description(self) -> &'static str {
        match self {
            Self::ReadTelemetry => "read telemetry",
            Self::RegisterVens => "register VENs",
            Self::Dispatch => "dispatch DR events",
            Self::ManageTokens => "manage API tokens",
            Self::ConfigureVens => "configure VENs",
            Self::ManageProjects => "manage projects",
            Self::AcknowledgeAlerts => "acknowledge alerts",
            Self::ReadAuditLog => "read the audit trail",
        }
    }
}

/// Whether `role` has `permission`: viewers read; installers read and
/// register VENs; operators read and dispatch; installers and operators
/// also configure VENs (their shadow's desired settings); operators
/// manage energy projects and their finances, acknowledge alerts; admins do
/// everything, and only they manage tokens and read the audit trail; VEN
/// clients (OpenADR) have none of these.
pub const fn allows(role: Role, permission: Permission) -> bool {
    match (role, permission) {
        (Role::Admin, _)
        | (Role::Viewer | Role::Installer | Role::Operator, Permission::ReadTelemetry)
        | (Role::Installer, Permission::RegisterVens)
        | (
            Role::Operator,
            Permission::Dispatch | Permission::ManageProjects | Permission::AcknowledgeAlerts,
        )
        | (Role::Installer | Role::Operator, Permission::ConfigureVens) => true,
        (Role::Viewer | Role::Installer | Role::Operator | Role::Ven, _) => false,
    }
}

/// A newly issued token: the secret to show once and the hash to store.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// `glk_` and 64 hex digits: what the client sends.
    pub secret: String,
    /// SHA-256 of `secret`: what the store keeps.
    pub hash: [u8; 32],
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("secret", &"<redacted>")
            .field("hash", &hex(&self.hash))
            .finish()
    }
}

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Why a token's (or API key's) name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenNameError {
    /// Empty or only spaces.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_TOKEN_NAME_LEN`] characters.
    #[error("at most {MAX_TOKEN_NAME_LEN} characters")]
    TooLong,
    /// Holds a control character.
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Checks a token's name before it is stored: 1 to 128 characters, not
/// only spaces, no control characters.
pub fn check_token_name(name: &str) -> Result<(), TokenNameError> {
    if name.trim().is_empty() {
        Err(TokenNameError::Empty)
    } else if name.chars().count() > MAX_TOKEN_NAME_LEN {
        Err(TokenNameError::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(TokenNameError::ControlCharacter)
    } else {
        Ok(())
    }
}

/// Draws a new token from the system's random number generator.
pub fn issue_token() -> Result<IssuedToken, RandomError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    let secret = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    let hash = hash_token(&secret);
    Ok(IssuedToken { secret, hash })
}

/// SHA-256 of a token as the client sends it.
pub fn hash_token(secret: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Whether `secret` has the shape of an issued token (checked before any
/// database lookup).
pub fn is_well_formed(secret: &str) -> bool {
    secret.strip_prefix(TOKEN_PREFIX).is_some_and(|digits| {
        digits.len() == 2 * TOKEN_BYTES
            && digits
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Why a request carries no usable credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No `Authorization` header, or not the `Bearer` scheme.
    Missing,
    /// A bearer token that is malformed or unknown.
    Invalid,
}

/// The bearer token of a request (RFC 6750 §2.1; the scheme is
/// case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Unauthenticated> {
    let value = headers.get(AUTHORIZATION).ok_or(Unauthenticated::Missing)?;
    let value = value.to_str().map_err(|_| Unauthenticated::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(Unauthenticated::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Unauthenticated::Missing);
    }
    let token = token.trim();
    if is_well_formed(token) {
        Ok(token)
    } else {
        Err(Unauthenticated::Invalid)
    }
}

/// The token a request was authenticated with; [`require`] puts it in the
/// request's extensions for handlers that want to know who called, and in
/// the response's (also of a 403) for the audit layer around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub TokenRecord);

/// The state of [`require`]: the app and the permission the route needs.
pub struct Guard<S> {
    /// The app, for its store.
    pub state: AppState<S>,
    /// What the route needs.
    pub permission: Permission,
}

impl<S> Clone for Guard<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            permission: self.permission,
        }
    }
}

/// Middleware: authenticates the bearer token, checks its role against the
/// guard's permission, and passes the request on with a [`Caller`].
pub async fn require<S: Store + 'static>(
    State(guard): State<Guard<S>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = authenticate(&*guard.state.store, request.headers()).await?;
    if !allows(token.role, guard.permission) {
        tracing::debug!(token = token.id, role = token.role.as_str(), permission = ?guard.permission, "forbidden");
        let mut response = ApiError::Forbidden {
            role: token.role,
            permission: guard.permission,
        }
        .into_response();
        response.extensions_mut().insert(Caller(token));
        return Ok(response);
    }
    request.extensions_mut().insert(Caller(token.clone()));
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Caller(token));
    Ok(response)
}

/// The stored token of a request's bearer token, if it is active: an
/// unknown, expired or revoked token is refused alike (401), so the answer
/// does not tell which.
pub async fn authenticate<S: Store>(
    store: &S,
    headers: &HeaderMap,
) -> Result<TokenRecord, ApiError> {
    let secret = bearer_token(headers).map_err(ApiError::Unauthenticated)?;
    let now = crate::api::now_ms();
    store
        .token(&hash_token(secret))
        .await?
        .filter(|token| token.is_active(now))
        .ok_or(ApiError::Unauthenticated(Unauthenticated::Invalid))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn permissions_by_role() {
        // Columns in the order of `Permission::ALL`: read telemetry,
        // register VENs, dispatch, manage tokens, configure VENs, manage
        // projects, acknowledge alerts, read the audit trail.
        let table = [
            (
                Role::Viewer,
                [true, false, false, false, false, false, false, false],
            ),
            (
                Role::Installer,
                [true, true, false, false, true, false, false, false],
            ),
            (
                Role::Operator,
                [true, false, true, false, true, true, true, false],
            ),
            (Role::Admin, [true; 8]),
            (Role::Ven, [false; 8]),
        ];
        for role in Role::ALL {
            assert!(table.iter().any(|(r, _)| *r == role), "{role:?} is missing");
        }
        for (role, expected) in table {
            let got = Permission::ALL.map(|p| allows(role, p));
            assert_eq!(got, expected, "{role:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_matches() {
        let a = issue_token().unwrap();
        let b = issue_token().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(is_well_formed(&a.secret), "{}", a.secret);
        assert_eq!(hash_token(&a.secret), a.hash);
        assert_ne!(hash_token(&b.secret), a.hash);
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hex(&hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn token_names() {
        assert!(check_token_name("ops dashboard").is_ok());
        assert!(check_token_name("").is_err());
        assert!(check_token_name("  ").is_err());
        assert!(check_token_name("a\nb").is_err());
        assert!(check_token_name(&"é".repeat(128)).is_ok());
        assert!(check_token_name(&"x".repeat(129)).is_err());
        assert_eq!(
            check_token_name(" ").unwrap_err().to_string(),
            "must not be empty"
        );
        assert_eq!(
            check_token_name(&"x".repeat(129)).unwrap_err().to_string(),
            "at most 128 characters"
        );
        assert_eq!(
            check_token_name("a\nb").unwrap_err().to_string(),
            "must not contain control characters"
        );
    }

    #[test]
    fn malformed_tokens_are_refused_before_lookup() {
        let good = format!("glk_{}", "0a".repeat(32));
        assert!(is_well_formed(&good));
        assert!(!is_well_formed(&good[..67]));
        assert!(!is_well_formed(&format!("glk_{}", "0A".repeat(32))));
        assert!(!is_well_formed(&format!("xyz_{}", "0a".repeat(32))));
        assert!(!is_well_formed(&format!("{good}0")));
    }

    #[test]
    fn bearer_header_parsing() {
        let token = format!("glk_{}", "ab".repeat(32));
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        assert_eq!(
            bearer_token(&headers(&format!("Bearer {token}"))),
            Ok(token.as_str())
        );
        assert_eq!(
            bearer_token(&headers(&format!("bearer  {token}"))),
            Ok(token.as_str())
        );
        assert_eq!(
            bearer_token(&HeaderMap::new()),
            Err(Unauthenticated::Missing)
        );
        assert_eq!(
            bearer_token(&headers("Basic dXNlcjpwdw==")),
            Err(Unauthenticated::Missing)
        );
        assert_eq!(
            bearer_token(&headers("Bearer nope")),
            Err(Unauthenticated::Invalid)
        );
    }
}
