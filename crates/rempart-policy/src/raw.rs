//! The policy file as written: every section, with positions for errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One policy file. Every section is optional; a policy may be split
/// across files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub zone: Vec<Zone>,
    #[serde(default)]
    pub host: Vec<Host>,
    #[serde(default)]
    pub group: Vec<Group>,
    #[serde(default)]
    pub network: Vec<Network>,
    #[serde(default)]
    pub service: Vec<Service>,
    #[serde(default)]
    pub rule: Vec<Rule>,
    #[serde(default)]
    pub invariant: Vec<Invariant>,
}

/// A part of the data centre (`dc`, `office`): its networks. A host's
/// addresses are in exactly its own zone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: Spanned<String>,
    pub networks: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: Spanned<String>,
    pub addresses: Vec<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub zone: Spanned<String>,
}

/// Members (`host:NAME`, `group:NAME`), and/or every host whose labels
/// match `select`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: Spanned<String>,
    #[serde(default)]
    pub members: Vec<Spanned<String>>,
    #[serde(default)]
    pub select: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: Spanned<String>,
    pub cidrs: Vec<Spanned<String>>,
}

/// `tcp/443`, `tcp/8000-8100`, `udp/53`, `icmp/echo-request`, `icmpv6/128`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: Spanned<String>,
    pub ports: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub service: Spanned<String>,
    #[serde(default)]
    pub expires: Option<Spanned<toml::value::Datetime>>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub ticket: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    pub name: Spanned<String>,
    /// `only-from`: `service` to `to` only from `from`; `never`: nothing at
    /// all from `from` to `to`; `only-to`: from `from`, only to `to` on `service`.
    pub kind: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    #[serde(default)]
    pub service: Option<Spanned<String>>,
}
