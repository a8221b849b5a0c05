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
        let summary: SessionSummary = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: not a session summary", path.display()))?;
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
            .store_session(&summary)
            .await
            .with_context(|| format!("storing session {}", summary.id))?;
        for file in files {
            let _ = std::fs::remove_file(file);
        }
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        tracing::info!(session = %summary.id, "session and recordings stored by the control plane");
    }
    Ok(())
}
