//! Lint: rules that do nothing, or too much.
//!
//! - shadowed: everything the rule allows, earlier rules already allow;
//! - redundant: everything the rule allows, other (later) rules allow;
//! - names nothing: a side of the rule holds no host;
//! - expired: past its `expires` day (no longer emitted);
//! - over-broad: from the internet (or a network of /8 or wider) to a host
//!   that is not labelled `role = "edge"`.
//!
//! A rule's packets are 4-dimensional cubes (source CIDR × destination CIDR ×
//! protocol × port range); coverage is decided exactly by subtracting cubes.

use ipnet::IpNet;
use time::Date;

use crate::model::{Endpoint, Policy, Rule};
use crate::resolve::subtract;
use crate::service::{PortRange, Protocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cube {
    src: IpNet,
    dst: IpNet,
    protocol: Protocol,
    range: PortRange,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Earlier rules (at these lines) already allow all of it.
    Shadowed {
        by: Vec<usize>,
    },
    /// Other rules (at these lines) allow all of it.
    Redundant {
        by: Vec<usize>,
    },
    NamesNothing {
        side: &'static str,
        endpoint: String,
    },
    Expired {
        on: Date,
    },
    OverBroad {
        from: String,
        to: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub file: String,
    pub line: usize,
    pub finding: Finding,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines = |by: &[usize]| {
            by.iter()
                .map(|l| format!("line {l}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "{}:{}: ", self.file, self.line)?;
        match &self.finding {
            Finding::Shadowed { by } => {
                write!(
                    f,
                    "shadowed: earlier rules ({}) already allow all of it",
                    lines(by)
                )
            }
            Finding::Redundant { by } => {
                write!(f, "redundant: other rules ({}) allow all of it", lines(by))
            }
            Finding::NamesNothing { side, endpoint } => {
                write!(f, "names nothing: its {side} {endpoint} holds no host")
            }
            Finding::Expired { on } => write!(f, "expired on {on}: no longer applied"),
            Finding::OverBroad { from, to } => write!(
                f,
                "over-broad: {from} may reach {to}, which is not an edge host (role = \"edge\")"
            ),
        }
    }
}

fn cubes(policy: &Policy, rule: &Rule) -> Vec<Cube> {
    let sources = policy.nets_of(&rule.from);
    let targets = policy.nets_of(&rule.to);
    let mut out = Vec::new();
    for src in &sources {
        for dst in targets
            .iter()
            .filter(|d| d.addr().is_ipv4() == src.addr().is_ipv4())
        {
            for item in &rule.items {
                let fits = match item.protocol {
                    Protocol::Icmp => src.addr().is_ipv4(),
                    Protocol::Icmpv6 => src.addr().is_ipv6(),
                    Protocol::Tcp | Protocol::Udp => true,
                };
                if fits {
                    out.push(Cube {
                        src: *src,
                        dst: *dst,
                        protocol: item.protocol,
                        range: item.range,
                    });
                }
            }
        }
    }
    out
}

fn meet(a: &IpNet, b: &IpNet) -> Option<IpNet> {
    if a.contains(b) {
        Some(*b)
    } else if b.contains(a) {
        Some(*a)
    } else {
        None
    }
}

/// `a` without `b`.
fn minus(a: Cube, b: &Cube) -> Vec<Cube> {
    let (Some(src), Some(dst)) = (meet(&a.src, &b.src), meet(&a.dst, &b.dst)) else {
        return vec![a];
    };
    let first = a.range.first.max(b.range.first);
    let last = a.range.last.min(b.range.last);
    if a.protocol != b.protocol || first > last {
        return vec![a];
    }
    // Peel off, one dimension at a time, what lies outside b.
    let mut rest: Vec<Cube> = subtract(a.src, &[b.src])
        .into_iter()
        .map(|s| Cube { src: s, ..a })
        .collect();
    rest.extend(
        subtract(a.dst, &[b.dst])
            .into_iter()
            .map(|d| Cube { src, dst: d, ..a }),
    );
    if a.range.first < first {
        rest.push(Cube {
            src,
            dst,
            range: PortRange {
                first: a.range.first,
                last: first - 1,
            },
            ..a
        });
    }
    if a.range.last > last {
        rest.push(Cube {
            src,
            dst,
            range: PortRange {
                first: last + 1,
                last: a.range.last,
            },
            ..a
        });
    }
    rest
}

/// Whether every packet of `cubes` is in `cover`; the covering rules used.
fn covered(cubes: &[Cube], cover: &[(usize, Vec<Cube>)]) -> Option<Vec<usize>> {
    let mut pieces = cubes.to_vec();
    let mut used = Vec::new();
    for (line, others) in cover {
        let before = pieces.len();
        let mut touched = false;
        for other in others {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    let rest = minus(p, other);
                    if rest != [p] {
                        touched = true;
                    }
                    rest
                })
                .collect();
        }
        if touched || pieces.len() != before {
            used.push(*line);
        }
        if pieces.is_empty() {
            return Some(used);
        }
    }
    None
}

fn names_nothing(endpoint: &Endpoint) -> bool {
    matches!(endpoint, Endpoint::Hosts { members, .. } if members.is_empty())
}

/// The findings of every rule, in the order of the rules.
pub fn lint(policy: &Policy, today: Date) -> Vec<Lint> {
    let all: Vec<Vec<Cube>> = policy.rules.iter().map(|r| cubes(policy, r)).collect();
    let active: Vec<bool> = policy
        .rules
        .iter()
        .map(|r| r.expires.is_none_or(|day| day > today))
        .collect();
    // Shadowed first: a rule another earlier one covers is reported as
    // shadowed, and not counted when asking whether earlier rules are
    // redundant (of two duplicates, the later is the one to remove).
    let earlier = |i: usize| -> Vec<(usize, Vec<Cube>)> {
        (0..i)
            .filter(|&j| active[j])
            .map(|j| (policy.rules[j].line, all[j].clone()))
            .collect()
    };
    let shadowed: Vec<Option<Vec<usize>>> = (0..policy.rules.len())
        .map(|i| {
            (active[i] && !all[i].is_empty())
                .then(|| covered(&all[i], &earlier(i)))
                .flatten()
        })
        .collect();
    let mut findings = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let at = |finding| Lint {
            file: rule.file.clone(),
            line: rule.line,
            finding,
        };
        if let Some(on) = rule.expires.filter(|_| !active[i]) {
            findings.push(at(Finding::Expired { on }));
            continue;
        }
        for (side, endpoint) in [("source", &rule.from), ("destination", &rule.to)] {
            if names_nothing(endpoint) {
                findings.push(at(Finding::NamesNothing {
                    side,
                    endpoint: endpoint.name().to_owned(),
                }));
            }
        }
        if all[i].is_empty() {
            continue;
        }
        if let Some(by) = &shadowed[i] {
            findings.push(at(Finding::Shadowed { by: by.clone() }));
        } else {
            let others: Vec<(usize, Vec<Cube>)> = (0..policy.rules.len())
                .filter(|&j| j != i && active[j] && shadowed[j].is_none())
                .map(|j| (policy.rules[j].line, all[j].clone()))
                .collect();
            if let Some(by) = covered(&all[i], &others) {
                findings.push(at(Finding::Redundant { by }));
            }
        }
        let broad = match &rule.from {
            Endpoint::Networks { nets, .. } => nets.iter().any(|n| {
                (n.addr().is_ipv4() && n.prefix_len() <= 8)
                    || (n.addr().is_ipv6() && n.prefix_len() <= 32)
            }),
            Endpoint::Hosts { .. } => false,
        };
        if broad && let Endpoint::Hosts { members, .. } = &rule.to {
            for &h in members {
                let host = &policy.hosts[h];
                if host.labels.get("role").map(String::as_str) != Some("edge") {
                    findings.push(at(Finding::OverBroad {
                        from: rule.from.name().to_owned(),
                        to: format!("host:{}", host.name),
                    }));
                }
            }
        }
    }
    findings
}
