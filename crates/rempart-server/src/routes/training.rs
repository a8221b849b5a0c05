//! Security training: modules, completions, and who is current.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rempart_access::duration::format_duration;
use rempart_access::labels::valid_label_part;
use rempart_access::parse_duration;
use rempart_access::training::{TrainingState, module_state};
use rempart_api::{
    CreateTrainingModule, ErrorBody, ModuleStatus, RecordTraining, TrainingModuleList,
    TrainingModuleView, TrainingRecorded, TrainingStatus, UserTraining,
};
use rempart_core::{Identity, Role};
use rempart_store::{StoreError, TrainingModule, TrainingRecord};
use serde::Deserialize;
use serde_json::json;

use super::from_ms;
use crate::audit::{self, detached, object};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, QueryParams};
use crate::state::AppState;

/// A completion that lapses within this is "expiring" in the status.
const EXPIRING_WITHIN_MS: i64 = 30 * 86_400_000;
/// Completions recorded in one call at most (a CSV import).
const MAX_COMPLETIONS: usize = 10_000;

fn module_view(module: TrainingModule) -> TrainingModuleView {
    TrainingModuleView {
        name: module.name,
        valid_for: format_duration(module.valid_for_ms),
        created_at: from_ms(module.created_at_ms),
        created_by: module.created_by,
    }
}

#[utoipa::path(post, path = "/v1/training/modules", tag = "training", security(("bearer" = [])),
    request_body = CreateTrainingModule,
    responses((status = 201, body = TrainingModuleView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_module(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateTrainingModule>, ApiError>,
) -> Result<(StatusCode, Json<TrainingModuleView>), ApiError> {
    caller.require(&[Role::Admin, Role::Security])?;
    let JsonBody(new) = body?;
    if !valid_label_part(&new.name) {
        return Err(ApiError::bad_request(format!(
            "module name {:?}: 1 to 63 lowercase letters, digits, '-', '_' or '.'",
            new.name
        )));
    }
    let valid_for_ms = parse_duration(&new.valid_for)
        .map_err(|e| ApiError::bad_request(format!("valid_for: {e}")))?;
    let module = TrainingModule {
        name: new.name,
        valid_for_ms,
        created_at_ms: state.clock.now_ms(),
        created_by: caller.actor(),
    };
    let created = detached(async move {
        state
            .access_cache
            .after(state.store.add_training_module(&module))
            .await?;
        let details = object(json!({"valid_for": format_duration(module.valid_for_ms)}));
        let target = format!("training:{}", module.name);
        audit::record(&state, &caller, "training.module.create", target, details).await?;
        Ok(module)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(module_view(created))))
}

#[utoipa::path(get, path = "/v1/training/modules", tag = "training", security(("bearer" = [])),
    responses((status = 200, body = TrainingModuleList)))]
pub async fn list_modules(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<TrainingModuleList>, ApiError> {
    let modules = state.store.training_modules().await?;
    Ok(Json(TrainingModuleList {
        modules: modules.into_iter().map(module_view).collect(),
    }))
}

/// Records completions, all or none (an import from CSV sends many).
#[utoipa::path(post, path = "/v1/training/records", tag = "training", security(("bearer" = [])),
    request_body = RecordTraining,
    responses((status = 200, body = TrainingRecorded), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<RecordTraining>, ApiError>,
) -> Result<Json<TrainingRecorded>, ApiError> {
    caller.require(&[Role::Admin, Role::Security])?;
    let JsonBody(body) = body?;
    if body.completions.is_empty() || body.completions.len() > MAX_COMPLETIONS {
        return Err(ApiError::bad_request(format!(
            "send 1 to {MAX_COMPLETIONS} completions"
        )));
    }
    let now = state.clock.now_ms();
    let me = caller.actor();
    let mut records = Vec::with_capacity(body.completions.len());
    for (i, completion) in body.completions.into_iter().enumerate() {
        // The gate is someone else's word: nobody certifies their own training.
        if completion.user == me {
            return Err(ApiError::forbidden(format!(
                "completion {}: {me} cannot record their own training",
                i + 1
            )));
        }
        let completed_at_ms = completion
            .completed_at
            .map_or(now, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
        if completed_at_ms > now + 60_000 {
            return Err(ApiError::bad_request(format!(
                "completion {}: {} completed {} is in the future",
                i + 1,
                completion.user,
                completion.module
            )));
        }
        records.push(TrainingRecord {
            user: completion.user,
            module: completion.module,
            completed_at_ms,
            recorded_at_ms: now,
            recorded_by: caller.actor(),
        });
    }
    let recorded = detached(async move {
        // A renewal may turn a "training missing" into an allow: checks
        // must not answer from before it.
        state
            .access_cache
            .after(state.store.record_training(&records))
            .await
            .map_err(|e| match e {
                StoreError::NotFound { what } => ApiError::not_found(format!("no {what}")),
                other => other.into(),
            })?;
        for record in &records {
            let details = object(json!({
                "module": record.module,
                "completed_at": from_ms(record.completed_at_ms).to_string(),
            }));
            audit::record(
                &state,
                &caller,
                "training.record",
                format!("user:{}", record.user),
                details,
            )
            .await?;
        }
        Ok(records.len() as u64)
    })
    .await?;
    Ok(Json(TrainingRecorded { recorded }))
}

/// What keeps `user` from a grant at `now`: `None` when every required
/// module is current.
pub async fn gap(state: &AppState, user: &str, now: i64) -> Result<Option<String>, ApiError> {
    let required = &state.access_rules.required_training;
    if required.is_empty() {
        return Ok(None);
    }
    // The same reading (and cache) as grant checks: one answer everywhere.
    let access = state.access_cache.user(&state.store, user, now).await?;
    Ok(access.training_gap(required, now))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    user: Option<String>,
}

/// Who is current on which module: one user (anyone may see their own), or
/// everyone (reviewers and admins).
#[utoipa::path(get, path = "/v1/training/status", tag = "training", security(("bearer" = [])),
    params(("user" = Option<String>, Query)),
    responses((status = 200, body = TrainingStatus), (status = 403, body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<StatusQuery>,
) -> Result<Json<TrainingStatus>, ApiError> {
    let me = match caller.identity() {
        Identity::User { name, .. } => Some(name.to_string()),
        Identity::Machine { .. } => None,
    };
    let sees_all = caller.require(&[Role::Admin, Role::Security]).is_ok();
    let users: Vec<String> = match (&query.user, sees_all) {
        (Some(user), true) => vec![user.clone()],
        (Some(user), false) if me.as_deref() == Some(user) => vec![user.clone()],
        (None, true) => state
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.disabled_at_ms.is_none())
            .map(|u| u.name.to_string())
            .collect(),
        (None, false) => me.into_iter().collect(),
        (Some(_), false) => {
            return Err(ApiError::forbidden(
                "only reviewers and admins see someone else's training",
            ));
        }
    };
    let now = state.clock.now_ms();
    let modules = state.store.training_modules().await?;
    let required = &state.access_rules.required_training;
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let records = state.store.training_records(Some(&user)).await?;
        let mut names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
        for r in required {
            if !names.contains(&r.as_str()) {
                names.push(r);
            }
        }
        let statuses = names
            .iter()
            .map(|name| {
                let valid_for = modules
                    .iter()
                    .find(|m| m.name == *name)
                    .map(|m| m.valid_for_ms);
                let completions: Vec<i64> = records
                    .iter()
                    .filter(|r| r.module == *name)
                    .map(|r| r.completed_at_ms)
                    .collect();
                let (label, expires) = match module_state(valid_for, &completions, now) {
                    TrainingState::Current { expires_at_ms }
                        if expires_at_ms - now < EXPIRING_WITHIN_MS =>
                    {
                        ("expiring", Some(expires_at_ms))
                    }
                    TrainingState::Current { expires_at_ms } => ("current", Some(expires_at_ms)),
                    TrainingState::Expired { expired_at_ms } => ("expired", Some(expired_at_ms)),
                    TrainingState::Missing => ("missing", None),
                };
                ModuleStatus {
                    module: (*name).to_owned(),
                    state: label.to_owned(),
                    required: required.iter().any(|r| r == name),
                    completed_at: completions.iter().max().copied().map(from_ms),
                    expires_at: expires.map(from_ms),
                }
            })
            .collect();
        let missing = gap(&state, &user, now).await?;
        out.push(UserTraining {
            user,
            modules: statuses,
            missing,
        });
    }
    Ok(Json(TrainingStatus { users: out }))
}
