//! `rempart.toml`: the control plane's settings, their defaults and their checks.
//!
//! [`Config::parse`] reads the text and refuses unknown keys and bad values
//! with a [`ConfigError`] that names the file, the line and the key;
//! [`default_toml`] writes the commented file that `rempart init` creates,
//! which parses back to exactly [`Config::defaults`].
//!
//! ```
//! let text = rempart_config::default_toml(time::OffsetDateTime::UNIX_EPOCH);
//! let config = rempart_config::Config::parse(&text, "rempart.toml").unwrap();
//! assert_eq!(config.listen.to_string(), "127.0.0.1:8443");
//!
//! let err = rempart_config::Config::parse("lissten = \"x\"\n", "rempart.toml").unwrap_err();
//! assert!(err.to_string().starts_with("rempart.toml:1:1: unknown field `lissten`"));
//! ```
//!
//! Every check a value needs happens while it is deserialized, in the value's
//! own type, so that every error carries the position of the value.
//!
//! Architecture invariant: this crate only reads and writes text; it never
//! opens a file, a socket or a database.
#![forbid(unsafe_code)]

mod access;
mod database;
mod ssh;
mod template;
mod values;

use std::net::SocketAddr;

use serde::Deserialize;
use time::OffsetDateTime;

pub use access::{
    AccessSettings, AllowSetting, DurationSetting, LabelsSetting, PatternSetting, ThresholdSetting,
    WebhookSetting,
};
pub use database::DatabaseSettings;
pub use ssh::SshSettings;
pub use template::{DEFAULT_ORIGIN, default_toml};
pub use values::{Bounded, ContactUri, LogOrigin, OptionalAddr, ServerName, StoreSetting};

/// The whole of `rempart.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub server_names: Vec<ServerName>,
    pub store: StoreSetting,
    pub tls: TlsSettings,
    pub http: HttpSettings,
    pub tokens: TokenSettings,
    pub welllog: WellLogSettings,
    pub syslog: SyslogSettings,
    /// Optional: files written before it existed keep working.
    #[serde(default = "template::default_access")]
    pub access: AccessSettings,
    /// Optional, as `access` is.
    #[serde(default = "template::default_ssh")]
    pub ssh: SshSettings,
    /// Optional, as `access` is.
    #[serde(default = "template::default_database")]
    pub database: DatabaseSettings,
    pub security_txt: SecurityTxt,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub server_cert_days: Bounded<1, 825>,
    pub machine_cert_days: Bounded<1, 397>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub max_body_bytes: Bounded<1024, 67_108_864>,
    pub request_timeout_secs: Bounded<1, 3600>,
    pub hsts_max_age_secs: Bounded<0, 63_072_000>,
    pub max_connections: Bounded<1, 100_000>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Days a token from `rempart user token` stays valid; 0 for no expiry.
    pub ttl_days: Bounded<0, 3650>,
}

/// The well-log, the tamper-evident central log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WellLogSettings {
    /// The log's name in its signed checkpoints; unique per deployment.
    pub origin: LogOrigin,
    /// Milliseconds between checkpoints while entries arrive (at most one per period).
    pub checkpoint_interval_ms: Bounded<100, 60_000>,
    /// Largest body `POST /v1/log/entries` accepts, in bytes.
    pub max_batch_bytes: Bounded<1024, 268_435_456>,
    /// Memory that bodies of `POST /v1/log/entries` being received, parsed
    /// and written may take together, in bytes; past it, requests wait
    /// unread (back-pressure). Optional: files written before it existed
    /// keep working.
    #[serde(default = "template::default_ingest_memory_bytes")]
    pub ingest_memory_bytes: Bounded<1_048_576, 68_719_476_736>,
    /// Days a payload is kept before it is erased (its leaf stays); 0 keeps
    /// payloads for ever.
    pub retention_days: Bounded<0, 36_500>,
}

/// Syslog listeners feeding the well-log. Each is off when its address is "".
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSettings {
    /// Plain TCP (RFC 6587 framing). Unauthenticated.
    pub tcp: OptionalAddr,
    /// TLS (RFC 5425), a machine identity's client certificate required.
    pub tls: OptionalAddr,
    /// UDP, best effort: datagrams have no acknowledgement and can be lost.
    pub udp: OptionalAddr,
}

/// RFC 9116 fields served at `/.well-known/security.txt`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityTxt {
    pub contact: Vec<ContactUri>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    #[serde(default)]
    pub policy: Option<ContactUri>,
    pub preferred_languages: Vec<String>,
}

/// Where a configuration problem is and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Config {
    /// The settings `rempart init` writes, with `now` deciding when the
    /// security.txt file expires (a year later, as RFC 9116 recommends).
    pub fn defaults(now: OffsetDateTime) -> Config {
        template::defaults(now)
    }

    /// Parses `text`; `origin` (usually the file's path) names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_and_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError {
                origin: origin.to_owned(),
                line,
                column,
                message: e.message().trim_end().replace('\n', "; "),
            }
        })?;
        if config.server_names.is_empty() {
            return Err(ConfigError {
                origin: origin.to_owned(),
                line: find_key_line(text, "server_names"),
                column: 1,
                message: "server_names needs at least one name".to_owned(),
            });
        }
        if config.security_txt.contact.is_empty() {
            return Err(ConfigError {
                origin: origin.to_owned(),
                line: find_key_line(text, "contact"),
                column: 1,
                message: "security_txt.contact needs at least one contact (RFC 9116 §2.5.3)"
                    .to_owned(),
            });
        }
        Ok(config)
    }

    /// Problems that do not stop the server but that an operator should fix.
    pub fn warnings(&self, now: OffsetDateTime) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.security_txt.expires <= now {
            warnings.push(format!(
                "security_txt.expires ({}) is in the past: security.txt must be refreshed (RFC 9116 §2.5.5)",
                self.security_txt.expires
            ));
        } else if self.security_txt.expires - now > time::Duration::days(366) {
            warnings.push(
                "security_txt.expires is more than a year away (RFC 9116 §2.5.5 advises less)"
                    .to_owned(),
            );
        }
        if self
            .security_txt
            .contact
            .iter()
            .any(|c| c.as_str().contains("example.com"))
        {
            warnings.push(
                "security_txt.contact is still the example address: set your security team's address"
                    .to_owned(),
            );
        }
        if !self.listen.ip().is_loopback() && self.server_names.iter().all(|n| n.is_loopback()) {
            warnings.push(format!(
                "listen is {} but server_names are all loopback: remote clients will refuse the certificate",
                self.listen
            ));
        }
        warnings
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn find_key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests;
