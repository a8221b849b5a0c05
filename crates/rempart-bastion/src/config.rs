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
    #[serde(default)]
    postgres: Option<RawPostgres>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    listen: SocketAddr,
    #[serde(default)]
    redact_parameters: bool,
    #[serde(default)]
    database: Vec<RawDatabase>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    name: String,
    address: String,
    #[serde(default)]
    upstream_database: Option<String>,
    user: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    write_user: Option<String>,
    #[serde(default)]
    write_password_file: Option<PathBuf>,
    #[serde(default)]
    ca_cert: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
    #[serde(default)]
    danger_upstream_plaintext: bool,
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

/// How the bastion reaches a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTls {
    /// TLS, the server's certificate checked against `ca_cert` for
    /// `server_name`.
    VerifyFull {
        ca_cert: PathBuf,
        server_name: String,
    },
    /// No TLS (`danger_upstream_plaintext`): only for a database on the
    /// bastion's own machine or a network nobody else is on.
    DangerPlaintext,
}

/// A database behind the bastion: `db:NAME`.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    /// `host:port` of the real server.
    pub address: String,
    /// Its database name there (the resource name unless given).
    pub upstream_database: String,
    /// The service role the bastion logs in as.
    pub user: String,
    /// A file holding the service role's password (SCRAM-SHA-256), read
    /// at each connection; none when the server trusts the bastion.
    pub password_file: Option<PathBuf>,
    /// The role for people who also hold a grant for `db:NAME.write`
    /// (asked for in the request and approved); everyone else gets `user`,
    /// which should then be read-only.
    pub write_role: Option<(String, Option<PathBuf>)>,
    pub tls: UpstreamTls,
}

impl Database {
    /// The resource whose grant gives the write role: `db:NAME.write`.
    pub fn write_resource(&self) -> String {
        format!("{}.write", self.name)
    }
}

/// `[postgres]`: the bastion's PostgreSQL listener.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub listen: SocketAddr,
    /// Bound parameter values are left out of `db.query` events.
    pub redact_parameters: bool,
    pub databases: Vec<Database>,
}

impl Postgres {
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }
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
    pub postgres: Option<Postgres>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// A resource name: lowercase letters, digits, '-', '_' or '.'.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn parse_postgres(raw: RawPostgres, at: &dyn Fn(&Path) -> PathBuf) -> Result<Postgres, String> {
    let mut databases: Vec<Database> = Vec::new();
    for db in raw.database {
        let name = db.name;
        let fail = |what: String| format!("postgres.database {name}: {what}");
        if !valid_name(&name) {
            return Err(format!(
                "postgres.database {name:?}: a name is lowercase letters, digits, '-', '_' or '.'"
            ));
        }
        if databases.iter().any(|d| d.name == name) {
            return Err(fail("defined twice".to_owned()));
        }
        if !host_port(&db.address) {
            return Err(fail(format!("address {:?} is not host:port", db.address)));
        }
        if db.user.is_empty() {
            return Err(fail("user: the service role is empty".to_owned()));
        }
        let write_role = match (db.write_user, db.write_password_file) {
            (Some(user), _) if user.is_empty() => {
                return Err(fail("write_user: the role is empty".to_owned()));
            }
            (Some(user), password) => Some((user, password.map(|p| at(&p)))),
            (None, Some(_)) => {
                return Err(fail("write_password_file without write_user".to_owned()));
            }
            (None, None) => None,
        };
        let tls = match (db.danger_upstream_plaintext, db.ca_cert) {
            (true, None) => UpstreamTls::DangerPlaintext,
            (true, Some(_)) => {
                return Err(fail(
                    "give ca_cert or danger_upstream_plaintext, not both".to_owned(),
                ));
            }
            (false, Some(ca)) => {
                let host = db
                    .address
                    .rsplit_once(':')
                    .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
                    .unwrap_or_default()
                    .to_owned();
                UpstreamTls::VerifyFull {
                    ca_cert: at(&ca),
                    server_name: db.server_name.unwrap_or(host),
                }
            }
            (false, None) => {
                return Err(fail(
                    "ca_cert is needed to check the database's TLS certificate \
                     (danger_upstream_plaintext = true turns TLS off, for a database on this machine)"
                        .to_owned(),
                ));
            }
        };
        databases.push(Database {
            upstream_database: db.upstream_database.unwrap_or_else(|| name.clone()),
            name,
            address: db.address,
            user: db.user,
            password_file: db.password_file.map(|p| at(&p)),
            write_role,
            tls,
        });
    }
    Ok(Postgres {
        listen: raw.listen,
        redact_parameters: raw.redact_parameters,
        databases,
    })
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
        let postgres = raw
            .postgres
            .map(|raw| parse_postgres(raw, &at))
            .transpose()?;
        let mut names = BTreeSet::new();
        let mut targets = Vec::new();
        for target in raw.target {
            let name = target.name;
            if !valid_name(&name) {
                return Err(format!(
                    "target {name:?}: a name is lowercase letters, digits, '-', '_' or '.'"
                ));
            }
            if !names.insert(name.clone()) {
                return Err(format!("target {name}: defined twice"));
            }
            if !host_port(&target.address) {
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
            postgres,
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
        assert!(parsed.postgres.is_none());
    }

    #[test]
    fn a_postgres_listener_and_its_databases() {
        let text = config(
            "[postgres]\nlisten = \"127.0.0.1:5433\"\nredact_parameters = true\n\n\
             [[postgres.database]]\nname = \"payments\"\naddress = \"db-1.internal:5432\"\n\
             user = \"rempart_payments\"\npassword_file = \"payments.password\"\nca_cert = \"pg-ca.crt\"\n\n\
             [[postgres.database]]\nname = \"ledger\"\naddress = \"127.0.0.1:5432\"\nupstream_database = \"ledger_prod\"\n\
             user = \"svc_ro\"\nwrite_user = \"svc_rw\"\nwrite_password_file = \"rw.password\"\ndanger_upstream_plaintext = true\n",
        );
        let parsed = BastionConfig::parse(&text, Path::new("/etc/rempart")).expect("parses");
        let postgres = parsed.postgres.expect("a listener");
        assert!(postgres.redact_parameters);
        let payments = postgres.database("payments").expect("payments");
        assert_eq!(payments.upstream_database, "payments");
        assert_eq!(
            payments.password_file.as_deref(),
            Some(Path::new("/etc/rempart/payments.password"))
        );
        assert_eq!(
            payments.tls,
            UpstreamTls::VerifyFull {
                ca_cert: PathBuf::from("/etc/rempart/pg-ca.crt"),
                server_name: "db-1.internal".into()
            }
        );
        let ledger = postgres.database("ledger").expect("ledger");
        assert_eq!(ledger.upstream_database, "ledger_prod");
        assert_eq!(ledger.tls, UpstreamTls::DangerPlaintext);
        assert_eq!(
            ledger.write_role,
            Some((
                "svc_rw".to_owned(),
                Some(PathBuf::from("/etc/rempart/rw.password"))
            ))
        );
        assert_eq!(ledger.write_resource(), "ledger.write");
        assert!(payments.write_role.is_none());
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
        refused(
            "[postgres]\nlisten = \"127.0.0.1:5433\"\n[[postgres.database]]\nname = \"payments\"\naddress = \"127.0.0.1:5432\"\nuser = \"svc\"\n",
            "ca_cert is needed",
        );
        refused(
            "[postgres]\nlisten = \"127.0.0.1:5433\"\n[[postgres.database]]\nname = \"payments\"\naddress = \"db\"\nuser = \"svc\"\ndanger_upstream_plaintext = true\n",
            "postgres.database payments: address \"db\" is not host:port",
        );
        refused(
            "[postgres]\nlisten = \"127.0.0.1:5433\"\nredact = true\n",
            "unknown field `redact`",
        );
        let plain = config("").replace("https://", "http://");
        assert!(BastionConfig::parse(&plain, Path::new("/")).is_err());
    }
}
