//! `rempart policy …`: firewall policy as code (issue 5; check and compile
//! so far).

use std::path::PathBuf;

use anyhow::{Result, bail};
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
    }
    Ok(())
}
