//! Ended sessions on their way to the control plane: each session's
//! summary waits in `outbox/` beside its recordings in `recordings/` until
//! the control plane has stored both, then both are removed from the
//! bastion's disk. The control plane being away only delays this.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rempart_api::SessionSummary;
use sha2::Digest;

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

/// Where each open session is noted, so that a bastion that stops without
/// ending it (a crash, a kill) can still report it and its recordings.
fn open_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("sessions")
}

/// Notes an open session (its summary as it started).
pub fn note_open(state_dir: &Path, summary: &SessionSummary) -> Result<()> {
    let dir = open_dir(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.json", summary.id));
    let aside = dir.join(format!("{}.json.new", summary.id));
    std::fs::write(&aside, serde_json::to_vec(summary)?)
        .with_context(|| format!("writing {}", aside.display()))?;
    std::fs::rename(&aside, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Forgets an open session once its summary is in the outbox.
pub fn note_closed(state_dir: &Path, id: &str) {
    let _ = std::fs::remove_file(open_dir(state_dir).join(format!("{id}.json")));
}

/// At start: sessions a previous run left open are ended now, their
/// recordings (as far as they were written) hashed, logged and queued.
pub async fn recover(bastion: &Bastion) -> Result<()> {
    let dir = open_dir(&bastion.config.state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(mut summary) = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<SessionSummary>(&b)?))
        else {
            tracing::error!(path = %path.display(), "an open-session note does not parse; left in place");
            continue;
        };
        let mut parts: Vec<PathBuf> = std::fs::read_dir(bastion.recordings_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_stem()
                            .and_then(|s| s.to_str())
                            .is_some_and(|s| s.starts_with(&format!("{}-", summary.id)))
                            && p.extension().is_some_and(|x| x == "cast")
                    })
                    .collect()
            })
            .unwrap_or_default();
        parts.sort();
        for part in parts {
            let bytes = tokio::fs::read(&part).await?;
            summary.recordings.push(rempart_api::RecordingRef {
                name: part
                    .file_stem()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: crate::recording::hex(&sha2::Sha256::digest(&bytes)),
                bytes: bytes.len() as u64,
            });
        }
        summary.ended_at = time::OffsetDateTime::now_utc();
        summary.reason =
            "the bastion stopped during the session; ended when it started again".to_owned();
        let base = serde_json::json!({
            "actor": summary.user,
            "host": summary.target,
            "target": format!("host:{}", summary.target),
            "grant": summary.grant,
            "session": summary.id,
            "client": summary.client,
        });
        for part in &summary.recordings {
            let mut fields = base.clone();
            fields["recording"] = serde_json::json!({
                "name": part.name, "sha256": part.sha256, "bytes": part.bytes,
            });
            bastion
                .events
                .emit("ssh.recording", "success", fields)
                .await;
        }
        let mut fields = base.clone();
        fields["reason"] = serde_json::json!(summary.reason);
        fields["recording_parts"] = serde_json::json!(summary.recordings.len());
        fields["recovered"] = serde_json::json!(true);
        bastion
            .events
            .emit("ssh.session.end", "failure", fields)
            .await;
        enqueue(&bastion.config.state_dir, &summary)?;
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        tracing::warn!(session = %summary.id, "a session left open by the previous run was ended and queued");
    }
    Ok(())
}
