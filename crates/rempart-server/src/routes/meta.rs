//! Health, security.txt, who-am-I, the OpenAPI document and metrics.

use std::fmt::Write;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use rempart_api::{ErrorBody, Health, WhoAmI};
use rempart_core::Role;
use time::format_description::well_known::Rfc3339;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Liveness and store reachability. Unauthenticated, and says nothing more.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let (status, word) = match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(err) => {
            tracing::warn!(error = %err, "health check: store did not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    let body = Health {
        status: word.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    (status, Json(body))
}

/// RFC 9116 security.txt, from the `[security_txt]` settings.
#[utoipa::path(get, path = "/.well-known/security.txt", tag = "meta",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn security_txt(State(state): State<AppState>) -> impl IntoResponse {
    let settings = &state.config.security_txt;
    let mut text = String::new();
    for contact in &settings.contact {
        let _ = writeln!(text, "Contact: {}", contact.as_str());
    }
    let expires = settings
        .expires
        .format(&Rfc3339)
        .unwrap_or_else(|_| settings.expires.to_string());
    let _ = writeln!(text, "Expires: {expires}");
    if let Some(policy) = &settings.policy {
        let _ = writeln!(text, "Policy: {}", policy.as_str());
    }
    if !settings.preferred_languages.is_empty() {
        let _ = writeln!(
            text,
            "Preferred-Languages: {}",
            settings.preferred_languages.join(", ")
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
}

/// The identity the server authenticated this request as.
#[utoipa::path(get, path = "/v1/whoami", tag = "meta", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        identity: caller.identity().clone(),
        actor: caller.actor(),
    })
}

/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, description = "OpenAPI document"), (status = 401, body = ErrorBody)))]
pub async fn openapi(_caller: Caller) -> impl IntoResponse {
    Json(crate::openapi::document())
}

/// Request counts and latencies by route, Prometheus text format. Admins only.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}
