//! What access is asked for: `host:db-1`, `db:payments`.

use std::fmt;
use std::str::FromStr;

/// The kinds of resource a grant opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// A server, reached over SSH through the bastion.
    Host,
    /// A database, reached through the data proxy.
    Db,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Host => "host",
            ResourceKind::Db => "db",
        }
    }
}

impl FromStr for ResourceKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "host" => Ok(ResourceKind::Host),
            "db" => Ok(ResourceKind::Db),
            other => Err(format!("unknown resource kind {other:?}: host or db")),
        }
    }
}

/// A resource by kind and name, written `kind:name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    pub name: String,
}

/// Whether `name` is a valid resource name: 1 to 128 of lowercase letters,
/// digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn valid_resource_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

impl ResourceRef {
    pub fn new(kind: ResourceKind, name: &str) -> Result<ResourceRef, String> {
        if !valid_resource_name(name) {
            return Err(format!(
                "resource name {name:?}: 1 to 128 lowercase letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(ResourceRef {
            kind,
            name: name.to_owned(),
        })
    }
}

impl FromStr for ResourceRef {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, name) = text
            .split_once(':')
            .ok_or_else(|| format!("resource {text:?}: write it kind:name, e.g. host:db-1"))?;
        ResourceRef::new(kind.parse()?, name)
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r: ResourceRef = "host:db-1".parse().expect("valid");
        assert_eq!((r.kind, r.name.as_str()), (ResourceKind::Host, "db-1"));
        assert_eq!(r.to_string(), "host:db-1");
        assert_eq!(
            "db:payments".parse::<ResourceRef>().map(|r| r.kind),
            Ok(ResourceKind::Db)
        );
        for bad in ["db-1", "vm:db-1", "host:", "host:DB", "host:a b", "host:-x"] {
            assert!(bad.parse::<ResourceRef>().is_err(), "{bad:?}");
        }
    }
}
