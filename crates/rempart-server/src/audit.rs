//! The control plane's own events, written to the well-log like everyone
//! else's (DESIGN.md: one event schema, one writer API).

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The sender of the control plane's own events.
pub const SENDER: &str = "rempart:control-plane";

/// Records that `caller` did `kind` to `target`, with `details` beside.
/// Called after the change committed; the answer waits until the event is on
/// disk, so an acknowledged change is always in the log.
pub async fn record(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    target: String,
    details: Map<String, Value>,
) -> Result<u64, ApiError> {
    record_as(state, &caller.actor(), kind, target, details).await
}

/// Records what the control plane itself noticed or did (the actor is
/// [`SENDER`]): a grant reaching its end, a request expiring.
pub async fn record_own(
    state: &AppState,
    kind: &str,
    target: String,
    details: Map<String, Value>,
) -> Result<u64, ApiError> {
    record_as(state, SENDER, kind, target, details).await
}

async fn record_as(
    state: &AppState,
    actor: &str,
    kind: &str,
    target: String,
    details: Map<String, Value>,
) -> Result<u64, ApiError> {
    let mut event = details;
    event.insert("kind".to_owned(), json!(kind));
    event.insert("actor".to_owned(), json!(actor));
    event.insert("target".to_owned(), json!(target));
    event.insert("outcome".to_owned(), json!("success"));
    let stamp = rempart_welllog::Stamp {
        received: OffsetDateTime::now_utc(),
        sender: SENDER.to_owned(),
        source: rempart_welllog::Source::Internal,
    };
    let entry = rempart_welllog::canonical_entry(Value::Object(event), &stamp).map_err(|e| {
        tracing::error!(error = %e, kind, "an internal event does not fit the schema");
        ApiError::unavailable(&e)
    })?;
    let range = state.writer.append(vec![entry]).await.map_err(|e| {
        tracing::error!(error = %e, kind, "the change was made but could not be written to the well-log");
        ApiError::unavailable(&e)
    })?;
    Ok(range.start)
}

/// Runs a change and its audit record to the end even if the client goes
/// away or the request times out: a change that happened is always logged.
pub async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|e| {
        tracing::error!(error = %e, "a change did not complete");
        ApiError::unavailable(&e)
    })?
}

/// The fields of a `json!({...})` object literal.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
