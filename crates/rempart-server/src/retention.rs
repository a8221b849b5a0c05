//! Erasure that keeps proofs: payloads past `welllog.retention_days`, and
//! single entries on an admin's order, are erased in the log (their leaves
//! stay) and removed from the search index.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use crate::state::AppState;

/// How far retention has looked, kept beside the search index (derived:
/// if the index is rebuilt, retention looks again from the start and skips
/// what is erased already).
const MARK: &str = "retention_checked";
const BATCH: u64 = 1000;

/// Removes erased entries from the search index, once the indexer has
/// passed them (so that it cannot index a payload it read before). Waits for
/// the indexer once, for the highest of them, at most 5 s.
pub async fn forget(index: &rempart_search::Index, seqs: &[u64]) {
    let Some(&highest) = seqs.iter().max() else {
        return;
    };
    for _ in 0..100 {
        match index.indexed().await {
            Ok(indexed) if indexed > highest => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(err) => {
                tracing::error!(error = %err, highest, "search index: cannot see how far it is");
                break;
            }
        }
    }
    for &seq in seqs {
        if let Err(err) = index.forget(seq).await {
            tracing::error!(error = %err, seq, "search index: an erased entry could not be removed");
        }
    }
}

/// When the entry arrived, from its `received` stamp.
fn received(payload: &[u8]) -> Option<OffsetDateTime> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    OffsetDateTime::parse(value.get("received")?.as_str()?, &Rfc3339).ok()
}

/// Erases payloads received before `cutoff`, from where it last stopped.
/// Entries arrive in order, so it stops at the first newer one.
pub async fn apply(state: &AppState, cutoff: OffsetDateTime) -> anyhow::Result<u64> {
    let mut seq = state.index.mark(MARK).await?;
    let size = state.welllog.size();
    let mut total = 0;
    while seq < size {
        let end = size.min(seq + BATCH);
        let log = state.welllog.clone();
        let (expired, stop) = tokio::task::spawn_blocking(move || {
            let mut expired = Vec::new();
            for record in log.read_range(seq, end)? {
                match record.payload.as_deref().map(received) {
                    None => {} // Erased already.
                    Some(Some(at)) if at < cutoff => expired.push(record.seq),
                    Some(_) => {
                        return Ok::<_, rempart_welllog::LogError>((expired, Some(record.seq)));
                    }
                }
            }
            Ok((expired, None))
        })
        .await??;
        if !expired.is_empty() {
            // The writer also removes them from the search index.
            total += state.writer.erase(expired).await?;
        }
        match stop {
            Some(newer) => {
                state.index.set_mark(MARK, newer).await?;
                break;
            }
            None => {
                state.index.set_mark(MARK, end).await?;
                seq = end;
            }
        }
    }
    Ok(total)
}

/// Applies the retention period at start and then every hour.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let days = state.config.welllog.retention_days.get();
    if days == 0 {
        return;
    }
    loop {
        let cutoff = OffsetDateTime::now_utc() - time::Duration::days(days);
        // On the shared log one node (the sequencer) applies it for all.
        let outcome = if state.writer.applies_retention() {
            apply(&state, cutoff).await
        } else {
            Ok(0)
        };
        match outcome {
            Ok(0) => {}
            Ok(erased) => {
                tracing::info!(
                    erased,
                    days,
                    "well-log retention: payloads erased, leaves kept"
                );
                let event = serde_json::json!({
                    "kind": "log.retention",
                    "outcome": "success",
                    "msg": format!("{erased} payloads older than {days} days erased; their leaf hashes stay"),
                    "erased": erased,
                });
                let stamp = rempart_welllog::Stamp {
                    received: OffsetDateTime::now_utc(),
                    sender: crate::audit::SENDER.to_owned(),
                    source: rempart_welllog::Source::Internal,
                };
                if let Ok(entry) = rempart_welllog::canonical_entry(event, &stamp)
                    && let Err(err) = state.writer.append(vec![entry]).await
                {
                    tracing::error!(error = %err, "well-log retention: its record could not be written");
                }
            }
            Err(err) => tracing::error!(error = %err, "well-log retention failed; retrying later"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}
