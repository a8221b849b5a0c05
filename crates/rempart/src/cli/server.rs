//! `rempart init`, `rempart serve` and `rempart config check`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rempart_config::Config;
use rempart_server::{DataDir, InitOptions, Initialised, ServeOptions};

use super::{DataDirArg, NodeArgs};

/// Says what `init` made. The admin token is printed only by `rempart init`
/// itself: when `serve` initialises, standard output is often a journal or a
/// container log, where a token that never expires must not go.
fn announce(dir: &DataDir, done: &Initialised, print_token: bool) {
    eprintln!(
        "initialised {}\n  CA certificate: {} (sha256 {})",
        dir.root().display(),
        dir.ca_cert().display(),
        done.ca_fingerprint,
    );
    if print_token {
        eprintln!(
            "  admin token, shown once, also in {} (mode 0600):",
            dir.admin_token().display()
        );
        println!("{}", done.admin_token.expose());
    } else {
        eprintln!(
            "  admin token: in {} (mode 0600)",
            dir.admin_token().display()
        );
    }
}

async fn init_and_announce(dir: &DataDir, args: &NodeArgs, print_token: bool) -> Result<()> {
    let options = InitOptions {
        listen: args.listen,
        store: args.store.clone(),
    };
    let done = rempart_server::init(dir, &options).await?;
    announce(dir, &done, print_token);
    Ok(())
}

pub async fn init(args: NodeArgs) -> Result<()> {
    init_and_announce(&DataDir::new(&args.dir.data_dir), &args, true).await
}

pub async fn serve(args: NodeArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    if !dir.is_initialised() {
        init_and_announce(&dir, &args, false).await?;
    }
    let options = ServeOptions {
        data_dir: dir,
        listen: args.listen,
        store: args.store,
        danger_test_clock: args.danger_test_clock,
    };
    rempart_server::serve(options, |_| {}, shutdown_signal()).await
}

/// SIGTERM (service managers) or SIGINT (Ctrl-C) starts a graceful shutdown.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}

pub fn config_check(dir: DataDirArg, file: Option<PathBuf>) -> Result<()> {
    let dir = DataDir::new(dir.data_dir);
    if file.is_none() {
        rempart_server::datadir::check_private_files(&dir)?;
    }
    let path = file.unwrap_or_else(|| dir.config());
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::parse(&text, &path.display().to_string())?;
    let warnings = config.warnings(time::OffsetDateTime::now_utc());
    for warning in &warnings {
        eprintln!("warning: {}: {warning}", path.display());
    }
    println!("ok: {} ({} warning(s))", path.display(), warnings.len());
    Ok(())
}
