//! Machine identities: client certificates from the internal CA.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rempart_api::{CreateMachine, ErrorBody, IssuedMachine, Machine, MachineList};
use rempart_core::{MachineName, MachineRole, Role};
use rempart_store::NewMachine;

use super::from_ms;
use crate::audit::{self, detached, object};
use crate::auth::{Caller, now_ms};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

/// A signing request is a few hundred bytes; anything much larger is not one.
const MAX_CSR_BYTES: usize = 16 * 1024;

fn to_api(machine: rempart_store::Machine) -> Machine {
    Machine {
        name: machine.name,
        role: machine.role,
        cert_sha256: machine.cert_sha256,
        cert_serial: machine.cert_serial,
        not_after: from_ms(machine.not_after_ms),
        created_at: from_ms(machine.created_at_ms),
        created_by: machine.created_by,
        revoked_at: machine.revoked_at_ms.map(from_ms),
    }
}

#[utoipa::path(get, path = "/v1/machines", tag = "machines", security(("bearer" = [])),
    responses((status = 200, body = MachineList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<MachineList>, ApiError> {
    caller.require(&[Role::Admin, Role::Security])?;
    let machines = state.store.list_machines().await?;
    Ok(Json(MachineList {
        machines: machines.into_iter().map(to_api).collect(),
    }))
}

/// Signs the machine's certificate signing request and records the
/// certificate's fingerprint, which is what the server recognises later.
#[utoipa::path(post, path = "/v1/machines", tag = "machines", security(("bearer" = [])),
    request_body = CreateMachine,
    responses((status = 201, body = IssuedMachine), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateMachine>, ApiError>,
) -> Result<(StatusCode, Json<IssuedMachine>), ApiError> {
    // The role is checked before the body is looked at: a caller without it
    // learns nothing about what a valid body would be.
    caller.require(&[Role::Admin])?;
    let JsonBody(request) = body?;
    if request.csr_pem.len() > MAX_CSR_BYTES {
        return Err(ApiError::bad_request(
            "csr_pem is larger than any signing request",
        ));
    }
    if !request.server_names.is_empty() && request.role != MachineRole::Bastion {
        return Err(ApiError::bad_request(
            "server_names: only a bastion serves TLS under its own names",
        ));
    }
    for name in &request.server_names {
        if name.parse::<std::net::IpAddr>().is_err()
            && rempart_config::ServerName::try_from(name.clone()).is_err()
        {
            return Err(ApiError::bad_request(format!(
                "server_names: {name:?} is neither a DNS name nor an IP address"
            )));
        }
    }
    let days = state.config.tls.machine_cert_days.get();
    let issued = state
        .ca
        .sign_machine_csr_with_server_names(
            &request.csr_pem,
            &request.name,
            request.role,
            days,
            &request.server_names,
        )
        .map_err(|e| ApiError::bad_request(format!("csr_pem: {e}")))?;
    let new = NewMachine {
        name: request.name,
        role: request.role,
        cert_sha256: issued.sha256_hex.clone(),
        cert_serial: issued.serial_hex.clone(),
        not_after_ms: issued.not_after.unix_timestamp() * 1000,
        created_at_ms: now_ms(),
        created_by: caller.actor(),
    };
    let ca_pem = state.ca.cert_pem().to_owned();
    let machine = detached(async move {
        let machine = state.store.create_machine(&new).await?;
        let details =
            object(serde_json::json!({"role": machine.role, "cert_sha256": machine.cert_sha256}));
        let target = format!("machine:{}", machine.name);
        audit::record(&state, &caller, "machine.create", target, details).await?;
        Ok(machine)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedMachine {
            machine: to_api(machine),
            cert_pem: issued.cert_pem,
            ca_pem,
        }),
    ))
}

/// Revokes a machine identity: its certificate is refused from the next request.
#[utoipa::path(post, path = "/v1/machines/{name}/revoke", tag = "machines", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Machine), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Machine>, ApiError> {
    caller.require(&[Role::Admin])?;
    let name: MachineName = name
        .parse()
        .map_err(|e| ApiError::bad_request(format!("machine name {name:?}: {e}")))?;
    let machine = detached(async move {
        let machine = state.store.revoke_machine(&name, now_ms()).await?;
        let target = format!("machine:{name}");
        audit::record(
            &state,
            &caller,
            "machine.revoke",
            target,
            Default::default(),
        )
        .await?;
        Ok(machine)
    })
    .await?;
    Ok(Json(to_api(machine)))
}
