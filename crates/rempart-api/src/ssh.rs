//! SSH certificates and bastion sessions (issue 6).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// `POST /v1/ssh/certificates`: a person asks for a certificate on their key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSshCertificate {
    /// One OpenSSH public key line; Ed25519 only.
    pub public_key: String,
    /// How long it stays valid (`30m`, `8h`); at most `[ssh]
    /// user_certificate_max`, which is also the default.
    #[serde(default)]
    pub valid_for: Option<String>,
}

/// A signed OpenSSH user certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshCertificate {
    /// One OpenSSH line (`ssh-ed25519-cert-v01@openssh.com AAAA…`): the
    /// content of `id_ed25519-cert.pub`.
    pub certificate: String,
    pub principal: String,
    pub serial: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_before: OffsetDateTime,
}

/// `GET /v1/ssh/authorities`: the public keys of the deployment's SSH CAs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshAuthoritiesView {
    /// Signs people's certificates; the bastion trusts it.
    pub user_ca: String,
    /// Signs the bastion's per-session certificates; targets trust it
    /// (`TrustedUserCAKeys`).
    pub host_access_ca: String,
}

/// `POST /v1/bastion/sessions`: the bastion asks to open a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSession {
    pub user: String,
    /// The target host's name (`db-1` for `host:db-1`).
    pub target: String,
    /// The bastion's key for this session (OpenSSH line, Ed25519), which
    /// the session certificate is for.
    pub public_key: String,
    /// Where the user connects from, for the record.
    pub client_address: String,
}

/// The answer: a grant and a certificate, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionGrant {
    pub allow: bool,
    /// Why not, for a deny.
    pub reason: Option<String>,
    /// The access request whose grant allows it.
    pub grant: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    /// The login name on the target (the resource's `ssh-login` label, or
    /// the user's name).
    pub principal: Option<String>,
    /// Ports on the target's loopback the user may forward to (the
    /// resource's `ssh-forward` label: `5432` or `5432-5440`); none by default.
    pub forward_ports: Option<[u16; 2]>,
    /// The per-session certificate (minutes of validity).
    pub certificate: Option<String>,
}

/// A recording named in a session's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordingRef {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// `POST /v1/sessions`: the bastion's summary of a session that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionSummary {
    pub id: String,
    pub user: String,
    pub target: String,
    pub grant: String,
    pub client: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    /// Why it ended: the user closed it, the grant was revoked, …
    pub reason: String,
    pub bytes_from_user: u64,
    pub bytes_to_user: u64,
    /// Each must have been stored before, with this hash.
    pub recordings: Vec<RecordingRef>,
}

/// A stored session, as `rempart session list|show` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub user: String,
    pub target: String,
    pub grant: String,
    /// The bastion that relayed it (its machine identity).
    pub bastion: String,
    pub client: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    pub reason: String,
    pub bytes_from_user: u64,
    pub bytes_to_user: u64,
    pub recordings: Vec<RecordingRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// The answer to a stored recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordingStored {
    pub session: String,
    pub name: String,
    pub sha256: String,
    /// False when the same recording was stored before (a retry).
    pub new: bool,
}
