//! Database certificates for people (`rempart login --db NAME`) and the
//! CA the bastion's PostgreSQL listener trusts (issue 7).
//!
//! A certificate names its user and one database; it is no grant. The
//! bastion still checks the grant for `db:NAME` with the control plane on
//! every connection, and cuts the session when the grant ends.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rempart_access::{ResourceKind, ResourceRef};
use rempart_api::{CreateDbCertificate, DbAuthoritiesView, DbCertificate, ErrorBody};
use rempart_core::Identity;
use serde_json::json;
use time::OffsetDateTime;

use crate::audit::{self, detached, object};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

/// A signing request is a few hundred bytes; anything much larger is not one.
const MAX_CSR_BYTES: usize = 16 * 1024;

#[utoipa::path(get, path = "/v1/db/authorities", tag = "db", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = DbAuthoritiesView)))]
pub async fn authorities(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<DbAuthoritiesView> {
    Json(DbAuthoritiesView {
        user_ca_pem: state.db_users.cert_pem().to_owned(),
    })
}

/// Signs a person's key for one registered database, bound to their name.
#[utoipa::path(post, path = "/v1/db/certificates", tag = "db", security(("bearer" = [])),
    request_body = CreateDbCertificate,
    responses((status = 201, body = DbCertificate), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_certificate(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateDbCertificate>, ApiError>,
) -> Result<(StatusCode, Json<DbCertificate>), ApiError> {
    let Identity::User { name, .. } = caller.identity() else {
        return Err(ApiError::forbidden(
            "database certificates are for people; a machine has its own identity",
        ));
    };
    let user = name.to_string();
    let JsonBody(body) = body?;
    if !rempart_access::resource::valid_resource_name(&body.database) {
        return Err(ApiError::bad_request(format!(
            "database: {:?} is not a resource name (lowercase letters, digits, '-', '_', '.')",
            body.database
        )));
    }
    if body.csr_pem.len() > MAX_CSR_BYTES {
        return Err(ApiError::bad_request(
            "csr_pem is larger than any signing request",
        ));
    }
    let resource = ResourceRef {
        kind: ResourceKind::Db,
        name: body.database.clone(),
    };
    let known = state
        .store
        .get_resources(std::slice::from_ref(&resource))
        .await?;
    if known.is_empty() {
        return Err(ApiError::not_found(format!(
            "{resource} is not a registered resource"
        )));
    }
    let max_ms = state.config.database.user_certificate_max.millis();
    let valid_ms = super::certificate_validity_ms(
        body.valid_for.as_deref(),
        max_ms,
        "[database] user_certificate_max",
    )?;
    // Whole seconds: an X.509 time has no finer grain.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    let not_after = now + time::Duration::milliseconds(valid_ms);
    let issued = state
        .db_users
        .sign_database_user_csr(&body.csr_pem, &user, &body.database, not_after)
        .map_err(|e| ApiError::bad_request(format!("csr_pem: {e}")))?;
    let view = DbCertificate {
        certificate_pem: issued.cert_pem,
        ca_pem: state.ca.cert_pem().to_owned(),
        user: user.clone(),
        database: body.database.clone(),
        serial: issued.serial_hex.clone(),
        not_after,
    };
    let details = object(json!({
        "serial": issued.serial_hex,
        "cert_sha256": issued.sha256_hex,
        "not_after": not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "user": user,
    }));
    detached(async move {
        audit::record(
            &state,
            &caller,
            "db.certificate.issue",
            resource.to_string(),
            details,
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
