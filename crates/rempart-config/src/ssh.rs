//! `[ssh]`: the certificates the control plane signs for SSH (issue 6).

use serde::Deserialize;

use crate::access::DurationSetting;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

/// Validity limits of the SSH certificates the control plane signs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawSsh")]
pub struct SshSettings {
    /// Longest validity of a user certificate from `rempart login`.
    pub user_certificate_max: DurationSetting,
    /// Validity of the certificate the bastion logs in to a target with,
    /// one per session: it only has to outlive the connection's setup.
    pub session_certificate: DurationSetting,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user_certificate_max: DurationSetting,
    session_certificate: DurationSetting,
}

impl TryFrom<RawSsh> for SshSettings {
    type Error = String;
    fn try_from(raw: RawSsh) -> Result<Self, String> {
        let user = raw.user_certificate_max.millis();
        if !(MINUTE_MS..=24 * HOUR_MS).contains(&user) {
            return Err("user_certificate_max: between 1m and 24h".to_owned());
        }
        let session = raw.session_certificate.millis();
        if !(MINUTE_MS..=HOUR_MS).contains(&session) {
            return Err("session_certificate: between 1m and 1h".to_owned());
        }
        Ok(SshSettings {
            user_certificate_max: raw.user_certificate_max,
            session_certificate: raw.session_certificate,
        })
    }
}
