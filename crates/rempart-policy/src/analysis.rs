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

/// Escapes text for SVG (XML) content and attributes.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The reachability map as an SVG drawing: every party on a circle, an arrow
/// for each (from, to) with the services as its label. Deterministic.
pub fn svg(reach: &[Reach]) -> String {
    use std::fmt::Write as _;
    let mut parties: Vec<&Party> = reach.iter().flat_map(|r| [&r.from, &r.to]).collect();
    parties.sort();
    parties.dedup();
    let n = parties.len().max(1) as f64;
    let (width, height, radius) = (900.0_f64, 900.0_f64, 330.0_f64);
    let place = |party: &Party| {
        let i = parties.iter().position(|p| *p == party).unwrap_or(0) as f64;
        let angle = std::f64::consts::TAU * i / n - std::f64::consts::FRAC_PI_2;
        (
            width / 2.0 + radius * angle.cos(),
            height / 2.0 + radius * angle.sin(),
        )
    };
    let mut edges: BTreeMap<(&Party, &Party), Vec<&str>> = BTreeMap::new();
    for r in reach {
        edges.entry((&r.from, &r.to)).or_default().push(&r.service);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    out.push_str(
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>\n",
    );
    for ((from, to), services) in &edges {
        let ((x1, y1), (x2, y2)) = (place(from), place(to));
        // Stop short of the target's circle.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let length = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ex, ey) = (x2 - dx / length * 28.0, y2 - dy / length * 28.0);
        let _ = writeln!(
            out,
            r##"<g><title>{} → {}: {}</title><line x1="{x1:.1}" y1="{y1:.1}" x2="{ex:.1}" y2="{ey:.1}" stroke="#555" marker-end="url(#arrow)"/><text x="{:.1}" y="{:.1}" fill="#333">{}</text></g>"##,
            xml(&from.to_string()),
            xml(&to.to_string()),
            xml(&services.join(", ")),
            (x1 + ex) / 2.0,
            (y1 + ey) / 2.0,
            xml(&services.join(", "))
        );
    }
    for party in &parties {
        let (x, y) = place(party);
        let fill = match party {
            Party::Host(_) => "#dbe9ff",
            Party::Network(_) => "#ffe3d6",
        };
        let _ = writeln!(
            out,
            r##"<g><circle cx="{x:.1}" cy="{y:.1}" r="26" fill="{fill}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"##,
            y + 4.0,
            xml(&party.to_string())
        );
    }
    out.push_str("</svg>\n");
    out
}
