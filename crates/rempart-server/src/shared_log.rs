//! The well-log shared by several control-plane nodes on PostgreSQL.
//!
//! Every node accepts entries: it stores each batch in PostgreSQL in one
//! transaction ([`rempart_store::Store::welllog_submit`]) and answers once
//! the batch has sequence numbers. Exactly one node sequences: the one whose
//! database session holds the sequencer's advisory lock; the others try to
//! take it every [`ELECTION_EVERY`]. When the sequencer dies its session
//! ends, PostgreSQL releases the lock and rolls back whatever it had not
//! committed, and another node takes over from the log's committed end.
//! An acknowledged entry is committed in PostgreSQL, so it survives the loss
//! of any node; a range is given once (the lock, and a unique constraint
//! behind it).
//!
//! Every node follows the sequenced entries into its own copy of the log's
//! files ([`rempart_welllog::Options::copy`]), checking every payload
//! against its leaf hash: its tree, checkpoints (signed with the key every
//! node shares), proofs and search index come from that copy. Erasures are
//! recorded in the database and applied by every node's follower.
//!
//! Wake-ups come from PostgreSQL notifications; every loop also polls, so a
//! lost notification costs latency, never an entry.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use prometheus_client::metrics::gauge::Gauge;
use rempart_search::Index;
use rempart_store::{Notice, SharedEntry, Store, StoreError};
use rempart_welllog::{LogError, Record, WellLog};
use tokio::sync::{Notify, oneshot, watch};

/// How often a node that does not sequence tries to take over.
pub const ELECTION_EVERY: Duration = Duration::from_millis(250);
/// Polling, in case a notification was lost.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Batches and entries sequenced in one transaction at most.
const SEQUENCE_BATCHES: u64 = 1024;
const SEQUENCE_ENTRIES: u64 = 200_000;
/// Entries copied in one step at most (to the end of a batch, so a little
/// more): with entries of at most 64 KiB, a step holds at most 256 MiB plus
/// one batch (bounded by the request body limit), about 1.2 MiB typically.
const COPY_ENTRIES: u64 = 4096;
/// How long an append waits for its batch to be numbered. Past it, the
/// answer is an error, though the entries are stored and will be numbered
/// when a sequencer runs (a client that resends may then log them twice).
const SEQUENCED_WITHIN: Duration = Duration::from_secs(30);
/// Erasures applied in one step at most.
const ERASURES: u64 = 1000;
/// How long an append waits for this node's copy to hold what it appended
/// (read-your-writes) once it is durable in the shared log.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);
/// Where this node's copy has applied the shared erasures (kept beside the
/// search index, like retention's mark: if the index is rebuilt, erasures are
/// applied again, which changes nothing).
const ERASURE_MARK: &str = "shared_erasures_applied";

fn shared_error(err: StoreError) -> LogError {
    LogError::Io(format!("the shared well-log: {err}"))
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// What the shared log tells `/metrics`.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// 1 while this node sequences.
    pub sequencer: Gauge,
    /// 1 once this node's copy stopped following the shared log.
    pub copy_stopped: Gauge,
}

/// This node's part in the shared log.
pub struct SharedLog {
    store: Store,
    /// This process's name in `welllog_batches.node` (process id and start
    /// time: it routes wake-ups; batch ids, unique, route answers).
    node: String,
    copy: WellLog,
    index: Index,
    /// Appends waiting for their batch's sequence numbers, by batch id.
    waiters: std::sync::Mutex<BTreeMap<i64, oneshot::Sender<u64>>>,
    wake_sequencer: Notify,
    wake_waiters: Notify,
    wake_follower: Notify,
    leading: AtomicBool,
    sequencer_gauge: Gauge,
    /// Set when this node's copy stopped matching the shared log.
    copy_stopped: AtomicBool,
    copy_stopped_gauge: Gauge,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog")
            .field("node", &self.node)
            .field("leading", &self.is_sequencer())
            .finish()
    }
}

impl SharedLog {
    /// Checks that this node's copy belongs to the shared log, then starts
    /// the sequencer election, the follower and the notifications.
    pub async fn start(
        store: Store,
        copy: WellLog,
        index: Index,
        origin: &str,
        gauges: Gauges,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<SharedLog>> {
        check_same_log(&store, &copy, origin).await?;
        let shared = Arc::new(SharedLog {
            store,
            node: format!(
                "{}:{:x}",
                std::process::id(),
                time::OffsetDateTime::now_utc().unix_timestamp_nanos()
            ),
            copy,
            index,
            waiters: std::sync::Mutex::default(),
            wake_sequencer: Notify::new(),
            wake_waiters: Notify::new(),
            wake_follower: Notify::new(),
            leading: AtomicBool::new(false),
            sequencer_gauge: gauges.sequencer,
            copy_stopped: AtomicBool::new(false),
            copy_stopped_gauge: gauges.copy_stopped,
        });
        tokio::spawn(shared.clone().listen(stop.clone()));
        tokio::spawn(shared.clone().elect_and_sequence(stop.clone()));
        tokio::spawn(shared.clone().follow(stop.clone()));
        tokio::spawn(shared.clone().answer_waiters(stop));
        Ok(shared)
    }

    /// Whether this node sequences the shared log now.
    pub fn is_sequencer(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Stores the entries in the shared log; returns their sequence numbers
    /// once sequenced (durable in PostgreSQL) and, within a few seconds,
    /// readable on this node.
    pub async fn append(&self, payloads: Vec<Vec<u8>>) -> Result<Range<u64>, LogError> {
        if self.copy_stopped.load(Ordering::Relaxed) {
            // Fail closed: a node that cannot check the shared log any more
            // takes no entry it could not show back.
            return Err(LogError::WrongMode(
                "this node's copy of the shared well-log stopped at a mismatch: it takes no entries (see its log)",
            ));
        }
        if payloads.is_empty() {
            let size = self.copy.size();
            return Ok(size..size);
        }
        let count = payloads.len() as u64;
        let entries = tokio::task::spawn_blocking(move || {
            payloads
                .into_iter()
                .map(|payload| (rempart_merkle::leaf_hash(&payload).0, payload))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| LogError::Io(format!("hashing entries: {e}")))?;
        let batch = self
            .store
            .welllog_submit(&self.node, &entries, now_ms())
            .await
            .map_err(shared_error)?;
        drop(entries);
        let (reply, answer) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(batch, reply);
        self.wake_sequencer.notify_one();
        self.wake_waiters.notify_one();
        let first = match tokio::time::timeout(SEQUENCED_WITHIN, answer).await {
            Ok(answer) => answer.map_err(|_| LogError::Closed)?,
            Err(_) => {
                self.waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&batch);
                return Err(LogError::Io(format!(
                    "the shared well-log did not number batch {batch} within {} s (is a sequencer running?): it is stored and will be numbered when one runs",
                    SEQUENCED_WITHIN.as_secs()
                )));
            }
        };
        let end = first + count;
        let mut grown = self.copy.watch();
        if tokio::time::timeout(READ_YOUR_WRITES, grown.wait_for(|size| *size >= end))
            .await
            .is_err()
        {
            tracing::warn!(
                first,
                end,
                "well-log: durable in the shared log, not yet in this node's copy"
            );
        }
        Ok(first..end)
    }

    /// Erases payloads in the shared log (every node applies it), and at once
    /// in this node's copy and index.
    pub async fn erase(&self, seqs: Vec<u64>) -> Result<u64, LogError> {
        let erased = self
            .store
            .welllog_erase(&seqs, now_ms())
            .await
            .map_err(|e| match e {
                StoreError::NotFound { what } => {
                    match what.rsplit(' ').next().and_then(|n| n.parse().ok()) {
                        Some(seq) => LogError::NotFound(seq),
                        None => LogError::Io(what),
                    }
                }
                other => shared_error(other),
            })?;
        self.erase_in_copy(&seqs).await?;
        Ok(erased)
    }

    async fn erase_in_copy(&self, seqs: &[u64]) -> Result<(), LogError> {
        let size = self.copy.size();
        // Entries not copied yet arrive erased.
        let copied: Vec<u64> = seqs.iter().copied().filter(|seq| *seq < size).collect();
        if copied.is_empty() {
            return Ok(());
        }
        self.copy.erase(copied.clone()).await?;
        crate::retention::forget(&self.index, &copied).await;
        Ok(())
    }

    /// Turns the database's notifications into wake-ups.
    async fn listen(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let mut notifications = match self.store.welllog_notifications().await {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "well-log: cannot listen for notifications; polling");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            loop {
                let notice = tokio::select! {
                    notice = notifications.next() => notice,
                    _ = stop.changed() => return,
                };
                match notice {
                    Ok(Some(Notice::Submitted)) => self.wake_sequencer.notify_one(),
                    Ok(Some(Notice::Sequenced)) => {
                        self.wake_waiters.notify_one();
                        self.wake_follower.notify_one();
                    }
                    Ok(Some(Notice::Erased)) => self.wake_follower.notify_one(),
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "well-log: notifications lost; listening again");
                        break;
                    }
                }
            }
        }
    }

    fn set_leading(&self, leading: bool) {
        if self.leading.swap(leading, Ordering::Relaxed) != leading {
            self.sequencer_gauge.set(i64::from(leading));
            if leading {
                tracing::info!(node = %self.node, "well-log: this node sequences the shared log");
            } else {
                tracing::warn!(node = %self.node, "well-log: this node no longer sequences the shared log");
            }
        }
    }

    /// Tries to become the sequencer; while it is, sequences what is pending.
    async fn elect_and_sequence(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            match self.store.welllog_sequencer().await {
                Ok(mut sequencer) => {
                    if self.sequence_while_leading(&mut sequencer, &mut stop).await {
                        self.set_leading(false);
                        return;
                    }
                    // An error: drop the session (and the lock with it),
                    // then start again with a new one.
                    drop(sequencer);
                    self.set_leading(false);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "well-log: no database session for the sequencer election");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs on one session until it fails (`false`) or the server stops
    /// (`true`).
    async fn sequence_while_leading(
        &self,
        sequencer: &mut rempart_store::Sequencer,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            if *stop.borrow() {
                return true;
            }
            match sequencer.try_lead().await {
                Ok(true) => self.set_leading(true),
                Ok(false) => {
                    tokio::select! {
                        () = tokio::time::sleep(ELECTION_EVERY) => continue,
                        _ = stop.changed() => return true,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "well-log: the sequencer election failed");
                    return false;
                }
            }
            match sequencer.sequence(SEQUENCE_BATCHES, SEQUENCE_ENTRIES).await {
                Ok(Some(_)) => continue,
                Ok(None) => {
                    tokio::select! {
                        () = self.wake_sequencer.notified() => {}
                        () = tokio::time::sleep(POLL_EVERY) => {}
                        _ = stop.changed() => return true,
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "well-log: sequencing failed; giving up the sequencer's session");
                    return false;
                }
            }
        }
    }

    /// Hands each waiting append its batch's first sequence number.
    async fn answer_waiters(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = self.wake_waiters.notified() => {}
                () = tokio::time::sleep(POLL_EVERY / 2) => {}
                _ = stop.changed() => {
                    // Appends still waiting end now (closed), not at their deadline.
                    self.waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    return;
                }
            }
            let oldest = {
                let waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                waiters.keys().next().copied()
            };
            let Some(oldest) = oldest else { continue };
            match self.store.welllog_sequenced(&self.node, oldest).await {
                Ok(sequenced) => {
                    let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                    for (batch, first) in sequenced {
                        if let Some(reply) = waiters.remove(&batch) {
                            // The request may have gone: its entries stay.
                            let _ = reply.send(first);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "well-log: cannot see which batches are sequenced");
                }
            }
        }
    }

    /// Copies the sequenced entries and the erasures into this node's files.
    /// A copy that does not match the shared log stops here, loudly: the node
    /// then serves what it has and never anything else.
    async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            match self.copy_step().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(LogError::Corrupt { seq, detail }) => {
                    self.copy_stopped.store(true, Ordering::Relaxed);
                    self.copy_stopped_gauge.set(1);
                    tracing::error!(
                        seq,
                        detail,
                        "well-log: this node's copy cannot follow the shared log; it stops copying (run rempart log verify)"
                    );
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "well-log: copying the shared log failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            tokio::select! {
                () = self.wake_follower.notified() => {}
                () = tokio::time::sleep(POLL_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One step of copying; `true` when there is more to do at once.
    async fn copy_step(&self) -> Result<bool, LogError> {
        let from = self.copy.size();
        let entries = self
            .store
            .welllog_read(from, COPY_ENTRIES)
            .await
            .map_err(|e| match e {
                StoreError::Corrupt { detail } => LogError::Corrupt { seq: from, detail },
                other => shared_error(other),
            })?;
        let copied = entries.len() as u64;
        if copied > 0 {
            self.check_erased(&entries).await?;
            let records = entries.into_iter().map(record).collect();
            self.copy.replicate(records).await?;
        }
        let erasures = self.apply_erasures().await?;
        Ok(copied >= COPY_ENTRIES || erasures >= ERASURES)
    }

    /// An entry without a payload must have its erasure recorded: a payload
    /// nulled in the database behind the store's back is damage, not an
    /// erasure.
    async fn check_erased(&self, entries: &[SharedEntry]) -> Result<(), LogError> {
        let without: Vec<u64> = entries
            .iter()
            .filter(|e| e.payload.is_none())
            .map(|e| e.seq)
            .collect();
        if without.is_empty() {
            return Ok(());
        }
        let recorded = self
            .store
            .welllog_erased_among(&without)
            .await
            .map_err(shared_error)?;
        match without.iter().find(|seq| !recorded.contains(seq)) {
            Some(&seq) => Err(LogError::Corrupt {
                seq,
                detail: "the shared log's entry has no payload and no erasure record".to_owned(),
            }),
            None => Ok(()),
        }
    }

    async fn apply_erasures(&self) -> Result<u64, LogError> {
        let index_error = |e: rempart_search::IndexError| LogError::Io(format!("{e}"));
        let mark = self.index.mark(ERASURE_MARK).await.map_err(index_error)?;
        let erasures = self
            .store
            .welllog_erasures(i64::try_from(mark).unwrap_or(i64::MAX), ERASURES)
            .await
            .map_err(shared_error)?;
        let Some(&(last, _)) = erasures.last() else {
            return Ok(0);
        };
        let seqs: Vec<u64> = erasures.iter().map(|(_, seq)| *seq).collect();
        self.erase_in_copy(&seqs).await?;
        self.index
            .set_mark(ERASURE_MARK, u64::try_from(last).unwrap_or(0))
            .await
            .map_err(index_error)?;
        Ok(erasures.len() as u64)
    }
}

fn record(entry: SharedEntry) -> Record {
    Record {
        seq: entry.seq,
        leaf: rempart_merkle::Hash(entry.leaf),
        payload: entry.payload,
    }
}

/// Refuses to start a node whose copy of the well-log is not a copy of this
/// database's shared log: another signing key or origin, more entries than
/// the shared log, or a different last entry.
async fn check_same_log(store: &Store, copy: &WellLog, origin: &str) -> anyhow::Result<()> {
    let key = copy.verifier().to_text();
    let shared_key = store
        .welllog_claim_setting("verifier_key", key.trim())
        .await
        .context("reading the shared well-log's key")?;
    if shared_key != key.trim() {
        bail!(
            "this node's well-log key ({}) is not the shared log's ({shared_key}): every node must start from a copy of the first node's data directory",
            key.trim()
        );
    }
    let shared_origin = store
        .welllog_claim_setting("origin", origin)
        .await
        .context("reading the shared well-log's origin")?;
    if shared_origin != origin {
        bail!(
            "this node's welllog.origin ({origin}) is not the shared log's ({shared_origin}): every node must use the same"
        );
    }
    let size = copy.size();
    let shared_size = store
        .welllog_size()
        .await
        .context("reading the shared well-log's size")?;
    if size > shared_size {
        bail!(
            "this node's well-log has {size} entries and the shared log only {shared_size}: its files are not a copy of this database's log"
        );
    }
    if size > 0 {
        let last = copy
            .read(size - 1)
            .context("reading this node's last entry")?;
        let shared = store
            .welllog_leaf(size - 1)
            .await
            .context("reading the shared log's entry")?;
        if shared != Some(last.leaf.0) {
            bail!(
                "this node's well-log entry {} differs from the shared log's: its files are not a copy of this database's log",
                size - 1
            );
        }
    }
    Ok(())
}
