//! Ended sessions on their way to the control plane: each session's
//! summary waits in `outbox/` beside its recordings in `recordings/` until
//! the control plane has stored both, then both are removed from the
//! bastion's disk. The control plane being away only delays this.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rempart_api::SessionSummary;

use crate::Bastion;

const RETRY: Duration = Duration::from_secs(3);

pub fn outbox(state_dir: &Path) -> PathBuf {
    state_dir.join("outbox")
}

/// Puts a summary in the outbox (written aside, then renamed: whole or absent).
pub fn enqueue(state_dir: &Path, summary: &SessionSummary) -> Result<()> {
    let dir = outbox(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", summary.id));
    let aside = dir.join(format!("{}.json.new", summary.id));
    std::fs::write(&aside, serde_json::to_vec(summary)?)
        .with_context(|| format!("writing {}", aside.display()))?;
    std::fs::rename(&aside, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Ships the outbox now and every few seconds while anything is left.
pub fn start(bastion: Arc<Bastion>) {
    tokio::spawn(async move {
        loop {
            if let Err(err) = ship_all(&bastion).await {
                tracing::warn!(error = %format!("{err:#}"), "sessions not shipped yet; will retry");
            }
            tokio::select! {
                () = bastion.ship_now.notified() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    });
}

async fn ship_all(bastion: &Bastion) -> Result<()> {
    let dir = outbox(&bastion.config.state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut waiting: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    waiting.sort();
    for path in waiting {
        let parsed = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(serde_json::from_slice::<SessionSummary>(&bytes)?));
        let outcome = match parsed {
            Ok(summary) => ship_one(bastion, &path, &summary).await,
            Err(err) => Err(err.context(format!("{}: not a session summary", path.display()))),
        };
        match outcome {
            Ok(()) => {}
            Err(err) if cannot_succeed(&err) => {
                // Kept, never dropped, but out of the way of the others.
                let failed = dir.join("failed");
                std::fs::create_dir_all(&failed)?;
                let name = path.file_name().unwrap_or_default();
                std::fs::rename(&path, failed.join(name))?;
                tracing::error!(path = %path.display(), error = %format!("{err:#}"), "this session cannot be stored; kept in outbox/failed");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

async fn ship_one(bastion: &Bastion, path: &Path, summary: &SessionSummary) -> Result<()> {
    let mut files = Vec::new();
    for recording in &summary.recordings {
        let file = bastion
            .recordings_dir()
            .join(format!("{}.cast", recording.name));
        let content = tokio::fs::read(&file)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        bastion
            .control
            .store_recording(&summary.id, &recording.name, &recording.sha256, content)
            .await
            .with_context(|| format!("storing recording {}", recording.name))?;
        files.push(file);
    }
    bastion
        .control
        .store_session(summary)
        .await
        .with_context(|| format!("storing session {}", summary.id))?;
    for file in files {
        let _ = std::fs::remove_file(file);
    }
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    tracing::info!(session = %summary.id, "session and recordings stored by the control plane");
    Ok(())
}

/// A refusal from the control plane, a summary that does not parse, or a
/// recording file gone: trying again would fail the same way.
fn cannot_succeed(err: &anyhow::Error) -> bool {
    crate::control::is_final_refusal(err)
        || err.is::<serde_json::Error>()
        || err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}
