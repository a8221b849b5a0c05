//! The deployment's two SSH certificate authorities (issue 6), Ed25519 keys
//! in the data directory:
//!
//! - the **user CA** signs the certificate `rempart login` gives a person,
//!   which the bastion (and only the bastion) trusts;
//! - the **host-access CA** signs the certificate the bastion logs in to a
//!   target with, one per session, for minutes, with the grant's principal.
//!   Targets trust it with `TrustedUserCAKeys`; nothing else is installed.
//!
//! Two keys, so that a person's certificate is never accepted by a target's
//! sshd directly: the only way in stays the bastion.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::RngCore;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{Algorithm, Certificate, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::datadir::write_new;

/// Slack before "now" in a certificate's validity, for clocks a little
/// behind the control plane's.
const CLOCK_SKEW_SECS: u64 = 60;

/// The two authorities; `Debug` shows their fingerprints only.
pub struct SshAuthorities {
    user: PrivateKey,
    host_access: PrivateKey,
}

impl fmt::Debug for SshAuthorities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshAuthorities")
            .field("user", &self.user.fingerprint(HashAlg::Sha256).to_string())
            .field(
                "host_access",
                &self.host_access.fingerprint(HashAlg::Sha256).to_string(),
            )
            .finish()
    }
}

/// What a certificate is for: its subject, principal and validity.
#[derive(Debug)]
pub struct CertificateRequest<'a> {
    pub key: &'a PublicKey,
    pub principal: &'a str,
    /// Shown by `ssh-keygen -L` and in sshd's log: who and why.
    pub key_id: &'a str,
    pub now_secs: u64,
    pub valid_for_secs: u64,
}

/// The files, under `<data dir>/ssh/`.
pub fn user_ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ssh").join("user_ca")
}

pub fn host_access_ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join("ssh").join("host_access_ca")
}

fn generate() -> Result<PrivateKey> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    key.set_comment("rempart");
    Ok(key)
}

fn load_or_create_one(path: &Path) -> Result<PrivateKey> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key = PrivateKey::from_openssh(text.as_bytes())
            .with_context(|| format!("{}: not an OpenSSH private key", path.display()))?;
        if key.algorithm() != Algorithm::Ed25519 || key.is_encrypted() {
            bail!("{}: an unencrypted Ed25519 key is expected", path.display());
        }
        return Ok(key);
    }
    let key = generate()?;
    let text = key
        .to_openssh(LineEnding::LF)
        .context("encoding an SSH CA key")?;
    write_new(path, &text, 0o600)?;
    // At `init` this is expected; on an older data directory's first start
    // it is news, but not a problem (other nodes get it with the copy of
    // this directory).
    tracing::info!(path = %path.display(), "made a new SSH certificate authority");
    Ok(key)
}

impl SshAuthorities {
    /// Reads both keys, making the missing ones (at `init`, or on the first
    /// start of a data directory made before they existed).
    pub fn load_or_create(data_dir: &Path) -> Result<SshAuthorities> {
        let dir = data_dir.join("ssh");
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(SshAuthorities {
            user: load_or_create_one(&user_ca_path(data_dir))?,
            host_access: load_or_create_one(&host_access_ca_path(data_dir))?,
        })
    }

    /// The user CA's public key, one OpenSSH line.
    pub fn user_ca_public(&self) -> String {
        openssh_line(self.user.public_key())
    }

    /// The host-access CA's public key: targets' `TrustedUserCAKeys`.
    pub fn host_access_ca_public(&self) -> String {
        openssh_line(self.host_access.public_key())
    }

    /// A person's certificate for the bastion (`rempart login`).
    pub fn sign_user(&self, request: &CertificateRequest<'_>) -> Result<Certificate> {
        sign(&self.user, request, &["permit-pty"])
    }

    /// The bastion's certificate for one session on a target. Port
    /// forwarding is permitted by the target only when the grant allows it;
    /// the bastion checks it too.
    pub fn sign_session(
        &self,
        request: &CertificateRequest<'_>,
        forwarding: bool,
    ) -> Result<Certificate> {
        let mut extensions = vec!["permit-pty"];
        if forwarding {
            extensions.push("permit-port-forwarding");
        }
        sign(&self.host_access, request, &extensions)
    }
}

fn openssh_line(key: &PublicKey) -> String {
    key.to_openssh()
        .unwrap_or_else(|_| unreachable!("an Ed25519 public key encodes"))
}

/// Only Ed25519 subjects: one modern algorithm, no RSA or ECDSA choices.
pub fn parse_subject_key(text: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_openssh(text.trim())
        .map_err(|e| format!("public_key: not an OpenSSH public key ({e})"))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(format!(
            "public_key: {} keys are not accepted; use Ed25519 (ssh-keygen -t ed25519)",
            key.algorithm()
        ));
    }
    Ok(key)
}

fn sign(
    ca: &PrivateKey,
    request: &CertificateRequest<'_>,
    extensions: &[&str],
) -> Result<Certificate> {
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut serial = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    let valid_after = request.now_secs.saturating_sub(CLOCK_SKEW_SECS);
    let valid_before = request.now_secs.saturating_add(request.valid_for_secs);
    let mut builder = Builder::new(
        nonce.to_vec(),
        request.key.key_data().clone(),
        valid_after,
        valid_before,
    )?;
    builder
        .serial(u64::from_be_bytes(serial))?
        .cert_type(CertType::User)?
        .key_id(request.key_id)?
        .valid_principal(request.principal)?;
    for extension in extensions {
        builder.extension(*extension, "")?;
    }
    builder.sign(ca).context("signing an SSH certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_carry_the_principal_validity_and_authority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let authorities = SshAuthorities::load_or_create(dir.path()).expect("made");
        let again = SshAuthorities::load_or_create(dir.path()).expect("read back");
        assert_eq!(authorities.user_ca_public(), again.user_ca_public());
        assert_ne!(
            authorities.user_ca_public(),
            authorities.host_access_ca_public()
        );
        let subject = generate().expect("a key");
        let now = 1_800_000_000;
        let cert = authorities
            .sign_user(&CertificateRequest {
                key: subject.public_key(),
                principal: "alice",
                key_id: "rempart user alice",
                now_secs: now,
                valid_for_secs: 8 * 3600,
            })
            .expect("signed");
        assert_eq!(cert.valid_principals(), ["alice"]);
        assert_eq!(cert.valid_before(), now + 8 * 3600);
        assert_eq!(cert.cert_type(), CertType::User);
        let user_ca = authorities.user.fingerprint(HashAlg::Sha256);
        let host_ca = authorities.host_access.fingerprint(HashAlg::Sha256);
        assert!(cert.validate_at(now, [&user_ca]).is_ok());
        assert!(
            cert.validate_at(now, [&host_ca]).is_err(),
            "wrong authority"
        );
        assert!(cert.validate_at(now + 8 * 3600 + 1, [&user_ca]).is_err());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(user_ca_path(dir.path()))
                .expect("exists")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{authorities:?}").contains("PRIVATE"));
    }

    #[test]
    fn only_ed25519_subjects() {
        // Refused whether or not this build decodes ECDSA at all.
        let err = parse_subject_key(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE9Is/H+geW1/n2uiNnRL+lVYqEn4A2WcJhLEea4Vo9fdT8450olijk0e2vjjljkXWPpyGBd1QaFAhZeI/y7z4w= root@vm",
        )
        .expect_err("ecdsa");
        assert!(err.starts_with("public_key: "), "{err}");
        assert!(parse_subject_key("ssh-ed25519 AAAA").is_err());
        assert!(parse_subject_key("").is_err());
    }
}
