//! SSH certificates for people (`rempart login`) and sessions for the
//! bastion (issue 6). The control plane holds both SSH CAs; the bastion
//! holds neither, so a compromised bastion cannot mint access: every
//! session certificate it gets follows a grant check made here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rempart_access::{ResourceKind, ResourceRef};
use rempart_api::{
    CreateSshCertificate, ErrorBody, OpenSession, SessionGrant, SshAuthoritiesView, SshCertificate,
};
use rempart_core::{Identity, MachineRole};
use serde_json::json;

use super::from_ms;
use crate::audit::{self, detached, object};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::ssh_ca::{CertificateRequest, parse_subject_key};
use crate::state::AppState;

/// The resource label naming the login on a target.
pub const LOGIN_LABEL: &str = "ssh-login";
/// The resource label naming the target's loopback ports that may be
/// forwarded to (`5432` or `5432-5440`).
pub const FORWARD_LABEL: &str = "ssh-forward";

#[utoipa::path(get, path = "/v1/ssh/authorities", tag = "ssh", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = SshAuthoritiesView)))]
pub async fn authorities(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<SshAuthoritiesView> {
    Json(SshAuthoritiesView {
        user_ca: state.ssh.user_ca_public(),
        host_access_ca: state.ssh.host_access_ca_public(),
    })
}

/// Signs a person's Ed25519 key for the bastion, bound to their name.
#[utoipa::path(post, path = "/v1/ssh/certificates", tag = "ssh", security(("bearer" = [])),
    request_body = CreateSshCertificate,
    responses((status = 201, body = SshCertificate), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_certificate(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateSshCertificate>, ApiError>,
) -> Result<(StatusCode, Json<SshCertificate>), ApiError> {
    let Identity::User { name, .. } = caller.identity() else {
        return Err(ApiError::forbidden(
            "SSH certificates are for people; a machine has its own identity",
        ));
    };
    let name = name.to_string();
    let JsonBody(body) = body?;
    let key = parse_subject_key(&body.public_key).map_err(ApiError::bad_request)?;
    let max_ms = state.config.ssh.user_certificate_max.millis();
    let valid_ms = super::certificate_validity_ms(
        body.valid_for.as_deref(),
        max_ms,
        "[ssh] user_certificate_max",
    )?;
    let now_secs = u64::try_from(crate::auth::now_ms() / 1000).unwrap_or(0);
    let key_id = format!("rempart user {name}");
    let cert = state
        .ssh
        .sign_user(&CertificateRequest {
            key: &key,
            principal: &name,
            key_id: &key_id,
            now_secs,
            valid_for_secs: u64::try_from(valid_ms / 1000).unwrap_or(0),
        })
        .map_err(|e| ApiError::unavailable(&e))?;
    let view = certificate_view(&cert, &name)?;
    let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    let details = object(json!({
        "serial": view.serial,
        "key_fingerprint": fingerprint,
        "valid_before": view.valid_before,
    }));
    let logged = view.clone();
    detached(async move {
        audit::record(
            &state,
            &caller,
            "ssh.certificate.issue",
            format!("user:{name}"),
            details,
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(logged)))
}

fn certificate_view(
    cert: &ssh_key::Certificate,
    principal: &str,
) -> Result<SshCertificate, ApiError> {
    let at = |secs: u64| {
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
            .map_err(|e| ApiError::unavailable(&e))
    };
    Ok(SshCertificate {
        certificate: cert.to_openssh().map_err(|e| ApiError::unavailable(&e))?,
        principal: principal.to_owned(),
        serial: cert.serial(),
        valid_after: at(cert.valid_after())?,
        valid_before: at(cert.valid_before())?,
    })
}

/// The ports a resource's `ssh-forward` label allows, if any.
pub fn forward_ports(label: Option<&String>) -> Result<Option<[u16; 2]>, String> {
    let Some(text) = label else {
        return Ok(None);
    };
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("label {FORWARD_LABEL}={text}: a port is 1 to 65535"))
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if first > last {
        return Err(format!(
            "label {FORWARD_LABEL}={text}: the range is backwards"
        ));
    }
    Ok(Some([first, last]))
}

/// The bastion asks to open a session of `user` on `target`: the grant is
/// checked here, and only on a grant is a session certificate signed for
/// the bastion's key, with the grant's principal, for minutes.
#[utoipa::path(post, path = "/v1/bastion/sessions", tag = "ssh", security(("mtls" = [])),
    request_body = OpenSession,
    responses((status = 200, body = SessionGrant), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn open_session(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<OpenSession>, ApiError>,
) -> Result<Json<SessionGrant>, ApiError> {
    caller.require_machine(MachineRole::Bastion)?;
    let JsonBody(body) = body?;
    let key = parse_subject_key(&body.public_key).map_err(ApiError::bad_request)?;
    let resource = ResourceRef {
        kind: ResourceKind::Host,
        name: body.target.clone(),
    };
    if !rempart_access::resource::valid_resource_name(&body.target) {
        return Err(ApiError::bad_request(format!(
            "target: {:?} is not a host name Rempart knows (lowercase letters, digits, '-', '_', '.')",
            body.target
        )));
    }
    let now = state.clock.now_ms();
    let access = state
        .access_cache
        .user(&state.store, &body.user, now)
        .await?;
    let outcome = access.check(
        &body.user,
        &resource,
        &state.access_rules.required_training,
        now,
    );
    let (grant, end_ms) = match outcome {
        Ok(found) => found,
        Err(reason) => {
            return Ok(Json(SessionGrant {
                allow: false,
                reason: Some(reason),
                grant: None,
                ends_at: None,
                principal: None,
                forward_ports: None,
                certificate: None,
            }));
        }
    };
    let labels = state
        .store
        .get_resources(std::slice::from_ref(&resource))
        .await?
        .into_iter()
        .next()
        .map(|r| r.labels)
        .unwrap_or_default();
    let principal = labels
        .get(LOGIN_LABEL)
        .cloned()
        .unwrap_or_else(|| body.user.clone());
    let forward = forward_ports(labels.get(FORWARD_LABEL)).map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("host:{}: {e}", body.target),
        )
    })?;
    let session_ms = state.config.ssh.session_certificate.millis();
    let key_id = format!(
        "rempart session {} on {} by grant {grant} via {}",
        body.user,
        body.target,
        caller.actor()
    );
    let cert = state
        .ssh
        .sign_session(
            &CertificateRequest {
                key: &key,
                principal: &principal,
                key_id: &key_id,
                // The system clock: the certificate is checked by the
                // target's sshd, on real time.
                now_secs: u64::try_from(crate::auth::now_ms() / 1000).unwrap_or(0),
                valid_for_secs: u64::try_from(session_ms / 1000).unwrap_or(60),
            },
            forward.is_some(),
        )
        .map_err(|e| ApiError::unavailable(&e))?;
    // Every session certificate is on the record, whoever asked: a bastion
    // cannot open a session the well-log does not know of.
    let details = object(json!({
        "user": body.user,
        "grant": grant,
        "principal": principal,
        "serial": cert.serial(),
        "key_fingerprint": key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        "client": body.client_address,
        "valid_before": cert.valid_before(),
    }));
    let answer = SessionGrant {
        allow: true,
        reason: None,
        grant: Some(grant),
        ends_at: Some(from_ms(end_ms)),
        principal: Some(principal),
        forward_ports: forward,
        certificate: Some(cert.to_openssh().map_err(|e| ApiError::unavailable(&e))?),
    };
    let target = format!("host:{}", body.target);
    detached(async move {
        audit::record(&state, &caller, "ssh.session.certificate", target, details).await
    })
    .await?;
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::forward_ports;

    #[test]
    fn forward_labels() {
        assert_eq!(forward_ports(None), Ok(None));
        assert_eq!(forward_ports(Some(&"5432".into())), Ok(Some([5432, 5432])));
        assert_eq!(
            forward_ports(Some(&"5432-5440".into())),
            Ok(Some([5432, 5440]))
        );
        assert!(forward_ports(Some(&"0".into())).is_err());
        assert!(forward_ports(Some(&"5440-5432".into())).is_err());
        assert!(forward_ports(Some(&"allow".into())).is_err());
    }
}
