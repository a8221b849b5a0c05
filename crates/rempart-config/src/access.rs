//! `[access]`: the rules of access requests (issue 4).

use std::collections::BTreeMap;

use rempart_access::labels::valid_label_part;
use rempart_core::Role;
use serde::Deserialize;

use crate::values::Bounded;

/// A duration written `30m`, `8h`, `365d`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DurationSetting(i64);

impl DurationSetting {
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl TryFrom<String> for DurationSetting {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        rempart_access::parse_duration(&text).map(DurationSetting)
    }
}

/// A regular expression a reason must contain, or "" for none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PatternSetting(String);

impl PatternSetting {
    /// The pattern, if one is set (it compiled when the file was read).
    pub fn pattern(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }
}

impl TryFrom<String> for PatternSetting {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if !text.is_empty() {
            regex::Regex::new(&text)
                .map_err(|e| format!("{text:?} is not a regular expression: {e}"))?;
        }
        Ok(PatternSetting(text))
    }
}

/// Labels a resource must carry, e.g. `{ env = "prod" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, String>")]
pub struct LabelsSetting(pub BTreeMap<String, String>);

impl TryFrom<BTreeMap<String, String>> for LabelsSetting {
    type Error = String;
    fn try_from(labels: BTreeMap<String, String>) -> Result<Self, String> {
        for (key, value) in &labels {
            if !valid_label_part(key) || !valid_label_part(value) {
                return Err(format!(
                    "label {key}={value}: 1 to 63 lowercase letters, digits, '-', '_' or '.'"
                ));
            }
        }
        Ok(LabelsSetting(labels))
    }
}

/// A webhook URL: `https://…`, or `http://` to a loopback address only (a
/// relay on the same host); "" for none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WebhookSetting(String);

impl WebhookSetting {
    pub fn url(&self) -> Option<&str> {
        (!self.0.is_empty()).then_some(self.0.as_str())
    }
}

impl TryFrom<String> for WebhookSetting {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(WebhookSetting(text));
        }
        let refuse = |why: &str| {
            Err(format!(
                "{text:?}: {why}; a webhook is https://, or http:// to a loopback address (a relay on this host)"
            ))
        };
        let Ok(url) = url::Url::parse(&text) else {
            return refuse("not a URL");
        };
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("no user or password in the URL");
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => return refuse("no host"),
        };
        match url.scheme() {
            "https" => Ok(WebhookSetting(text)),
            "http" if loopback => Ok(WebhookSetting(text)),
            "http" => refuse("plain http leaves this host"),
            _ => refuse("not http(s)"),
        }
    }
}

/// Who may request which resources.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowSetting {
    pub roles: Vec<Role>,
    #[serde(default)]
    pub labels: LabelsSetting,
}

/// Resources that need more approvals.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSetting {
    pub labels: LabelsSetting,
    pub approvals: Bounded<1, 10>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    pub reviewer_role: Role,
    pub max_duration: DurationSetting,
    pub pending_for: DurationSetting,
    pub min_reason_chars: Bounded<0, 1000>,
    pub ticket_pattern: PatternSetting,
    pub required_training: Vec<String>,
    pub approvals: Bounded<1, 10>,
    pub webhook: WebhookSetting,
    #[serde(default)]
    pub allow: Vec<AllowSetting>,
    #[serde(default)]
    pub threshold: Vec<ThresholdSetting>,
}
