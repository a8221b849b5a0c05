//! The HTTP application: routes, authentication and the layers every
//! response goes through.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::routes::{access, db, log, machines, meta, sessions, ssh, training, users};

const LOG_ENTRIES: &str = "/v1/log/entries";
use crate::state::AppState;
use crate::{auth, metrics};

pub fn router(state: AppState) -> Router {
    let http = &state.config.http;
    let body_limit = usize::try_from(http.max_body_bytes.get()).unwrap_or(usize::MAX);
    let timeout = Duration::from_secs(http.request_timeout_secs.get().unsigned_abs());
    let hsts = http.hsts_max_age_secs.get();
    let batch_limit =
        usize::try_from(state.config.welllog.max_batch_bytes.get()).unwrap_or(usize::MAX);

    // Everything here needs an authenticated caller: the middleware runs
    // before the handler of every route in this router.
    let authenticated = Router::new()
        .route("/v1/whoami", get(meta::whoami))
        .route("/v1/openapi.json", get(meta::openapi))
        .route("/metrics", get(meta::metrics))
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{name}", get(users::get))
        .route("/v1/users/{name}/disable", post(users::disable))
        .route("/v1/users/{name}/token", post(users::token))
        .route("/v1/machines", get(machines::list).post(machines::create))
        .route("/v1/machines/{name}/revoke", post(machines::revoke))
        .route(
            LOG_ENTRIES,
            post(log::append)
                .layer(DefaultBodyLimit::max(batch_limit))
                .get(log::list),
        )
        .route(
            "/v1/resources",
            get(access::list_resources).post(access::create_resource),
        )
        .route(
            "/v1/access/requests",
            get(access::list_requests).post(access::create_request),
        )
        .route("/v1/access/requests/{id}", get(access::show_request))
        .route("/v1/access/requests/{id}/approve", post(access::approve))
        .route("/v1/access/requests/{id}/deny", post(access::deny))
        .route("/v1/access/requests/{id}/revoke", post(access::revoke))
        .route("/v1/access/requests/{id}/cancel", post(access::cancel))
        .route("/v1/grants/check", get(access::check_grant))
        .route("/v1/danger/clock", post(access::advance_clock))
        .route("/v1/ssh/authorities", get(ssh::authorities))
        .route("/v1/ssh/certificates", post(ssh::create_certificate))
        .route("/v1/bastion/sessions", post(ssh::open_session))
        .route("/v1/db/authorities", get(db::authorities))
        .route("/v1/db/certificates", post(db::create_certificate))
        .route(
            "/v1/sessions",
            get(sessions::list_sessions).post(sessions::store_session),
        )
        .route("/v1/sessions/{id}", get(sessions::show_session))
        .route(
            "/v1/sessions/{id}/recordings/{name}",
            put(sessions::store_recording)
                .layer(DefaultBodyLimit::max(batch_limit))
                .get(sessions::get_recording),
        )
        .route(
            "/v1/training/modules",
            get(training::list_modules).post(training::create_module),
        )
        .route("/v1/training/records", post(training::record))
        .route("/v1/training/status", get(training::status))
        .route("/v1/log/entries/{seq}", get(log::entry))
        .route("/v1/log/entries/{seq}/erase", post(log::erase))
        .route("/v1/log/checkpoint", get(log::checkpoint))
        .route("/v1/log/search", get(log::search))
        .route("/v1/log/proof/inclusion", get(log::inclusion))
        .route("/v1/log/proof/consistency", get(log::consistency))
        // Bodies are received only once the caller is known (route layers
        // run last-added first: authentication, then the body).
        .route_layer(axum::middleware::from_fn(receive_small_bodies))
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate));

    let public = Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/.well-known/security.txt", get(meta::security_txt));

    let mut router = public
        .merge(authenticated)
        .route_layer(from_fn_with_state(state.clone(), metrics::record))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                // Batches of well-log entries have their own, larger limit.
                let limit = if takes_large_body(request.uri().path()) {
                    batch_limit
                } else {
                    body_limit
                };
                refuse_declared_oversize(limit, request, next)
            },
        ))
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| within(timeout, request, next),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if hsts > 0 {
        let value = format!("max-age={hsts}; includeSubDomains");
        if let Ok(value) = HeaderValue::from_str(&value) {
            router = router.layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static("strict-transport-security"),
                value,
            ));
        }
    }
    router.with_state(state)
}

/// Answers 413 from the headers alone when the declared length is over the
/// limit: the body is never read, so an `Expect: 100-continue` client is told
/// before it uploads. Bodies without a length are cut by `DefaultBodyLimit`.
async fn refuse_declared_oversize(limit: usize, request: Request, next: Next) -> Response {
    let declared = declared_length(&request);
    match declared {
        Some(length) if length > limit as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is {length} bytes; the limit is {limit} (http.max_body_bytes)"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// The body length a request announces in `Content-Length`, if any.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Bodies up to this size are received in full before the request is routed.
const SMALL_BODY: u64 = 64 * 1024;

/// Receives a small body before the handler runs, so that an answer that does
/// not need the body (401, 403, 404) never leaves it unread. Over HTTP/2 an
/// unread body ends in a RST_STREAM(NO_ERROR) after the answer, which RFC 9113
/// allows but which curl 7.88 (Debian 12's) reports as a failed transfer,
/// hiding the answer from the user.
async fn receive_small_bodies(request: Request, next: Next) -> Response {
    let declared = declared_length(&request);
    let request = match declared {
        Some(length) if length > 0 && length <= SMALL_BODY => {
            let (parts, body) = request.into_parts();
            match axum::body::to_bytes(body, SMALL_BODY as usize).await {
                Ok(bytes) => Request::from_parts(parts, axum::body::Body::from(bytes)),
                Err(err) => {
                    return ApiError::bad_request(format!("cannot read the request body: {err}"))
                        .into_response();
                }
            }
        }
        _ => request,
    };
    next.run(request).await
}

/// The routes whose bodies may exceed `http.max_body_bytes`, up to
/// `welllog.max_batch_bytes`: batches of entries, and session recordings.
fn takes_large_body(path: &str) -> bool {
    path == LOG_ENTRIES || (path.starts_with("/v1/sessions/") && path.contains("/recordings/"))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}

/// Answers 408 when a request takes longer than `timeout`. A batch of
/// well-log entries is timed by its handler, from when it has its share of
/// the ingest memory budget (waiting for it is back-pressure, not the
/// client's slowness); here it only gets an outer bound.
async fn within(timeout: Duration, request: Request, next: Next) -> Response {
    let limit =
        if request.method() == axum::http::Method::POST && request.uri().path() == LOG_ENTRIES {
            // An outer bound all the same: the wait, then the handler's time.
            log::BUDGET_WAIT + timeout + Duration::from_secs(1)
        } else {
            timeout
        };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        )
        .into_response(),
    }
}
