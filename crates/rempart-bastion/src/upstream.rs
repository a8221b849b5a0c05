//! The bastion's own SSH connection to a target's stock sshd: the target's
//! host key checked against the inventory (or its certificate against a
//! host CA), then a login with the per-session certificate the control
//! plane signed after the grant check.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::{Certificate, HashAlg, PrivateKey, PublicKey};
use russh::{Preferred, cipher, client, kex, mac};

use crate::config::{HostTrust, Target};

/// Modern algorithms only, on both legs: post-quantum hybrid or X25519 key
/// exchange, Ed25519 keys, AEAD ciphers.
pub fn preferred() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Borrowed(&[russh::keys::Algorithm::Ed25519]),
        cipher: Cow::Borrowed(&[
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
        ]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
        ..Preferred::DEFAULT
    }
}

/// Recognises the target's sshd, and nothing else.
#[derive(Debug)]
pub struct TargetCheck {
    target: Target,
    /// Why the host key was refused, for the user's message.
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for TargetCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = check_host(&self.target, presented);
        if let Err(why) = &verdict {
            *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
        }
        Ok(verdict.is_ok())
    }
}

fn check_host(target: &Target, presented: &PublicKeyOrCertificate) -> Result<(), String> {
    match (&target.trust, presented) {
        (HostTrust::Key(line), PublicKeyOrCertificate::PublicKey { key, .. }) => {
            let expected = PublicKey::from_openssh(line.as_str()).map_err(|e| e.to_string())?;
            if expected.key_data() == key.key_data() {
                Ok(())
            } else {
                Err(format!(
                    "the host key of {} is {}, not the one in the inventory ({})",
                    target.name,
                    key.fingerprint(HashAlg::Sha256),
                    expected.fingerprint(HashAlg::Sha256)
                ))
            }
        }
        (HostTrust::Ca(line), PublicKeyOrCertificate::Certificate(cert)) => {
            let ca = PublicKey::from_openssh(line.as_str()).map_err(|e| e.to_string())?;
            cert.validate([&ca.fingerprint(HashAlg::Sha256)])
                .map_err(|e| format!("the host certificate of {}: {e}", target.name))?;
            if !cert.cert_type().is_host() {
                return Err(format!(
                    "{} presented a user certificate as its host's",
                    target.name
                ));
            }
            let host = target
                .address
                .rsplit_once(':')
                .map_or(target.address.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let names = cert.valid_principals();
            if names.iter().any(|n| n == &target.name || n == host) {
                Ok(())
            } else {
                Err(format!(
                    "the host certificate of {} names {names:?}, not {} or {host}",
                    target.name, target.name
                ))
            }
        }
        (HostTrust::Key(_), PublicKeyOrCertificate::Certificate(_)) => Err(format!(
            "{} presented a certificate; the inventory has its host key",
            target.name
        )),
        (HostTrust::Ca(_), PublicKeyOrCertificate::PublicKey { .. }) => Err(format!(
            "{} presented a bare host key; the inventory expects a certificate from its host CA",
            target.name
        )),
    }
}

/// Connects and logs in to `target` as `principal` with the session key
/// and certificate.
pub async fn connect(
    target: &Target,
    principal: &str,
    key: Arc<PrivateKey>,
    certificate: Certificate,
) -> Result<client::Handle<TargetCheck>> {
    let mut preferred = preferred();
    if matches!(target.trust, HostTrust::Ca(_)) {
        preferred.host_key_certificates = Cow::Borrowed(&[russh::keys::Algorithm::Ed25519]);
    }
    let config = Arc::new(client::Config {
        preferred,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        window_size: 2 * 1024 * 1024,
        maximum_packet_size: 32_768,
        nodelay: true,
        ..client::Config::default()
    });
    let refusal = Arc::new(std::sync::Mutex::new(None));
    let check = TargetCheck {
        target: target.clone(),
        refusal: refusal.clone(),
    };
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        client::connect(config, target.address.as_str(), check),
    )
    .await
    .with_context(|| {
        format!(
            "{} ({}) did not answer within 10 s",
            target.name, target.address
        )
    })?;
    let mut handle = match connected {
        Ok(handle) => handle,
        Err(err) => {
            if let Some(why) = refusal.lock().unwrap_or_else(|e| e.into_inner()).take() {
                bail!("{why}");
            }
            bail!("cannot reach {} ({}): {err}", target.name, target.address);
        }
    };
    let result = handle
        .authenticate_openssh_cert(principal, key, certificate)
        .await
        .with_context(|| format!("logging in to {}", target.name))?;
    if !result.success() {
        bail!(
            "{} refused the session certificate for {principal}: does its sshd trust the host-access CA (TrustedUserCAKeys), and may {principal} log in?",
            target.name
        );
    }
    Ok(handle)
}

/// A fresh Ed25519 key for one session; it never leaves the bastion's memory.
pub fn session_key() -> Result<PrivateKey> {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ));
    seed.fill(0);
    Ok(key)
}
