//! Writes the ends nobody acted on to the well-log: a grant reaching its end
//! (`access.grant.end`) and a request nobody decided in time
//! (`access.request.expire`). Enforcement never waits for this (a grant
//! check compares times); this only keeps the record, within `EVERY`. Each
//! end is claimed in the store first, so one node writes it, once.

use std::time::Duration;

use rempart_access::{State, status};
use serde_json::json;
use tokio::sync::watch;

use crate::audit::{self, object};
use crate::routes::from_ms;
use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(30);
/// With a test clock (`--danger-test-clock`), ends come into being when the
/// clock jumps: look every second.
const EVERY_WITH_TEST_CLOCK: Duration = Duration::from_secs(1);
/// Requests looked at in one sweep at most.
const SWEEP_LIMIT: u32 = 10_000;

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = if state.clock.is_adjustable() {
        EVERY_WITH_TEST_CLOCK
    } else {
        EVERY
    };
    loop {
        if let Err(err) = sweep(&state).await {
            tracing::error!(error = %err, "access: logging the ends of grants failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One sweep; how many ends it logged.
pub async fn sweep(state: &AppState) -> anyhow::Result<u32> {
    let rules = &state.access_rules;
    let now = state.clock.now_ms();
    // A request starts at most `pending_for` after it is made and lasts at
    // most `max_duration`; a day more covers a control plane that was down.
    let window = 2 * rules.pending_for_ms + rules.max_duration_ms + 86_400_000;
    let mut logged = 0;
    for rows in state
        .store
        .requests_created_since(now - window, SWEEP_LIMIT)
        .await?
    {
        let current = status(&rows.request, &rows.reviews, &rows.actions, now);
        let (State::Expired, Some(ended_at)) = (current.state, current.ended_at_ms) else {
            continue;
        };
        let id = &rows.request.id;
        let (claim, kind) = match current.grant {
            Some(_) => ("grant", "access.grant.end"),
            None => ("request", "access.request.expire"),
        };
        if !state
            .store
            .claim_access_end(id, claim, ended_at, now)
            .await?
        {
            continue;
        }
        let details = object(json!({
            "user": rows.request.requester,
            "resources": rows.request.resources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "ended_at": from_ms(ended_at).to_string(),
        }));
        audit::record_own(state, kind, format!("request:{id}"), details)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.status()))?;
        logged += 1;
    }
    Ok(logged)
}
