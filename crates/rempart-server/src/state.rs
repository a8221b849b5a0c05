use std::sync::Arc;

use rempart_config::Config;
use rempart_store::Store;
use rempart_tls::CertificateAuthority;
use rempart_welllog::WellLog;

use crate::metrics::Metrics;

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub ca: Arc<CertificateAuthority>,
    pub metrics: Arc<Metrics>,
    pub welllog: WellLog,
    pub index: rempart_search::Index,
}
