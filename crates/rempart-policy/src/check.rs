//! Invariants: each violation with the rule that breaks it and a concrete
//! flow it lets through (source address, destination address, port).
//!
//! A rule compiles to both the source's egress and the destination's
//! ingress, so the flows a policy allows are exactly its active rules'
//! (source × destination × service); an invariant is checked against each.
//! Address sets are lists of CIDRs (two CIDRs either nest or are disjoint),
//! services are lists of port or type ranges.

use std::net::IpAddr;

use ipnet::IpNet;
use time::Date;

use crate::model::{InvariantKind, Policy, Rule};
use crate::resolve::subtract;
use crate::service::{PortRange, ServiceItem};

/// One flow, as an example of what a rule lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub from: IpAddr,
    pub to: IpAddr,
    pub service: ServiceItem,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = ServiceItem {
            protocol: self.service.protocol,
            range: PortRange {
                first: self.service.range.first,
                last: self.service.range.first,
            },
        };
        write!(f, "{} → {} {port}", self.from, self.to)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: String,
    /// Where the invariant is written.
    pub file: String,
    pub line: usize,
    /// The rule that breaks it.
    pub rule_file: String,
    pub rule_line: usize,
    pub example: Flow,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: invariant \"{}\" is broken by the rule at {}:{}, e.g. {}",
            self.file, self.line, self.invariant, self.rule_file, self.rule_line, self.example
        )
    }
}

/// The addresses in both.
fn intersect(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if x.contains(y) {
                out.push(*y);
            } else if y.contains(x) {
                out.push(*x);
            }
        }
    }
    out
}

/// The addresses of `a` not in `b`.
fn minus(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    a.iter().flat_map(|x| subtract(*x, b)).collect()
}

/// The ports (or types) in both.
fn items_intersect(a: &[ServiceItem], b: &[ServiceItem]) -> Vec<ServiceItem> {
    let mut out = Vec::new();
    for x in a {
        for y in b.iter().filter(|y| y.protocol == x.protocol) {
            let first = x.range.first.max(y.range.first);
            let last = x.range.last.min(y.range.last);
            if first <= last {
                out.push(ServiceItem {
                    protocol: x.protocol,
                    range: PortRange { first, last },
                });
            }
        }
    }
    out
}

/// The ports (or types) of `a` not in `b`.
fn items_minus(a: &[ServiceItem], b: &[ServiceItem]) -> Vec<ServiceItem> {
    let mut out = Vec::new();
    for x in a {
        let mut pieces = vec![x.range];
        for y in b.iter().filter(|y| y.protocol == x.protocol) {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    let mut left = Vec::new();
                    if p.first < y.range.first {
                        left.push(PortRange {
                            first: p.first,
                            last: p.last.min(y.range.first - 1),
                        });
                    }
                    if p.last > y.range.last {
                        left.push(PortRange {
                            first: p.first.max(y.range.last + 1),
                            last: p.last,
                        });
                    }
                    left
                })
                .collect();
        }
        out.extend(pieces.into_iter().map(|range| ServiceItem {
            protocol: x.protocol,
            range,
        }));
    }
    out
}

/// Whether a source and a destination can be in one flow (same family).
fn pair(from: &[IpNet], to: &[IpNet]) -> Option<(IpAddr, IpAddr)> {
    from.iter().find_map(|f| {
        to.iter()
            .find(|t| t.addr().is_ipv4() == f.addr().is_ipv4())
            .map(|t| (f.network(), t.network()))
    })
}

/// The invariants' violations among the rules active on `today`.
pub fn check(policy: &Policy, today: Date) -> Vec<Violation> {
    let active: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|r| r.expires.is_none_or(|day| day > today))
        .collect();
    // Each rule's addresses once, for every invariant.
    let sides: Vec<(Vec<IpNet>, Vec<IpNet>)> = active
        .iter()
        .map(|rule| (policy.nets_of(&rule.from), policy.nets_of(&rule.to)))
        .collect();
    let mut violations = Vec::new();
    for invariant in &policy.invariants {
        let inv_from = policy.nets_of(&invariant.from);
        let inv_to = policy.nets_of(&invariant.to);
        let inv_items: &[ServiceItem] = invariant.service.as_ref().map_or(&[], |(_, i)| i);
        for (rule, (from, to)) in active.iter().zip(&sides) {
            // The cheap tests first: most rules are about other hosts.
            let example = match invariant.kind {
                InvariantKind::OnlyFrom => {
                    let services = items_intersect(&rule.items, inv_items);
                    let targets = if services.is_empty() {
                        Vec::new()
                    } else {
                        intersect(to, &inv_to)
                    };
                    if targets.is_empty() {
                        None
                    } else {
                        let strangers = minus(from, &inv_from);
                        pair(&strangers, &targets).map(|(a, b)| (a, b, services[0]))
                    }
                }
                InvariantKind::Never => {
                    let sources = intersect(from, &inv_from);
                    let targets = if sources.is_empty() {
                        Vec::new()
                    } else {
                        intersect(to, &inv_to)
                    };
                    rule.items
                        .first()
                        .and_then(|s| pair(&sources, &targets).map(|(a, b)| (a, b, *s)))
                }
                InvariantKind::OnlyTo => {
                    let sources = intersect(from, &inv_from);
                    if sources.is_empty() {
                        None
                    } else {
                        let elsewhere = minus(to, &inv_to);
                        let other_services = items_minus(&rule.items, inv_items);
                        let allowed_targets = intersect(to, &inv_to);
                        rule.items
                            .first()
                            .and_then(|s| pair(&sources, &elsewhere).map(|(a, b)| (a, b, *s)))
                            .or_else(|| {
                                other_services.first().and_then(|s| {
                                    pair(&sources, &allowed_targets).map(|(a, b)| (a, b, *s))
                                })
                            })
                    }
                }
            };
            if let Some((from, to, service)) = example {
                violations.push(Violation {
                    invariant: invariant.name.clone(),
                    file: invariant.file.clone(),
                    line: invariant.line,
                    rule_file: rule.file.clone(),
                    rule_line: rule.line,
                    example: Flow { from, to, service },
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Protocol;

    fn item(first: u16, last: u16) -> ServiceItem {
        ServiceItem {
            protocol: Protocol::Tcp,
            range: PortRange { first, last },
        }
    }

    #[test]
    fn port_arithmetic() {
        assert_eq!(
            items_intersect(&[item(1, 100)], &[item(50, 200)]),
            vec![item(50, 100)]
        );
        assert!(items_intersect(&[item(1, 10)], &[item(11, 20)]).is_empty());
        assert_eq!(
            items_minus(&[item(1, 100)], &[item(20, 30), item(50, 60)]),
            vec![item(1, 19), item(31, 49), item(61, 100)]
        );
        assert!(items_minus(&[item(22, 22)], &[item(1, 65535)]).is_empty());
    }

    #[test]
    fn address_arithmetic() {
        let n = |s: &str| s.parse::<IpNet>().expect("net");
        assert_eq!(
            intersect(&[n("10.0.0.0/8")], &[n("10.1.0.0/16")]),
            vec![n("10.1.0.0/16")]
        );
        assert!(intersect(&[n("10.0.0.0/16")], &[n("10.1.0.0/16")]).is_empty());
        assert_eq!(
            minus(&[n("10.0.0.0/15")], &[n("10.0.0.0/16")]),
            vec![n("10.1.0.0/16")]
        );
    }
}
