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
use sha2::Digest;
use tokio::sync::mpsc;

use crate::control::{ControlPlane, Delivery};

/// Events waiting in memory at most; past it `emit` waits (back-pressure on
/// the sessions rather than a lost entry).
const QUEUE: usize = 10_000;
const BATCH: usize = 500;
/// How long the sender lets events gather after the first before it sends
/// a batch that is not full: one request per statement would cost the
/// bastion and the control plane far more than the statement. A crash of
/// the bastion loses what is in memory either way.
const LINGER: Duration = Duration::from_millis(50);
const RETRY: Duration = Duration::from_secs(2);
/// An event's text fields are cut to this many characters when the event
/// would come near the well-log's 64 KiB limit (a 200 KB command line).
const FIELD_LIMIT: usize = 1024;
const EVENT_SOFT_LIMIT: usize = 16 * 1024;

/// What the sender task takes: events, and requests to say when all
/// before them are stored or spooled.
#[derive(Debug)]
enum Queued {
    /// One event, as the JSON line it is sent as (without the newline):
    /// serialized once, when emitted.
    Event(Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where events are sent from; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<Queued>,
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
        let _ = self.emit_checked(kind, outcome, fields).await;
    }

    /// As [`Self::emit`], and says whether the event was queued: `false`
    /// only when the sender has stopped, which a caller that must not go
    /// on unlogged (a database session) treats as the end.
    pub async fn emit_checked(&self, kind: &str, outcome: &str, fields: Value) -> bool {
        let mut event = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        event.insert("kind".to_owned(), json!(kind));
        event.insert("outcome".to_owned(), json!(outcome));
        event.insert("ts".to_owned(), json!(now_rfc3339()));
        if self.tx.send(Queued::Event(encode(event))).await.is_err() {
            tracing::error!(
                kind,
                "the event sender stopped: an event could not be queued"
            );
            return false;
        }
        true
    }
}

/// The event's JSON line, cut to fit (below) when it is too large.
fn encode(event: Map<String, Value>) -> Vec<u8> {
    match serde_json::to_vec(&event) {
        Ok(line) if line.len() <= EVENT_SOFT_LIMIT => line,
        _ => serde_json::to_vec(&fit(event)).unwrap_or_default(),
    }
}

/// An event small enough for the well-log: past the soft limit, each long
/// text field is cut, with the SHA-256 of its whole value beside it
/// (`command_sha256`), and `truncated` says so.
fn fit(mut event: Map<String, Value>) -> Map<String, Value> {
    let size = serde_json::to_vec(&event).map_or(0, |v| v.len());
    if size <= EVENT_SOFT_LIMIT {
        return event;
    }
    let long: Vec<String> = event
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|s| s.chars().count() > FIELD_LIMIT))
        .map(|(k, _)| k.clone())
        .collect();
    for key in long {
        if let Some(Value::String(text)) = event.get(&key).cloned() {
            let digest = crate::recording::hex(&sha2::Sha256::digest(text.as_bytes()));
            let cut: String = text.chars().take(FIELD_LIMIT).collect();
            event.insert(key.clone(), json!(format!("{cut}…")));
            event.insert(format!("{key}_sha256"), json!(digest));
        }
    }
    event.insert("truncated".to_owned(), json!(true));
    event
}

impl Events {
    /// Waits until every event emitted before is stored by the control
    /// plane or in the spool on disk (at shutdown).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn send_loop(control: ControlPlane, mut rx: mpsc::Receiver<Queued>, spool: PathBuf) {
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
                            queued = rx.recv() => match queued {
                                Some(Queued::Event(event)) => append_spool(&spool, &[event]),
                                // Everything before is on disk.
                                Some(Queued::Flush(done)) => { let _ = done.send(()); }
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        match rx.recv().await {
            Some(Queued::Event(event)) => batch.push(event),
            Some(Queued::Flush(done)) => flushes.push(done),
            None => return,
        }
        let linger = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH && flushes.is_empty() {
            let next = match rx.try_recv() {
                Ok(queued) => Some(queued),
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(linger, rx.recv()).await {
                        Ok(queued) => queued,
                        Err(_) => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            match next {
                Some(Queued::Event(event)) => batch.push(event),
                Some(Queued::Flush(done)) => flushes.push(done),
                None => break,
            }
        }
        if !batch.is_empty()
            && let Err((delivered, err)) = deliver(&control, &batch, &spool).await
        {
            tracing::warn!(error = %err, events = batch.len() - delivered, "events: not delivered; spooled");
            append_spool(&spool, &batch[delivered..]);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Sends a batch. A batch the control plane refuses as bad is sent again
/// event by event, so one bad event cannot hold back the others; an event
/// refused alone is kept in `rejected.jsonl` beside the spool (never
/// dropped) and logged as an error. When the control plane cannot be
/// asked, the error comes with how many events of the batch were stored
/// before: the rest must wait.
async fn deliver(
    control: &ControlPlane,
    batch: &[Vec<u8>],
    spool: &Path,
) -> Result<(), (usize, anyhow::Error)> {
    match control.append(lines(batch)).await {
        Err(err) => Err((0, err)),
        Ok(Delivery::Stored) => Ok(()),
        Ok(Delivery::Partly(refused)) => {
            let kept: Vec<Vec<u8>> = refused
                .iter()
                .filter_map(|(line, why)| {
                    tracing::error!(line, %why, "events: the control plane refuses an event; kept in rejected.jsonl");
                    usize::try_from(*line).ok().and_then(|l| batch.get(l.checked_sub(1)?)).cloned()
                })
                .collect();
            append_spool(&spool.with_file_name("rejected.jsonl"), &kept);
            Ok(())
        }
        Ok(Delivery::Refused(why)) if batch.len() == 1 => {
            tracing::error!(%why, "events: the control plane refuses an event; kept in rejected.jsonl");
            append_spool(&spool.with_file_name("rejected.jsonl"), batch);
            Ok(())
        }
        Ok(Delivery::Refused(_)) => {
            for (sent, event) in batch.iter().enumerate() {
                if let Err((_, err)) =
                    Box::pin(deliver(control, std::slice::from_ref(event), spool)).await
                {
                    return Err((sent, err));
                }
            }
            Ok(())
        }
    }
}

fn lines(events: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum());
    for event in events {
        out.extend_from_slice(event);
        out.push(b'\n');
    }
    out
}

fn spool_len(spool: &Path) -> u64 {
    std::fs::metadata(spool).map_or(0, |m| m.len())
}

fn append_spool(spool: &Path, events: &[Vec<u8>]) {
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
/// left, so a failure part way resends nothing already delivered. A line
/// that does not parse (a write cut by a crash) goes to `rejected.jsonl`.
async fn send_spool(control: &ControlPlane, spool: &Path) -> anyhow::Result<()> {
    let text = tokio::fs::read(spool).await?;
    let mut events = Vec::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Map<String, Value>>(line) {
            Ok(_) => events.push(line.to_vec()),
            Err(err) => {
                tracing::error!(error = %err, "events: a spooled line does not parse; kept in rejected.jsonl");
                let mut kept = line.to_vec();
                kept.push(b'\n');
                let rejected = spool.with_file_name("rejected.jsonl");
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&rejected)
                    .and_then(|mut f| f.write_all(&kept));
            }
        }
    }
    let mut sent = 0;
    while sent < events.len() {
        let end = (sent + BATCH).min(events.len());
        let outcome = deliver(control, &events[sent..end], spool).await;
        let delivered = match &outcome {
            Ok(()) => end - sent,
            Err((delivered, _)) => *delivered,
        };
        sent += delivered;
        let aside = spool.with_extension("jsonl.new");
        let rest = lines(&events[sent..]);
        let written_aside = aside.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&written_aside)?;
            file.write_all(&rest)?;
            file.sync_all()
        })
        .await??;
        tokio::fs::rename(&aside, spool).await?;
        if let Err((_, err)) = outcome {
            return Err(err);
        }
    }
    tokio::fs::remove_file(spool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_with_their_hash() {
        let command = "x".repeat(200_000);
        let mut event = Map::new();
        event.insert("kind".into(), json!("ssh.exec"));
        event.insert("command".into(), json!(command));
        let fitted = fit(event);
        let size = serde_json::to_vec(&fitted).expect("json").len();
        assert!(size < EVENT_SOFT_LIMIT, "{size}");
        assert_eq!(fitted["truncated"], true);
        assert_eq!(
            fitted["command_sha256"],
            crate::recording::hex(&sha2::Sha256::digest(command.as_bytes()))
        );
        assert!(fitted["command"].as_str().is_some_and(|c| c.ends_with('…')));
        let mut small = Map::new();
        small.insert("command".into(), json!("uptime"));
        assert_eq!(fit(small.clone()), small);
    }
}
