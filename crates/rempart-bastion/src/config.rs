//! The bastion's configuration file (`rempart bastion --config FILE`).
//!
//! Relative paths are read from the file's folder. Every problem names the
//! file, and the line for syntax and type errors.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    state_dir: PathBuf,
    control_plane: RawControlPlane,
    #[serde(default = "default_recheck_ms")]
    grant_recheck_ms: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default)]
    target: Vec<RawTarget>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControlPlane {
    server: String,
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    address: String,
    #[serde(default)]
    host_key: Option<String>,
    #[serde(default)]
    host_ca: Option<String>,
}

fn default_recheck_ms() -> u64 {
    2000
}

fn default_max_connections() -> usize {
    1000
}

/// How the bastion recognises a target's sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTrust {
    /// Its host key, one OpenSSH public key line (as in `known_hosts`).
    Key(String),
    /// A host CA whose certificate it presents, naming the target.
    Ca(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// `host:port` of its sshd.
    pub address: String,
    pub trust: HostTrust,
}

#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub server: String,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BastionConfig {
    pub listen: SocketAddr,
    /// The host key, recordings and events not yet delivered.
    pub state_dir: PathBuf,
    pub control_plane: ControlPlane,
    /// How often each session's grant is checked again; a revoked or
    /// ended grant cuts the session within this (and a request's time).
    pub grant_recheck: Duration,
    pub max_connections: usize,
    pub targets: Vec<Target>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl BastionConfig {
    pub fn load(path: &Path) -> Result<BastionConfig, ConfigError> {
        let fail = |message: String| ConfigError {
            file: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(fail)
    }

    /// Parses a configuration whose relative paths start at `base`.
    pub fn parse(text: &str, base: &Path) -> Result<BastionConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let at = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if !raw.control_plane.server.starts_with("https://") {
            return Err(format!(
                "control_plane.server: {:?} must start with https://",
                raw.control_plane.server
            ));
        }
        if !(200..=60_000).contains(&raw.grant_recheck_ms) {
            return Err("grant_recheck_ms: 200 to 60000".to_owned());
        }
        if !(1..=100_000).contains(&raw.max_connections) {
            return Err("max_connections: 1 to 100000".to_owned());
        }
        let mut names = BTreeSet::new();
        let mut targets = Vec::new();
        for target in raw.target {
            let name = target.name;
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(format!(
                    "target {name:?}: a name is lowercase letters, digits, '-', '_' or '.'"
                ));
            }
            if !names.insert(name.clone()) {
                return Err(format!("target {name}: defined twice"));
            }
            if target
                .address
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                return Err(format!(
                    "target {name}: address {:?} is not host:port",
                    target.address
                ));
            }
            let trust = match (target.host_key, target.host_ca) {
                (Some(key), None) => HostTrust::Key(key.trim().to_owned()),
                (None, Some(ca)) => HostTrust::Ca(ca.trim().to_owned()),
                _ => {
                    return Err(format!(
                        "target {name}: give exactly one of host_key and host_ca: the bastion never connects to an sshd it cannot recognise"
                    ));
                }
            };
            let check = match &trust {
                HostTrust::Key(k) | HostTrust::Ca(k) => k,
            };
            russh::keys::PublicKey::from_openssh(check)
                .map_err(|e| format!("target {name}: not an OpenSSH public key: {e}"))?;
            targets.push(Target {
                name,
                address: target.address,
                trust,
            });
        }
        Ok(BastionConfig {
            listen: raw.listen,
            state_dir: at(&raw.state_dir),
            control_plane: ControlPlane {
                server: raw.control_plane.server,
                ca_cert: at(&raw.control_plane.ca_cert),
                cert: at(&raw.control_plane.cert),
                key: at(&raw.control_plane.key),
            },
            grant_recheck: Duration::from_millis(raw.grant_recheck_ms),
            max_connections: raw.max_connections,
            targets,
        })
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn config(targets: &str) -> String {
        format!(
            "listen = \"127.0.0.1:2222\"\nstate_dir = \"state\"\n\n[control_plane]\nserver = \"https://127.0.0.1:8443\"\nca_cert = \"ca.crt\"\ncert = \"b.crt\"\nkey = \"b.key\"\n\n{targets}"
        )
    }

    #[test]
    fn a_good_file_and_its_paths() {
        let text = config(&format!(
            "[[target]]\nname = \"db-1\"\naddress = \"127.0.0.1:22\"\nhost_key = \"{KEY}\"\n"
        ));
        let parsed = BastionConfig::parse(&text, Path::new("/etc/rempart")).expect("parses");
        assert_eq!(parsed.state_dir, Path::new("/etc/rempart/state"));
        assert_eq!(
            parsed.control_plane.ca_cert,
            Path::new("/etc/rempart/ca.crt")
        );
        assert_eq!(
            parsed.target("db-1").map(|t| t.address.as_str()),
            Some("127.0.0.1:22")
        );
        assert_eq!(parsed.grant_recheck, Duration::from_secs(2));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let refused = |targets: &str, needle: &str| {
            let err = BastionConfig::parse(&config(targets), Path::new("/")).expect_err(targets);
            assert!(err.contains(needle), "{err}");
        };
        refused(
            "[[target]]\nname = \"db-1\"\naddress = \"127.0.0.1:22\"\n",
            "exactly one of host_key and host_ca",
        );
        refused(
            &format!(
                "[[target]]\nname = \"db-1\"\naddress = \"127.0.0.1\"\nhost_key = \"{KEY}\"\n"
            ),
            "is not host:port",
        );
        refused(
            "[[target]]\nname = \"db-1\"\naddress = \"127.0.0.1:22\"\nhost_key = \"ssh-ed25519 nope\"\n",
            "not an OpenSSH public key",
        );
        refused(
            &format!("[[target]]\nname = \"DB\"\naddress = \"h:22\"\nhost_key = \"{KEY}\"\n"),
            "lowercase",
        );
        refused(
            "[[target]]\nname = \"db-1\"\nadress = \"h:22\"\n",
            "unknown field `adress`",
        );
        let twice = format!(
            "[[target]]\nname = \"a\"\naddress = \"h:22\"\nhost_key = \"{KEY}\"\n[[target]]\nname = \"a\"\naddress = \"h:22\"\nhost_key = \"{KEY}\"\n"
        );
        refused(&twice, "defined twice");
        let plain = config("").replace("https://", "http://");
        assert!(BastionConfig::parse(&plain, Path::new("/")).is_err());
    }
}
