//! The bastion's events (`ssh.auth`, `ssh.session.*`, `ssh.exec`,
//! `sftp.*`, `ssh.forward`) on their way to the well-log.
//!
//! Events are sent in batches. When the control plane cannot take them,
//! they go to a spool file (appended and synced) in the state directory,
//! and the spool is sent first once it answers again: no event is lost
//! and their order is kept.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::control::ControlPlane;

/// Events waiting in memory at most; past it `emit` waits (back-pressure on
/// the sessions rather than a lost entry).
const QUEUE: usize = 10_000;
const BATCH: usize = 500;
const RETRY: Duration = Duration::from_secs(2);

/// Where events are sent from; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<Value>,
}

impl Events {
    /// Starts the sender task.
    pub fn start(control: ControlPlane, state_dir: &Path) -> Events {
        let (tx, rx) = mpsc::channel(QUEUE);
        let spool = state_dir.join("spool").join("events.jsonl");
        tokio::spawn(send_loop(control, rx, spool));
        Events { tx }
    }

    /// Queues one event: `kind`, `outcome`, and the fields beside them.
    pub async fn emit(&self, kind: &str, outcome: &str, fields: Value) {
        let mut event = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        event.insert("kind".to_owned(), json!(kind));
        event.insert("outcome".to_owned(), json!(outcome));
        event.insert("ts".to_owned(), json!(now_rfc3339()));
        if self.tx.send(Value::Object(event)).await.is_err() {
            tracing::error!(
                kind,
                "the event sender stopped: an event could not be queued"
            );
        }
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn send_loop(control: ControlPlane, mut rx: mpsc::Receiver<Value>, spool: PathBuf) {
    loop {
        // Spooled events go first, so the log keeps their order.
        if spool_len(&spool) > 0 {
            match send_spool(&control, &spool).await {
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "events: the control plane does not take them yet; spooled");
                    // Meanwhile, keep new events on disk behind the spool.
                    let deadline = tokio::time::sleep(RETRY);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            () = &mut deadline => break,
                            event = rx.recv() => match event {
                                Some(event) => append_spool(&spool, &[event]),
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        if let Err(err) = control.append(lines(&batch)).await {
            tracing::warn!(error = %err, events = batch.len(), "events: not delivered; spooled");
            append_spool(&spool, &batch);
        }
    }
}

fn lines(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let _ = serde_json::to_writer(&mut out, event);
        out.push(b'\n');
    }
    out
}

fn spool_len(spool: &Path) -> u64 {
    std::fs::metadata(spool).map_or(0, |m| m.len())
}

fn append_spool(spool: &Path, events: &[Value]) {
    let written = (|| -> std::io::Result<()> {
        if let Some(dir) = spool.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spool)?;
        file.write_all(&lines(events))?;
        file.sync_data()
    })();
    if let Err(err) = written {
        tracing::error!(error = %err, spool = %spool.display(), events = events.len(), "events could not be spooled");
    }
}

/// Sends the spool in batches; after each, the spool keeps only what is
/// left, so a failure part way resends nothing already delivered.
async fn send_spool(control: &ControlPlane, spool: &Path) -> anyhow::Result<()> {
    let text = tokio::fs::read(spool).await?;
    let all: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let join = |lines: &[&[u8]]| {
        let mut body = Vec::new();
        for line in lines {
            body.extend_from_slice(line);
            body.push(b'\n');
        }
        body
    };
    let mut sent = 0;
    while sent < all.len() {
        let end = (sent + BATCH).min(all.len());
        control.append(join(&all[sent..end])).await?;
        sent = end;
        let aside = spool.with_extension("jsonl.new");
        tokio::fs::write(&aside, join(&all[sent..])).await?;
        tokio::fs::rename(&aside, spool).await?;
    }
    tokio::fs::remove_file(spool).await?;
    Ok(())
}
