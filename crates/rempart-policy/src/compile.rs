//! The compiler: one host's ruleset in `table inet rempart`, as an `nft -f`
//! script that replaces that table (and only it) in one transaction.
//!
//! Input, output (egress filtering) and forward chains, each `policy drop`;
//! stateful (established and related accepted, invalid dropped); loopback
//! allowed; the ICMPv6 neighbour discovery needs; every endpoint a rule names
//! is a named set (interval sets for CIDRs), so a rule's matching cost does
//! not grow with its group; drops logged at a limited rate with the prefix
//! `rempart-drop `. The output is deterministic: same policy, same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use time::Date;

use crate::model::{Endpoint, Policy, Rule};
use crate::service::{Protocol, ServiceItem};

/// The prefix of every logged drop (`journalctl -k | grep rempart-drop`).
pub const LOG_PREFIX: &str = "rempart-drop ";

/// One host's ruleset and what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The `nft -f` script.
    pub script: String,
    /// Rules about this host that expired and were not emitted: (file, line).
    pub expired: Vec<(String, usize)>,
}

/// Why a host cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("no host {0:?} in the policy")]
    UnknownHost(String),
}

/// The addresses an endpoint stands for, split by family.
fn addresses(policy: &Policy, endpoint: &Endpoint) -> (Vec<IpNet>, Vec<IpNet>) {
    let (mut v4, mut v6): (Vec<IpNet>, Vec<IpNet>) = policy
        .nets_of(endpoint)
        .into_iter()
        .partition(|n| n.addr().is_ipv4());
    match endpoint {
        // Hosts stay single addresses (a hash set), sorted and unique.
        Endpoint::Hosts { .. } => {
            for list in [&mut v4, &mut v6] {
                list.sort();
                list.dedup();
            }
            (v4, v6)
        }
        // Networks: as few non-overlapping CIDRs as cover them (nft refuses
        // overlapping intervals).
        Endpoint::Networks { .. } => (IpNet::aggregate(&v4), IpNet::aggregate(&v6)),
    }
}

/// The match of one service item (`tcp dport 22`, `icmpv6 type 128`), or
/// `None` when it does not exist in this family.
fn service_match(item: &ServiceItem, v6: bool) -> Option<String> {
    let range = if item.range.first == item.range.last {
        item.range.first.to_string()
    } else {
        format!("{}-{}", item.range.first, item.range.last)
    };
    match item.protocol {
        Protocol::Tcp => Some(format!("tcp dport {range}")),
        Protocol::Udp => Some(format!("udp dport {range}")),
        Protocol::Icmp if !v6 => Some(format!("icmp type {range}")),
        Protocol::Icmpv6 if v6 => Some(format!("icmpv6 type {range}")),
        Protocol::Icmp | Protocol::Icmpv6 => None,
    }
}

/// Set names: the endpoint's name made safe for nft, unique, per family.
struct Sets {
    names: BTreeMap<String, String>,
    definitions: Vec<(String, &'static str, Vec<IpNet>)>,
}

impl Sets {
    fn name(&mut self, endpoint: &str) -> String {
        if let Some(name) = self.names.get(endpoint) {
            return name.clone();
        }
        let base: String = endpoint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while self.names.values().any(|v| *v == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.names.insert(endpoint.to_owned(), name.clone());
        name
    }

    /// The set's reference for `endpoint` in one family, defining it once.
    fn reference(&mut self, endpoint: &str, v6: bool, nets: &[IpNet]) -> String {
        let name = format!("{}_{}", self.name(endpoint), if v6 { "v6" } else { "v4" });
        if !self.definitions.iter().any(|(n, _, _)| *n == name) {
            let kind = if v6 { "ipv6_addr" } else { "ipv4_addr" };
            self.definitions.push((name.clone(), kind, nets.to_vec()));
        }
        format!("@{name}")
    }
}

/// The lines of one rule in one direction: `ip saddr @set tcp dport 22 accept`.
fn rule_lines(
    policy: &Policy,
    sets: &mut Sets,
    rule: &Rule,
    index: usize,
    peer: &Endpoint,
    direction: &str,
) -> Vec<String> {
    let (v4, v6) = addresses(policy, peer);
    let comment = format!(
        "rule {} {}:{}",
        index + 1,
        rule.file.rsplit('/').next().unwrap_or(&rule.file),
        rule.line
    );
    let mut lines = Vec::new();
    for (family, nets, is_v6) in [("ip", &v4, false), ("ip6", &v6, true)] {
        if nets.is_empty() {
            continue;
        }
        let set = sets.reference(peer.name(), is_v6, nets);
        for item in &rule.items {
            if let Some(service) = service_match(item, is_v6) {
                lines.push(format!(
                    "{family} {direction} {set} {service} accept comment \"{comment}\""
                ));
            }
        }
    }
    lines
}

/// Compiles the ruleset of `host` as of `today` (expired rules left out).
pub fn compile(policy: &Policy, host: &str, today: Date) -> Result<Compiled, CompileError> {
    let index = policy
        .host(host)
        .ok_or_else(|| CompileError::UnknownHost(host.to_owned()))?;
    let mut sets = Sets {
        names: BTreeMap::new(),
        definitions: Vec::new(),
    };
    let mut input = Vec::new();
    let mut output = Vec::new();
    let mut expired = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let ingress = policy.includes(&rule.to, index);
        let egress = policy.includes(&rule.from, index);
        if !ingress && !egress {
            continue;
        }
        if rule.expires.is_some_and(|day| day <= today) {
            expired.push((rule.file.clone(), rule.line));
            continue;
        }
        if ingress {
            input.extend(rule_lines(policy, &mut sets, rule, i, &rule.from, "saddr"));
        }
        if egress {
            output.extend(rule_lines(policy, &mut sets, rule, i, &rule.to, "daddr"));
        }
    }

    let mut script = String::new();
    let h = &policy.hosts[index];
    let addresses: Vec<String> = h.addresses.iter().map(IpAddr::to_string).collect();
    // Writing into a String cannot fail.
    let _ = writeln!(
        script,
        "# Rempart ruleset of host {} ({}), zone {}.\n# Generated: do not edit; `rempart policy apply` replaces it.",
        h.name,
        addresses.join(", "),
        h.zone
    );
    // Create it if missing, then delete and define it: one transaction
    // that touches no other table.
    script.push_str("table inet rempart\ndelete table inet rempart\ntable inet rempart {\n");
    for (name, kind, nets) in &sets.definitions {
        // Single addresses (hosts): a hash set, one lookup whatever its
        // size. CIDRs (networks): an interval set.
        let addresses_only = nets.iter().all(|n| n.prefix_len() == n.max_prefix_len());
        let elements: Vec<String> = nets
            .iter()
            .map(|n| {
                if addresses_only {
                    n.addr().to_string()
                } else {
                    n.to_string()
                }
            })
            .collect();
        let flags = if addresses_only {
            ""
        } else {
            "\t\tflags interval\n"
        };
        let _ = writeln!(
            script,
            "\tset {name} {{\n\t\ttype {kind}\n{flags}\t\telements = {{ {} }}\n\t}}\n",
            elements.join(", ")
        );
    }
    let chain = |script: &mut String, name: &str, hook: &str, lo: &str, body: &[String]| {
        let _ = writeln!(
            script,
            "\tchain {name} {{\n\t\ttype filter hook {hook} priority filter; policy drop;"
        );
        if !lo.is_empty() {
            script.push_str("\t\tct state established,related accept\n");
            script.push_str("\t\tct state invalid drop\n");
            let _ = writeln!(script, "\t\t{lo} \"lo\" accept");
            // Neighbour discovery: without it IPv6 stops working at all.
            script.push_str(
                "\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } ip6 hoplimit 255 accept\n",
            );
        }
        for line in body {
            let _ = writeln!(script, "\t\t{line}");
        }
        let _ = writeln!(
            script,
            "\t\tlimit rate 10/second burst 20 packets log prefix \"{LOG_PREFIX}{name} \" level info\n\t}}\n"
        );
    };
    chain(&mut script, "input", "input", "iifname", &input);
    chain(&mut script, "output", "output", "oifname", &output);
    chain(&mut script, "forward", "forward", "", &[]);
    script.push_str("}\n");
    Ok(Compiled { script, expired })
}
