//! The JSON shapes of Rempart's HTTP API, shared by the server and its clients.
//!
//! Requests refuse unknown fields ([`CreateUser`], [`CreateMachine`], ...);
//! every error is an [`ErrorBody`]. The types carry `utoipa` schemas so that
//! the server's `/v1/openapi.json` is generated from the same definitions the
//! code uses.
//!
//! Architecture invariant: this crate holds data shapes only: no HTTP client,
//! no server, no storage.
#![forbid(unsafe_code)]

mod access;
mod database;
mod ssh;

pub use access::{
    ActionView, AdvanceClock, Approval, CreateRequest, CreateResource, CreateTrainingModule,
    GrantCheck, ModuleStatus, RecordTraining, Refusal, RequestList, RequestView, ResourceList,
    ResourceView, ReviewView, TrainingCompletion, TrainingModuleList, TrainingModuleView,
    TrainingRecorded, TrainingStatus, UserTraining,
};

pub use database::{CreateDbCertificate, DbAuthoritiesView, DbCertificate};

pub use ssh::{
    CreateSshCertificate, OpenSession, RecordingRef, RecordingStored, SessionGrant, SessionList,
    SessionSummary, SessionView, SshAuthoritiesView, SshCertificate,
};

use rempart_core::{Identity, MachineName, MachineRole, Roles, UserName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Every error the API returns: a short machine-readable `error` and a
/// sentence for people in `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// e.g. `unauthorized`, `forbidden`, `not_found`, `conflict`, `bad_request`.
    pub error: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when the store answers, `unavailable` otherwise.
    pub status: String,
    pub version: String,
}

/// Who the caller is, as the server authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub identity: Identity,
    /// The well-log `actor` form: `alice` or `machine:bastion-1`.
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: UserName,
    pub roles: Roles,
    #[serde(default)]
    pub email: Option<Email>,
}

/// An e-mail address, checked for shape only (one `@`, no spaces, ≤ 254 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = "email")]
pub struct Email(String);

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(email: String) -> Result<Self, String> {
        let shaped = email.len() <= 254
            && email.split('@').count() == 2
            && email.split('@').all(|part| !part.is_empty())
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if shaped {
            Ok(Email(email))
        } else {
            Err(format!("{email:?} is not an e-mail address"))
        }
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub name: UserName,
    pub roles: Roles,
    pub email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// A token, shown once. The server keeps only its SHA-256. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    pub user: UserName,
    pub token: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("user", &self.user)
            .field("token", &"<secret>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedUser {
    pub user: User,
    pub token: IssuedToken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMachine {
    pub name: MachineName,
    pub role: MachineRole,
    /// A PEM certificate signing request made with the machine's own key;
    /// only its public key is used.
    pub csr_pem: String,
    /// Names (DNS or IP) the certificate also serves TLS under: a
    /// bastion's PostgreSQL listener. Bastions only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Machine {
    pub name: MachineName,
    pub role: MachineRole,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub cert_sha256: String,
    pub cert_serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MachineList {
    pub machines: Vec<Machine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedMachine {
    pub machine: Machine,
    pub cert_pem: String,
    /// The CA that signed it, which the machine pins to reach the server.
    pub ca_pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields() {
        let err = serde_json::from_str::<CreateUser>(r#"{"name":"a","roles":["admin"],"rolez":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `rolez`"), "{err}");
    }

    #[test]
    fn emails_are_checked_for_shape() {
        for bad in ["", "a", "a@", "@b", "a@b@c", "a b@c", "a@b\n"] {
            assert!(Email::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert!(Email::try_from("alice@example.com".to_owned()).is_ok());
    }
}

/// The answer to `POST /v1/log/entries`: what is durable, and per line what
/// was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppendResult {
    /// Entries written and fsync'd, numbered `first_seq ..= last_seq`.
    pub accepted: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub rejected: Vec<RejectedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedLine {
    /// 1-based line number in the request body.
    pub line: u64,
    pub error: String,
}

/// The latest signed checkpoint of the well-log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Base64 SHA-256 root of the Merkle tree of the first `size` entries.
    pub root: String,
    /// The checkpoint as a C2SP signed note.
    pub note: String,
    /// The log's public key in the signed-note verifier format.
    pub verifier_key: String,
}

/// One well-log entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    pub seq: u64,
    /// Base64 leaf hash: SHA-256(0x00 ‖ canonical entry).
    pub leaf_hash: String,
    /// The canonical entry, or null once erased (the leaf hash stays).
    #[schema(value_type = Object)]
    pub entry: Option<serde_json::Value>,
}

/// A run of consecutive entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EntryList {
    pub entries: Vec<EntryView>,
    /// The log's size when the list was read: the next `from` to follow it.
    pub size: u64,
}

/// Search hits, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchResult {
    pub hits: Vec<EntryView>,
    /// Entries the index covers (from seq 0); later ones are not searched yet.
    pub indexed: u64,
    /// Entries in the log.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofView {
    pub seq: u64,
    pub size: u64,
    pub leaf_hash: String,
    /// Base64 hashes, from the leaf upward (RFC 9162 §2.1.3).
    pub proof: Vec<String>,
    pub root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProofView {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: String,
    pub new_root: String,
    /// Base64 hashes (RFC 9162 §2.1.4).
    pub proof: Vec<String>,
}

/// An admin's order to erase one entry's payload (the order is logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseOrder {
    /// Why, for the record: a data-subject request, a leaked secret, ...
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Erased {
    pub seq: u64,
    /// False when it was erased already.
    pub erased_now: bool,
    /// The `log.erase` entry that records the order.
    pub order_seq: u64,
}
