//! Translation validation: the packets a ruleset accepts, read back from
//! `nft -j list table inet rempart`, compared with the packets the policy
//! allows for that host, in both directions. Equal, or the first packet on
//! which they differ.
//!
//! A packet class is a [`Cube`]: a CIDR of the peer (source for input,
//! destination for output) × a protocol × a port or ICMP type range. A
//! ruleset is read as the union of its accept rules' cubes; every other rule
//! must be one of the fixed rules the compiler writes (state, loopback,
//! neighbour discovery, drop logging), and every chain must have the hook and
//! `policy drop` the compiler gives it. Anything else (an accept-all, a jump,
//! a match the reader does not know) is refused: it cannot be proven.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde_json::Value;
use time::Date;

use crate::compile::CompileError;
use crate::model::Policy;
use crate::resolve::subtract;
use crate::service::{PortRange, Protocol};

/// Packets from (input) or to (output) `net`, of `protocol`, on ports (or
/// ICMP types) in `range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cube {
    pub net: IpNet,
    pub protocol: Protocol,
    pub range: PortRange,
}

/// What a host accepts on new connections, per chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepts {
    pub input: Vec<Cube>,
    pub output: Vec<Cube>,
    pub forward: Vec<Cube>,
}

/// A packet on which the ruleset and the policy disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{chain}: {peer} {protocol}/{port} is {} by the ruleset but {} by the policy",
    if *.accepted_by_ruleset { "accepted" } else { "dropped" },
    if *.accepted_by_ruleset { "not allowed" } else { "allowed" }
)]
pub struct Difference {
    pub chain: &'static str,
    pub peer: IpAddr,
    pub protocol: &'static str,
    pub port: u16,
    pub accepted_by_ruleset: bool,
}

/// A ruleset that cannot be read as one Rempart generates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ruleset cannot be proven: {0}")]
pub struct Unreadable(pub String);

fn family_fits(protocol: Protocol, net: &IpNet) -> bool {
    match protocol {
        Protocol::Icmp => net.addr().is_ipv4(),
        Protocol::Icmpv6 => net.addr().is_ipv6(),
        Protocol::Tcp | Protocol::Udp => true,
    }
}

/// What the policy allows `host` as of `today`.
pub fn desired(policy: &Policy, host: &str, today: Date) -> Result<Accepts, CompileError> {
    let index = policy
        .host(host)
        .ok_or_else(|| CompileError::UnknownHost(host.to_owned()))?;
    let mut accepts = Accepts::default();
    for rule in &policy.rules {
        if rule.expires.is_some_and(|day| day <= today) {
            continue;
        }
        for (side, peer, cubes) in [
            (&rule.to, &rule.from, &mut accepts.input),
            (&rule.from, &rule.to, &mut accepts.output),
        ] {
            if !policy.includes(side, index) {
                continue;
            }
            for net in policy.nets_of(peer) {
                for item in &rule.items {
                    if family_fits(item.protocol, &net) {
                        cubes.push(Cube {
                            net,
                            protocol: item.protocol,
                            range: item.range,
                        });
                    }
                }
            }
        }
    }
    Ok(accepts)
}

/// `a` without every cube of `b`.
fn cube_minus(a: Cube, b: &[Cube]) -> Vec<Cube> {
    let mut pieces = vec![a];
    for other in b {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                let nets_meet = p.net.contains(&other.net) || other.net.contains(&p.net);
                let first = p.range.first.max(other.range.first);
                let last = p.range.last.min(other.range.last);
                if p.protocol != other.protocol || !nets_meet || first > last {
                    return vec![p];
                }
                let mut rest: Vec<Cube> = subtract(p.net, &[other.net])
                    .into_iter()
                    .map(|net| Cube { net, ..p })
                    .collect();
                let common = if p.net.contains(&other.net) {
                    other.net
                } else {
                    p.net
                };
                if p.range.first < first {
                    rest.push(Cube {
                        net: common,
                        protocol: p.protocol,
                        range: PortRange {
                            first: p.range.first,
                            last: first - 1,
                        },
                    });
                }
                if p.range.last > last {
                    rest.push(Cube {
                        net: common,
                        protocol: p.protocol,
                        range: PortRange {
                            first: last + 1,
                            last: p.range.last,
                        },
                    });
                }
                rest
            })
            .collect();
        if pieces.is_empty() {
            break;
        }
    }
    pieces
}

/// Equal, or the first packet on which `ruleset` and `policy` differ.
pub fn compare(ruleset: &Accepts, policy: &Accepts) -> Result<(), Difference> {
    for (chain, live, wanted) in [
        ("input", &ruleset.input, &policy.input),
        ("output", &ruleset.output, &policy.output),
        ("forward", &ruleset.forward, &policy.forward),
    ] {
        for (from, against, accepted_by_ruleset) in [(live, wanted, true), (wanted, live, false)] {
            for cube in from {
                if let Some(extra) = cube_minus(*cube, against).first() {
                    return Err(Difference {
                        chain,
                        peer: extra.net.network(),
                        protocol: extra.protocol.as_str(),
                        port: extra.range.first,
                        accepted_by_ruleset,
                    });
                }
            }
        }
    }
    Ok(())
}

const ICMP_NAMES: [(&str, u16); 8] = [
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
];
const ICMPV6_NAMES: [(&str, u16); 6] = [
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
];

fn bad(what: impl Into<String>) -> Unreadable {
    Unreadable(what.into())
}

/// The CIDRs of one element of a set or of a literal: an address, a prefix,
/// or a range.
fn element_nets(element: &Value) -> Result<Vec<IpNet>, Unreadable> {
    if let Some(text) = element.as_str() {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| bad(format!("element {text:?} is not an address")))?;
        return Ok(vec![IpNet::from(ip)]);
    }
    if let Some(prefix) = element.get("prefix") {
        let addr = prefix["addr"].as_str().unwrap_or_default();
        let len = prefix["len"].as_u64().unwrap_or(u64::MAX);
        return format!("{addr}/{len}")
            .parse::<IpNet>()
            .map(|n| vec![n])
            .map_err(|_| bad(format!("prefix {prefix} is not a CIDR")));
    }
    if let Some([start, end]) = element
        .get("range")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<IpAddr>().ok());
        return match (parse(start), parse(end)) {
            (Some(IpAddr::V4(a)), Some(IpAddr::V4(b))) => {
                Ok(Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect())
            }
            (Some(IpAddr::V6(a)), Some(IpAddr::V6(b))) => {
                Ok(Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect())
            }
            _ => Err(bad(format!("range {element} is not an address range"))),
        };
    }
    Err(bad(format!(
        "element {element} is not an address, prefix or range"
    )))
}

/// A port or type value: a number, a name, a range, or a set of them.
fn ranges(value: &Value, protocol: Protocol) -> Result<Vec<PortRange>, Unreadable> {
    let one = |v: &Value| -> Result<u16, Unreadable> {
        if let Some(n) = v.as_u64() {
            return u16::try_from(n).map_err(|_| bad(format!("{n} is not a port")));
        }
        let names: &[(&str, u16)] = match protocol {
            Protocol::Icmp => &ICMP_NAMES,
            Protocol::Icmpv6 => &ICMPV6_NAMES,
            _ => &[],
        };
        let name = v.as_str().unwrap_or_default();
        names
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, number)| *number)
            .ok_or_else(|| bad(format!("{v} is not a known port or type")))
    };
    if let Some(items) = value.get("set").and_then(Value::as_array) {
        return items
            .iter()
            .map(|v| ranges(v, protocol))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.concat());
    }
    if let Some([a, b]) = value
        .get("range")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return Ok(vec![PortRange {
            first: one(a)?,
            last: one(b)?,
        }]);
    }
    let n = one(value)?;
    Ok(vec![PortRange { first: n, last: n }])
}

/// Reads what a `nft -j list table inet rempart` accepts, refusing any rule
/// or chain the compiler does not write.
pub fn read_ruleset(json: &str) -> Result<Accepts, Unreadable> {
    let document: Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not nft JSON: {e}")))?;
    let objects = document["nftables"]
        .as_array()
        .ok_or_else(|| bad("no nftables array"))?;
    let mut sets: Vec<(String, Vec<IpNet>)> = Vec::new();
    let mut chains = Vec::new();
    for object in objects {
        if let Some(set) = object.get("set") {
            let name = set["name"].as_str().unwrap_or_default().to_owned();
            let mut nets = Vec::new();
            for element in set["elem"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                nets.extend(element_nets(element)?);
            }
            sets.push((name, nets));
        }
        if let Some(chain) = object.get("chain") {
            let name = chain["name"].as_str().unwrap_or_default();
            let expected_hook = match name {
                "input" | "output" | "forward" => name,
                other => return Err(bad(format!("chain {other:?} is not one Rempart writes"))),
            };
            if chain["hook"] != expected_hook
                || chain["policy"] != "drop"
                || chain["type"] != "filter"
            {
                return Err(bad(format!(
                    "chain {name} is not a filter hook {name} with policy drop"
                )));
            }
            chains.push(name.to_owned());
        }
    }
    for needed in ["input", "output", "forward"] {
        if !chains.iter().any(|c| c == needed) {
            return Err(bad(format!("chain {needed} is missing")));
        }
    }
    let mut accepts = Accepts::default();
    for object in objects {
        let Some(rule) = object.get("rule") else {
            continue;
        };
        let chain = rule["chain"].as_str().unwrap_or_default();
        let handle = &rule["handle"];
        let exprs = rule["expr"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if is_fixed(exprs) {
            continue;
        }
        let cubes = read_accept(exprs, chain, &sets)
            .map_err(|Unreadable(why)| bad(format!("rule {handle} in {chain}: {why}")))?;
        match chain {
            "input" => accepts.input.extend(cubes),
            "output" => accepts.output.extend(cubes),
            _ => accepts.forward.extend(cubes),
        }
    }
    Ok(accepts)
}

/// The rules the compiler writes around the policy's own: connection state,
/// loopback, neighbour discovery, drop logging. Each is recognised whole.
fn is_fixed(exprs: &[Value]) -> bool {
    let verdict = |v: &str| exprs.last().is_some_and(|e| e.get(v).is_some());
    let matched = |i: usize| exprs.get(i).and_then(|e| e.get("match"));
    let left_key = |m: &Value, kind: &str| m["left"][kind]["key"].as_str().map(str::to_owned);
    match exprs.len() {
        2 => {
            if exprs[0].get("limit").is_some() && exprs[1].get("log").is_some() {
                return true;
            }
            let Some(m) = matched(0) else { return false };
            if left_key(m, "ct").as_deref() == Some("state") {
                let mut states: Vec<&str> = match &m["right"] {
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    Value::String(one) => vec![one.as_str()],
                    _ => Vec::new(),
                };
                states.sort_unstable();
                return (states == ["established", "related"] && verdict("accept"))
                    || (states == ["invalid"] && verdict("drop"));
            }
            let interface = left_key(m, "meta");
            matches!(interface.as_deref(), Some("iifname" | "oifname"))
                && m["op"] == "=="
                && m["right"] == "lo"
                && verdict("accept")
        }
        3 => {
            let (Some(types), Some(hops)) = (matched(0), matched(1)) else {
                return false;
            };
            let discovery = [
                "nd-neighbor-solicit",
                "nd-neighbor-advert",
                "nd-router-solicit",
                "nd-router-advert",
            ];
            let listed: Vec<&str> = types["right"]["set"]
                .as_array()
                .map(|items| items.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            types["left"]["payload"]["protocol"] == "icmpv6"
                && types["left"]["payload"]["field"] == "type"
                && types["op"] == "=="
                && !listed.is_empty()
                && listed.iter().all(|t| discovery.contains(t))
                && hops["left"]["payload"]["protocol"] == "ip6"
                && hops["left"]["payload"]["field"] == "hoplimit"
                && hops["op"] == "=="
                && hops["right"] == 255
                && verdict("accept")
        }
        _ => false,
    }
}

/// The cubes of `[address match] [port or type match] accept`.
fn read_accept(
    exprs: &[Value],
    chain: &str,
    sets: &[(String, Vec<IpNet>)],
) -> Result<Vec<Cube>, Unreadable> {
    let Some((last, matches)) = exprs.split_last() else {
        return Err(bad("an empty rule"));
    };
    if last.get("accept").is_none() {
        return Err(bad("not an accept"));
    }
    let field = if chain == "output" { "daddr" } else { "saddr" };
    let mut nets: Option<Vec<IpNet>> = None;
    let mut service: Option<(Protocol, Vec<PortRange>)> = None;
    for m in matches {
        let m = m
            .get("match")
            .ok_or_else(|| bad(format!("{m} is not a match")))?;
        if m["op"] != "==" {
            return Err(bad(format!("operator {} is not ==", m["op"])));
        }
        let payload = &m["left"]["payload"];
        let (protocol, payload_field) = (
            payload["protocol"].as_str().unwrap_or_default(),
            payload["field"].as_str().unwrap_or_default(),
        );
        let right = &m["right"];
        match (protocol, payload_field) {
            ("ip" | "ip6", f) if f == field && nets.is_none() => {
                let found = match right.as_str() {
                    Some(reference) if reference.starts_with('@') => sets
                        .iter()
                        .find(|(name, _)| *name == reference[1..])
                        .map(|(_, n)| n.clone())
                        .ok_or_else(|| bad(format!("unknown set {reference}")))?,
                    _ => element_nets(right)?,
                };
                let v6 = protocol == "ip6";
                if found.iter().any(|n| n.addr().is_ipv6() != v6) {
                    return Err(bad("addresses of the other family"));
                }
                nets = Some(found);
            }
            ("tcp" | "udp", "dport") | ("icmp" | "icmpv6", "type") if service.is_none() => {
                let protocol = match protocol {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "icmp" => Protocol::Icmp,
                    _ => Protocol::Icmpv6,
                };
                service = Some((protocol, ranges(right, protocol)?));
            }
            _ => {
                return Err(bad(format!(
                    "a match on {protocol} {payload_field} is not one Rempart writes"
                )));
            }
        }
    }
    let Some((protocol, ranges)) = service else {
        return Err(bad("accepts every protocol"));
    };
    let nets = nets.unwrap_or_else(|| {
        vec![
            "0.0.0.0/0"
                .parse()
                .unwrap_or_else(|_| unreachable!("a CIDR")),
            "::/0".parse().unwrap_or_else(|_| unreachable!("a CIDR")),
        ]
    });
    Ok(nets
        .iter()
        .filter(|net| family_fits(protocol, net))
        .flat_map(|net| {
            ranges.iter().map(move |range| Cube {
                net: *net,
                protocol,
                range: *range,
            })
        })
        .collect())
}
