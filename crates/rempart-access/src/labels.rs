//! Labels on resources (`env=prod`, `data=pii`) and selectors over them.

use std::collections::BTreeMap;
use std::fmt;

/// A resource's labels, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// Whether `text` is a valid label key or value: 1 to 63 of lowercase
/// letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn valid_label_part(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// `key=value`, checked.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?}: write it key=value, e.g. env=prod"))?;
    for part in [key, value] {
        if !valid_label_part(part) {
            return Err(format!(
                "label {text:?}: {part:?} must be 1 to 63 lowercase letters, digits, '-', '_' or '.'"
            ));
        }
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Labels a resource must all have (an empty selector matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Labels);

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("any resource");
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_selectors() {
        assert_eq!(parse_label("env=prod"), Ok(("env".into(), "prod".into())));
        for bad in [
            "env",
            "=prod",
            "env=",
            "Env=prod",
            "env=pro d",
            "env=prod=x",
        ] {
            assert!(parse_label(bad).is_err(), "{bad:?}");
        }
        let labels: Labels = [("env", "prod"), ("data", "pii")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let select = |pairs: &[(&str, &str)]| {
            Selector(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert!(select(&[]).matches(&labels));
        assert!(select(&[("env", "prod")]).matches(&labels));
        assert!(select(&[("env", "prod"), ("data", "pii")]).matches(&labels));
        assert!(!select(&[("env", "staging")]).matches(&labels));
        assert!(!select(&[("team", "pay")]).matches(&labels));
        assert_eq!(select(&[("env", "prod")]).to_string(), "env=prod");
    }
}
