//! Who is calling: a bearer token for people, a client certificate for machines.
//!
//! [`authenticate`] runs before every protected route and fails closed: no
//! credential, an unknown one, or a store that cannot answer, and the request
//! stops there. Handlers then take a [`Caller`], which only this module can
//! put in a request, and state the role they need with [`Caller::require`].

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use rempart_core::{ApiToken, Identity, MachineRole, Role};

use crate::error::ApiError;
use crate::state::AppState;

/// The SHA-256 of the client certificate presented on this connection, put in
/// every request's extensions by the listener.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub sha256_hex: String,
}

/// An authenticated caller. Constructed only by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Caller(Identity);

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The middleware in front of every route but `/healthz` and security.txt.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    // Take what is needed out of the request first: the body is not `Sync`,
    // so the request itself cannot be held across an await.
    let authorization = request.headers().get(AUTHORIZATION).cloned();
    let peer = request.extensions().get::<PeerCertificate>().cloned();
    let identity = identify(&state, authorization, peer).await?;
    request.extensions_mut().insert(Caller(identity));
    Ok(next.run(request).await)
}

async fn identify(
    state: &AppState,
    authorization: Option<HeaderValue>,
    peer: Option<PeerCertificate>,
) -> Result<Identity, ApiError> {
    // A token is how a person speaks, even from a machine holding a
    // certificate; so a token, when present, decides alone.
    if let Some(header) = authorization {
        let presented = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be \"Bearer <token>\"")
            })?;
        let token = ApiToken::parse(presented.trim())
            .map_err(|e| ApiError::unauthorized(format!("malformed token: {e}")))?;
        return match state.store.user_for_token(&token.hash(), now_ms()).await? {
            Some((name, roles)) => Ok(Identity::User { name, roles }),
            None => Err(ApiError::unauthorized(
                "the token is not valid: unknown, replaced, expired, or its user is disabled",
            )),
        };
    }
    if let Some(peer) = peer {
        return match state
            .store
            .machine_for_cert(&peer.sha256_hex, now_ms())
            .await?
        {
            Some(machine) => Ok(Identity::Machine {
                name: machine.name,
                role: machine.role,
            }),
            None => Err(ApiError::unauthorized(
                "the client certificate is not an active machine identity (unknown, revoked or expired)",
            )),
        };
    }
    Err(ApiError::unauthorized(
        "authentication required: a bearer token or a machine certificate",
    ))
}

impl Caller {
    pub fn identity(&self) -> &Identity {
        &self.0
    }

    pub fn actor(&self) -> String {
        self.0.actor()
    }

    /// Passes when the caller is a user holding one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.0.has_role(*r)) {
            return Ok(());
        }
        let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "{} lacks the role this needs: {}",
            self.0.actor(),
            wanted.join(" or ")
        )))
    }

    /// Passes when the caller is a machine identity with `role`.
    pub fn require_machine(&self, role: MachineRole) -> Result<(), ApiError> {
        if self.0.is_machine(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only a {role} machine identity may call this"
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Absent only if a route was mounted outside the authenticated router:
        // refuse rather than serve it unauthenticated.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}
