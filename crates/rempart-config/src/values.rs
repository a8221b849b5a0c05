//! Value types that check themselves while they are deserialized.

use std::fmt;
use std::net::IpAddr;

use rempart_core::Secret;
use serde::Deserialize;

/// An integer setting with its allowed range in its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Bounded<const MIN: i64, const MAX: i64>(i64);

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    /// A default written in the source; out-of-range defaults are a
    /// programming error caught by the template test.
    pub(crate) const fn new_default(value: i64) -> Self {
        Bounded(value)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl<const MIN: i64, const MAX: i64> TryFrom<i64> for Bounded<MIN, MAX> {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&value) {
            Ok(Bounded(value))
        } else {
            Err(format!("{value} is out of range: expected {MIN} to {MAX}"))
        }
    }
}

impl<const MIN: i64, const MAX: i64> fmt::Display for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A DNS name or an IP address the server certificate covers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerName(String);

impl ServerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_loopback(&self) -> bool {
        self.0 == "localhost" || self.0.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl TryFrom<String> for ServerName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if name.parse::<IpAddr>().is_ok() {
            return Ok(ServerName(name));
        }
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.len() <= 253 && name.split('.').all(valid_label) {
            Ok(ServerName(name.to_ascii_lowercase()))
        } else {
            Err(format!("{name:?} is neither an IP address nor a DNS name"))
        }
    }
}

/// A URI for security.txt: `mailto:`, `https:` or `tel:` (RFC 9116 §2.5.3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ContactUri(String);

impl ContactUri {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContactUri {
    type Error = String;
    fn try_from(uri: String) -> Result<Self, String> {
        let ok_scheme = ["mailto:", "https://", "tel:"]
            .iter()
            .any(|scheme| uri.starts_with(scheme) && uri.len() > scheme.len());
        if !ok_scheme {
            return Err(format!(
                "{uri:?} is not a mailto:, https:// or tel: URI (RFC 9116 §2.5.3)"
            ));
        }
        if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{uri:?} holds white space or control characters"));
        }
        Ok(ContactUri(uri))
    }
}

/// A well-log origin: the key name of its checkpoints (C2SP signed-note),
/// so no spaces and no `+`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogOrigin(String);

impl LogOrigin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LogOrigin {
    type Error = String;
    fn try_from(origin: String) -> Result<Self, String> {
        let bad = origin.is_empty()
            || origin.len() > 255
            || origin.contains('+')
            || origin.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            Err(format!(
                "{origin:?} is not a log origin: 1 to 255 characters, no spaces, no '+'"
            ))
        } else {
            Ok(LogOrigin(origin))
        }
    }
}

/// A socket address, or "" for "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OptionalAddr(pub Option<std::net::SocketAddr>);

impl TryFrom<String> for OptionalAddr {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(OptionalAddr(None));
        }
        text.parse()
            .map(|addr| OptionalAddr(Some(addr)))
            .map_err(|_| format!("{text:?} is not an address and port (or \"\" for off)"))
    }
}

/// Where the control plane keeps its state.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StoreSetting {
    /// `rempart.db` in the data directory.
    Sqlite,
    /// A PostgreSQL URL; it may hold a password, so it is a secret.
    Postgres(Secret<String>),
}

impl fmt::Debug for StoreSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSetting::Sqlite => f.write_str("Sqlite"),
            StoreSetting::Postgres(_) => f.write_str("Postgres(<secret>)"),
        }
    }
}

impl TryFrom<String> for StoreSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value == "sqlite" {
            Ok(StoreSetting::Sqlite)
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(StoreSetting::Postgres(Secret::new(value)))
        } else {
            // Never echo the value: it may be a URL with a password.
            Err("store is \"sqlite\" or a postgres:// URL".to_owned())
        }
    }
}

impl std::str::FromStr for StoreSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StoreSetting::try_from(s.to_owned())
    }
}
