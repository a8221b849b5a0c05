//! `rempart log …`: the well-log from the command line. Proofs fetched from
//! the server are checked here, not taken on the server's word.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use rempart_merkle::checkpoint::NoteVerifier;
use rempart_merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Send JSON lines (one event per line) from FILE or standard input.
    Append {
        /// A file of JSON lines [default: standard input].
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Show the latest signed checkpoint (a C2SP signed note).
    Checkpoint {
        #[arg(long)]
        json: bool,
    },
    /// Search: newest matches first, e.g. `since:2h host:db-1 kind:ssh.* "invalid user"`.
    Search {
        /// Terms ANDed: since:/until: (2h, 7d, RFC 3339), host:, actor:, target:,
        /// outcome:, kind: (ssh.* for a prefix), any field:value, words, "phrases".
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show the last entries, or those from --from; -f follows new ones.
    Tail {
        /// Only entries matching this query (same terms as `log search`).
        query: Vec<String>,
        /// The first sequence number to show [default: the last -n entries].
        #[arg(long)]
        from: Option<u64>,
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Keep following the log as it grows (until interrupted).
        #[arg(short, long)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Erase one entry's payload (admins). Its leaf hash stays, so every
    /// checkpoint and proof stays valid; the order is itself logged.
    Erase {
        seq: u64,
        /// Why (a data-subject request, a leaked secret...), for the record.
        #[arg(long)]
        reason: String,
    },
    /// Show one entry.
    Show {
        seq: u64,
        #[arg(long)]
        json: bool,
    },
    /// Prove that entry SEQ is in the log, and check the proof here.
    Prove {
        seq: u64,
        /// The tree size to prove against [default: the latest checkpoint].
        #[arg(long)]
        size: Option<u64>,
        #[command(flatten)]
        key: LogKey,
        #[arg(long)]
        json: bool,
    },
    /// Prove that the log of OLD entries is a prefix of the log of NEW, and check it here.
    Consistency {
        old: u64,
        new: Option<u64>,
        #[command(flatten)]
        key: LogKey,
        #[arg(long)]
        json: bool,
    },
    /// Verify a well-log from its files alone (offline).
    Verify {
        /// The control plane's data directory (its welllog/ folder is read).
        #[arg(long, default_value = "./rempart-data")]
        data_dir: PathBuf,
        /// A signed checkpoint kept elsewhere: proves the log only grew since.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The log's verifier key [default: welllog/verifier.key in the data directory].
        #[arg(long, env = "REMPART_LOG_KEY")]
        log_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct LogKey {
    /// The log's verifier key (`origin+id+key`), to check the signed
    /// checkpoint the proof ends in; without it, the server's roots are used.
    #[arg(long, env = "REMPART_LOG_KEY")]
    log_key: Option<String>,
}

fn hash(text: &str, what: &str) -> Result<Hash> {
    Hash::from_base64(text).with_context(|| format!("the server sent a bad {what}"))
}

fn hashes(texts: &[String]) -> Result<Vec<Hash>> {
    texts.iter().map(|t| hash(t, "proof hash")).collect()
}

/// The root the key vouches for at `size`, if a key is given.
async fn signed_root(
    client: &rempart_client::Client,
    key: &LogKey,
    size: u64,
) -> Result<Option<Hash>> {
    let Some(key) = &key.log_key else {
        return Ok(None);
    };
    let verifier = NoteVerifier::from_text(key).context("--log-key")?;
    let checkpoint = client.checkpoint().await?;
    let signed = verifier
        .verify_checkpoint(&checkpoint.note)
        .context("the server's checkpoint")?;
    if signed.size != size {
        bail!(
            "the signed checkpoint is at size {}, not {size}: prove against it (omit --size)",
            signed.size
        );
    }
    Ok(Some(signed.root))
}

fn chunks(bytes: &[u8], limit: usize) -> Vec<&[u8]> {
    // Whole lines only, each chunk under `limit` when lines allow it.
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + limit).min(bytes.len());
        if end < bytes.len() {
            end = bytes[start..end]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(end, |i| start + i + 1);
        }
        out.push(&bytes[start..end]);
        start = end;
    }
    out
}

pub async fn run(args: &ClientArgs, command: LogCommand) -> Result<()> {
    if let LogCommand::Verify {
        data_dir,
        checkpoint,
        log_key,
        json,
    } = command
    {
        return verify_offline(data_dir, checkpoint, log_key, json);
    }
    let client = client(args)?;
    match command {
        LogCommand::Append { file, json } => {
            let mut bytes = Vec::new();
            match file {
                Some(path) => {
                    bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?
                }
                None => {
                    std::io::stdin().read_to_end(&mut bytes)?;
                }
            }
            let (mut accepted, mut refused, mut lines_before) = (0u64, 0u64, 0u64);
            let mut first = None;
            let mut last = None;
            for chunk in chunks(&bytes, 4 << 20) {
                let result = client.append_entries(chunk.to_vec()).await?;
                accepted += result.accepted;
                first = first.or(result.first_seq);
                last = result.last_seq.or(last);
                for rejected in &result.rejected {
                    refused += 1;
                    eprintln!("line {}: {}", lines_before + rejected.line, rejected.error);
                }
                lines_before += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
            if json {
                output::json(&serde_json::json!({
                    "accepted": accepted, "refused": refused, "first_seq": first, "last_seq": last
                }))?;
            } else if let (Some(first), Some(last)) = (first, last) {
                println!("{accepted} entries written and synced, seq {first} to {last}");
            }
            if refused > 0 {
                bail!("{refused} line(s) refused (listed above)");
            }
        }
        LogCommand::Checkpoint { json } => {
            let checkpoint = client.checkpoint().await?;
            if json {
                return output::json(&checkpoint);
            }
            print!("{}", checkpoint.note);
        }
        LogCommand::Search { query, limit, json } => {
            let result = client.search(&query.join(" "), limit).await?;
            if json {
                return output::json(&result);
            }
            for hit in &result.hits {
                print_entry(hit)?;
            }
            if result.indexed < result.size {
                eprintln!(
                    "(the index covers {} of {} entries; the newest are not searched yet)",
                    result.indexed, result.size
                );
            }
        }
        LogCommand::Tail {
            query,
            from,
            lines,
            follow,
            json,
        } => {
            let filter = (!query.is_empty()).then(|| query.join(" "));
            let mut next = from;
            let limit = if filter.is_some() {
                1000
            } else {
                lines.clamp(1, 1000)
            };
            loop {
                let list = client.entries(next, limit, filter.as_deref()).await?;
                for entry in &list.entries {
                    if json {
                        println!("{}", serde_json::to_string(entry)?);
                    } else {
                        match &entry.entry {
                            Some(value) => {
                                println!("{}\t{}", entry.seq, serde_json::to_string(value)?)
                            }
                            None => println!("{}\t(erased)", entry.seq),
                        }
                    }
                }
                let shown = list.entries.last().map(|e| e.seq + 1);
                next = Some(shown.unwrap_or(list.size.max(next.unwrap_or(0))));
                if !follow {
                    break;
                }
                if shown.is_none() || next == Some(list.size) {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
        LogCommand::Erase { seq, reason } => {
            let erased = client.erase(seq, &reason).await?;
            if erased.erased_now {
                println!(
                    "erased entry {seq}; the order is entry {}",
                    erased.order_seq
                );
            } else {
                println!(
                    "entry {seq} was erased already; this order is entry {}",
                    erased.order_seq
                );
            }
        }
        LogCommand::Show { seq, json } => {
            let entry = client.entry(seq).await?;
            if json {
                return output::json(&entry);
            }
            match &entry.entry {
                Some(value) => println!("{seq}\t{}", serde_json::to_string(value)?),
                None => println!("{seq}\t(erased; leaf {})", entry.leaf_hash),
            }
        }
        LogCommand::Prove {
            seq,
            size,
            key,
            json,
        } => {
            let proof = client.inclusion_proof(seq, size).await?;
            let entry = client.entry(seq).await?;
            let leaf = hash(&proof.leaf_hash, "leaf hash")?;
            if let Some(value) = &entry.entry {
                // The leaf must be the hash of the entry we were shown.
                let canonical = serde_json::to_vec(value)?;
                if leaf_hash(&canonical) != leaf {
                    bail!("entry {seq} as shown does not hash to its leaf: refusing it");
                }
            }
            let root = match signed_root(&client, &key, proof.size).await? {
                Some(root) => root,
                None => hash(&proof.root, "root")?,
            };
            verify_inclusion(seq, proof.size, &leaf, &hashes(&proof.proof)?, &root)
                .with_context(|| format!("the proof of entry {seq} does not hold"))?;
            if json {
                return output::json(&proof);
            }
            let signed = if key.log_key.is_some() { "signed " } else { "" };
            println!(
                "verified: entry {seq} is in the log of {} entries ({signed}root {})",
                proof.size, proof.root
            );
        }
        LogCommand::Consistency {
            old,
            new,
            key,
            json,
        } => {
            let proof = client.consistency_proof(old, new).await?;
            let new_root = match signed_root(&client, &key, proof.new_size).await? {
                Some(root) => root,
                None => hash(&proof.new_root, "root")?,
            };
            let old_root = hash(&proof.old_root, "root")?;
            verify_consistency(
                old,
                proof.new_size,
                &hashes(&proof.proof)?,
                &old_root,
                &new_root,
            )
            .with_context(|| {
                format!(
                    "the log of {old} entries is not a prefix of the log of {}",
                    proof.new_size
                )
            })?;
            if json {
                return output::json(&proof);
            }
            println!(
                "verified: the log of {old} entries (root {}) is a prefix of the log of {} (root {})",
                proof.old_root, proof.new_size, proof.new_root
            );
        }
        LogCommand::Verify { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn print_entry(entry: &rempart_api::EntryView) -> Result<()> {
    match &entry.entry {
        Some(value) => println!("{}\t{}", entry.seq, serde_json::to_string(value)?),
        None => println!("{}\t(erased; leaf {})", entry.seq, entry.leaf_hash),
    }
    Ok(())
}

fn verify_offline(
    data_dir: PathBuf,
    checkpoint: Option<PathBuf>,
    log_key: Option<String>,
    json: bool,
) -> Result<()> {
    let root = data_dir.join("welllog");
    if !root.join("segments").is_dir() {
        bail!("{} holds no well-log", root.display());
    }
    let key_text = match log_key {
        Some(key) => key,
        None => std::fs::read_to_string(root.join("verifier.key"))
            .with_context(|| format!("{}", root.join("verifier.key").display()))?,
    };
    let verifier = NoteVerifier::from_text(&key_text).context("the log's verifier key")?;
    let external = match &checkpoint {
        Some(path) => {
            Some(std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?)
        }
        None => None,
    };
    let bar = if std::io::stderr().is_terminal() && !json {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} verified {pos} entries ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = rempart_welllog::verify::verify(&root, &verifier, external.as_deref(), |n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();
    if json {
        output::json(&serde_json::json!({
            "entries": report.entries,
            "erased": report.erased,
            "checkpoints": report.checkpoints,
            "root": STANDARD.encode(report.root.0),
            "ok": report.problem.is_none(),
            "first_bad_seq": report.problem.as_ref().map(|p| p.0),
            "problem": report.problem.as_ref().map(|p| p.1.clone()),
        }))?;
    }
    match report.problem {
        None => {
            if !json {
                println!(
                    "ok: {} entries, {} signed checkpoints, root {}{}",
                    report.entries,
                    report.checkpoints,
                    STANDARD.encode(report.root.0),
                    if checkpoint.is_some() {
                        "; the log extends the given checkpoint"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Some((seq, detail)) => bail!("the well-log fails verification at entry {seq}: {detail}"),
    }
}
