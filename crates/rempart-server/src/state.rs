use std::sync::Arc;

use rempart_config::Config;
use rempart_store::Store;
use rempart_tls::CertificateAuthority;
use rempart_welllog::WellLog;

use crate::logwriter::LogWriter;
use crate::metrics::Metrics;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub ca: Arc<CertificateAuthority>,
    pub metrics: Arc<Metrics>,
    /// This node's well-log files: every read (entries, proofs, checkpoints).
    pub welllog: WellLog,
    /// The one way to write to the well-log.
    pub writer: LogWriter,
    pub index: rempart_search::Index,
    /// Memory shared by the well-log batches being handled (back-pressure).
    pub ingest_budget: Arc<crate::budget::IngestBudget>,
}
