//! The event schema and the canonical form of an entry.
//!
//! An entry is one JSON object with the fields of DESIGN.md's schema (`kind`
//! required; `ts`, `host`, `actor`, `target`, `outcome`, `reason`, `grant`,
//! `msg` when they apply; free fields beside them). The server adds
//! `received`, `sender` and `source`; the sequence number is the entry's
//! position in the tree, proven by its inclusion proof, and added when the
//! entry is shown. The canonical form (object keys sorted at every level,
//! compact, UTF-8) is what the leaf hash covers.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Api,
    Syslog,
    Internal,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Syslog => "syslog",
            Source::Internal => "internal",
        }
    }
}

/// What the server knows of an entry's arrival.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub received: OffsetDateTime,
    /// The authenticated identity that delivered it (`alice`, `machine:bastion-1`).
    pub sender: String,
    pub source: Source,
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("an entry is a JSON object")]
    NotAnObject,
    #[error("`kind` is required")]
    MissingKind,
    #[error("`{field}`: {problem}")]
    BadField {
        field: &'static str,
        problem: String,
    },
    #[error("`{0}` is set by the server, not by producers")]
    Reserved(String),
    #[error("the entry is {0} bytes; at most {MAX_ENTRY_BYTES}")]
    TooLarge(usize),
}

pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
const RESERVED: [&str; 4] = ["seq", "received", "sender", "source"];
const TEXT_FIELDS: [&str; 7] = ["host", "actor", "target", "reason", "grant", "msg", "raw"];
const OUTCOMES: [&str; 3] = ["success", "failure", "denied"];

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A dotted lowercase name: `ssh.session.start`, `access.review.approve`.
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 128
        && kind.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        })
}

/// Checks `value` against the schema, stamps it, and returns its canonical
/// bytes.
pub fn canonical_entry(value: Value, stamp: &Stamp) -> Result<Vec<u8>, EntryError> {
    let Value::Object(mut fields) = value else {
        return Err(EntryError::NotAnObject);
    };
    if let Some(reserved) = RESERVED.iter().find(|k| fields.contains_key(**k)) {
        return Err(EntryError::Reserved((*reserved).to_owned()));
    }
    match fields.get("kind") {
        None => return Err(EntryError::MissingKind),
        Some(Value::String(kind)) if valid_kind(kind) => {}
        Some(_) => {
            return Err(EntryError::BadField {
                field: "kind",
                problem: "a dotted lowercase name such as ssh.session.start".to_owned(),
            });
        }
    }
    match fields.get("ts") {
        None => {
            fields.insert("ts".to_owned(), Value::String(rfc3339(stamp.received)));
        }
        Some(Value::String(ts)) => {
            let parsed = OffsetDateTime::parse(ts, &Rfc3339).map_err(|e| EntryError::BadField {
                field: "ts",
                problem: format!("not an RFC 3339 time: {e}"),
            })?;
            // One spelling of each instant: UTC.
            let utc = parsed.to_offset(time::UtcOffset::UTC);
            fields.insert("ts".to_owned(), Value::String(rfc3339(utc)));
        }
        Some(_) => {
            return Err(EntryError::BadField {
                field: "ts",
                problem: "an RFC 3339 string".to_owned(),
            });
        }
    }
    for field in TEXT_FIELDS {
        if fields.get(field).is_some_and(|v| !v.is_string()) {
            return Err(EntryError::BadField {
                field,
                problem: "a string".to_owned(),
            });
        }
    }
    if let Some(outcome) = fields.get("outcome")
        && !outcome.as_str().is_some_and(|o| OUTCOMES.contains(&o))
    {
        return Err(EntryError::BadField {
            field: "outcome",
            problem: "success, failure or denied".to_owned(),
        });
    }
    fields.insert(
        "received".to_owned(),
        Value::String(rfc3339(stamp.received)),
    );
    fields.insert("sender".to_owned(), Value::String(stamp.sender.clone()));
    fields.insert(
        "source".to_owned(),
        Value::String(stamp.source.as_str().to_owned()),
    );
    let bytes = serde_json::to_vec(&canonical(Value::Object(fields)))
        .map_err(|_| EntryError::NotAnObject)?;
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Whether object keys are already sorted at every level (they are when
/// serde_json's map is its default BTreeMap): then nothing is rebuilt.
fn is_canonical(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b) && map.values().all(is_canonical)
        }
        Value::Array(items) => items.iter().all(is_canonical),
        _ => true,
    }
}

/// Object keys sorted at every level, whatever serde_json's map order is.
fn canonical(value: Value) -> Value {
    if is_canonical(&value) {
        return value;
    }
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::macros::datetime;

    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            received: datetime!(2026-11-25 10:00:00 UTC),
            sender: "machine:bastion-1".to_owned(),
            source: Source::Api,
        }
    }

    #[test]
    fn canonical_form_is_sorted_stamped_and_utc() {
        let bytes = canonical_entry(
            json!({"z": {"b": 1, "a": 2}, "kind": "ssh.auth", "ts": "2026-11-25T11:00:00+01:00", "outcome": "success"}),
            &stamp(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"kind":"ssh.auth","outcome":"success","received":"2026-11-25T10:00:00Z","sender":"machine:bastion-1","source":"api","ts":"2026-11-25T10:00:00Z","z":{"a":2,"b":1}}"#
        );
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let check = |value: Value, expect: EntryError| {
            assert_eq!(canonical_entry(value, &stamp()), Err(expect));
        };
        check(json!([1]), EntryError::NotAnObject);
        check(json!({"msg": "x"}), EntryError::MissingKind);
        check(
            json!({"kind": "x", "seq": 3}),
            EntryError::Reserved("seq".into()),
        );
        check(
            json!({"kind": "x", "sender": "root"}),
            EntryError::Reserved("sender".into()),
        );
        assert!(matches!(
            canonical_entry(json!({"kind": "Bad Kind"}), &stamp()),
            Err(EntryError::BadField { field: "kind", .. })
        ));
        assert!(matches!(
            canonical_entry(json!({"kind": "x", "ts": "yesterday"}), &stamp()),
            Err(EntryError::BadField { field: "ts", .. })
        ));
        assert!(matches!(
            canonical_entry(json!({"kind": "x", "outcome": "maybe"}), &stamp()),
            Err(EntryError::BadField {
                field: "outcome",
                ..
            })
        ));
        assert!(matches!(
            canonical_entry(json!({"kind": "x", "host": 3}), &stamp()),
            Err(EntryError::BadField { field: "host", .. })
        ));
        let big = "x".repeat(MAX_ENTRY_BYTES);
        assert!(matches!(
            canonical_entry(json!({"kind": "x", "msg": big}), &stamp()),
            Err(EntryError::TooLarge(_))
        ));
    }

    /// Regression (found by the fuzzer): a number that is not an exact f64
    /// must print and parse back to the same bytes, or a verifier that
    /// re-canonicalises a shown entry gets another leaf hash. serde_json's
    /// `float_roundtrip` makes its parsing correctly rounded.
    #[test]
    fn canonical_numbers_survive_a_round_trip() {
        let value: Value = serde_json::from_str(
            r#"{"kind":"p","d":266666666666666666666666666666666666666666,"f":0.1}"#,
        )
        .unwrap();
        let bytes = canonical_entry(value, &stamp()).unwrap();
        let again: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json::to_vec(&again).unwrap(), bytes);
    }

    #[test]
    fn kinds() {
        for good in [
            "ssh.auth",
            "access.review.approve",
            "syslog",
            "db.query",
            "a1.b_2",
        ] {
            assert!(valid_kind(good), "{good}");
        }
        for bad in ["", ".", "a.", ".a", "A", "a b", "1a", &"a".repeat(129)] {
            assert!(!valid_kind(bad), "{bad}");
        }
    }
}
