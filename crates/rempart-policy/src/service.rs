//! Services: what a rule lets through, by protocol and port or ICMP type.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "icmpv6",
        }
    }
}

/// Inclusive: ports 1 to 65535, or ICMP types 0 to 255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceItem {
    pub protocol: Protocol,
    /// Ports (tcp, udp) or types (icmp, icmpv6).
    pub range: PortRange,
}

impl fmt::Display for ServiceItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PortRange { first, last } = self.range;
        if first == last {
            write!(f, "{}/{first}", self.protocol.as_str())
        } else {
            write!(f, "{}/{first}-{last}", self.protocol.as_str())
        }
    }
}

const ICMP_TYPES: [(&str, u16); 5] = [
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("echo-request", 8),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
];
const ICMPV6_TYPES: [(&str, u16); 5] = [
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("echo-request", 128),
    ("echo-reply", 129),
];

/// Parses `tcp/443`, `udp/1000-2000`, `icmp/echo-request`, `icmpv6/128`.
pub fn parse_item(text: &str) -> Result<ServiceItem, String> {
    let (protocol, rest) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: write protocol/port, e.g. tcp/443"))?;
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        "icmpv6" => Protocol::Icmpv6,
        other => {
            return Err(format!(
                "{text:?}: unknown protocol {other:?} (tcp, udp, icmp, icmpv6)"
            ));
        }
    };
    let range = match protocol {
        Protocol::Tcp | Protocol::Udp => {
            let port = |p: &str| -> Result<u16, String> {
                match p.parse::<u32>() {
                    Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                    _ => Err(format!("{text:?}: a port is 1 to 65535")),
                }
            };
            match rest.split_once('-') {
                Some((a, b)) => {
                    let (first, last) = (port(a)?, port(b)?);
                    if first > last {
                        return Err(format!("{text:?}: the range is backwards"));
                    }
                    PortRange { first, last }
                }
                None => {
                    let p = port(rest)?;
                    PortRange { first: p, last: p }
                }
            }
        }
        Protocol::Icmp | Protocol::Icmpv6 => {
            let names: &[(&str, u16)] = if protocol == Protocol::Icmp {
                &ICMP_TYPES
            } else {
                &ICMPV6_TYPES
            };
            let kind = match names.iter().find(|(name, _)| *name == rest) {
                Some((_, number)) => *number,
                None => match rest.parse::<u16>() {
                    Ok(n) if n <= 255 => n,
                    _ => {
                        return Err(format!(
                            "{text:?}: an ICMP type is a number 0 to 255 or a name such as echo-request"
                        ));
                    }
                },
            };
            PortRange {
                first: kind,
                last: kind,
            }
        }
    };
    Ok(ServiceItem { protocol, range })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items() {
        assert_eq!(
            parse_item("tcp/443").map(|i| i.to_string()),
            Ok("tcp/443".into())
        );
        assert_eq!(
            parse_item("udp/1000-2000").map(|i| i.range),
            Ok(PortRange {
                first: 1000,
                last: 2000
            })
        );
        assert_eq!(
            parse_item("icmp/echo-request").map(|i| i.range.first),
            Ok(8)
        );
        assert_eq!(
            parse_item("icmpv6/echo-request").map(|i| i.range.first),
            Ok(128)
        );
        for bad in [
            "tcp/0",
            "tcp/65536",
            "tcp/10-5",
            "sctp/1",
            "443",
            "icmp/300",
            "icmp/bogus",
            "tcp/",
        ] {
            assert!(parse_item(bad).is_err(), "{bad}");
        }
    }
}
