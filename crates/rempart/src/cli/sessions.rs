//! `rempart session list|show|play|export`: bastion sessions and their
//! recordings, as the control plane stores them.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sha2::Digest;

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// The newest sessions first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One session: who, where, by which grant, bytes, recordings.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Replay a session's recording in this terminal.
    Play {
        id: String,
        /// Faster (2) or slower (0.5) than it happened.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Longest pause kept, in seconds (idle time is cut to it).
        #[arg(long, default_value_t = 2.0)]
        max_wait: f64,
        /// Which recording, when the session has several [default: the first].
        #[arg(long)]
        recording: Option<String>,
    },
    /// Write a session's recording (asciicast v2, playable by asciinema).
    Export {
        id: String,
        /// The file [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        recording: Option<String>,
    },
}

pub async fn run(args: &ClientArgs, command: SessionCommand) -> Result<()> {
    let client = client(args)?;
    match command {
        SessionCommand::List { limit, json } => {
            let list = client.list_sessions(limit).await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .sessions
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.user.clone(),
                        format!("host:{}", s.target),
                        s.grant.clone(),
                        output::time(s.started_at),
                        output::time(s.ended_at),
                        s.recordings.len().to_string(),
                        s.reason.clone(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "USER",
                    "TARGET",
                    "GRANT",
                    "STARTED",
                    "ENDED",
                    "RECORDINGS",
                    "ENDED BECAUSE",
                ],
                &rows,
            );
            Ok(())
        }
        SessionCommand::Show { id, json } => {
            let session = client.show_session(&id).await?;
            if json {
                return output::json(&session);
            }
            println!(
                "session {} by {} on host:{}",
                session.id, session.user, session.target
            );
            println!("  grant:     {}", session.grant);
            println!("  bastion:   {} (from {})", session.bastion, session.client);
            println!(
                "  time:      {} to {}",
                output::time(session.started_at),
                output::time(session.ended_at)
            );
            println!(
                "  bytes:     {} from the user, {} to the user",
                session.bytes_from_user, session.bytes_to_user
            );
            println!("  ended:     {}", session.reason);
            for r in &session.recordings {
                println!(
                    "  recording: {} ({} bytes, sha256 {})",
                    r.name, r.bytes, r.sha256
                );
            }
            Ok(())
        }
        SessionCommand::Play {
            id,
            speed,
            max_wait,
            recording,
        } => {
            if !(speed.is_finite() && speed > 0.0) {
                bail!("--speed must be above 0");
            }
            if !(max_wait.is_finite() && max_wait >= 0.0) {
                bail!("--max-wait must be 0 or more seconds");
            }
            let content = fetch(&client, &id, recording).await?;
            play(&content, speed, max_wait)
        }
        SessionCommand::Export { id, out, recording } => {
            let content = fetch(&client, &id, recording).await?;
            match out {
                Some(path) => std::fs::write(&path, &content)
                    .with_context(|| format!("writing {}", path.display())),
                None => std::io::stdout()
                    .write_all(&content)
                    .context("writing to standard output"),
            }
        }
    }
}

/// A recording's bytes, checked against the SHA-256 the bastion wrote in
/// the well-log (`ssh.recording`) when the session ended: a recording
/// changed since, in the store or on the way, is refused.
async fn fetch(
    client: &rempart_client::Client,
    id: &str,
    recording: Option<String>,
) -> Result<Vec<u8>> {
    let name = match recording {
        Some(name) => name,
        None => {
            let session = client.show_session(id).await?;
            match session.recordings.first() {
                Some(r) => r.name.clone(),
                None => bail!("session {id} has no recording (no terminal was opened)"),
            }
        }
    };
    let content = client.recording(id, &name).await?;
    let logged = client
        .search(&format!("kind:ssh.recording session:{id}"), 1000)
        .await?;
    let expected = logged.hits.iter().find_map(|hit| {
        let part = hit.entry.as_ref()?.get("recording")?;
        (part.get("name")?.as_str()? == name)
            .then(|| part.get("sha256")?.as_str().map(str::to_owned))?
    });
    let actual: String = sha2::Sha256::digest(&content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match expected {
        Some(expected) if expected == actual => Ok(content),
        Some(expected) => bail!(
            "recording {name} does not match the well-log: its SHA-256 is {actual}, the bastion logged {expected}"
        ),
        None => bail!(
            "recording {name} is not in the well-log yet (no ssh.recording event): it cannot be checked"
        ),
    }
}

/// Writes the output events at their pace (divided by `speed`, pauses cut
/// to `max_wait`). Only output is shown: input echoes through it anyway.
fn play(content: &[u8], speed: f64, max_wait: f64) -> Result<()> {
    let text = std::str::from_utf8(content).context("the recording is not UTF-8")?;
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap_or_default())
        .context("the recording's first line is not an asciicast header")?;
    if header["version"] != 2 {
        bail!("not an asciicast v2 recording");
    }
    let mut stdout = std::io::stdout().lock();
    let mut previous = 0.0_f64;
    for (number, line) in lines.enumerate() {
        let event: (f64, String, String) = serde_json::from_str(line)
            .with_context(|| format!("recording line {}: not an event", number + 2))?;
        let (at, code, data) = event;
        let wait = ((at - previous).max(0.0) / speed).min(max_wait);
        previous = at;
        if code == "o" {
            std::thread::sleep(Duration::from_secs_f64(wait));
            stdout.write_all(data.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(())
}
