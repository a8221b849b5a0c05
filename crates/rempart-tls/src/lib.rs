//! Rempart's internal PKI and the only TLS settings Rempart uses.
//!
//! [`CertificateAuthority`] is the deployment's CA: it issues the control
//! plane's server certificate ([`CertificateAuthority::issue_server_cert`]) and
//! the client certificates of machine identities from their certificate
//! signing requests ([`CertificateAuthority::sign_machine_csr`]).
//! [`server_config`] and [`client_config`] build the rustls configurations that
//! every Rempart endpoint uses: TLS 1.3, and TLS 1.2 with ECDHE key exchange
//! and AEAD ciphers only.
//!
//! ```
//! use rempart_tls::{CertificateAuthority, MachineKey};
//!
//! let ca = CertificateAuthority::generate().unwrap();
//! let server = ca.issue_server_cert(&["localhost".into()], 365).unwrap();
//! let config = rempart_tls::server_config(&server.cert_pem, server.key_pem.expose(), ca.cert_pem());
//! assert!(config.is_ok());
//!
//! // A machine keeps its key; the CA signs what the request proves it holds.
//! let key = MachineKey::generate().unwrap();
//! let csr = key.csr_pem("bastion-1").unwrap();
//! let issued = ca
//!     .sign_machine_csr(&csr, &"bastion-1".parse().unwrap(), rempart_core::MachineRole::Bastion, 90)
//!     .unwrap();
//! assert_eq!(issued.sha256_hex.len(), 64);
//! ```
//!
//! Architecture invariant: this crate is the only one that chooses protocol
//! versions, cipher suites or key algorithms. Nothing here touches the network
//! or the file system; callers decide where PEM text lives.
#![forbid(unsafe_code)]

mod ca;
mod config;

pub use ca::{
    CertSummary, CertificateAuthority, DatabaseUser, IssuedCert, IssuedKeyPair, MachineKey,
    cert_sha256_hex, cert_summary, database_user_of, der_sha256_hex,
};
pub use config::{
    ClientIdentity, client_config, crypto_provider, public_client_config, server_config,
    server_config_for_machines,
};

/// What went wrong while building or reading certificates and TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {source}")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: &'static str },
    #[error("{what}: not a PEM private key ({detail})")]
    BadKey { what: &'static str, detail: String },
    #[error("{what}: {detail}")]
    BadPem { what: &'static str, detail: String },
    #[error("the certificate signing request is refused: {detail}")]
    BadCsr { detail: String },
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}
