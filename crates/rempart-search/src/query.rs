//! The search language: space-separated terms, ANDed.

use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Exact(String),
    /// `ssh.*`: every kind under `ssh.`
    Prefix(String),
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub host: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
    pub kind: Option<Kind>,
    /// Any other `field:value`.
    pub fields: Vec<(String, String)>,
    /// Words and phrases that must appear in the entry's text.
    pub text: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{term:?}: {problem}")]
    Term { term: String, problem: String },
    #[error("an unclosed quote")]
    UnclosedQuote,
}

fn bad(term: &str, problem: &str) -> QueryError {
    QueryError::Term {
        term: term.to_owned(),
        problem: problem.to_owned(),
    }
}

/// Splits on spaces, keeping "quoted phrases" (and `field:"quoted value"`).
fn tokens(text: &str) -> Result<Vec<String>, QueryError> {
    let (mut out, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(QueryError::UnclosedQuote);
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// `2h`, `30m`, `7d`, `45s`, `1w` before `now`; or an RFC 3339 time; or a date.
fn time_term(term: &str, value: &str, now: OffsetDateTime) -> Result<OffsetDateTime, QueryError> {
    if let Some(unit) = value.chars().last().filter(|c| c.is_ascii_alphabetic())
        && let Ok(amount) = value[..value.len() - 1].parse::<i64>()
    {
        let span = match unit {
            's' => Duration::seconds(amount),
            'm' => Duration::minutes(amount),
            'h' => Duration::hours(amount),
            'd' => Duration::days(amount),
            'w' => Duration::weeks(amount),
            _ => return Err(bad(term, "a relative time ends in s, m, h, d or w")),
        };
        return Ok(now - span);
    }
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(at);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(value, &format) {
        return Ok(date.midnight().assume_utc());
    }
    Err(bad(
        term,
        "expected 2h, 30m, 7d, an RFC 3339 time or a YYYY-MM-DD date",
    ))
}

impl Query {
    /// Whether an entry matches, evaluated on the entry itself (for `log
    /// tail QUERY`, which filters live entries before they are indexed).
    /// Text terms match the message, reason, SQL or command, ignoring case.
    pub fn matches(&self, entry: &serde_json::Value) -> bool {
        let field = |key: &str| entry.get(key).and_then(serde_json::Value::as_str);
        let equals = |key: &str, wanted: &Option<String>| {
            wanted
                .as_ref()
                .is_none_or(|w| field(key) == Some(w.as_str()))
        };
        let ts = field("ts").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        let in_window = self.since.is_none_or(|s| ts.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| ts.is_some_and(|t| t < u));
        let kind_ok = match &self.kind {
            None => true,
            Some(Kind::Exact(kind)) => field("kind") == Some(kind.as_str()),
            Some(Kind::Prefix(prefix)) => field("kind").is_some_and(|k| {
                k == prefix
                    || k.strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            }),
        };
        let fields_ok = self.fields.iter().all(|(key, value)| match entry.get(key) {
            Some(serde_json::Value::String(s)) => s == value,
            Some(serde_json::Value::Number(n)) => {
                value.parse::<serde_json::Number>().is_ok_and(|v| v == *n)
            }
            Some(serde_json::Value::Bool(b)) => value.parse::<bool>().is_ok_and(|v| v == *b),
            _ => false,
        });
        let text = crate::index::TEXT_FIELDS
            .iter()
            .filter_map(|key| field(key))
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
        let text_ok = self.text.iter().all(|t| text.contains(&t.to_lowercase()));
        in_window
            && kind_ok
            && fields_ok
            && text_ok
            && equals("host", &self.host)
            && equals("actor", &self.actor)
            && equals("target", &self.target)
            && equals("outcome", &self.outcome)
    }

    /// Parses `text`; relative times count back from `now`.
    pub fn parse(text: &str, now: OffsetDateTime) -> Result<Query, QueryError> {
        let mut query = Query::default();
        for token in tokens(text)? {
            let Some((field, value)) = token.split_once(':').filter(|(f, _)| {
                !f.is_empty()
                    && !f.starts_with('"')
                    && f.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            }) else {
                let word = unquote(&token).to_owned();
                if word.is_empty() {
                    return Err(bad(&token, "an empty phrase"));
                }
                query.text.push(word);
                continue;
            };
            let value = unquote(value).to_owned();
            if value.is_empty() {
                return Err(bad(&token, "a field needs a value"));
            }
            match field {
                "since" => query.since = Some(time_term(&token, &value, now)?),
                "until" => query.until = Some(time_term(&token, &value, now)?),
                "host" => query.host = Some(value),
                "actor" => query.actor = Some(value),
                "target" => query.target = Some(value),
                "outcome" => {
                    if !["success", "failure", "denied"].contains(&value.as_str()) {
                        return Err(bad(&token, "outcome is success, failure or denied"));
                    }
                    query.outcome = Some(value);
                }
                "kind" => {
                    query.kind = Some(match value.strip_suffix(".*").or(value.strip_suffix('*')) {
                        Some(prefix) => Kind::Prefix(prefix.trim_end_matches('.').to_owned()),
                        None => Kind::Exact(value),
                    })
                }
                _ => query.fields.push((field.to_owned(), value)),
            }
        }
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since > until
        {
            return Err(bad("since/until", "the window ends before it starts"));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

    #[test]
    fn terms() {
        let q = Query::parse(
            r#"since:2h host:db-1 actor:alice kind:ssh.* outcome:failure src_ip:10.0.0.7 "invalid user" root"#,
            NOW,
        )
        .unwrap();
        assert_eq!(q.since, Some(datetime!(2026-11-25 10:00:00 UTC)));
        assert_eq!(q.host.as_deref(), Some("db-1"));
        assert_eq!(q.actor.as_deref(), Some("alice"));
        assert_eq!(q.kind, Some(Kind::Prefix("ssh".into())));
        assert_eq!(q.outcome.as_deref(), Some("failure"));
        assert_eq!(q.fields, vec![("src_ip".into(), "10.0.0.7".into())]);
        assert_eq!(q.text, vec!["invalid user".to_owned(), "root".to_owned()]);
        let q = Query::parse(
            "kind:ssh.auth until:2026-11-24 since:2026-11-01T00:00:00Z",
            NOW,
        )
        .unwrap();
        assert_eq!(q.kind, Some(Kind::Exact("ssh.auth".into())));
        assert_eq!(q.until, Some(datetime!(2026-11-24 00:00:00 UTC)));
        assert_eq!(Query::parse("", NOW).unwrap(), Query::default());
    }

    #[test]
    fn errors_name_the_term() {
        for (text, needle) in [
            ("since:2y", "since:2y"),
            ("since:yesterday", "since:yesterday"),
            ("outcome:maybe", "outcome:maybe"),
            ("host:", "host:"),
            ("\"unclosed", "unclosed"),
            ("since:1h until:2h", "ends before"),
        ] {
            let err = Query::parse(text, NOW).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
