//! The Rempart control plane: `rempart serve`.
//!
//! [`serve`] opens (or first creates, with [`init`]) a [`DataDir`], opens the
//! store, and answers the API over TLS only. The pieces, in the order a
//! request meets them: [`listener`] (TCP, TLS handshake, HTTP/1.1 and HTTP/2),
//! [`app`] (routes and the layers every response passes through), [`auth`]
//! (who is calling), then a handler in [`routes`].
//!
//! Architecture invariant: every route except `/healthz` and
//! `/.well-known/security.txt` sits behind [`auth::authenticate`]; handlers
//! receive a [`auth::Caller`] that only that middleware creates. Handlers
//! never see a token or a certificate, only an `Identity`.
#![forbid(unsafe_code)]

pub mod access_ends;
pub mod app;
pub mod audit;
pub mod auth;
pub mod budget;
pub mod clock;
pub mod datadir;
pub mod db_ca;
pub mod error;
pub mod extract;
pub mod grants;
pub mod indexer;
pub mod listener;
pub mod logwriter;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod retention;
pub mod routes;
pub mod shared_log;
pub mod ssh_ca;
pub mod state;
pub mod syslog;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use rempart_config::StoreSetting;

pub use datadir::{DataDir, InitOptions, Initialised, init};

/// Command-line settings of `rempart serve`, which win over `rempart.toml`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: DataDir,
    pub listen: Option<SocketAddr>,
    pub store: Option<StoreSetting>,
    /// Lets an admin move the access clock forward (`POST /v1/danger/clock`):
    /// for tests only, never in production.
    pub danger_test_clock: bool,
}

/// Runs the control plane until `shutdown` completes, then drains open
/// connections. `on_listening` is told the bound address (useful with port 0).
pub async fn serve(
    options: ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let dir = &options.data_dir;
    if options.danger_test_clock {
        tracing::warn!(
            "--danger-test-clock: admins can move the access clock forward; never use this in production"
        );
    }
    let mut config = dir.load_config()?;
    if let Some(listen) = options.listen {
        config.listen = listen;
    }
    if let Some(store) = options.store {
        config.store = store;
    }
    for warning in config.warnings(time::OffsetDateTime::now_utc()) {
        tracing::warn!("{}: {warning}", dir.config().display());
    }
    // The store first: on SQLite it takes the lock that makes this process
    // the only one serving the directory, before anything in it is renewed.
    let store = datadir::open_store(dir, &config.store, true).await?;
    let credentials = datadir::load_credentials(dir, &config)?;
    let tls = rempart_tls::server_config(
        &credentials.server_cert_pem,
        credentials.server_key_pem.expose(),
        credentials.ca.cert_pem(),
    )?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let max_connections = usize::try_from(config.http.max_connections.get()).unwrap_or(1);
    // On PostgreSQL the well-log is shared by every node; this node's files
    // are its copy (see `shared_log`).
    let shared = store.backend() == rempart_store::Backend::Postgres;
    let welllog = rempart_welllog::WellLog::open(rempart_welllog::Options {
        dir: dir.welllog(),
        origin: config.welllog.origin.as_str().to_owned(),
        checkpoint_every: std::time::Duration::from_millis(
            config.welllog.checkpoint_interval_ms.get().unsigned_abs(),
        ),
        queue: 1024,
        copy: shared,
    })
    .await
    .context("opening the well-log")?;
    let index = rempart_search::Index::open_or_rebuild(&dir.search_index())
        .await
        .context("opening the search index")?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(metrics::Metrics::new());
    let writer = if shared {
        logwriter::LogWriter::Shared(
            shared_log::SharedLog::start(
                store.clone(),
                welllog.clone(),
                index.clone(),
                config.welllog.origin.as_str(),
                shared_log::Gauges {
                    sequencer: metrics.welllog_sequencer.clone(),
                    copy_stopped: metrics.welllog_copy_stopped.clone(),
                },
                stop.clone(),
            )
            .await
            .context("joining the shared well-log")?,
        )
    } else {
        logwriter::LogWriter::Local {
            log: welllog.clone(),
            index: index.clone(),
        }
    };
    let ingest_budget = Arc::new(budget::IngestBudget::new(
        config.welllog.ingest_memory_bytes.get().unsigned_abs(),
    ));
    let access_rules = Arc::new(state::access_rules(&config.access)?);
    let notifier = notify::Notifier::start(config.access.webhook.url())
        .context("setting up the access webhook")?;
    let state = state::AppState::new(state::Shared {
        store: store.clone(),
        config: Arc::new(config),
        ca: Arc::new(credentials.ca),
        metrics,
        welllog: welllog.clone(),
        writer,
        index: index.clone(),
        ingest_budget,
        access_rules,
        clock: Arc::new(clock::Clock::new(options.danger_test_clock)),
        notifier,
        access_cache: Arc::new(grants::AccessCache::new(store.caches_identities())),
        ssh: ssh_ca::SshAuthorities::load_or_create(dir.root())?,
        db_users: Arc::new(db_ca::load_or_create(dir.root())?),
    });
    let machine_tls = rempart_tls::server_config_for_machines(
        &credentials.server_cert_pem,
        credentials.server_key_pem.expose(),
        state.ca.cert_pem(),
    )?;
    syslog::start(&state, Some(Arc::new(machine_tls)), stop.clone()).await?;
    tokio::spawn(indexer::follow(welllog.clone(), index, stop.clone()));
    tokio::spawn(retention::run(state.clone(), stop.clone()));
    tokio::spawn(access_ends::run(state.clone(), stop));
    let app = app::router(state);
    tracing::info!(%address, backend = ?store.backend(), identity_cache = store.caches_identities(), "listening");
    on_listening(address);
    listener::serve(listener, Arc::new(tls), app, max_connections, shutdown).await;
    let _ = stop_tx.send(true);
    // Everything acknowledged is on disk already; a last checkpoint covers it.
    if let Err(err) = welllog.sign_checkpoint().await {
        tracing::warn!(error = %err, "well-log: the last checkpoint could not be signed");
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
