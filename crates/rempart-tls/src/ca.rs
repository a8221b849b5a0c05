use std::fmt;
use std::net::IpAddr;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
    SignatureAlgorithm,
};
use rempart_core::{MachineName, MachineRole, Secret};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::TlsError;

/// Every key Rempart generates is ECDSA P-256: the one algorithm that every
/// TLS peer we meet (browsers, `openssl`, `psql`, rustls) accepts.
static KEY_ALGORITHM: &SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

/// Key algorithms a machine may put in its signing request, with the length
/// of their public key (an uncompressed EC point, or an Ed25519 key).
static ACCEPTED_MACHINE_KEYS: [(&SignatureAlgorithm, usize); 3] = [
    (&rcgen::PKCS_ECDSA_P256_SHA256, 65),
    (&rcgen::PKCS_ECDSA_P384_SHA384, 97),
    (&rcgen::PKCS_ED25519, 32),
];

const CA_VALIDITY_DAYS: i64 = 3650;
/// Certificates start a little in the past so that peers whose clock is
/// slightly behind still accept them.
const CLOCK_SKEW: Duration = Duration::minutes(5);

fn certificate_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Certificate { what, source }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // A positive INTEGER: clear the top bit.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: i64) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(days);
    params.not_after
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The deployment's certificate authority. Its private key lives only in the
/// data directory and in this value; `Debug` never shows it.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("key", &"<secret>")
            .finish_non_exhaustive()
    }
}

/// A certificate issued with a fresh key pair (the server certificate).
#[derive(Debug)]
pub struct IssuedKeyPair {
    pub cert_pem: String,
    pub key_pem: Secret<String>,
}

/// A certificate issued for a machine's own key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// SHA-256 of the DER certificate, lowercase hex: how the control plane
    /// recognises (and revokes) this exact certificate.
    pub sha256_hex: String,
    pub serial_hex: String,
    pub not_after: OffsetDateTime,
}

impl CertificateAuthority {
    pub fn generate() -> Result<Self, TlsError> {
        Self::generate_named("Rempart CA")
    }

    /// A CA whose common name starts with `label` (and a random id, so
    /// two deployments' CAs are told apart).
    pub fn generate_named(label: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(KEY_ALGORITHM).map_err(certificate_error("CA key"))?;
        let mut id = [0u8; 4];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{label} {}", hex(&id)));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Rempart");
        // The CA signs only end-entity certificates: no intermediate below it.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(certificate_error("CA certificate"))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::BadKey {
            what: "CA key",
            detail: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(certificate_error("CA certificate"))?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> Secret<String> {
        Secret::new(self.issuer.key().serialize_pem())
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue_server_cert(
        &self,
        names: &[String],
        days: i64,
    ) -> Result<IssuedKeyPair, TlsError> {
        let key = KeyPair::generate_for(KEY_ALGORITHM).map_err(certificate_error("server key"))?;
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(certificate_error("server names"))?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity(&mut params, days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(certificate_error("server certificate"))?;
        Ok(IssuedKeyPair {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
        })
    }

    /// A client certificate for a machine identity. Only the public key is
    /// taken from the request (after its signature is checked); the subject,
    /// usages and validity are the CA's decision.
    pub fn sign_machine_csr(
        &self,
        csr_pem: &str,
        name: &MachineName,
        role: MachineRole,
        days: i64,
    ) -> Result<IssuedCert, TlsError> {
        self.sign_machine_csr_with_server_names(csr_pem, name, role, days, &[])
    }

    /// As [`Self::sign_machine_csr`], and when `server_names` is not empty
    /// the same certificate also serves TLS under those names (DNS names or
    /// IP addresses): the bastion's PostgreSQL listener presents it, so
    /// clients check it with `sslmode=verify-full`. The names are the
    /// administrator's choice at enrollment, never the machine's.
    pub fn sign_machine_csr_with_server_names(
        &self,
        csr_pem: &str,
        name: &MachineName,
        role: MachineRole,
        days: i64,
        server_names: &[String],
    ) -> Result<IssuedCert, TlsError> {
        let csr = checked_csr(csr_pem)?;
        let mut params = if server_names.is_empty() {
            CertificateParams::default()
        } else {
            CertificateParams::new(server_names.to_vec())
                .map_err(certificate_error("server names"))?
        };
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Rempart");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !server_names.is_empty() {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        let not_after = validity(&mut params, days);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(certificate_error("machine certificate"))?;
        Ok(IssuedCert {
            sha256_hex: der_sha256_hex(cert.der()),
            cert_pem: cert.pem(),
            serial_hex,
            not_after,
        })
    }
}

/// The organisation a database user's certificate names: it tells the
/// certificate apart from a machine's at a glance (the bastion trusts a
/// separate CA for them anyway).
const DATABASE_USER_ORGANISATION: &str = "Rempart database user";

/// Who a database user's certificate names, read back by the bastion
/// after the TLS handshake verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUser {
    pub user: String,
    /// The database it is for: `payments` for `db:payments`.
    pub database: String,
    pub not_after: OffsetDateTime,
}

impl CertificateAuthority {
    /// A person's client certificate for one database behind the bastion
    /// (`rempart login --db NAME`): subject `CN=user, OU=db:NAME`, client
    /// authentication only, valid until `not_after`. Only the public key is
    /// taken from the request.
    pub fn sign_database_user_csr(
        &self,
        csr_pem: &str,
        user: &str,
        database: &str,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCert, TlsError> {
        let csr = checked_csr(csr_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, format!("db:{database}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, DATABASE_USER_ORGANISATION);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial = random_serial();
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        params.not_before = OffsetDateTime::now_utc() - CLOCK_SKEW;
        params.not_after = not_after;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(certificate_error("database user certificate"))?;
        Ok(IssuedCert {
            sha256_hex: der_sha256_hex(cert.der()),
            cert_pem: cert.pem(),
            serial_hex,
            not_after,
        })
    }
}

/// The value of an attribute that appears exactly once.
fn single<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    let first = values.next().and_then(|v| v.as_str().ok());
    match (first, values.next()) {
        (Some(text), None) => Some(text.to_owned()),
        _ => None,
    }
}

/// The user and database a database user's certificate names. Call it on
/// a certificate the TLS handshake has verified against the database user
/// CA: this reads, it does not verify.
pub fn database_user_of(der: &[u8]) -> Result<DatabaseUser, TlsError> {
    let bad = |detail: &str| TlsError::BadPem {
        what: "database user certificate",
        detail: detail.to_owned(),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(&e.to_string()))?;
    let subject = cert.subject();
    if single(subject.iter_organization()).as_deref() != Some(DATABASE_USER_ORGANISATION) {
        return Err(bad("not a database user's certificate"));
    }
    let user = single(subject.iter_common_name()).ok_or_else(|| bad("no single user name"))?;
    let database = single(subject.iter_organizational_unit())
        .and_then(|unit| unit.strip_prefix("db:").map(str::to_owned))
        .ok_or_else(|| bad("no single database"))?;
    Ok(DatabaseUser {
        user,
        database,
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// A signing request whose signature holds and whose key is one Rempart
/// accepts (ECDSA P-256 or P-384, or Ed25519).
pub(crate) fn checked_csr(csr_pem: &str) -> Result<CertificateSigningRequestParams, TlsError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| TlsError::BadCsr {
        detail: e.to_string(),
    })?;
    // rcgen names the key after the request's *signature* algorithm; the
    // key itself must agree with it (a P-256 key signed with SHA-384
    // would otherwise be certified as a P-384 key).
    let algorithm = csr.public_key.algorithm();
    let key_len = rcgen::PublicKeyData::der_bytes(&csr.public_key).len();
    let expected_len = ACCEPTED_MACHINE_KEYS
        .iter()
        .find(|(accepted, _)| *accepted == algorithm)
        .map(|(_, len)| *len);
    match expected_len {
        Some(len) if len == key_len => {}
        Some(_) => {
            return Err(TlsError::BadCsr {
                detail: "the key does not match the request's signature algorithm \
                             (sign a P-256 key with SHA-256, a P-384 key with SHA-384)"
                    .to_owned(),
            });
        }
        None => {
            return Err(TlsError::BadCsr {
                detail: "the key must be ECDSA P-256, ECDSA P-384 or Ed25519".to_owned(),
            });
        }
    }
    Ok(csr)
}

/// A key pair generated on the machine that will hold it.
pub struct MachineKey(KeyPair);

impl fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MachineKey(<secret>)")
    }
}

impl MachineKey {
    pub fn generate() -> Result<Self, TlsError> {
        Ok(MachineKey(
            KeyPair::generate_for(KEY_ALGORITHM).map_err(certificate_error("machine key"))?,
        ))
    }

    pub fn csr_pem(&self, name: &str) -> Result<String, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .serialize_request(&self.0)
            .and_then(|csr| csr.pem())
            .map_err(certificate_error("certificate signing request"))
    }

    pub fn key_pem(&self) -> Secret<String> {
        Secret::new(self.0.serialize_pem())
    }

    /// The key as PKCS #8 DER: what JDBC's PostgreSQL driver reads (`sslkey`).
    pub fn key_pkcs8_der(&self) -> Secret<Vec<u8>> {
        Secret::new(self.0.serialize_der())
    }
}

fn first_cert_der(cert_pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .ok_or(TlsError::NoCertificate { what })?
        .map_err(|e| TlsError::BadPem {
            what,
            detail: e.to_string(),
        })
}

/// SHA-256 of the first certificate in `cert_pem`, lowercase hex.
pub fn cert_sha256_hex(cert_pem: &str) -> Result<String, TlsError> {
    Ok(der_sha256_hex(&first_cert_der(cert_pem, "certificate")?))
}

/// SHA-256 of a DER certificate (as a TLS peer presents it), lowercase hex.
pub fn der_sha256_hex(der: &[u8]) -> String {
    hex(&Sha256::digest(der))
}

/// What Rempart needs to know of a certificate it holds: when it ends and
/// which names it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub not_after: OffsetDateTime,
    pub names: Vec<String>,
}

pub fn cert_summary(cert_pem: &str) -> Result<CertSummary, TlsError> {
    let der = first_cert_der(cert_pem, "certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| TlsError::BadPem {
        what: "certificate",
        detail: e.to_string(),
    })?;
    let not_after = cert.validity().not_after.to_datetime();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match *bytes {
                        [a, b, c, d] => Some(IpAddr::from([*a, *b, *c, *d])),
                        _ => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    };
                    names.push(ip.map_or_else(|| hex(bytes), |ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(CertSummary { not_after, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_round_trips_through_pem() {
        let ca = CertificateAuthority::generate().unwrap();
        let loaded = CertificateAuthority::load(ca.cert_pem(), ca.key_pem().expose()).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn server_cert_covers_dns_names_and_addresses() {
        let ca = CertificateAuthority::generate().unwrap();
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let issued = ca.issue_server_cert(&names, 30).unwrap();
        let summary = cert_summary(&issued.cert_pem).unwrap();
        assert_eq!(summary.names, names);
        let days_left = (summary.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((29..=30).contains(&days_left), "{days_left}");
    }

    #[test]
    fn machine_csr_gets_the_name_the_ca_chooses() {
        let ca = CertificateAuthority::generate().unwrap();
        let key = MachineKey::generate().unwrap();
        // The request asks for another name: the CA ignores what it asks.
        let csr = key.csr_pem("someone-else").unwrap();
        let name: MachineName = "agent-7".parse().unwrap();
        let issued = ca
            .sign_machine_csr(&csr, &name, MachineRole::Agent, 90)
            .unwrap();
        assert_eq!(
            cert_sha256_hex(&issued.cert_pem).unwrap(),
            issued.sha256_hex
        );
        let der = first_cert_der(&issued.cert_pem, "test").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "agent-7"
        );
        assert_eq!(
            cert.subject()
                .iter_organizational_unit()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "agent"
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn a_bastion_certificate_also_serves_its_names() {
        let ca = CertificateAuthority::generate().unwrap();
        let csr = MachineKey::generate().unwrap().csr_pem("b").unwrap();
        let names = vec!["bastion.example".to_owned(), "127.0.0.1".to_owned()];
        let issued = ca
            .sign_machine_csr_with_server_names(
                &csr,
                &"bastion-1".parse().unwrap(),
                MachineRole::Bastion,
                30,
                &names,
            )
            .unwrap();
        assert_eq!(cert_summary(&issued.cert_pem).unwrap().names, names);
        let der = first_cert_der(&issued.cert_pem, "test").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && eku.server_auth);
    }

    #[test]
    fn a_database_user_certificate_names_its_user_and_database() {
        let ca = CertificateAuthority::generate_named("Rempart database user CA").unwrap();
        let csr = MachineKey::generate().unwrap().csr_pem("anything").unwrap();
        let until = OffsetDateTime::now_utc() + Duration::hours(2);
        let issued = ca
            .sign_database_user_csr(&csr, "alice", "payments", until)
            .unwrap();
        let der = first_cert_der(&issued.cert_pem, "test").unwrap();
        let read = database_user_of(&der).unwrap();
        assert_eq!(
            (read.user.as_str(), read.database.as_str()),
            ("alice", "payments")
        );
        assert_eq!(read.not_after.unix_timestamp(), until.unix_timestamp());
        // A machine's certificate is not a database user's.
        let machine = ca
            .sign_machine_csr(&csr, &"m".parse().unwrap(), MachineRole::Agent, 1)
            .unwrap();
        let der = first_cert_der(&machine.cert_pem, "test").unwrap();
        assert!(database_user_of(&der).is_err());
    }

    #[test]
    fn garbage_and_tampered_csrs_are_refused() {
        let ca = CertificateAuthority::generate().unwrap();
        let name: MachineName = "m".parse().unwrap();
        for bad in [
            "",
            "not pem",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            let err = ca
                .sign_machine_csr(bad, &name, MachineRole::Agent, 1)
                .unwrap_err();
            assert!(matches!(err, TlsError::BadCsr { .. }), "{bad:?}: {err}");
        }
        // Flip one byte inside the signed body: the signature no longer holds.
        let csr = MachineKey::generate().unwrap().csr_pem("m").unwrap();
        let mut der =
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec();
        let middle = der.len() / 3;
        der[middle] ^= 0x01;
        let tampered = pem_encode("CERTIFICATE REQUEST", &der);
        assert!(
            ca.sign_machine_csr(&tampered, &name, MachineRole::Agent, 1)
                .is_err()
        );
    }

    /// A P-256 key in a request signed with SHA-384 must not be certified
    /// as a P-384 key (rcgen names the key after the signature algorithm).
    #[test]
    fn a_key_that_does_not_match_its_signature_algorithm_is_refused() {
        let ca = CertificateAuthority::generate().unwrap();
        let name: MachineName = "m".parse().unwrap();
        let csr = |curve: &str, digest: &str| {
            let out = std::process::Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
                .arg(format!("ec_paramgen_curve:{curve}"))
                .args([digest, "-nodes", "-subj", "/CN=m", "-keyout", "/dev/null"])
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let mismatched =
            ca.sign_machine_csr(&csr("P-256", "-sha384"), &name, MachineRole::Agent, 1);
        assert!(
            matches!(mismatched, Err(TlsError::BadCsr { .. })),
            "{mismatched:?}"
        );
        for (curve, digest) in [("P-256", "-sha256"), ("P-384", "-sha384")] {
            let issued = ca
                .sign_machine_csr(&csr(curve, digest), &name, MachineRole::Agent, 1)
                .unwrap();
            // openssl can read the certified key back.
            let der = first_cert_der(&issued.cert_pem, "test").unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            assert!(cert.public_key().parsed().is_ok(), "{curve}");
        }
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }
}
