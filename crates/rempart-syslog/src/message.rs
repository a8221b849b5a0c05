//! RFC 5424 and RFC 3164 messages, parsed as far as they go: a line that
//! fits neither is still kept whole as the message (nothing is lost).

use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::sshd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Rfc5424,
    Rfc3164,
    /// Neither: kept whole as the message.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub format: Format,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub timestamp: Option<OffsetDateTime>,
    pub host: Option<String>,
    pub app: Option<String>,
    pub pid: Option<String>,
    pub msgid: Option<String>,
    /// RFC 5424 structured data, as sent.
    pub structured_data: Option<String>,
    pub msg: String,
    /// The line as it arrived (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("an empty message")]
    Empty,
}

/// Parses one message. `received` supplies the year RFC 3164 leaves out.
pub fn parse(bytes: &[u8], received: OffsetDateTime) -> Result<Message, ParseError> {
    let raw = String::from_utf8_lossy(bytes).into_owned();
    let line = raw.trim_end_matches(['\n', '\r', '\0']);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (pri, rest) = split_pri(line);
    let mut message = parse_5424(pri, rest)
        .or_else(|| parse_3164(pri, rest, received))
        .unwrap_or_else(|| Message {
            format: Format::Unknown,
            facility: pri.map(|p| p / 8),
            severity: pri.map(|p| p % 8),
            timestamp: None,
            host: None,
            app: None,
            pid: None,
            msgid: None,
            structured_data: None,
            msg: rest.to_owned(),
            raw: String::new(),
        });
    message.raw = line.to_owned();
    Ok(message)
}

/// `<PRI>` at the start (0 to 191), if there is one.
fn split_pri(line: &str) -> (Option<u8>, &str) {
    let Some(rest) = line.strip_prefix('<') else {
        return (None, line);
    };
    let Some(end) = rest.find('>').filter(|end| (1..=3).contains(end)) else {
        return (None, line);
    };
    match rest[..end].parse::<u8>() {
        Ok(pri) if pri <= 191 && rest[..end].bytes().all(|b| b.is_ascii_digit()) => {
            (Some(pri), &rest[end + 1..])
        }
        _ => (None, line),
    }
}

fn nil(field: &str) -> Option<String> {
    (field != "-").then(|| field.to_owned())
}

/// `VERSION SP TIMESTAMP SP HOST SP APP SP PROCID SP MSGID SP SD [SP MSG]`.
fn parse_5424(pri: Option<u8>, rest: &str) -> Option<Message> {
    let pri = pri?;
    let rest = rest.strip_prefix("1 ")?;
    let mut fields = rest.splitn(6, ' ');
    let timestamp = fields.next()?;
    let host = fields.next()?;
    let app = fields.next()?;
    let pid = fields.next()?;
    let msgid = fields.next()?;
    let tail = fields.next().unwrap_or("");
    let timestamp = match timestamp {
        "-" => None,
        text => Some(
            OffsetDateTime::parse(text, &Rfc3339)
                .ok()?
                .to_offset(time::UtcOffset::UTC),
        ),
    };
    let (structured_data, msg) = split_structured_data(tail)?;
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    Some(Message {
        format: Format::Rfc5424,
        facility: Some(pri / 8),
        severity: Some(pri % 8),
        timestamp,
        host: nil(host),
        app: nil(app),
        pid: nil(pid),
        msgid: nil(msgid),
        structured_data,
        msg: msg.to_owned(),
        raw: String::new(),
    })
}

/// Structured data is `-` or `[...]` elements; inside quoted values `\]`,
/// `\"` and `\\` are escapes.
fn split_structured_data(tail: &str) -> Option<(Option<String>, &str)> {
    if tail == "-" {
        return Some((None, ""));
    }
    if let Some(msg) = tail.strip_prefix("- ") {
        return Some((None, msg));
    }
    if !tail.starts_with('[') {
        return None;
    }
    let bytes = tail.as_bytes();
    let (mut i, mut in_quotes) = (0, false);
    let mut depth_closed_at = None;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            // Another element may follow directly; otherwise this ends them.
            b']' if !in_quotes && bytes.get(i + 1) != Some(&b'[') => {
                depth_closed_at = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let end = depth_closed_at?;
    let sd = tail[..=end].to_owned();
    let msg = tail[end + 1..]
        .strip_prefix(' ')
        .unwrap_or(&tail[end + 1..]);
    Some((Some(sd), msg))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mmm dd hh:mm:ss HOST TAG[PID]: MSG` (the host may be missing).
fn parse_3164(pri: Option<u8>, rest: &str, received: OffsetDateTime) -> Option<Message> {
    if rest.len() < 16 || !rest.is_char_boundary(15) {
        return None;
    }
    let (stamp, after) = rest.split_at(15);
    let timestamp = parse_3164_time(stamp, received)?;
    let after = after.strip_prefix(' ')?;
    let (first, remainder) = after.split_once(' ').unwrap_or((after, ""));
    // A first word that is a tag (`sshd[12]:`, `cron:`) means no host.
    let (host, tagged) = if first.ends_with(':') {
        (None, after)
    } else {
        (Some(first.to_owned()), remainder)
    };
    let (app, pid, msg) = split_tag(tagged);
    Some(Message {
        format: Format::Rfc3164,
        facility: pri.map(|p| p / 8),
        severity: pri.map(|p| p % 8),
        timestamp: Some(timestamp),
        host,
        app,
        pid,
        msgid: None,
        structured_data: None,
        msg: msg.to_owned(),
        raw: String::new(),
    })
}

/// `Mmm dd hh:mm:ss`, in the year that puts it closest before `received`
/// (UTC: RFC 3164 carries no time zone).
fn parse_3164_time(stamp: &str, received: OffsetDateTime) -> Option<OffsetDateTime> {
    let month = MONTHS.iter().position(|m| stamp.get(..3) == Some(*m))?;
    let month = Month::try_from(month as u8 + 1).ok()?;
    let day: u8 = stamp.get(4..6)?.trim_start().parse().ok()?;
    let clock = stamp.get(7..15)?;
    let mut parts = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (hour, minute, second) = (parts.next()??, parts.next()??, parts.next()??);
    let time = Time::from_hms(hour, minute, second).ok()?;
    let at = |year| {
        Date::from_calendar_date(year, month, day)
            .ok()
            .map(|d| PrimitiveDateTime::new(d, time).assume_utc())
    };
    let this_year = at(received.year())?;
    if this_year - received > time::Duration::days(1) {
        at(received.year() - 1)
    } else {
        Some(this_year)
    }
}

/// `program[pid]: message` or `program: message`; anything else is all message.
fn split_tag(text: &str) -> (Option<String>, Option<String>, &str) {
    let Some((tag, msg)) = text
        .split_once(": ")
        .or_else(|| text.strip_suffix(':').map(|t| (t, "")))
    else {
        return (None, None, text);
    };
    if tag.is_empty() || tag.len() > 64 || tag.contains(' ') {
        return (None, None, text);
    }
    match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((app, pid)) if !app.is_empty() => (Some(app.to_owned()), Some(pid.to_owned()), msg),
        _ => (Some(tag.to_owned()), None, msg),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The well-log event for a message: `ssh.auth` for sshd's logins, `syslog`
/// for the rest, with the raw line kept.
pub fn to_event(message: &Message, received: OffsetDateTime) -> Value {
    let mut event = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            event.insert(key.to_owned(), value);
        }
    };
    put(
        "ts",
        Some(json!(rfc3339(message.timestamp.unwrap_or(received)))),
    );
    put("host", message.host.clone().map(Value::from));
    put("program", message.app.clone().map(Value::from));
    put("pid", message.pid.clone().map(Value::from));
    put("msgid", message.msgid.clone().map(Value::from));
    put("facility", message.facility.map(Value::from));
    put("severity", message.severity.map(Value::from));
    put(
        "structured_data",
        message.structured_data.clone().map(Value::from),
    );
    put("msg", Some(json!(message.msg)));
    put("raw", Some(json!(message.raw)));
    let login = (message.app.as_deref() == Some("sshd"))
        .then(|| sshd::recognise(&message.msg))
        .flatten();
    match login {
        Some(login) => {
            put("kind", Some(json!("ssh.auth")));
            put("actor", Some(json!(login.user)));
            put(
                "outcome",
                Some(json!(if login.accepted { "success" } else { "failure" })),
            );
            put("src_ip", Some(json!(login.source_ip)));
            put("src_port", login.source_port.map(Value::from));
            put("auth_method", login.method.map(Value::from));
            if login.invalid_user {
                put("reason", Some(json!("invalid user")));
            }
        }
        None => put("kind", Some(json!("syslog"))),
    }
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const RECEIVED: OffsetDateTime = datetime!(2026-12-10 12:00:00 UTC);

    #[test]
    fn rfc_5424_examples() {
        // RFC 5424 §6.5, examples 1 and 3.
        let m = parse(
            b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
            RECEIVED,
        )
        .unwrap();
        assert_eq!(m.format, Format::Rfc5424);
        assert_eq!((m.facility, m.severity), (Some(4), Some(2)));
        assert_eq!(m.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.app.as_deref(), Some("su"));
        assert_eq!(m.pid, None);
        assert_eq!(m.msgid.as_deref(), Some("ID47"));
        assert_eq!(m.msg, "'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(m.timestamp, Some(datetime!(2003-10-11 22:14:15.003 UTC)));

        let m = parse(
            br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event"#,
            RECEIVED,
        )
        .unwrap();
        assert_eq!(
            m.structured_data.as_deref(),
            Some(
                r#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#
            )
        );
        assert_eq!(m.msg, "An application event");

        let escaped = parse(br#"<13>1 - h a - - [x@1 k="a\]b"] msg"#, RECEIVED).unwrap();
        assert_eq!(
            escaped.structured_data.as_deref(),
            Some(r#"[x@1 k="a\]b"]"#)
        );
        assert_eq!(escaped.msg, "msg");
    }

    #[test]
    fn rfc_3164_with_and_without_priority_or_host() {
        let m = parse(
            b"<38>Dec  1 06:55:46 LabSZ sshd[24200]: Invalid user x from 1.2.3.4",
            RECEIVED,
        )
        .unwrap();
        assert_eq!(m.format, Format::Rfc3164);
        assert_eq!((m.facility, m.severity), (Some(4), Some(6)));
        assert_eq!(m.timestamp, Some(datetime!(2026-12-01 06:55:46 UTC)));
        assert_eq!(
            (m.host.as_deref(), m.app.as_deref(), m.pid.as_deref()),
            (Some("LabSZ"), Some("sshd"), Some("24200"))
        );
        let m = parse(b"Dec 10 06:55:46 cron: job done", RECEIVED).unwrap();
        assert_eq!(
            (m.host, m.app.as_deref(), m.msg.as_str()),
            (None, Some("cron"), "job done")
        );
        // December seen on 1 January is last year's.
        let new_year = datetime!(2027-01-01 00:10:00 UTC);
        let m = parse(b"Dec 31 23:59:00 h p: m", new_year).unwrap();
        assert_eq!(m.timestamp, Some(datetime!(2026-12-31 23:59:00 UTC)));
    }

    #[test]
    fn anything_else_is_kept_whole() {
        for line in [
            &b"hello world"[..],
            b"<999>x",
            b"<13>1 bad-time h a - - - m",
            b"\xff\xfe bytes",
            b"Dec 99 99:99:99 h p: m",
        ] {
            let m = parse(line, RECEIVED).unwrap();
            assert!(!m.raw.is_empty(), "{line:?}");
            assert!(!m.msg.is_empty() || m.format != Format::Unknown, "{line:?}");
        }
        assert_eq!(parse(b"  \n", RECEIVED), Err(ParseError::Empty));
    }
}
