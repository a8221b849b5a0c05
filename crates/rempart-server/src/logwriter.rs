//! The one way entries enter the well-log, and payloads leave it.
//!
//! Every producer in the control plane (the API, syslog, the control plane's
//! own audit events, retention) writes through [`LogWriter`]. On one node it
//! is the node's own log; on PostgreSQL it is the log shared by every node
//! (see [`crate::shared_log`]), and the node's files are a copy that only
//! the shared log's follower writes to. Reads (entries, proofs, checkpoints,
//! search) always come from this node's files.

use std::ops::Range;
use std::sync::Arc;

use rempart_search::Index;
use rempart_welllog::{LogError, WellLog};

use crate::shared_log::SharedLog;

#[derive(Clone, Debug)]
pub enum LogWriter {
    /// One node: its own log sequences and stores.
    Local { log: WellLog, index: Index },
    /// Several nodes on PostgreSQL: one of them sequences.
    Shared(Arc<SharedLog>),
}

impl LogWriter {
    /// Appends canonical entries; returns their sequence numbers once they
    /// are durable (on this node's disk, or committed and sequenced in the
    /// shared log) and readable on this node.
    pub async fn append(&self, payloads: Vec<Vec<u8>>) -> Result<Range<u64>, LogError> {
        match self {
            LogWriter::Local { log, .. } => log.append(payloads).await,
            LogWriter::Shared(shared) => shared.append(payloads).await,
        }
    }

    /// Erases payloads (their leaves stay) and removes them from this node's
    /// search index; returns how many were erased now. On the shared log
    /// every other node applies the erasure shortly after.
    pub async fn erase(&self, seqs: Vec<u64>) -> Result<u64, LogError> {
        match self {
            LogWriter::Local { log, index } => {
                let erased = log.erase(seqs.clone()).await?;
                crate::retention::forget(index, &seqs).await;
                Ok(erased)
            }
            LogWriter::Shared(shared) => shared.erase(seqs).await,
        }
    }

    /// Whether this node applies the retention period: a single node does;
    /// on the shared log, the sequencer does it for every node.
    pub fn applies_retention(&self) -> bool {
        match self {
            LogWriter::Local { .. } => true,
            LogWriter::Shared(shared) => shared.is_sequencer(),
        }
    }
}
