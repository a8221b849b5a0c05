//! Reachability and blast radius, from the active rules.
//!
//! A rule compiles to the source's egress and the destination's ingress
//! both, so who can open a connection to what is exactly what the active
//! rules name, host by host; a network (`internet`, `office`) stays one
//! endpoint. The blast radius of a host assumes the worst: an attacker who
//! holds a host can use every service it reaches to take the next one.

use std::collections::{BTreeMap, VecDeque};

use time::Date;

use crate::model::{Endpoint, Policy};

/// One side of a connection: a host of the policy, or a named network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    Host(String),
    Network(String),
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Party::Host(name) => write!(f, "host:{name}"),
            Party::Network(name) if name == "internet" => f.write_str("internet"),
            Party::Network(name) => write!(f, "network:{name}"),
        }
    }
}

/// `from` can open connections to `to` on `service` (the rule at file:line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reach {
    pub from: Party,
    pub to: Party,
    pub service: String,
    /// `tcp/22`, `icmp/8`, ...
    pub ports: Vec<String>,
    pub file: String,
    pub line: usize,
}

fn parties(policy: &Policy, endpoint: &Endpoint) -> Vec<Party> {
    match endpoint {
        Endpoint::Hosts { members, .. } => members
            .iter()
            .map(|&h| Party::Host(policy.hosts[h].name.clone()))
            .collect(),
        Endpoint::Networks { name, .. } => {
            let name = name.strip_prefix("network:").unwrap_or(name);
            vec![Party::Network(name.to_owned())]
        }
    }
}

/// Every (from, to, service) the active rules allow, sorted.
pub fn reach(policy: &Policy, today: Date) -> Vec<Reach> {
    let mut all = Vec::new();
    for rule in policy
        .rules
        .iter()
        .filter(|r| r.expires.is_none_or(|day| day > today))
    {
        for from in parties(policy, &rule.from) {
            for to in parties(policy, &rule.to) {
                if from == to {
                    continue;
                }
                all.push(Reach {
                    from: from.clone(),
                    to,
                    service: rule.service.clone(),
                    ports: rule.items.iter().map(ToString::to_string).collect(),
                    file: rule.file.clone(),
                    line: rule.line,
                });
            }
        }
    }
    all.sort();
    all.dedup();
    all
}

/// One hop of an attack path: from a held host to the next, by a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub from: Party,
    pub to: Party,
    pub service: String,
}

/// Everything reachable from `host` by an attacker who holds it, each with
/// the shortest path of hops that gets there (breadth first, in name order).
pub fn blast(policy: &Policy, host: &str, today: Date) -> Vec<(Party, Vec<Hop>)> {
    let start = Party::Host(host.to_owned());
    let edges = reach(policy, today);
    let mut paths: BTreeMap<Party, Vec<Hop>> = BTreeMap::new();
    let mut queue = VecDeque::from([start.clone()]);
    while let Some(held) = queue.pop_front() {
        let path = paths.get(&held).cloned().unwrap_or_default();
        for edge in edges.iter().filter(|e| e.from == held) {
            if edge.to == start || paths.contains_key(&edge.to) {
                continue;
            }
            let mut next = path.clone();
            next.push(Hop {
                from: held.clone(),
                to: edge.to.clone(),
                service: edge.service.clone(),
            });
            paths.insert(edge.to.clone(), next);
            // Networks are reached, not held: the attack goes on from hosts.
            if matches!(edge.to, Party::Host(_)) {
                queue.push_back(edge.to.clone());
            }
        }
    }
    let mut out: Vec<(Party, Vec<Hop>)> = paths.into_iter().collect();
    out.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.0.cmp(&b.0)));
    out
}
