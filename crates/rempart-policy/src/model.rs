//! The resolved policy: names turned into hosts, addresses and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use time::Date;

use crate::service::ServiceItem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub zone: String,
}

/// One side of a rule: hosts of the policy (by index), or networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:NAME` or `group:NAME`.
    Hosts {
        name: String,
        members: BTreeSet<usize>,
    },
    /// `network:NAME` or `internet`.
    Networks { name: String, nets: Vec<IpNet> },
}

impl Endpoint {
    /// As written in the policy: `group:api`, `internet`.
    pub fn name(&self) -> &str {
        match self {
            Endpoint::Hosts { name, .. } | Endpoint::Networks { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub from: Endpoint,
    pub to: Endpoint,
    pub service: String,
    pub items: Vec<ServiceItem>,
    /// The rule stops applying on this day (it is not emitted from then on).
    pub expires: Option<Date>,
    pub comment: String,
    pub ticket: String,
    /// Where it is written, for reports.
    pub file: String,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvariantKind {
    /// `service` reaches `to` only from `from`.
    OnlyFrom,
    /// Nothing at all goes from `from` to `to`.
    Never,
    /// From `from`, only `to` on `service` is reached.
    OnlyTo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invariant {
    pub name: String,
    pub kind: InvariantKind,
    pub from: Endpoint,
    pub to: Endpoint,
    pub service: Option<(String, Vec<ServiceItem>)>,
    pub file: String,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub zones: BTreeMap<String, Vec<IpNet>>,
    pub hosts: Vec<Host>,
    /// Group name → member hosts (nested groups and selectors expanded).
    pub groups: BTreeMap<String, BTreeSet<usize>>,
    /// Network name → its CIDRs (`internet` included).
    pub networks: BTreeMap<String, Vec<IpNet>>,
    pub services: BTreeMap<String, Vec<ServiceItem>>,
    pub rules: Vec<Rule>,
    pub invariants: Vec<Invariant>,
}

impl Policy {
    pub fn host(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// The addresses an endpoint stands for (hosts' addresses as /32 and /128).
    pub fn nets_of(&self, endpoint: &Endpoint) -> Vec<ipnet::IpNet> {
        match endpoint {
            Endpoint::Hosts { members, .. } => members
                .iter()
                .flat_map(|&h| {
                    self.hosts[h]
                        .addresses
                        .iter()
                        .map(|a| ipnet::IpNet::from(*a))
                })
                .collect(),
            Endpoint::Networks { nets, .. } => nets.clone(),
        }
    }

    /// Whether host `host` is on this side of a rule (a member, or one of
    /// its addresses in the networks).
    pub fn includes(&self, endpoint: &Endpoint, host: usize) -> bool {
        match endpoint {
            Endpoint::Hosts { members, .. } => members.contains(&host),
            Endpoint::Networks { nets, .. } => self.hosts[host]
                .addresses
                .iter()
                .any(|a| nets.iter().any(|n| n.contains(a))),
        }
    }

    /// Rules whose `expires` day is `today` or earlier: not emitted, reported.
    pub fn expired_rules(&self, today: Date) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.expires.is_some_and(|day| day <= today))
            .collect()
    }
}
