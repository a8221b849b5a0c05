//! The 2,000 real sshd lines of loghub's OpenSSH_2k.log: each parses into the
//! host, program, pid and message of the dataset's own structured CSV, and
//! sshd's logins are recognised exactly on the lines its templates mark.

use std::path::PathBuf;

use rempart_syslog::{Format, parse, sshd, to_event};
use time::macros::datetime;

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata/loghub")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CSV row, with double-quoted fields.
fn csv_row(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[test]
fn every_line_matches_the_structured_dataset() {
    let log = testdata("OpenSSH_2k.log");
    let csv = testdata("OpenSSH_2k.log_structured.csv");
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(csv_row).collect();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2000);
    assert_eq!(rows.len(), 2000);
    let received = datetime!(2026-12-31 00:00:00 UTC);
    let mut logins = 0;
    for (number, (line, row)) in lines.iter().zip(&rows).enumerate() {
        let (host, pid, content, event) = (&row[4], &row[5], &row[6], &row[7]);
        let message = parse(line.as_bytes(), received).unwrap();
        let at = format!("line {}", number + 1);
        assert_eq!(message.format, Format::Rfc3164, "{at}");
        assert_eq!(message.host.as_deref(), Some(host.as_str()), "{at}");
        assert_eq!(message.app.as_deref(), Some("sshd"), "{at}");
        assert_eq!(message.pid.as_deref(), Some(pid.as_str()), "{at}");
        assert_eq!(message.msg.trim_end(), content.trim_end(), "{at}");
        assert_eq!(message.raw, *line, "{at}");

        let login = sshd::recognise(&message.msg);
        let is_login = ["E1", "E8", "E9", "E10", "E13"].contains(&event.as_str());
        assert_eq!(login.is_some(), is_login, "{at}: {event} {content}");
        if let Some(login) = login {
            logins += 1;
            assert!(
                content.contains(&format!(" {} from {}", login.user, login.source_ip)),
                "{at}"
            );
            assert_eq!(login.accepted, event == "E1", "{at}");
            assert_eq!(
                login.invalid_user,
                ["E8", "E10", "E13"].contains(&event.as_str()),
                "{at}"
            );
            let entry = to_event(&message, received);
            assert_eq!(entry["kind"], "ssh.auth");
            assert_eq!(entry["actor"], login.user.as_str());
            assert_eq!(
                entry["outcome"],
                if login.accepted { "success" } else { "failure" }
            );
        } else {
            assert_eq!(to_event(&message, received)["kind"], "syslog");
        }
    }
    assert!(logins > 300, "only {logins} logins recognised");
}
