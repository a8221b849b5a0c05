//! The database user CA (issue 7): signs people's client certificates for
//! the bastion's PostgreSQL listener (`rempart login --db NAME`).
//!
//! It is a CA of its own, apart from the deployment CA that signs machine
//! identities: the bastion's listener trusts this one only, so a machine
//! certificate never opens a database session and a person's database
//! certificate is never a machine identity.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rempart_tls::CertificateAuthority;

use crate::datadir::write_new;

pub fn user_ca_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db").join("user_ca.crt")
}

pub fn user_ca_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db").join("user_ca.key")
}

/// Reads the CA, making it when missing (at `init`, or on the first start
/// of a data directory made before it existed).
pub fn load_or_create(data_dir: &Path) -> Result<CertificateAuthority> {
    let (cert, key) = (user_ca_cert_path(data_dir), user_ca_key_path(data_dir));
    if cert.exists() || key.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        return CertificateAuthority::load(&read(&cert)?, &read(&key)?)
            .with_context(|| format!("{}: not a usable CA", cert.display()));
    }
    let dir = data_dir.join("db");
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let ca = CertificateAuthority::generate_named("Rempart database user CA")?;
    write_new(&key, ca.key_pem().expose(), 0o600)?;
    write_new(&cert, ca.cert_pem(), 0o644)?;
    tracing::info!(path = %cert.display(), "made the database user CA");
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = load_or_create(dir.path()).expect("made");
        let again = load_or_create(dir.path()).expect("read back");
        assert_eq!(made.cert_pem(), again.cert_pem());
        assert!(made.cert_pem().contains("BEGIN CERTIFICATE"));
    }
}
