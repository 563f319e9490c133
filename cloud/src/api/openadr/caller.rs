//! Who calls the VTN: the middleware [`require`] turns a request's bearer
//! token into a [`VtnCaller`], a business-logic (BL) or VEN client.
//!
//! Two kinds of bearer token are accepted:
//!
//! - an access token from `/auth/token` (OAuth 2.0 client credentials, a
//!   JWT signed by the VTN, see [`super::oauth`]): its client's role (BL or
//!   VEN) and client id (`sub`); a revoked client's tokens stop working at
//!   once;
//! - an API token of `/api/v1` (`glk_...`): admin and operator tokens are
//!   BL clients that may write programs and events; admin and installer
//!   tokens BL clients that may write VENs and resources; viewer tokens BL
//!   clients that only read; a `ven`-role token is the VEN client whose
//!   client id is the token's name.
//!
//! Either way the caller goes into the request's extensions for the
//! handlers, and (as an API token record, see [`audit_caller`]) into the
//! response's for the audit trail.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::oauth;
use crate::api::auth::{self, Caller, Unauthenticated};
use crate::api::{ApiError, AppState};
use crate::store::vtn::ClientRole;
use crate::store::{Role, Store, TokenRecord};

/// What a BL caller may write besides reports and subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlRights {
    /// Programs and events.
    pub dispatch: bool,
    /// VENs and resources (and the targets they are granted).
    pub vens: bool,
}

/// The client calling the VTN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VtnCaller {
    /// Business logic: reads everything.
    Bl {
        /// Its client id (or API token name).
        client_id: String,
        /// What it may write.
        rights: BlRights,
    },
    /// A VEN: reads what it owns and what it is targeted by.
    Ven {
        /// Its client id, written into the objects it creates.
        client_id: String,
    },
}

impl VtnCaller {
    /// The caller's client id.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Bl { client_id, .. } | Self::Ven { client_id } => client_id,
        }
    }

    /// Whether it is a VEN client.
    pub const fn is_ven(&self) -> bool {
        matches!(self, Self::Ven { .. })
    }

    /// Ok for a BL client that may write programs and events.
    pub fn may_dispatch(&self) -> Result<(), ApiError> {
        match self {
            Self::Bl { rights, .. } if rights.dispatch => Ok(()),
            Self::Bl { .. } => Err(ApiError::VtnForbidden(
                "this client may not write programs or events (a BL client with dispatch \
                 rights may: an OAuth BL client, or an admin or operator API token)",
            )),
            Self::Ven { .. } => Err(ApiError::VtnForbidden(
                "VEN clients may not write programs or events",
            )),
        }
    }

    /// Ok for a VEN client, or a BL client that may write VENs.
    pub fn may_write_vens(&self) -> Result<(), ApiError> {
        match self {
            Self::Bl { rights, .. } if !rights.vens => Err(ApiError::VtnForbidden(
                "this client may not write VENs or resources (an OAuth BL client, or an admin \
                 or installer API token may)",
            )),
            _ => Ok(()),
        }
    }
}

fn from_token(token: &TokenRecord) -> VtnCaller {
    match token.role {
        Role::Ven => VtnCaller::Ven {
            client_id: token.name.clone(),
        },
        role => VtnCaller::Bl {
            client_id: format!("token-{}", token.id),
            rights: BlRights {
                dispatch: auth::allows(role, auth::Permission::Dispatch),
                vens: auth::allows(role, auth::Permission::RegisterVens),
            },
        },
    }
}

/// The API token record the audit trail records for an OAuth client: id 0,
/// the name `oauth:<clientID>`, role operator for BL and ven for VENs.
pub fn audit_caller(client_id: &str, role: ClientRole, issued_ms: i64) -> TokenRecord {
    TokenRecord {
        id: 0,
        name: format!("oauth:{client_id}"),
        role: match role {
            ClientRole::Bl => Role::Operator,
            ClientRole::Ven => Role::Ven,
        },
        created_ms: issued_ms,
        expires_ms: None,
        revoked_ms: None,
    }
}

/// Middleware: authenticates the caller (401 with `WWW-Authenticate:
/// Bearer` when the token is missing, unknown, expired or revoked) and
/// passes the request on with its [`VtnCaller`].
pub async fn require<S: Store + 'static>(
    State(state): State<AppState<S>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (caller, record) = authenticate(&state, request.headers()).await?;
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Caller(record));
    Ok(response)
}

async fn authenticate<S: Store>(
    state: &AppState<S>,
    headers: &axum::http::HeaderMap,
) -> Result<(VtnCaller, TokenRecord), ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::Unauthenticated(Unauthenticated::Missing));
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(Unauthenticated::Invalid))?;
    let Some((scheme, token)) = text.split_once(' ') else {
        return Err(ApiError::Unauthenticated(Unauthenticated::Missing));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated(Unauthenticated::Missing));
    }
    let token = token.trim();
    if auth::is_well_formed(token) {
        let record = auth::authenticate(&*state.store, headers).await?;
        return Ok((from_token(&record), record));
    }
    let claims = oauth::verify(state, token).await?;
    let caller = match claims.role {
        ClientRole::Bl => VtnCaller::Bl {
            client_id: claims.client_id.clone(),
            rights: BlRights {
                dispatch: true,
                vens: true,
            },
        },
        ClientRole::Ven => VtnCaller::Ven {
            client_id: claims.client_id.clone(),
        },
    };
    let record = audit_caller(&claims.client_id, claims.role, claims.issued_ms);
    Ok((caller, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role) -> TokenRecord {
        TokenRecord {
            id: 7,
            name: "site-7".into(),
            role,
            created_ms: 0,
            expires_ms: None,
            revoked_ms: None,
        }
    }

    #[test]
    fn api_tokens_map_to_clients() {
        assert_eq!(
            from_token(&token(Role::Ven)),
            VtnCaller::Ven {
                client_id: "site-7".into()
            }
        );
        let rights = |role| match from_token(&token(role)) {
            VtnCaller::Bl { rights, .. } => (rights.dispatch, rights.vens),
            VtnCaller::Ven { .. } => panic!("{role:?} is BL"),
        };
        assert_eq!(rights(Role::Admin), (true, true));
        assert_eq!(rights(Role::Operator), (true, false));
        assert_eq!(rights(Role::Installer), (false, true));
        assert_eq!(rights(Role::Viewer), (false, false));
        assert!(from_token(&token(Role::Viewer)).may_dispatch().is_err());
        assert!(from_token(&token(Role::Ven)).may_write_vens().is_ok());
        assert!(from_token(&token(Role::Operator)).may_write_vens().is_err());
    }
}
