//! Bastion sessions and their recordings (issue 6): the bastion stores
//! them here when a session ends (or later, when the control plane was
//! away); the security team lists, plays and exports them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rempart_api::{
    ErrorBody, RecordingRef, RecordingStored, SessionList, SessionSummary, SessionView,
};
use rempart_core::{MachineRole, Role};
use rempart_store::{RecordingInfo, SshSession, Stored};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::from_ms;
use crate::audit::{self, detached, object};
use crate::auth::{Caller, now_ms};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::state::AppState;

/// Session ids and recording names: what the bastion makes (`s-` and hex,
/// a dash and a number), nothing that could be a path.
fn valid_name(text: &str) -> bool {
    (3..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingQuery {
    sha256: String,
}

/// Stores one recording, checked against the hash the bastion announces
/// (the one in its `ssh.session.end` event).
#[utoipa::path(put, path = "/v1/sessions/{id}/recordings/{name}", tag = "ssh", security(("mtls" = [])),
    params(("id" = String, Path), ("name" = String, Path), ("sha256" = String, Query)),
    request_body(content = String, content_type = "application/x-asciicast"),
    responses((status = 201, body = RecordingStored), (status = 200, body = RecordingStored),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn store_recording(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((id, name)): PathParam<(String, String)>,
    QueryParams(query): QueryParams<RecordingQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<RecordingStored>), ApiError> {
    caller.require_machine(MachineRole::Bastion)?;
    if !valid_name(&id) || !valid_name(&name) {
        return Err(ApiError::bad_request(
            "a session id or recording name is 3 to 64 lowercase letters, digits or '-'",
        ));
    }
    if !valid_sha256(&query.sha256) {
        return Err(ApiError::bad_request("sha256: 64 lowercase hex digits"));
    }
    let computed = hex(&Sha256::digest(&body));
    if computed != query.sha256 {
        return Err(ApiError::bad_request(format!(
            "the recording's SHA-256 is {computed}, not the {} announced: it changed on the way",
            query.sha256
        )));
    }
    // Once a session's summary is stored, its recordings are closed: a
    // recording added later cannot pass for part of it.
    if state.store.ssh_session(&id).await?.is_some() {
        let stored = state.store.recordings_of(&id).await?;
        if !stored
            .iter()
            .any(|r| r.name == name && r.sha256 == computed)
        {
            return Err(ApiError::conflict(format!(
                "session {id} is stored already: no recording is added to it now"
            )));
        }
    }
    let info = RecordingInfo {
        session: id.clone(),
        name: name.clone(),
        sha256: computed.clone(),
        size: i64::try_from(body.len()).unwrap_or(i64::MAX),
    };
    let bastion = caller.actor();
    let stored = state
        .store
        .add_recording(&info, &body, &bastion, now_ms())
        .await?;
    let answer = RecordingStored {
        session: id.clone(),
        name: name.clone(),
        sha256: computed.clone(),
        new: stored == Stored::New,
    };
    if stored == Stored::Again {
        return Ok((StatusCode::OK, Json(answer)));
    }
    let details = object(
        json!({ "session": id, "recording": name, "sha256": computed, "bytes": body.len() }),
    );
    detached(async move {
        audit::record(
            &state,
            &caller,
            "ssh.recording.store",
            format!("session:{id}"),
            details,
        )
        .await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Stores a session's summary; every recording it names must be stored
/// already, with the same hash.
#[utoipa::path(post, path = "/v1/sessions", tag = "ssh", security(("mtls" = [])),
    request_body = SessionSummary,
    responses((status = 201, body = SessionView), (status = 200, body = SessionView),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn store_session(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<SessionSummary>, ApiError>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    caller.require_machine(MachineRole::Bastion)?;
    let JsonBody(summary) = body?;
    if !valid_name(&summary.id) {
        return Err(ApiError::bad_request(
            "id: 3 to 64 lowercase letters, digits or '-'",
        ));
    }
    let stored_recordings = state.store.recordings_of(&summary.id).await?;
    for wanted in &summary.recordings {
        let matches = stored_recordings
            .iter()
            .any(|r| r.name == wanted.name && r.sha256 == wanted.sha256);
        if !matches {
            return Err(ApiError::conflict(format!(
                "recording {} (sha256 {}) of session {} is not stored: store it first",
                wanted.name, wanted.sha256, summary.id
            )));
        }
    }
    let to_ms =
        |t: time::OffsetDateTime| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let row = SshSession {
        id: summary.id.clone(),
        user: summary.user.clone(),
        target: summary.target.clone(),
        grant: summary.grant.clone(),
        bastion: caller.actor(),
        client: summary.client.clone(),
        started_at_ms: to_ms(summary.started_at),
        ended_at_ms: to_ms(summary.ended_at),
        reason: summary.reason.clone(),
        bytes_from_user: i64::try_from(summary.bytes_from_user).unwrap_or(i64::MAX),
        bytes_to_user: i64::try_from(summary.bytes_to_user).unwrap_or(i64::MAX),
        received_at_ms: now_ms(),
    };
    let stored = state.store.add_ssh_session(&row).await?;
    let view = view(row, stored_recordings);
    let status = if stored == Stored::New {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

fn view(row: SshSession, recordings: Vec<RecordingInfo>) -> SessionView {
    SessionView {
        id: row.id,
        user: row.user,
        target: row.target,
        grant: row.grant,
        bastion: row.bastion,
        client: row.client,
        started_at: from_ms(row.started_at_ms),
        ended_at: from_ms(row.ended_at_ms),
        reason: row.reason,
        bytes_from_user: row.bytes_from_user.unsigned_abs(),
        bytes_to_user: row.bytes_to_user.unsigned_abs(),
        recordings: recordings
            .into_iter()
            .map(|r| RecordingRef {
                name: r.name,
                sha256: r.sha256,
                bytes: r.size.unsigned_abs(),
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/sessions", tag = "ssh", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query)),
    responses((status = 200, body = SessionList), (status = 403, body = ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let mut sessions = Vec::new();
    for row in state.store.list_ssh_sessions(limit).await? {
        let recordings = state.store.recordings_of(&row.id).await?;
        sessions.push(view(row, recordings));
    }
    Ok(Json(SessionList { sessions }))
}

#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "ssh", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)))]
pub async fn show_session(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<SessionView>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let row = state
        .store
        .ssh_session(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
    let recordings = state.store.recordings_of(&id).await?;
    Ok(Json(view(row, recordings)))
}

/// A recording as stored (asciicast v2). Reading one is itself logged.
#[utoipa::path(get, path = "/v1/sessions/{id}/recordings/{name}", tag = "ssh", security(("bearer" = [])),
    params(("id" = String, Path), ("name" = String, Path)),
    responses((status = 200, content_type = "application/x-asciicast", body = String), (status = 404, body = ErrorBody)))]
pub async fn get_recording(
    State(state): State<AppState>,
    caller: Caller,
    PathParam((id, name)): PathParam<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let content = state
        .store
        .recording_content(&id, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no recording {name} of session {id}")))?;
    let details = object(json!({ "session": id, "recording": name }));
    let target = format!("session:{id}");
    let logged_state = state.clone();
    detached(async move {
        audit::record(
            &logged_state,
            &caller,
            "ssh.recording.read",
            target,
            details,
        )
        .await
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], content).into_response())
}
