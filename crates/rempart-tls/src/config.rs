use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as provider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// The crypto Rempart offers, written out so that a reader sees the whole
/// policy in one place: TLS 1.3 suites, then TLS 1.2 suites that are all
/// ECDHE key exchange with an AEAD cipher. No CBC, no static RSA, no SHA-1.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use provider::cipher_suite::*;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![
            provider::kx_group::X25519,
            provider::kx_group::SECP256R1,
            provider::kx_group::SECP384R1,
        ],
        ..provider::default_provider()
    })
}

static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::BadKey {
        what,
        detail: e.to_string(),
    })
}

fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem, "CA certificate")? {
        roots.add(cert)?;
    }
    Ok(Arc::new(roots))
}

/// The control plane's TLS settings. A client certificate is optional (people
/// present tokens), but when one is presented it must chain to `client_ca_pem`;
/// which machine it belongs to, and whether it is revoked, is decided per
/// request by the server against its store.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<ServerConfig, TlsError> {
    build_server_config(cert_pem, key_pem, client_ca_pem, false)
}

/// For endpoints only machines use (syslog over TLS): a client certificate
/// that chains to `client_ca_pem` is required to finish the handshake.
pub fn server_config_for_machines(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<ServerConfig, TlsError> {
    build_server_config(cert_pem, key_pem, client_ca_pem, true)
}

fn build_server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
    require_client_cert: bool,
) -> Result<ServerConfig, TlsError> {
    let provider = crypto_provider();
    let builder =
        WebPkiClientVerifier::builder_with_provider(roots(client_ca_pem)?, provider.clone());
    let verifier = if require_client_cert {
        builder.build()?
    } else {
        builder.allow_unauthenticated().build()?
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(cert_pem, "server certificate")?,
            private_key(key_pem, "server key")?,
        )?;
    if !require_client_cert {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(config)
}

/// A machine's certificate and key, presented to the control plane.
pub struct ClientIdentity<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

impl std::fmt::Debug for ClientIdentity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// The settings every Rempart client uses: only the deployment's CA is
/// trusted (no public roots), with the same versions and suites as the server.
pub fn client_config(
    ca_pem: &str,
    identity: Option<ClientIdentity<'_>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots(ca_pem)?);
    let config = match identity {
        Some(identity) => builder.with_client_auth_cert(
            certs(identity.cert_pem, "client certificate")?,
            private_key(identity.key_pem, "client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// TLS to public services (webhooks): the same versions and suites, and
/// the Mozilla root store (webpki-roots) instead of the deployment's CA.
pub fn public_client_config() -> Result<ClientConfig, TlsError> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateAuthority, MachineKey};

    #[test]
    fn only_ecdhe_aead_suites_are_offered() {
        for suite in &crypto_provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_pem_without_certificates() {
        assert!(matches!(
            server_config("", "", ""),
            Err(TlsError::NoCertificate { .. })
        ));
        let ca = CertificateAuthority::generate().unwrap();
        let server = ca.issue_server_cert(&["localhost".into()], 1).unwrap();
        assert!(matches!(
            server_config(&server.cert_pem, "nope", ca.cert_pem()),
            Err(TlsError::BadKey { .. })
        ));
    }

    /// A real handshake over a socket pair: the machine's certificate chains to
    /// the CA and the server sees it.
    #[tokio::test]
    async fn mutual_tls_handshake() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca = CertificateAuthority::generate().unwrap();
        let server = ca.issue_server_cert(&["localhost".into()], 1).unwrap();
        let key = MachineKey::generate().unwrap();
        let issued = ca
            .sign_machine_csr(
                &key.csr_pem("m").unwrap(),
                &"m".parse().unwrap(),
                rempart_core::MachineRole::Agent,
                1,
            )
            .unwrap();
        let server_cfg =
            server_config(&server.cert_pem, server.key_pem.expose(), ca.cert_pem()).unwrap();
        let client_cfg = client_config(
            ca.cert_pem(),
            Some(ClientIdentity {
                cert_pem: &issued.cert_pem,
                key_pem: key.key_pem().expose(),
            }),
        )
        .unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
        let server_side = tokio::spawn(async move {
            let mut tls = acceptor.accept(a).await.unwrap();
            let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            (peer, buf)
        });
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, b).await.unwrap();
        tls.write_all(b"hello").await.unwrap();
        tls.flush().await.unwrap();
        let (peer, buf) = server_side.await.unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(
            crate::cert_sha256_hex(&issued.cert_pem).unwrap(),
            crate::der_sha256_hex(peer.as_ref())
        );
    }
}
