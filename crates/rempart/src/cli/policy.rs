//! `rempart policy …`: firewall policy as code (issue 5; check, compile,
//! plan, apply and drift so far).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use time::OffsetDateTime;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy (a file or a folder): syntax, names, and invariants;
    /// each broken invariant with the rule that breaks it and an example flow.
    Check { policy: PathBuf },
    /// Print the nftables script of one host (`table inet rempart` only).
    Compile {
        policy: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Say whether applying would change this host's live ruleset, and how.
    Plan {
        policy: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Replace this host's `table inet rempart` in one nft transaction, read
    /// it back and prove it equal to the policy (else put the old one back).
    Apply {
        policy: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Exit 1, with the difference, when the live ruleset is not the policy's.
    Drift {
        policy: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Who can open a connection to what (host:NAME, network:NAME or internet
    /// to filter; a group's hosts with group:NAME).
    Reach {
        policy: PathBuf,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
        /// Also draw the map (the lines shown) as SVG into FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Rules shadowed or made redundant by others, naming nothing, expired,
    /// or letting the internet reach a non-edge host; exit 1 when any.
    Lint { policy: PathBuf },
    /// Everything an attacker holding HOST can reach, hop by hop.
    Blast {
        policy: PathBuf,
        #[arg(long)]
        host: String,
        #[arg(long)]
        json: bool,
    },
}

/// Whether `party` is what a --from/--to filter names.
fn matches_filter(
    policy: &rempart_policy::Policy,
    party: &rempart_policy::analysis::Party,
    filter: Option<&str>,
) -> bool {
    let Some(filter) = filter else { return true };
    if let Some(group) = filter.strip_prefix("group:") {
        return match (party, policy.groups.get(group)) {
            (rempart_policy::analysis::Party::Host(name), Some(members)) => {
                members.iter().any(|&h| policy.hosts[h].name == *name)
            }
            _ => false,
        };
    }
    party.to_string() == filter
}

/// Runs `nft ARGS` with `input` on its standard input.
fn nft(args: &[&str], input: &str) -> Result<std::process::Output> {
    nft_in(None, args, input)
}

/// Runs `nft ARGS`, inside network namespace `namespace` when given.
fn nft_in(namespace: Option<&str>, args: &[&str], input: &str) -> Result<std::process::Output> {
    let mut command = match namespace {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => Command::new("nft"),
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (is nftables installed, and are you root?)")?;
    child
        .stdin
        .take()
        .context("nft's standard input")?
        .write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// The live `table inet rempart` as nft JSON, or `None` when it is absent.
fn live_json() -> Result<Option<String>> {
    let out = nft(&["-j", "list", "table", "inet", "rempart"], "")?;
    if out.status.success() {
        return Ok(Some(String::from_utf8(out.stdout)?));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file or directory") {
        return Ok(None);
    }
    bail!("nft list table inet rempart: {}", err.trim())
}

/// How the live ruleset stands against the policy: `Ok(())` when equal, or
/// a sentence saying how it differs.
fn standing(path: &Path, host: &str) -> Result<std::result::Result<(), String>> {
    let policy = rempart_policy::load(path)?;
    let today = OffsetDateTime::now_utc().date();
    let wanted = rempart_policy::validate::desired(&policy, host, today)?;
    let Some(json) = live_json()? else {
        return Ok(Err("table inet rempart is absent".to_owned()));
    };
    Ok(match rempart_policy::validate::read_ruleset(&json) {
        Err(unreadable) => Err(unreadable.to_string()),
        Ok(live) => rempart_policy::validate::compare(&live, &wanted).map_err(|d| d.to_string()),
    })
}

pub fn run(command: PolicyCommand) -> Result<()> {
    let today = OffsetDateTime::now_utc().date();
    match command {
        PolicyCommand::Check { policy: path } => {
            let policy = rempart_policy::load(&path)?;
            for rule in policy.expired_rules(today) {
                eprintln!(
                    "warning: {}:{}: the rule {} → {} expired on {} and is no longer applied",
                    rule.file,
                    rule.line,
                    rule.from.name(),
                    rule.to.name(),
                    rule.expires.map(|d| d.to_string()).unwrap_or_default()
                );
            }
            let violations = rempart_policy::check(&policy, today);
            for violation in &violations {
                println!("{violation}");
            }
            if !violations.is_empty() {
                bail!(
                    "{} invariant violation{} in {}",
                    violations.len(),
                    if violations.len() == 1 { "" } else { "s" },
                    path.display()
                );
            }
            println!(
                "ok: {} hosts, {} groups, {} rules; {} invariants hold",
                policy.hosts.len(),
                policy.groups.len(),
                policy.rules.len(),
                policy.invariants.len()
            );
        }
        PolicyCommand::Compile { policy: path, host } => {
            let policy = rempart_policy::load(&path)?;
            let compiled = rempart_policy::compile(&policy, &host, today)?;
            for (file, line) in &compiled.expired {
                eprintln!("warning: {file}:{line}: expired rule not emitted");
            }
            print!("{}", compiled.script);
        }
        PolicyCommand::Plan { policy: path, host } => match standing(&path, &host)? {
            Ok(()) => println!(
                "no change: the live ruleset accepts exactly what the policy allows {host}"
            ),
            Err(how) => println!("apply would change the live ruleset: {how}"),
        },
        PolicyCommand::Drift { policy: path, host } => {
            if let Err(how) = standing(&path, &host)? {
                bail!("drift on {host}: {how}");
            }
            println!("no drift: the live ruleset accepts exactly what the policy allows {host}");
        }
        PolicyCommand::Apply { policy: path, host } => apply(&path, &host, today)?,
        PolicyCommand::Reach {
            policy: path,
            from,
            to,
            service,
            json,
            csv,
            svg,
        } => {
            let policy = rempart_policy::load(&path)?;
            if let Some(group) = [&from, &to]
                .into_iter()
                .flatten()
                .find_map(|f| f.strip_prefix("group:"))
                .filter(|g| !policy.groups.contains_key(*g))
            {
                bail!("no group {group:?} in the policy");
            }
            let lines: Vec<_> = rempart_policy::analysis::reach(&policy, today)
                .into_iter()
                .filter(|r| matches_filter(&policy, &r.from, from.as_deref()))
                .filter(|r| matches_filter(&policy, &r.to, to.as_deref()))
                .filter(|r| service.as_ref().is_none_or(|s| *s == r.service))
                .collect();
            if let Some(file) = &svg {
                std::fs::write(file, rempart_policy::analysis::svg(&lines))
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            if json {
                let rows: Vec<serde_json::Value> = lines
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "from": r.from.to_string(), "to": r.to.to_string(),
                            "service": r.service, "ports": r.ports,
                            "rule": format!("{}:{}", r.file, r.line),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if csv {
                println!("from,to,service,ports,rule");
                for r in &lines {
                    println!(
                        "{},{},{},{},{}:{}",
                        r.from,
                        r.to,
                        r.service,
                        r.ports.join(" "),
                        r.file,
                        r.line
                    );
                }
            } else {
                for r in &lines {
                    println!(
                        "{} -> {}  {} ({})",
                        r.from,
                        r.to,
                        r.service,
                        r.ports.join(", ")
                    );
                }
            }
        }
        PolicyCommand::Lint { policy: path } => {
            let policy = rempart_policy::load(&path)?;
            let findings = rempart_policy::lint::lint(&policy, today);
            for finding in &findings {
                println!("{finding}");
            }
            if !findings.is_empty() {
                bail!(
                    "{} lint finding{} in {}",
                    findings.len(),
                    if findings.len() == 1 { "" } else { "s" },
                    path.display()
                );
            }
            println!("ok: no rule shadowed, redundant, empty, expired or over-broad");
        }
        PolicyCommand::Blast {
            policy: path,
            host,
            json,
        } => {
            let policy = rempart_policy::load(&path)?;
            if policy.host(&host).is_none() {
                bail!("no host {host:?} in the policy");
            }
            let reached = rempart_policy::analysis::blast(&policy, &host, today);
            if json {
                let rows: Vec<serde_json::Value> = reached
                    .iter()
                    .map(|(party, path)| {
                        let hops: Vec<serde_json::Value> = path
                            .iter()
                            .map(|h| serde_json::json!({"from": h.from.to_string(), "to": h.to.to_string(), "service": h.service}))
                            .collect();
                        serde_json::json!({"reached": party.to_string(), "path": hops})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "from host:{host}, an attacker reaches {} endpoint(s):",
                reached.len()
            );
            for (party, path) in &reached {
                let hops: Vec<String> = path
                    .iter()
                    .map(|h| format!("-{}-> {}", h.service, h.to))
                    .collect();
                println!("  {party}: host:{host} {}", hops.join(" "));
            }
        }
    }
    Ok(())
}

/// A network namespace of our own, removed when dropped.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Proves the compiled ruleset before it goes live: loaded into a scratch
/// network namespace (where nothing else runs), read back and compared with
/// the policy. `Ok(false)` when no namespace can be made here; then only the
/// live read-back after the transaction proves it.
fn prove_in_scratch(script: &str, wanted: &rempart_policy::validate::Accepts) -> Result<bool> {
    let name = format!("rempart-proof-{}", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &name]).output();
    if !made.is_ok_and(|o| o.status.success()) {
        return Ok(false);
    }
    let scratch = Scratch(name);
    let out = nft_in(Some(&scratch.0), &["-f", "-"], script)?;
    if !out.status.success() {
        bail!(
            "nft refused the ruleset (nothing applied): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let out = nft_in(
        Some(&scratch.0),
        &["-j", "list", "table", "inet", "rempart"],
        "",
    )?;
    let json = String::from_utf8(out.stdout)?;
    let proof = rempart_policy::validate::read_ruleset(&json)
        .map_err(|e| e.to_string())
        .and_then(|live| {
            rempart_policy::validate::compare(&live, wanted).map_err(|d| d.to_string())
        });
    if let Err(how) = proof {
        bail!("the compiled ruleset is not proven equal to the policy ({how}): nothing applied");
    }
    Ok(true)
}

fn apply(path: &Path, host: &str, today: time::Date) -> Result<()> {
    let policy = rempart_policy::load(path)?;
    let compiled = rempart_policy::compile(&policy, host, today)?;
    for (file, line) in &compiled.expired {
        eprintln!("warning: {file}:{line}: expired rule not emitted");
    }
    let wanted = rempart_policy::validate::desired(&policy, host, today)?;
    let proven_before = prove_in_scratch(&compiled.script, &wanted)?;
    // What to put back if the new ruleset cannot be proven live.
    let saved = {
        let out = nft(&["list", "table", "inet", "rempart"], "")?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let started = Instant::now();
    let out = nft(&["-f", "-"], &compiled.script)?;
    if !out.status.success() {
        bail!(
            "nft refused the ruleset (nothing changed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let applied = started.elapsed();
    let proof = match live_json()? {
        None => Err("the table is absent after the transaction".to_owned()),
        Some(json) => rempart_policy::validate::read_ruleset(&json)
            .map_err(|e| e.to_string())
            .and_then(|live| {
                rempart_policy::validate::compare(&live, &wanted).map_err(|d| d.to_string())
            }),
    };
    if let Err(how) = proof {
        let restore = match &saved {
            Some(old) => format!("table inet rempart\ndelete table inet rempart\n{old}"),
            None => "table inet rempart\ndelete table inet rempart\n".to_owned(),
        };
        let restored = nft(&["-f", "-"], &restore)?;
        let back = if restored.status.success() {
            "the previous ruleset is back"
        } else {
            "AND the previous ruleset could not be put back: check the host now"
        };
        bail!("applied ruleset not proven equal to the policy ({how}); {back}");
    }
    println!(
        "applied to {host} in {} ms, proven equal to the policy ({})",
        applied.as_millis(),
        if proven_before {
            "before, in a scratch namespace, and live"
        } else {
            "live"
        }
    );
    Ok(())
}
