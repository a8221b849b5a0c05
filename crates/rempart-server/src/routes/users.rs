//! People: accounts, roles and their API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rempart_api::{CreateUser, CreatedUser, ErrorBody, IssuedToken, User, UserList};
use rempart_core::{ApiToken, Identity, Role, UserName};
use rempart_store::NewUser;

use super::from_ms;
use crate::audit::{self, detached, object};
use crate::auth::{Caller, now_ms};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::state::AppState;

fn to_api(user: rempart_store::User) -> User {
    User {
        name: user.name,
        roles: user.roles,
        email: user.email,
        created_at: from_ms(user.created_at_ms),
        disabled_at: user.disabled_at_ms.map(from_ms),
    }
}

fn parse_name(name: &str) -> Result<UserName, ApiError> {
    name.parse()
        .map_err(|e| ApiError::bad_request(format!("user name {name:?}: {e}")))
}

/// Issues a new token for `user`, replacing the ones it had.
pub(crate) async fn issue_token(
    state: &AppState,
    user: &UserName,
    ttl_days: i64,
) -> Result<IssuedToken, ApiError> {
    let token = ApiToken::generate();
    let now = now_ms();
    let expires_at_ms = (ttl_days > 0).then(|| now + ttl_days * 86_400_000);
    state
        .store
        .replace_token(user, &token.hash(), now, expires_at_ms)
        .await?;
    Ok(IssuedToken {
        user: user.clone(),
        token: token.expose().to_owned(),
        expires_at: expires_at_ms.map(from_ms),
    })
}

#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserList>, ApiError> {
    caller.require(&[Role::Admin, Role::Security])?;
    let users = state.store.list_users().await?;
    Ok(Json(UserList {
        users: users.into_iter().map(to_api).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/users/{name}", tag = "users", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    let name = parse_name(&name)?;
    let is_self = matches!(caller.identity(), Identity::User { name: own, .. } if *own == name);
    if !is_self {
        caller.require(&[Role::Admin, Role::Security])?;
    }
    match state.store.get_user(&name).await? {
        Some(user) => Ok(Json(to_api(user))),
        None => Err(ApiError::not_found(format!("no user {name:?}"))),
    }
}

/// Creates a user and its first token (shown once).
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUser,
    responses((status = 201, body = CreatedUser), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateUser>, ApiError>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    // The role is checked before the body is looked at: a caller without it
    // learns nothing about what a valid body would be.
    caller.require(&[Role::Admin])?;
    let JsonBody(request) = body?;
    let (user, token) = detached(async move {
        let new = NewUser {
            name: request.name.clone(),
            roles: request.roles,
            email: request.email.map(String::from),
            created_at_ms: now_ms(),
        };
        let user = state.store.create_user(&new).await?;
        let token = issue_token(&state, &user.name, state.config.tokens.ttl_days.get()).await?;
        let details = object(serde_json::json!({"roles": user.roles}));
        let target = format!("user:{}", user.name);
        audit::record(&state, &caller, "user.create", target, details).await?;
        Ok((user, token))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: to_api(user),
            token,
        }),
    ))
}

/// Disables a user: their tokens stop working on the next request.
#[utoipa::path(post, path = "/v1/users/{name}/disable", tag = "users", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    caller.require(&[Role::Admin])?;
    let name = parse_name(&name)?;
    // The store refuses to disable the last enabled admin (409).
    let user = detached(async move {
        // A disabled user loses their grants at the next check.
        let user = state
            .access_cache
            .after(state.store.disable_user(&name, now_ms()))
            .await?;
        let target = format!("user:{name}");
        audit::record(&state, &caller, "user.disable", target, Default::default()).await?;
        Ok(user)
    })
    .await?;
    Ok(Json(to_api(user)))
}

/// Issues a new token for a user (shown once); the user's older tokens stop working.
#[utoipa::path(post, path = "/v1/users/{name}/token", tag = "users", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 201, body = IssuedToken), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    caller.require(&[Role::Admin])?;
    let name = parse_name(&name)?;
    let user = state
        .store
        .get_user(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {name:?}")))?;
    if user.disabled_at_ms.is_some() {
        return Err(ApiError::conflict(format!("user {name} is disabled")));
    }
    let issued = detached(async move {
        let issued = issue_token(&state, &name, state.config.tokens.ttl_days.get()).await?;
        let target = format!("user:{name}");
        audit::record(&state, &caller, "user.token", target, Default::default()).await?;
        Ok(issued)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}
