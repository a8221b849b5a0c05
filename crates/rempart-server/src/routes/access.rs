//! Access requests: resources, requests, their reviews, and grant checks.
//!
//! Every decision is taken on the request's rows read under a lock on the
//! request (`Store::transition`), so two reviewers acting at once are
//! serialised; the state itself is computed by `rempart_access::status`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rempart_access::{
    Action, ActionKind, Decision, Labels, Request, ResourceKind, ResourceRef, Review,
    State as RequestState, Status, parse_duration, status,
};
use rempart_api::{
    ActionView, Approval, CreateRequest, CreateResource, ErrorBody, GrantCheck, Refusal,
    RequestList, RequestView, ResourceList, ResourceView, ReviewView,
};
use rempart_core::{Identity, MachineRole, Role, Roles};
use rempart_store::{RequestRows, Resource, StoreError, Transition};
use serde::Deserialize;
use serde_json::json;

use super::from_ms;
use crate::audit::{self, detached, object};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::state::AppState;

/// Requests one person may have waiting for review at once.
const MAX_PENDING_PER_USER: usize = 20;

fn resource_view(resource: Resource) -> ResourceView {
    ResourceView {
        resource: resource.resource.to_string(),
        labels: resource.labels,
        created_at: from_ms(resource.created_at_ms),
        created_by: resource.created_by,
    }
}

fn request_view(rows: &RequestRows, now: i64) -> RequestView {
    let status = status(&rows.request, &rows.reviews, &rows.actions, now);
    let request = &rows.request;
    RequestView {
        id: request.id.clone(),
        requester: request.requester.clone(),
        resources: request.resources.iter().map(ToString::to_string).collect(),
        reason: request.reason.clone(),
        created_at: from_ms(request.created_at_ms),
        start: request.start_ms.map(from_ms),
        duration: rempart_access::duration::format_duration(request.duration_ms),
        approvals_needed: request.approvals_needed,
        approvals: status.approvals,
        state: status.state.as_str().to_owned(),
        pending_until: from_ms(request.pending_until_ms),
        grant_start: status.grant.map(|g| from_ms(g.start_ms)),
        grant_end: status.grant.map(|g| from_ms(g.end_ms)),
        ended_at: status.ended_at_ms.map(from_ms),
        reviews: rows
            .reviews
            .iter()
            .map(|r| ReviewView {
                reviewer: r.reviewer.clone(),
                decision: r.decision.as_str().to_owned(),
                comment: r.comment.clone(),
                at: from_ms(r.at_ms),
            })
            .collect(),
        actions: rows
            .actions
            .iter()
            .map(|a| ActionView {
                kind: a.kind.as_str().to_owned(),
                actor: a.actor.clone(),
                reason: a.reason.clone(),
                at: from_ms(a.at_ms),
            })
            .collect(),
    }
}

/// The caller as a person: their name and roles (machines make no requests).
fn person(caller: &Caller) -> Result<(String, Roles), ApiError> {
    match caller.identity() {
        Identity::User { name, roles } => Ok((name.to_string(), roles.clone())),
        Identity::Machine { .. } => Err(ApiError::forbidden(
            "access requests are made and reviewed by people, not machines",
        )),
    }
}

#[utoipa::path(post, path = "/v1/resources", tag = "access", security(("bearer" = [])),
    request_body = CreateResource,
    responses((status = 201, body = ResourceView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_resource(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateResource>, ApiError>,
) -> Result<(StatusCode, Json<ResourceView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let JsonBody(new) = body?;
    let kind: ResourceKind = new.kind.parse().map_err(ApiError::bad_request)?;
    let resource = ResourceRef::new(kind, &new.name).map_err(ApiError::bad_request)?;
    let mut labels = Labels::new();
    for (key, value) in new.labels {
        let (key, value) = rempart_access::labels::parse_label(&format!("{key}={value}"))
            .map_err(ApiError::bad_request)?;
        labels.insert(key, value);
    }
    let resource = Resource {
        resource,
        labels,
        created_at_ms: state.clock.now_ms(),
        created_by: caller.actor(),
    };
    let created = detached(async move {
        state.store.add_resource(&resource).await?;
        let details = object(json!({"labels": resource.labels}));
        let target = resource.resource.to_string();
        audit::record(&state, &caller, "resource.create", target, details).await?;
        Ok(resource)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(resource_view(created))))
}

#[utoipa::path(get, path = "/v1/resources", tag = "access", security(("bearer" = [])),
    responses((status = 200, body = ResourceList)))]
pub async fn list_resources(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ResourceList>, ApiError> {
    person(&caller)?;
    let resources = state.store.list_resources().await?;
    Ok(Json(ResourceList {
        resources: resources.into_iter().map(resource_view).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/access/requests", tag = "access", security(("bearer" = [])),
    request_body = CreateRequest,
    responses((status = 201, body = RequestView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_request(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<CreateRequest>, ApiError>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let (requester, roles) = person(&caller)?;
    let JsonBody(new) = body?;
    let refs = new
        .resources
        .iter()
        .map(|r| r.parse::<ResourceRef>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    let duration_ms = parse_duration(&new.duration)
        .map_err(|e| ApiError::bad_request(format!("duration: {e}")))?;
    let resources = state
        .store
        .get_resources(&refs)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { what } => {
                ApiError::bad_request(format!("unknown {what}: see rempart resource list"))
            }
            other => other.into(),
        })?;
    let with_labels: Vec<(ResourceRef, Labels)> = resources
        .into_iter()
        .map(|r| (r.resource, r.labels))
        .collect();
    let approvals_needed = state
        .access_rules
        .check_request(&roles, &with_labels, &new.reason, duration_ms)
        .map_err(|e| match e {
            rempart_access::RequestError::NotAllowed { .. } => ApiError::forbidden(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let now = state.clock.now_ms();
    // Reviewers' attention (and the webhook) is bounded: a person has a few
    // requests waiting at most.
    let waiting = state
        .store
        .requests_of(&requester, now)
        .await?
        .iter()
        .filter(|rows| {
            status(&rows.request, &rows.reviews, &rows.actions, now).state == RequestState::Pending
        })
        .count();
    if waiting >= MAX_PENDING_PER_USER {
        return Err(ApiError::conflict(format!(
            "{requester} already has {waiting} requests waiting for review (at most {MAX_PENDING_PER_USER}): cancel some first"
        )));
    }
    // No grant without current training: refused now rather than approved
    // for nothing (the grant check asks again).
    if let Some(gap) = super::training::gap(&state, &requester, now).await? {
        return Err(ApiError::forbidden(gap));
    }
    let start_ms = new
        .start
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    if let Some(start) = start_ms {
        if start.saturating_add(duration_ms) <= now {
            return Err(ApiError::bad_request(
                "the access asked for would end in the past",
            ));
        }
        if start > now.saturating_add(state.access_rules.pending_for_ms) {
            return Err(ApiError::bad_request(format!(
                "the access may start at most {} from now (access.pending_for)",
                rempart_access::duration::format_duration(state.access_rules.pending_for_ms)
            )));
        }
    }
    let request = Request {
        id: String::new(),
        requester,
        resources: refs,
        reason: new.reason.trim().to_owned(),
        created_at_ms: now,
        start_ms,
        duration_ms,
        approvals_needed,
        pending_until_ms: now.saturating_add(state.access_rules.pending_for_ms),
    };
    let rows = detached(async move {
        let id = state
            .access_cache
            .after(state.store.create_request(&request))
            .await?;
        let details = object(json!({
            "reason": request.reason,
            "resources": request.resources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "duration": new.duration,
            "approvals_needed": request.approvals_needed,
        }));
        audit::record(
            &state,
            &caller,
            "access.request.create",
            format!("request:{id}"),
            details,
        )
        .await?;
        state.notifier.send(format!(
            "Access request {id}: {} asks for {} for {}: \"{}\" ({} approval{} needed)",
            request.requester,
            request
                .resources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            new.duration,
            request.reason,
            request.approvals_needed,
            if request.approvals_needed == 1 {
                ""
            } else {
                "s"
            },
        ));
        state
            .store
            .get_request(&id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("request {id}")))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(request_view(&rows, now))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    #[serde(default)]
    mine: bool,
    limit: Option<u32>,
}

/// Requests, newest first. Reviewers and admins see everyone's; others see
/// their own.
#[utoipa::path(get, path = "/v1/access/requests", tag = "access", security(("bearer" = [])),
    params(("state" = Option<String>, Query), ("mine" = Option<bool>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = RequestList), (status = 400, body = ErrorBody)))]
pub async fn list_requests(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let (name, roles) = person(&caller)?;
    let wanted = match query.state.as_deref() {
        None => None,
        Some(text) => Some(RequestState::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {text:?}: pending, approved, denied, expired, revoked or cancelled"
            ))
        })?),
    };
    let sees_all = state.access_rules.may_review(&roles) || roles.contains(Role::Admin);
    let only = (query.mine || !sees_all).then_some(name.as_str());
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let now = state.clock.now_ms();
    // A state is computed, not stored: page back through the requests
    // (newest first) until `limit` of them are in that state, 50 pages at most.
    let mut requests = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..50 {
        let page = state
            .store
            .list_requests(only, before.as_deref(), limit)
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.request.id.clone());
        let full_page = page.len() as u32 == limit;
        requests.extend(
            page.iter()
                .map(|rows| request_view(rows, now))
                .filter(|view| wanted.is_none_or(|w| view.state == w.as_str())),
        );
        if requests.len() as u32 >= limit || !full_page {
            break;
        }
    }
    requests.truncate(limit as usize);
    Ok(Json(RequestList { requests }))
}

#[utoipa::path(get, path = "/v1/access/requests/{id}", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 404, body = ErrorBody)))]
pub async fn show_request(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<RequestView>, ApiError> {
    let (name, roles) = person(&caller)?;
    let rows = state
        .store
        .get_request(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no request {id}")))?;
    let sees_all = state.access_rules.may_review(&roles) || roles.contains(Role::Admin);
    if !sees_all && rows.request.requester != name {
        // Someone else's request: as if it did not exist.
        return Err(ApiError::not_found(format!("no request {id}")));
    }
    Ok(Json(request_view(&rows, state.clock.now_ms())))
}

/// The time of the latest review or action already on the request.
fn latest_row(rows: &RequestRows) -> Option<i64> {
    let reviews = rows.reviews.iter().map(|r| r.at_ms);
    let actions = rows.actions.iter().map(|a| a.at_ms);
    reviews.chain(actions).max()
}

/// Why a transition is refused: (status, message).
type Refused = (StatusCode, String);

fn refused(status: StatusCode, message: String) -> Refused {
    (status, message)
}

/// Runs a transition and its audit records; the request as it is after.
async fn transition(
    state: AppState,
    caller: Caller,
    id: String,
    decide: impl FnOnce(&RequestRows, &Status, i64) -> Result<Transition, Refused> + Send + 'static,
) -> Result<RequestView, ApiError> {
    detached(async move {
        let clock = state.clock.now_ms();
        let mut before: Option<Status> = None;
        let mut at = clock;
        let outcome = state
            .access_cache
            .after(state.store.transition(&id, |rows| {
                // Never before a row already there: nodes' clocks differ, and
                // the rows' order in time must be their order of commit.
                at = latest_row(rows).map_or(clock, |latest| clock.max(latest));
                let current = status(&rows.request, &rows.reviews, &rows.actions, at);
                let decided = decide(rows, &current, at);
                before = Some(current);
                decided
            }))
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => ApiError::not_found(format!("no request {id}")),
                other => other.into(),
            })?;
        let (rows, added) = outcome.map_err(|(status, message)| {
            ApiError::new(
                status,
                if status == StatusCode::FORBIDDEN {
                    "forbidden"
                } else {
                    "conflict"
                },
                message,
            )
        })?;
        let now = at;
        // The request's own id, whatever spelling the path used (`007`).
        let id = rows.request.id.clone();
        let after = status(&rows.request, &rows.reviews, &rows.actions, now);
        let target = format!("request:{id}");
        let resources: Vec<String> = rows
            .request
            .resources
            .iter()
            .map(ToString::to_string)
            .collect();
        match &added {
            Transition::Review(review) => {
                let kind = match review.decision {
                    Decision::Approve => "access.review.approve",
                    Decision::Deny => "access.review.deny",
                };
                let details =
                    object(json!({"comment": review.comment, "requester": rows.request.requester}));
                audit::record(&state, &caller, kind, target.clone(), details).await?;
                state.notifier.send(match review.decision {
                    Decision::Approve => format!(
                        "Access request {id} of {}: approved by {} ({} of {})",
                        rows.request.requester,
                        review.reviewer,
                        after.approvals,
                        rows.request.approvals_needed
                    ),
                    Decision::Deny => format!(
                        "Access request {id} of {}: denied by {}: {}",
                        rows.request.requester, review.reviewer, review.comment
                    ),
                });
            }
            Transition::Action(action) => {
                let kind = match action.kind {
                    ActionKind::Cancel => "access.request.cancel",
                    ActionKind::Revoke => "access.grant.revoke",
                };
                let details =
                    object(json!({"reason": action.reason, "requester": rows.request.requester}));
                audit::record(&state, &caller, kind, target.clone(), details).await?;
                state.notifier.send(match action.kind {
                    ActionKind::Cancel => {
                        format!("Access request {id}: cancelled by {}", action.actor)
                    }
                    ActionKind::Revoke => format!(
                        "Access request {id}: the grant of {} was revoked by {}: {}",
                        rows.request.requester, action.actor, action.reason
                    ),
                });
            }
        }
        let was_pending = before.is_some_and(|b| b.state == RequestState::Pending);
        if was_pending
            && after.state == RequestState::Approved
            && let Some(grant) = after.grant
        {
            let details = object(json!({
                "grant": id,
                "user": rows.request.requester,
                "resources": resources,
                "reason": rows.request.reason,
                "start": from_ms(grant.start_ms).to_string(),
                "end": from_ms(grant.end_ms).to_string(),
                "approvals": after.approvals,
            }));
            audit::record(&state, &caller, "access.grant.start", target, details).await?;
            state.notifier.send(format!(
                "Access granted to {} on {} from {} until {} (request {id})",
                rows.request.requester,
                resources.join(", "),
                from_ms(grant.start_ms),
                from_ms(grant.end_ms)
            ));
        }
        Ok(request_view(&rows, now))
    })
    .await
}

/// A reviewer's decision on a pending request (never on their own).
fn review_check(state: &AppState, caller: &Caller) -> Result<(String, Roles), ApiError> {
    let (name, roles) = person(caller)?;
    if !state.access_rules.may_review(&roles) {
        return Err(ApiError::forbidden(format!(
            "{name} lacks the reviewer role ({})",
            state.access_rules.reviewer_role
        )));
    }
    Ok((name, roles))
}

fn decide_review(
    reviewer: String,
    decision: Decision,
    comment: String,
) -> impl FnOnce(&RequestRows, &Status, i64) -> Result<Transition, Refused> + Send + 'static {
    move |rows, current, now| {
        let id = &rows.request.id;
        if rows.request.requester == reviewer {
            return Err(refused(
                StatusCode::FORBIDDEN,
                format!(
                    "{reviewer} made request {id}: a requester never reviews their own request"
                ),
            ));
        }
        if current.state != RequestState::Pending {
            return Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "request {id} is {}: it can no longer be reviewed",
                    current.state.as_str()
                ),
            ));
        }
        if let Some(start) = rows.request.start_ms
            && start.saturating_add(rows.request.duration_ms) <= now
        {
            return Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "request {id} asked for access that has already ended: it can no longer be reviewed"
                ),
            ));
        }
        if rows.reviews.iter().any(|r| r.reviewer == reviewer) {
            return Err(refused(
                StatusCode::CONFLICT,
                format!("{reviewer} already reviewed request {id}: a reviewer counts once"),
            ));
        }
        Ok(Transition::Review(Review {
            reviewer,
            decision,
            comment,
            at_ms: now,
        }))
    }
}

#[utoipa::path(post, path = "/v1/access/requests/{id}/approve", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Approval,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    body: Result<JsonBody<Approval>, ApiError>,
) -> Result<Json<RequestView>, ApiError> {
    let (name, _) = review_check(&state, &caller)?;
    let JsonBody(approval) = body?;
    let decide = decide_review(name, Decision::Approve, approval.comment.trim().to_owned());
    Ok(Json(transition(state, caller, id, decide).await?))
}

#[utoipa::path(post, path = "/v1/access/requests/{id}/deny", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Refusal,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    body: Result<JsonBody<Refusal>, ApiError>,
) -> Result<Json<RequestView>, ApiError> {
    let (name, _) = review_check(&state, &caller)?;
    let JsonBody(refusal) = body?;
    if refusal.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a deny needs a reason"));
    }
    let decide = decide_review(name, Decision::Deny, refusal.reason.trim().to_owned());
    Ok(Json(transition(state, caller, id, decide).await?))
}

#[utoipa::path(post, path = "/v1/access/requests/{id}/revoke", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Refusal,
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    body: Result<JsonBody<Refusal>, ApiError>,
) -> Result<Json<RequestView>, ApiError> {
    let (name, roles) = person(&caller)?;
    if !(state.access_rules.may_review(&roles) || roles.contains(Role::Admin)) {
        return Err(ApiError::forbidden(format!(
            "{name} may not revoke grants (reviewers and admins may)"
        )));
    }
    let JsonBody(refusal) = body?;
    if refusal.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a revocation needs a reason"));
    }
    let reason = refusal.reason.trim().to_owned();
    let decide = move |rows: &RequestRows, current: &Status, now| {
        if current.state != RequestState::Approved {
            return Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "request {} is {}: only an approved grant is revoked",
                    rows.request.id,
                    current.state.as_str()
                ),
            ));
        }
        Ok(Transition::Action(Action {
            kind: ActionKind::Revoke,
            actor: name,
            reason,
            at_ms: now,
        }))
    };
    Ok(Json(transition(state, caller, id, decide).await?))
}

#[utoipa::path(post, path = "/v1/access/requests/{id}/cancel", tag = "access", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<RequestView>, ApiError> {
    let (name, _) = person(&caller)?;
    let decide = move |rows: &RequestRows, current: &Status, now| {
        if rows.request.requester != name {
            return Err(refused(
                StatusCode::FORBIDDEN,
                format!(
                    "only {} cancels request {}",
                    rows.request.requester, rows.request.id
                ),
            ));
        }
        if current.state != RequestState::Pending {
            return Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "request {} is {}: only a pending request is cancelled (an approved one is revoked)",
                    rows.request.id,
                    current.state.as_str()
                ),
            ));
        }
        Ok(Transition::Action(Action {
            kind: ActionKind::Cancel,
            actor: name,
            reason: String::new(),
            at_ms: now,
        }))
    };
    Ok(Json(transition(state, caller, id, decide).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    user: String,
    resource: String,
}

/// Whether `user` may reach `resource` now, for the bastion and the data
/// proxy (machine identities with the bastion role only).
#[utoipa::path(get, path = "/v1/grants/check", tag = "access", security(("mtls" = [])),
    params(("user" = String, Query), ("resource" = String, Query)),
    responses((status = 200, body = GrantCheck), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn check_grant(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<CheckQuery>,
) -> Result<Json<GrantCheck>, ApiError> {
    caller.require_machine(MachineRole::Bastion)?;
    let resource: ResourceRef = query.resource.parse().map_err(ApiError::bad_request)?;
    let now = state.clock.now_ms();
    let access = state
        .access_cache
        .user(&state.store, &query.user, now)
        .await?;
    let outcome = access.check(
        &query.user,
        &resource,
        &state.access_rules.required_training,
        now,
    );
    Ok(Json(GrantCheck {
        allow: outcome.is_ok(),
        user: query.user,
        resource: resource.to_string(),
        grant: outcome.as_ref().ok().map(|(request, _)| request.clone()),
        ends_at: outcome.as_ref().ok().map(|(_, end)| from_ms(*end)),
        reason: outcome.err(),
    }))
}

/// Moves the access clock forward, on a server started with
/// `--danger-test-clock` (tests); on any other server the route does not exist.
#[utoipa::path(post, path = "/v1/danger/clock", tag = "access", security(("bearer" = [])),
    request_body = rempart_api::AdvanceClock,
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn advance_clock(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<rempart_api::AdvanceClock>, ApiError>,
) -> Result<StatusCode, ApiError> {
    if !state.clock.is_adjustable() {
        return Err(ApiError::not_found("no such route; see /v1/openapi.json"));
    }
    caller.require(&[Role::Admin])?;
    let JsonBody(body) = body?;
    let ms = parse_duration(&body.advance)
        .map_err(|e| ApiError::bad_request(format!("advance: {e}")))?;
    state.clock.advance(ms);
    tracing::warn!(advance = %body.advance, "the access clock was moved forward (--danger-test-clock)");
    Ok(StatusCode::NO_CONTENT)
}
