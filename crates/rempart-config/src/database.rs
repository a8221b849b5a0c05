//! `[database]`: the client certificates the control plane signs for the
//! bastion's PostgreSQL listener (issue 7).

use serde::Deserialize;

use crate::access::DurationSetting;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawDatabase")]
pub struct DatabaseSettings {
    /// Longest validity of a database certificate from `rempart login --db`.
    pub user_certificate_max: DurationSetting,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    user_certificate_max: DurationSetting,
}

impl TryFrom<RawDatabase> for DatabaseSettings {
    type Error = String;
    fn try_from(raw: RawDatabase) -> Result<Self, String> {
        let user = raw.user_certificate_max.millis();
        if !(MINUTE_MS..=24 * HOUR_MS).contains(&user) {
            return Err("user_certificate_max: between 1m and 24h".to_owned());
        }
        Ok(DatabaseSettings {
            user_certificate_max: raw.user_certificate_max,
        })
    }
}
