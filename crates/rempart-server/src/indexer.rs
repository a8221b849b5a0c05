//! Keeps the search index following the well-log: whatever is on disk gets
//! indexed, in order, shortly after. The index is derived data; the log is
//! the truth, so search results say how far the index has got.

use std::time::Duration;

use rempart_search::Index;
use rempart_welllog::WellLog;
use tokio::sync::watch;

/// Entries read and indexed together at most.
const CHUNK: u64 = 5000;
/// After the log grows, how long the indexer lets more entries arrive
/// before it indexes them together: each index transaction costs a flush
/// and merges of SQLite's full-text index, so under a steady trickle of
/// small batches (a bastion's statements) fewer, larger transactions take
/// far less CPU. Search answers say how far the index has got.
const COALESCE: Duration = Duration::from_millis(200);

pub async fn follow(log: WellLog, index: Index, mut stop: watch::Receiver<bool>) {
    let mut grown = log.watch();
    loop {
        match catch_up(&log, &index).await {
            Ok(true) => continue, // More to do at once.
            Ok(false) => {}
            Err(err) => {
                tracing::error!(error = %err, "search index: indexing failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::select! {
            changed = grown.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(COALESCE) => {}
        }
    }
}

/// Indexes the next chunk; `true` when there is more behind it.
async fn catch_up(log: &WellLog, index: &Index) -> anyhow::Result<bool> {
    let from = index.indexed().await?;
    let size = log.size();
    if from >= size {
        return Ok(false);
    }
    let until = size.min(from + CHUNK);
    let reader = log.clone();
    let entries = tokio::task::spawn_blocking(move || reader.read_range(from, until))
        .await??
        .into_iter()
        .map(|record| (record.seq, record.payload))
        .collect::<Vec<_>>();
    index.add(&entries).await?;
    Ok(until < size)
}
