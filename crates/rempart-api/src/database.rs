//! Database certificates for the bastion's PostgreSQL listener (issue 7).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// `POST /v1/db/certificates`: a person asks for a client certificate for
/// one database, on a key made on their machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDbCertificate {
    /// The database: `payments` for the resource `db:payments`.
    pub database: String,
    /// A PEM certificate signing request; only its public key is used.
    pub csr_pem: String,
    /// How long it stays valid (`30m`, `8h`); at most `[database]
    /// user_certificate_max`, which is also the default.
    #[serde(default)]
    pub valid_for: Option<String>,
}

/// A signed client certificate (`CN=user, OU=db:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DbCertificate {
    pub certificate_pem: String,
    /// The deployment's CA, which signed the bastion's server certificate:
    /// `sslrootcert` for `sslmode=verify-full`.
    pub ca_pem: String,
    pub user: String,
    pub database: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// `GET /v1/db/authorities`: the CA whose certificates the bastion's
/// PostgreSQL listener accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DbAuthoritiesView {
    pub user_ca_pem: String,
}
