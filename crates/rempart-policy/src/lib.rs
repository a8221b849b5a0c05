//! Firewall policy as code (issue 5): the policy language and
//! its resolution into hosts, groups, networks, services and rules, with
//! every error naming its file, line and what is wrong.
//!
//! [`load`] reads one TOML file or every `*.toml` of a folder (in name
//! order) as one policy; [`Policy`] is the resolved model the compiler and
//! the analyses work on: [`compile`] writes one host's nftables script,
//! [`validate`] proves a ruleset read back from `nft -j` accepts exactly
//! what the policy allows, [`check`] finds broken invariants,
//! [`analysis`] answers who reaches what and how far an attacker spreads,
//! and [`lint`] finds rules that do nothing or too much.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod check;
pub mod compile;
mod error;
pub mod lint;
mod model;
mod raw;
mod resolve;
mod service;
mod source;
pub mod validate;

pub use check::{Flow, Violation, check};
pub use compile::{CompileError, Compiled, compile};
pub use error::PolicyError;
pub use model::{Endpoint, Host, Invariant, InvariantKind, Policy, Rule};
pub use service::{PortRange, Protocol, ServiceItem};

use std::path::Path;

/// Reads and resolves the policy at `path` (a file, or a folder of `*.toml`).
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let sources = source::read(path)?;
    resolve::resolve(&sources)
}

/// Resolves a policy from texts (file name, content), as [`load`] does.
pub fn parse(files: &[(&str, &str)]) -> Result<Policy, PolicyError> {
    let sources: Vec<source::Source> = files
        .iter()
        .map(|(name, text)| source::Source::new(name, text))
        .collect();
    resolve::resolve(&sources)
}
