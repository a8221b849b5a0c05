//! The well-log: ingestion, checkpoints, entries and proofs.

use axum::Json;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use rempart_api::{
    AppendResult, CheckpointView, ConsistencyProofView, EntryList, EntryView, EraseOrder, Erased,
    ErrorBody, InclusionProofView, RejectedLine, SearchResult,
};
use rempart_core::Role;
use rempart_merkle::Hash;
use rempart_welllog::{LogError, Source, Stamp};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::{self, detached, object};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::state::AppState;

/// Media types of a JSON-lines body.
const JSON_LINES: [&str; 3] = [
    "application/x-ndjson",
    "application/jsonl",
    "application/jsonlines",
];

fn log_error(err: LogError) -> ApiError {
    match err {
        LogError::NotFound(seq) => ApiError::not_found(format!("no entry {seq}")),
        LogError::Proof(e) => ApiError::bad_request(e.to_string()),
        // Says why this node takes no entries; nothing secret in it.
        LogError::WrongMode(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why)
        }
        other => {
            tracing::error!(error = %other, "well-log unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the well-log could not do it now; try again",
            )
        }
    }
}

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_base64).collect()
}

/// How long a batch waits for its share of the ingest memory budget before
/// it is answered 503 (with `Retry-After`). The request timeout starts after.
pub const BUDGET_WAIT: Duration = Duration::from_secs(60);

/// Appends JSON lines. Lines that do not fit the event schema are refused
/// one by one; the others are acknowledged once on disk. The body is read
/// only once the batch has its share of the ingest memory budget.
#[utoipa::path(post, path = "/v1/log/entries", tag = "welllog", security(("bearer" = []), ("mtls" = [])),
    request_body(content = String, content_type = "application/x-ndjson", description = "one JSON object per line"),
    responses((status = 200, body = AppendResult), (status = 400, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the ingest memory budget stayed spent; retry after the Retry-After delay")))]
pub async fn append(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AppendResult>, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if !media.as_deref().is_some_and(|m| JSON_LINES.contains(&m)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send JSON lines with Content-Type: application/x-ndjson",
        ));
    }
    let limit = usize::try_from(state.config.welllog.max_batch_bytes.get()).unwrap_or(usize::MAX);
    // A body without a declared length may be as large as the limit.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(limit as u64);
    let Some(_share) = state.ingest_budget.take(declared, BUDGET_WAIT).await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the well-log is taking all the batches it can hold; retry in a few seconds",
        )
        .retry_after(5));
    };
    // The request timeout counts from here: waiting for the budget is not
    // the client's slowness.
    let timeout = Duration::from_secs(state.config.http.request_timeout_secs.get().unsigned_abs());
    tokio::time::timeout(
        timeout,
        receive_and_append(&state, &caller, body, declared, limit),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        )
    })?
}

/// Reads a body of at most `limit` bytes into one buffer sized from its
/// declared length (no doubling while it grows).
async fn receive(body: Body, declared: u64, limit: usize) -> Result<Vec<u8>, ApiError> {
    use hyper::body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(limit).min(limit));
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body is over {limit} bytes (welllog.max_batch_bytes)"),
                ));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

async fn receive_and_append(
    state: &AppState,
    caller: &Caller,
    body: Body,
    declared: u64,
    limit: usize,
) -> Result<Json<AppendResult>, ApiError> {
    let body = receive(body, declared, limit).await?;
    let stamp = Stamp {
        received: OffsetDateTime::now_utc(),
        sender: caller.actor(),
        source: Source::Api,
    };
    // Parsing a large batch is CPU work: keep it off the async workers.
    let (payloads, rejected) = tokio::task::spawn_blocking(move || parse_lines(&body, &stamp))
        .await
        .map_err(|e| ApiError::unavailable(&e))??;
    let accepted = payloads.len() as u64;
    let range = state.writer.append(payloads).await.map_err(log_error)?;
    Ok(Json(AppendResult {
        accepted,
        first_seq: (accepted > 0).then_some(range.start),
        last_seq: (accepted > 0).then(|| range.end - 1),
        rejected,
    }))
}

fn parse_lines(body: &[u8], stamp: &Stamp) -> Result<(Vec<Vec<u8>>, Vec<RejectedLine>), ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut payloads = Vec::new();
    let mut rejected = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let outcome = serde_json::from_str(line)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|value| {
                rempart_welllog::canonical_entry(value, stamp).map_err(|e| e.to_string())
            });
        match outcome {
            Ok(payload) => payloads.push(payload),
            Err(error) => rejected.push(RejectedLine {
                line: index as u64 + 1,
                error,
            }),
        }
    }
    if payloads.is_empty() && rejected.is_empty() {
        return Err(ApiError::bad_request("the body holds no entries"));
    }
    Ok((payloads, rejected))
}

/// The latest signed checkpoint.
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "welllog", security(("bearer" = []), ("mtls" = [])),
    responses((status = 200, body = CheckpointView)))]
pub async fn checkpoint(State(state): State<AppState>, _caller: Caller) -> Json<CheckpointView> {
    let latest = state.welllog.checkpoint();
    Json(CheckpointView {
        origin: state.config.welllog.origin.as_str().to_owned(),
        size: latest.size,
        root: latest.root.to_base64(),
        note: latest.note,
        verifier_key: state.welllog.verifier().to_text(),
    })
}

fn view(seq: u64, record: rempart_welllog::Record) -> Result<EntryView, ApiError> {
    let entry = match &record.payload {
        Some(bytes) => Some(serde_json::from_slice(bytes).map_err(|e| ApiError::unavailable(&e))?),
        None => None,
    };
    Ok(EntryView {
        seq,
        leaf_hash: record.leaf.to_base64(),
        entry,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The first sequence number; default: the last `limit` entries.
    from: Option<u64>,
    /// At most 1000; default 100.
    limit: Option<u64>,
    /// Only entries that match this search query (`rempart log tail QUERY`).
    q: Option<String>,
}

fn parse_query(text: &str) -> Result<rempart_search::Query, ApiError> {
    rempart_search::Query::parse(text, OffsetDateTime::now_utc())
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    q: String,
    /// At most 1000; default 50.
    limit: Option<u32>,
}

/// Incident search: newest matches first, each with its sequence number so
/// that its proof can be fetched.
#[utoipa::path(get, path = "/v1/log/search", tag = "welllog", security(("bearer" = [])),
    params(("q" = String, Query, description = "e.g. since:2h host:db-1 kind:ssh.* \"invalid user\""), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = SearchResult), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<SearchQuery>,
) -> Result<Json<SearchResult>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let parsed = parse_query(&query.q)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let seqs = state
        .index
        .search(&parsed, limit)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    let mut hits = Vec::with_capacity(seqs.len());
    for seq in seqs {
        hits.push(view(seq, state.welllog.read(seq).map_err(log_error)?)?);
    }
    Ok(Json(SearchResult {
        hits,
        indexed: state
            .index
            .indexed()
            .await
            .map_err(|e| ApiError::unavailable(&e))?,
        size: state.welllog.size(),
    }))
}

/// Consecutive entries from `from` (for `rempart log tail`).
#[utoipa::path(get, path = "/v1/log/entries", tag = "welllog", security(("bearer" = [])),
    params(("from" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = EntryList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<EntryList>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let size = state.welllog.size();
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let from = query.from.unwrap_or_else(|| size.saturating_sub(limit));
    let filter = query.q.as_deref().map(parse_query).transpose()?;
    let mut entries = Vec::new();
    let end = size.min(from.saturating_add(limit));
    for record in state.welllog.read_range(from, end).map_err(log_error)? {
        let entry = view(record.seq, record)?;
        let keep = match (&filter, &entry.entry) {
            (None, _) => true,
            (Some(filter), Some(value)) => filter.matches(value),
            (Some(_), None) => false,
        };
        if keep {
            entries.push(entry);
        }
    }
    // With a filter, `size` still says where to continue from.
    let size = size.min(from.saturating_add(limit));
    Ok(Json(EntryList { entries, size }))
}

/// One entry, with its leaf hash.
#[utoipa::path(get, path = "/v1/log/entries/{seq}", tag = "welllog", security(("bearer" = [])),
    params(("seq" = u64, Path)),
    responses((status = 200, body = EntryView), (status = 404, body = ErrorBody)))]
pub async fn entry(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(seq): PathParam<u64>,
) -> Result<Json<EntryView>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let record = state.welllog.read(seq).map_err(log_error)?;
    Ok(Json(view(seq, record)?))
}

/// Erases one entry's payload on an admin's order. The order is logged first
/// (`log.erase`, with the reason); the entry's leaf hash stays, so the tree,
/// the checkpoints and every proof stay valid; search no longer finds it.
#[utoipa::path(post, path = "/v1/log/entries/{seq}/erase", tag = "welllog", security(("bearer" = [])),
    params(("seq" = u64, Path)), request_body = EraseOrder,
    responses((status = 200, body = Erased), (status = 404, body = ErrorBody)))]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(seq): PathParam<u64>,
    body: Result<JsonBody<EraseOrder>, ApiError>,
) -> Result<Json<Erased>, ApiError> {
    caller.require(&[Role::Admin])?;
    let JsonBody(order) = body?;
    if order.reason.trim().len() < 8 {
        return Err(ApiError::bad_request(
            "an erase order needs a reason (8 characters at least)",
        ));
    }
    if seq >= state.welllog.size() {
        return Err(ApiError::not_found(format!("no entry {seq}")));
    }
    let erased = detached(async move {
        let details = object(serde_json::json!({"reason": order.reason}));
        let order_seq =
            audit::record(&state, &caller, "log.erase", format!("log:{seq}"), details).await?;
        let erased_now = state.writer.erase(vec![seq]).await.map_err(log_error)? > 0;
        Ok(Erased {
            seq,
            erased_now,
            order_seq,
        })
    })
    .await?;
    Ok(Json(erased))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    seq: u64,
    /// Default: the latest checkpoint's size.
    size: Option<u64>,
}

/// The proof that entry `seq` is in the tree of `size` entries.
#[utoipa::path(get, path = "/v1/log/proof/inclusion", tag = "welllog", security(("bearer" = [])),
    params(("seq" = u64, Query), ("size" = Option<u64>, Query, description = "default: the latest checkpoint")),
    responses((status = 200, body = InclusionProofView), (status = 400, body = ErrorBody)))]
pub async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<InclusionQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let size = query
        .size
        .unwrap_or_else(|| state.welllog.checkpoint().size);
    let log = &state.welllog;
    let proof = log.inclusion_proof(query.seq, size).map_err(log_error)?;
    let leaf = log.read(query.seq).map_err(log_error)?.leaf;
    Ok(Json(InclusionProofView {
        seq: query.seq,
        size,
        leaf_hash: leaf.to_base64(),
        proof: b64(&proof),
        root: log.root(size).map_err(log_error)?.to_base64(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    old: u64,
    /// Default: the latest checkpoint's size.
    new: Option<u64>,
}

/// The proof that the tree of `old` entries is a prefix of the tree of `new`.
#[utoipa::path(get, path = "/v1/log/proof/consistency", tag = "welllog", security(("bearer" = [])),
    params(("old" = u64, Query), ("new" = Option<u64>, Query, description = "default: the latest checkpoint")),
    responses((status = 200, body = ConsistencyProofView), (status = 400, body = ErrorBody)))]
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    caller.require(&[Role::Security, Role::Admin])?;
    let log = &state.welllog;
    let new = query.new.unwrap_or_else(|| log.checkpoint().size);
    let proof = log.consistency_proof(query.old, new).map_err(log_error)?;
    Ok(Json(ConsistencyProofView {
        old_size: query.old,
        new_size: new,
        old_root: log.root(query.old).map_err(log_error)?.to_base64(),
        new_root: log.root(new).map_err(log_error)?.to_base64(),
        proof: b64(&proof),
    }))
}
