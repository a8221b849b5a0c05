//! The well-log: Rempart's tamper-evident central log.
//!
//! [`WellLog::open`] recovers the directory and starts the one writer;
//! [`WellLog::append`] returns once the entries are fsync'd (group commit);
//! a checkpoint of the Merkle tree (RFC 9162) is signed at least every
//! second while entries arrive ([`WellLog::checkpoint`]), and inclusion and
//! consistency proofs come from the tree files in O(log n) reads.
//! [`verify::verify`] checks a directory offline, from the files alone.
//!
//! Layout of the directory:
//!
//! ```text
//! segments/00000000000000000000.seg   entries (see `segment`), append-only
//! offsets                             u64 per entry: where it is in its segment
//! tree/level-NN                       hashes of complete subtrees, per level
//! checkpoints.jsonl                   every signed checkpoint
//! signing.key (0600), verifier.key    the log's Ed25519 key (C2SP note format)
//! ```
//!
//! Architecture invariant: only this crate reads or writes these files, and
//! only its writer thread appends to them.
#![forbid(unsafe_code)]

pub mod checkpoints;
pub mod entry;
mod files;
mod levels;
pub mod segment;
pub mod verify;
mod writer;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rempart_merkle::checkpoint::{NoteSigner, NoteVerifier};
use rempart_merkle::{Hash, ProofError, consistency_proof, inclusion_proof};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

pub use checkpoints::SignedCheckpoint;
pub use entry::{EntryError, Source, Stamp, canonical_entry};
pub use segment::Record;

use crate::levels::TreeReader;

/// What went wrong in the well-log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("well-log I/O: {0}")]
    Io(String),
    #[error("the well-log is damaged at entry {seq}: {detail}")]
    Corrupt { seq: u64, detail: String },
    #[error("checkpoints.jsonl line {line}: {detail}")]
    Checkpoint { line: usize, detail: String },
    #[error(
        "the well-log has {size} entries but a signed checkpoint covers {checkpoint}: entries were removed (run rempart log verify)"
    )]
    RolledBack { size: u64, checkpoint: u64 },
    #[error("no entry {0}")]
    NotFound(u64),
    #[error("{0}")]
    Proof(#[from] ProofError),
    #[error("the well-log is shutting down")]
    Closed,
    #[error("{0}")]
    WrongMode(&'static str),
}

/// How to open a well-log.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// The log's name in its checkpoints, e.g. `rempart.example/welllog`.
    pub origin: String,
    pub checkpoint_every: Duration,
    /// Appends waiting for the writer at most; beyond, `append` waits
    /// (back-pressure, so memory stays bounded under overload).
    pub queue: usize,
    /// A node's copy of the log shared by several nodes: entries come only
    /// through [`WellLog::replicate`], never [`WellLog::append`].
    pub copy: bool,
}

struct Shared {
    root: PathBuf,
    queue: mpsc::Sender<writer::Command>,
    durable: watch::Receiver<u64>,
    firsts: Arc<RwLock<Vec<u64>>>,
    signer: NoteSigner,
    latest: RwLock<SignedCheckpoint>,
    signing: Mutex<()>,
    copy: bool,
}

use writer::{Append, Command};

/// Signs a checkpoint at most once per `every` while the log grows.
async fn sign_periodically(
    log: std::sync::Weak<Shared>,
    mut durable: watch::Receiver<u64>,
    every: Duration,
) {
    // Wait for growth, then sign after the period: one checkpoint covers
    // everything that arrived meanwhile.
    while durable.changed().await.is_ok() {
        tokio::time::sleep(every).await;
        let Some(shared) = log.upgrade() else { return };
        if let Err(err) = (WellLog { shared }).sign_checkpoint().await {
            tracing::error!(error = %err, "well-log: signing a checkpoint failed");
        }
    }
}

/// Entries handed to the writer, not yet known to be on disk.
#[derive(Debug)]
pub struct Submitted {
    count: u64,
    answer: Option<oneshot::Receiver<Result<u64, LogError>>>,
    size: u64,
}

impl Submitted {
    /// Waits until the entries are on disk; their sequence numbers.
    pub async fn durable(self) -> Result<Range<u64>, LogError> {
        let Some(answer) = self.answer else {
            return Ok(self.size..self.size);
        };
        let first = answer.await.map_err(|_| LogError::Closed)??;
        Ok(first..first + self.count)
    }
}

/// A handle on an open well-log; clones share it.
#[derive(Clone)]
pub struct WellLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WellLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WellLog")
            .field("root", &self.shared.root)
            .field("size", &self.size())
            .finish()
    }
}

impl WellLog {
    /// Opens (or creates) the log in `options.dir`, recovers it after any
    /// stop, checks it against its last signed checkpoint, and starts the
    /// writer thread and the checkpoint signer (on the current tokio runtime).
    pub async fn open(options: Options) -> Result<WellLog, LogError> {
        let root = options.dir.clone();
        std::fs::create_dir_all(&root)
            .map_err(|e| LogError::Io(format!("{}: {e}", root.display())))?;
        let signer = checkpoints::load_or_create_signer(&root, &options.origin)?;
        let recovered = files::recover(&root)?;
        let size = recovered.size;
        tracing::info!(
            size,
            discarded_bytes = recovered.discarded_bytes,
            "well-log recovered"
        );
        let stored = checkpoints::load(&root, &signer.verifier())?;
        if let Some(last) = stored.last() {
            if last.size > size {
                return Err(LogError::RolledBack {
                    size,
                    checkpoint: last.size,
                });
            }
            let reader = TreeReader::open(&files::tree_dir(&root), size)
                .map_err(|e| LogError::Io(format!("opening the tree: {e}")))?;
            if reader.root(last.size)? != last.root {
                return Err(LogError::Corrupt {
                    seq: last.size.saturating_sub(1),
                    detail: "the tree no longer matches the last signed checkpoint".to_owned(),
                });
            }
        }
        let firsts = Arc::new(RwLock::new(recovered.firsts.clone()));
        let writer = writer::Writer::open_tail(root.clone(), recovered, firsts.clone())?;
        let (queue, receiver) = mpsc::channel(options.queue.max(1));
        let (durable_tx, durable) = watch::channel(size);
        std::thread::Builder::new()
            .name("welllog-writer".to_owned())
            .spawn(move || writer.run(receiver, durable_tx))
            .map_err(|e| LogError::Io(format!("starting the writer: {e}")))?;
        let latest = match stored.last() {
            Some(last) => last.clone(),
            None => {
                let first = checkpoints::sign(&signer, 0, rempart_merkle::empty_root())?;
                checkpoints::append(&root, &first)?;
                first
            }
        };
        let log = WellLog {
            shared: Arc::new(Shared {
                root,
                queue,
                durable,
                firsts,
                signer,
                latest: RwLock::new(latest),
                signing: Mutex::new(()),
                copy: options.copy,
            }),
        };
        log.sign_checkpoint().await?;
        // The signer holds the log weakly: when the last handle goes, the
        // queue closes, the writer thread ends, and so does this task.
        let weak = Arc::downgrade(&log.shared);
        let durable = log.shared.durable.clone();
        tokio::spawn(sign_periodically(weak, durable, options.checkpoint_every));
        Ok(log)
    }

    /// Signs a checkpoint of the current size if the log grew since the last.
    pub async fn sign_checkpoint(&self) -> Result<SignedCheckpoint, LogError> {
        let _one_at_a_time = self.shared.signing.lock().await;
        let size = self.size();
        let latest = self.checkpoint();
        if size == latest.size {
            return Ok(latest);
        }
        let root = self.tree(size)?.root(size)?;
        let signed = checkpoints::sign(&self.shared.signer, size, root)?;
        let dir = self.shared.root.clone();
        let to_store = signed.clone();
        tokio::task::spawn_blocking(move || checkpoints::append(&dir, &to_store))
            .await
            .map_err(|e| LogError::Io(format!("storing a checkpoint: {e}")))??;
        *self
            .shared
            .latest
            .write()
            .unwrap_or_else(|e| e.into_inner()) = signed.clone();
        Ok(signed)
    }

    /// Appends canonical entries (see [`canonical_entry`]); returns their
    /// sequence numbers once they are on disk.
    pub async fn append(&self, payloads: Vec<Vec<u8>>) -> Result<Range<u64>, LogError> {
        self.submit(payloads).await?.durable().await
    }

    /// Queues entries for the writer, in the order of the calls, and returns
    /// at once (or when the queue has room: that wait is the back-pressure).
    /// A producer that keeps several submissions in flight overlaps its own
    /// work with the writer's fsync.
    pub async fn submit(&self, payloads: Vec<Vec<u8>>) -> Result<Submitted, LogError> {
        if self.shared.copy {
            return Err(LogError::WrongMode(
                "this node's well-log is a copy of the shared log: entries enter through its sequencer",
            ));
        }
        let count = payloads.len() as u64;
        if count == 0 {
            return Ok(Submitted {
                count,
                answer: None,
                size: self.size(),
            });
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .queue
            .send(Command::Append(Append { payloads, reply }))
            .await
            .map_err(|_| LogError::Closed)?;
        Ok(Submitted {
            count,
            answer: Some(answer),
            size: 0,
        })
    }

    /// Appends records copied from the shared log (see [`Options::copy`]):
    /// they must be the next entries, in order, each payload matching its
    /// leaf (an erased one has none), else nothing is written and the answer
    /// is [`LogError::Corrupt`]. Returns the new size once on disk.
    pub async fn replicate(&self, records: Vec<Record>) -> Result<u64, LogError> {
        if !self.shared.copy {
            return Err(LogError::WrongMode(
                "only a copy of the shared log takes replicated entries",
            ));
        }
        if records.is_empty() {
            return Ok(self.size());
        }
        self.ask(|reply| Command::Replicate { records, reply })
            .await
    }

    /// Hands the writer a command and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .queue
            .send(command(reply))
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    /// Whether this is a node's copy of a shared log.
    pub fn is_copy(&self) -> bool {
        self.shared.copy
    }

    /// Erases the payloads of `seqs` in place: their leaf hashes stay, so
    /// the tree, every checkpoint and every proof stay valid; reading them
    /// gives no payload. Returns how many were erased now.
    pub async fn erase(&self, seqs: Vec<u64>) -> Result<u64, LogError> {
        self.ask(|reply| Command::Erase { seqs, reply }).await
    }

    /// Entries on disk.
    pub fn size(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// Tells when the log grows (for `log tail -f` and the signer).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.shared.durable.clone()
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> SignedCheckpoint {
        self.shared
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.shared.signer.verifier()
    }

    pub fn root_dir(&self) -> &Path {
        &self.shared.root
    }

    fn tree(&self, size: u64) -> Result<TreeReader, LogError> {
        if size > self.size() {
            return Err(ProofError::TreeTooSmall {
                requested: size,
                stored: self.size(),
            }
            .into());
        }
        TreeReader::open(&files::tree_dir(&self.shared.root), size)
            .map_err(|e| LogError::Io(format!("opening the tree: {e}")))
    }

    /// The root of the tree of the first `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash, LogError> {
        Ok(self.tree(size)?.root(size)?)
    }

    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        Ok(inclusion_proof(&self.tree(size)?, seq, size)?)
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
        Ok(consistency_proof(&self.tree(new)?, old, new)?)
    }

    /// Entries `from..to` (to at most the size), each checked against its
    /// leaf hash: for readers that go through the log in order.
    pub fn read_range(&self, from: u64, to: u64) -> Result<Vec<Record>, LogError> {
        let to = to.min(self.size());
        let firsts = self
            .shared
            .firsts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        files::read_records(&self.shared.root, &firsts, from, to)
    }

    /// One entry, checked against its leaf hash as it is read.
    pub fn read(&self, seq: u64) -> Result<Record, LogError> {
        if seq >= self.size() {
            return Err(LogError::NotFound(seq));
        }
        let firsts = self
            .shared
            .firsts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        files::read_record(&self.shared.root, &firsts, seq)
    }
}
