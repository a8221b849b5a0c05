//! From the files as written to the resolved [`Policy`], checking names,
//! addresses, ports, nesting and zones; the first problem is the error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::PolicyError;
use crate::model::{Endpoint, Host, Invariant, InvariantKind, Policy, Rule};
use crate::raw;
use crate::service::{ServiceItem, parse_item};
use crate::source::Source;

/// Where something was first defined, for "already defined" errors.
#[derive(Debug, Clone)]
struct Origin {
    file: usize,
    span: Range<usize>,
}

struct Resolver<'a> {
    sources: &'a [Source],
}

impl Resolver<'_> {
    fn error(&self, file: usize, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        self.sources[file].error(span, message)
    }

    fn place(&self, origin: &Origin) -> String {
        let e = self.sources[origin.file].error(origin.span.clone(), "");
        format!("{}:{}", e.file, e.line)
    }

    fn line(&self, file: usize, span: Range<usize>) -> usize {
        self.sources[file].error(span, "").line
    }

    /// Checks a new `kind` named `name` in file `f`: a valid name, not
    /// defined before (in `seen`). Where it is defined.
    fn define(
        &self,
        kind: &str,
        f: usize,
        name: &Spanned<String>,
        seen: &BTreeMap<String, Origin>,
    ) -> Result<Origin, PolicyError> {
        let here = Origin {
            file: f,
            span: name.span(),
        };
        let text = name.get_ref();
        if !valid_name(text) {
            return Err(self.error(
                f,
                here.span,
                format!("{kind} name {text:?}: lowercase letters, digits, '-', '_' or '.'"),
            ));
        }
        if let Some(first) = seen.get(text) {
            return Err(self.error(
                f,
                here.span,
                format!("{kind} {text} is already defined at {}", self.place(first)),
            ));
        }
        Ok(here)
    }
}

/// A name people write: lowercase letters, digits, `-`, `_`, `.`.
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// A CIDR with no host bits set.
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("{text:?} is not a CIDR such as 10.0.0.0/16 or fd00::/48"))?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// `whole` without `holes`, as the fewest CIDRs (halving where a hole cuts).
pub(crate) fn subtract(whole: IpNet, holes: &[IpNet]) -> Vec<IpNet> {
    if holes.iter().any(|h| h.contains(&whole)) {
        return Vec::new();
    }
    if !holes.iter().any(|h| overlaps(h, &whole)) {
        return vec![whole];
    }
    match whole.subnets(whole.prefix_len() + 1) {
        Ok(halves) => halves.flat_map(|half| subtract(half, holes)).collect(),
        Err(_) => Vec::new(),
    }
}

pub fn resolve(sources: &[Source]) -> Result<Policy, PolicyError> {
    let r = Resolver { sources };
    let mut files = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let file: raw::File = toml::from_str(&source.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            r.error(index, span, e.message().trim_end().replace('\n', "; "))
        })?;
        files.push(file);
    }
    let mut policy = Policy::default();

    // Zones: their networks never overlap, so an address is in one zone.
    let mut zone_nets: Vec<(String, IpNet, Origin)> = Vec::new();
    let mut zone_origin: BTreeMap<String, Origin> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for zone in &file.zone {
            let name = zone.name.get_ref();
            let here = r.define("zone", f, &zone.name, &zone_origin)?;
            let mut nets = Vec::new();
            for cidr in &zone.networks {
                let net = parse_cidr(cidr.get_ref()).map_err(|e| r.error(f, cidr.span(), e))?;
                if let Some((other, _, origin)) =
                    zone_nets.iter().find(|(_, n, _)| overlaps(n, &net))
                {
                    return Err(r.error(
                        f,
                        cidr.span(),
                        format!(
                            "{net} overlaps a network of zone {other} ({})",
                            r.place(origin)
                        ),
                    ));
                }
                zone_nets.push((
                    name.clone(),
                    net,
                    Origin {
                        file: f,
                        span: cidr.span(),
                    },
                ));
                nets.push(net);
            }
            zone_origin.insert(name.clone(), here);
            policy.zones.insert(name.clone(), nets);
        }
    }

    // Hosts.
    let mut names: BTreeMap<String, Origin> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for host in &file.host {
            let name = host.name.get_ref();
            let here = r.define("host", f, &host.name, &names)?;
            let zone = host.zone.get_ref();
            if !policy.zones.contains_key(zone) {
                return Err(r.error(f, host.zone.span(), format!("unknown zone {zone:?}")));
            }
            if host.addresses.is_empty() {
                return Err(r.error(f, here.span, format!("host {name} has no address")));
            }
            let mut addresses = Vec::new();
            for address in &host.addresses {
                let ip: IpAddr = address.get_ref().parse().map_err(|_| {
                    r.error(
                        f,
                        address.span(),
                        format!("{:?} is not an IP address", address.get_ref()),
                    )
                })?;
                let in_zone = zone_nets.iter().find(|(_, net, _)| net.contains(&ip));
                match in_zone {
                    Some((z, _, _)) if z == zone => {}
                    Some((z, _, _)) => {
                        return Err(r.error(
                            f,
                            address.span(),
                            format!("host {name} is in two zones: {zone} (its zone) and {z} ({ip} is there)"),
                        ));
                    }
                    None => {
                        return Err(r.error(
                            f,
                            address.span(),
                            format!("{ip} of host {name} is in no network of zone {zone}"),
                        ));
                    }
                }
                if addresses.contains(&ip) {
                    return Err(r.error(f, address.span(), format!("{ip} is listed twice")));
                }
                addresses.push(ip);
            }
            if let Some(owner) = policy
                .hosts
                .iter()
                .find(|h| h.addresses.iter().any(|a| addresses.contains(a)))
            {
                return Err(r.error(
                    f,
                    here.span,
                    format!("host {name} shares an address with host {}", owner.name),
                ));
            }
            names.insert(name.clone(), here);
            policy.hosts.push(Host {
                name: name.clone(),
                addresses,
                labels: host.labels.clone(),
                zone: zone.clone(),
            });
        }
    }

    // Groups: members written host:NAME or group:NAME; nesting without cycles.
    let mut names: BTreeMap<String, Origin> = BTreeMap::new();
    let mut raw_groups: BTreeMap<String, (usize, &raw::Group)> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for group in &file.group {
            let name = group.name.get_ref();
            let here = r.define("group", f, &group.name, &names)?;
            names.insert(name.clone(), here);
            raw_groups.insert(name.clone(), (f, group));
        }
    }
    let mut expanding: Vec<String> = Vec::new();
    for name in raw_groups.keys() {
        expand_group(&r, name, &raw_groups, &mut policy, &mut expanding)?;
    }

    // Networks. `internet` is built in: every address outside the zones, so
    // that a rule about the internet never applies to the policy's own hosts.
    let zones: Vec<IpNet> = policy.zones.values().flatten().copied().collect();
    let everything: [IpNet; 2] = [
        "0.0.0.0/0"
            .parse()
            .unwrap_or_else(|_| unreachable!("a CIDR")),
        "::/0".parse().unwrap_or_else(|_| unreachable!("a CIDR")),
    ];
    policy.networks.insert(
        "internet".to_owned(),
        everything
            .iter()
            .flat_map(|whole| subtract(*whole, &zones))
            .collect(),
    );
    let mut network_origin: BTreeMap<String, Origin> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for network in &file.network {
            let name = network.name.get_ref();
            let span = r.define("network", f, &network.name, &network_origin)?.span;
            if name == "internet" {
                return Err(r.error(f, span, "internet is built in: name the network otherwise"));
            }
            let mut nets: Vec<IpNet> = Vec::new();
            for cidr in &network.cidrs {
                let net = parse_cidr(cidr.get_ref()).map_err(|e| r.error(f, cidr.span(), e))?;
                if let Some(other) = nets.iter().find(|n| overlaps(n, &net)) {
                    return Err(r.error(
                        f,
                        cidr.span(),
                        format!("{net} overlaps {other} in the same network"),
                    ));
                }
                nets.push(net);
            }
            if nets.is_empty() {
                return Err(r.error(f, span, format!("network {name} has no CIDR")));
            }
            network_origin.insert(name.clone(), Origin { file: f, span });
            policy.networks.insert(name.clone(), nets);
        }
    }

    // Services.
    let mut service_origin: BTreeMap<String, Origin> = BTreeMap::new();
    for (f, file) in files.iter().enumerate() {
        for service in &file.service {
            let name = service.name.get_ref();
            let span = r.define("service", f, &service.name, &service_origin)?.span;
            let mut items: Vec<ServiceItem> = Vec::new();
            for port in &service.ports {
                items.push(parse_item(port.get_ref()).map_err(|e| r.error(f, port.span(), e))?);
            }
            if items.is_empty() {
                return Err(r.error(f, span, format!("service {name} has no port")));
            }
            service_origin.insert(name.clone(), Origin { file: f, span });
            policy.services.insert(name.clone(), items);
        }
    }

    // Rules and invariants.
    for (f, file) in files.iter().enumerate() {
        for rule in &file.rule {
            let from = endpoint(&r, f, &rule.from, &policy)?;
            let to = endpoint(&r, f, &rule.to, &policy)?;
            let (service, items) = service_ref(&r, f, &rule.service, &policy)?;
            let expires = match &rule.expires {
                None => None,
                Some(day) => Some(date(&r, f, day)?),
            };
            policy.rules.push(Rule {
                from,
                to,
                service,
                items,
                expires,
                comment: rule.comment.clone(),
                ticket: rule.ticket.clone(),
                file: sources[f].name.clone(),
                line: r.line(f, rule.from.span()),
            });
        }
        for invariant in &file.invariant {
            let kind = match invariant.kind.get_ref().as_str() {
                "only-from" => InvariantKind::OnlyFrom,
                "never" => InvariantKind::Never,
                "only-to" => InvariantKind::OnlyTo,
                other => {
                    return Err(r.error(
                        f,
                        invariant.kind.span(),
                        format!("invariant kind {other:?}: only-from, never or only-to"),
                    ));
                }
            };
            let service = match (&invariant.service, kind) {
                (Some(s), InvariantKind::OnlyFrom | InvariantKind::OnlyTo) => {
                    Some(service_ref(&r, f, s, &policy)?)
                }
                (None, InvariantKind::Never) => None,
                (Some(s), InvariantKind::Never) => {
                    return Err(r.error(
                        f,
                        s.span(),
                        "a never invariant forbids every service: drop service",
                    ));
                }
                (None, _) => {
                    return Err(r.error(
                        f,
                        invariant.kind.span(),
                        "this invariant needs a service",
                    ));
                }
            };
            policy.invariants.push(Invariant {
                name: invariant.name.get_ref().clone(),
                kind,
                from: endpoint(&r, f, &invariant.from, &policy)?,
                to: endpoint(&r, f, &invariant.to, &policy)?,
                service,
                file: sources[f].name.clone(),
                line: r.line(f, invariant.name.span()),
            });
        }
    }
    Ok(policy)
}

fn expand_group(
    r: &Resolver<'_>,
    name: &str,
    raw_groups: &BTreeMap<String, (usize, &raw::Group)>,
    policy: &mut Policy,
    expanding: &mut Vec<String>,
) -> Result<BTreeSet<usize>, PolicyError> {
    if let Some(done) = policy.groups.get(name) {
        return Ok(done.clone());
    }
    let Some(&(f, group)) = raw_groups.get(name) else {
        return Ok(BTreeSet::new());
    };
    expanding.push(name.to_owned());
    let mut members = BTreeSet::new();
    for member in &group.members {
        let written = member.get_ref();
        match written.split_once(':') {
            Some(("host", host)) => {
                let index = policy
                    .host(host)
                    .ok_or_else(|| r.error(f, member.span(), format!("unknown host {host:?}")))?;
                members.insert(index);
            }
            Some(("group", inner)) => {
                if !raw_groups.contains_key(inner) {
                    return Err(r.error(f, member.span(), format!("unknown group {inner:?}")));
                }
                if let Some(start) = expanding.iter().position(|g| g == inner) {
                    let cycle = [&expanding[start..], &[inner.to_owned()]]
                        .concat()
                        .join(" → ");
                    return Err(r.error(
                        f,
                        member.span(),
                        format!("groups nest in a cycle: {cycle}"),
                    ));
                }
                members.extend(expand_group(r, inner, raw_groups, policy, expanding)?);
            }
            _ => {
                return Err(r.error(
                    f,
                    member.span(),
                    format!("member {written:?}: write host:NAME or group:NAME"),
                ));
            }
        }
    }
    if let Some(select) = &group.select {
        for (index, host) in policy.hosts.iter().enumerate() {
            if select
                .get_ref()
                .iter()
                .all(|(k, v)| host.labels.get(k) == Some(v))
            {
                members.insert(index);
            }
        }
    }
    expanding.pop();
    policy.groups.insert(name.to_owned(), members.clone());
    Ok(members)
}

/// `host:NAME`, `group:NAME`, `network:NAME`, `zone:NAME` (every address of
/// the zone, such as the office's, whether or not a host is declared there)
/// or `internet`.
fn endpoint(
    r: &Resolver<'_>,
    f: usize,
    text: &Spanned<String>,
    policy: &Policy,
) -> Result<Endpoint, PolicyError> {
    let written = text.get_ref();
    let fail = |message: String| r.error(f, text.span(), message);
    if written == "internet" {
        return Ok(Endpoint::Networks {
            name: written.clone(),
            nets: policy.networks["internet"].clone(),
        });
    }
    let Some((kind, name)) = written.split_once(':') else {
        return Err(fail(format!(
            "{written:?}: write host:NAME, group:NAME, network:NAME, zone:NAME or internet"
        )));
    };
    match kind {
        "host" => policy
            .host(name)
            .map(|h| Endpoint::Hosts {
                name: written.clone(),
                members: BTreeSet::from([h]),
            })
            .ok_or_else(|| fail(format!("unknown host {name:?}"))),
        "group" => policy
            .groups
            .get(name)
            .map(|members| Endpoint::Hosts {
                name: written.clone(),
                members: members.clone(),
            })
            .ok_or_else(|| fail(format!("unknown group {name:?}"))),
        "network" => policy
            .networks
            .get(name)
            .map(|nets| Endpoint::Networks {
                name: written.clone(),
                nets: nets.clone(),
            })
            .ok_or_else(|| fail(format!("unknown network {name:?}"))),
        "zone" => policy
            .zones
            .get(name)
            .map(|nets| Endpoint::Networks {
                name: written.clone(),
                nets: nets.clone(),
            })
            .ok_or_else(|| fail(format!("unknown zone {name:?}"))),
        other => Err(fail(format!(
            "{other:?}: write host:NAME, group:NAME, network:NAME, zone:NAME or internet"
        ))),
    }
}

fn service_ref(
    r: &Resolver<'_>,
    f: usize,
    text: &Spanned<String>,
    policy: &Policy,
) -> Result<(String, Vec<ServiceItem>), PolicyError> {
    let name = text.get_ref();
    policy
        .services
        .get(name)
        .map(|items| (name.clone(), items.clone()))
        .ok_or_else(|| r.error(f, text.span(), format!("unknown service {name:?}")))
}

fn date(
    r: &Resolver<'_>,
    f: usize,
    value: &Spanned<toml::value::Datetime>,
) -> Result<time::Date, PolicyError> {
    let fail = || r.error(f, value.span(), "expires is a day, e.g. 2027-01-31");
    let day = value.get_ref();
    if day.time.is_some() || day.offset.is_some() {
        return Err(fail());
    }
    let d = day.date.ok_or_else(fail)?;
    let month = time::Month::try_from(d.month).map_err(|_| fail())?;
    time::Date::from_calendar_date(i32::from(d.year), month, d.day).map_err(|_| fail())
}
