use std::sync::Arc;

use rempart_config::Config;
use rempart_store::Store;
use rempart_tls::CertificateAuthority;
use rempart_welllog::WellLog;

use crate::logwriter::LogWriter;
use crate::metrics::Metrics;

/// What every handler can reach: one `Arc`, so that the several clones each
/// request makes (one per middleware and extractor) cost one atomic each,
/// not one per field (they showed in the grant-check profile).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state itself (see [`AppState`]).
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    pub config: Arc<Config>,
    pub ca: Arc<CertificateAuthority>,
    pub metrics: Arc<Metrics>,
    /// This node's well-log files: every read (entries, proofs, checkpoints).
    pub welllog: WellLog,
    /// The one way to write to the well-log.
    pub writer: LogWriter,
    pub index: rempart_search::Index,
    /// What grant checks read, kept in memory on a sole writer (see `grants`).
    pub access_cache: Arc<crate::grants::AccessCache>,
    /// Tells the access webhook of new requests and decisions.
    pub notifier: crate::notify::Notifier,
    /// The clock of access decisions (adjustable only in tests).
    pub clock: Arc<crate::clock::Clock>,
    /// The rules of access requests (`[access]`), compiled once.
    pub access_rules: Arc<rempart_access::Rules>,
    /// Memory shared by the well-log batches being handled (back-pressure).
    pub ingest_budget: Arc<crate::budget::IngestBudget>,
    /// The SSH user and host-access CAs (`ssh_ca`).
    pub ssh: crate::ssh_ca::SshAuthorities,
    /// The database user CA (`db_ca`).
    pub db_users: Arc<CertificateAuthority>,
}

/// The rules of `[access]`, with the ticket pattern compiled (it was checked
/// when the file was read, so this cannot fail on a loaded config).
pub fn access_rules(
    settings: &rempart_config::AccessSettings,
) -> anyhow::Result<rempart_access::Rules> {
    use rempart_access::{AllowRule, ApprovalRule, Rules, Selector};
    Ok(Rules {
        reviewer_role: settings.reviewer_role,
        max_duration_ms: settings.max_duration.millis(),
        pending_for_ms: settings.pending_for.millis(),
        min_reason_chars: usize::try_from(settings.min_reason_chars.get()).unwrap_or(0),
        ticket_pattern: settings
            .ticket_pattern
            .pattern()
            .map(regex::Regex::new)
            .transpose()?,
        required_training: settings.required_training.clone(),
        allow: settings
            .allow
            .iter()
            .map(|rule| AllowRule {
                roles: rule.roles.clone(),
                selector: Selector(rule.labels.0.clone()),
            })
            .collect(),
        approvals: settings
            .threshold
            .iter()
            .map(|rule| ApprovalRule {
                selector: Selector(rule.labels.0.clone()),
                approvals: u32::try_from(rule.approvals.get()).unwrap_or(1),
            })
            .collect(),
        default_approvals: u32::try_from(settings.approvals.get()).unwrap_or(1),
    })
}
