use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

#[test]
fn the_written_defaults_parse_back_to_the_defaults() {
    let parsed = Config::parse(&default_toml(NOW), "rempart.toml").unwrap();
    assert_eq!(parsed, Config::defaults(NOW));
    assert_eq!(
        parsed.security_txt.expires,
        datetime!(2027-11-25 12:00:00 UTC)
    );
}

#[test]
fn every_default_is_inside_its_range() {
    // Bounded::new_default skips the range check; this proves the defaults hold.
    let defaults = Config::defaults(NOW);
    let text = default_toml(NOW);
    assert_eq!(Config::parse(&text, "x").unwrap(), defaults);
    assert!(
        defaults
            .warnings(NOW)
            .iter()
            .any(|w| w.contains("example address"))
    );
}

/// Replaces the line starting with `key` in the default file by `line`.
fn with_line(key: &str, line: &str) -> String {
    default_toml(NOW)
        .lines()
        .map(|l| {
            if l.starts_with(key) {
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.starts_with(needle)).unwrap() + 1
}

fn check_error(text: String, needle: &str, expect_message: &str) {
    let err = Config::parse(&text, "/etc/rempart.toml").unwrap_err();
    assert_eq!(err.origin, "/etc/rempart.toml");
    assert_eq!(err.line, line_of(&text, needle), "{err}");
    assert!(err.message.contains(expect_message), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("/etc/rempart.toml:{}:", err.line)),
        "{err}"
    );
}

#[test]
fn bad_values_name_their_line() {
    check_error(
        with_line("listen", "listen = \"nowhere\""),
        "listen",
        "socket address",
    );
    check_error(
        with_line("server_cert_days", "server_cert_days = 0"),
        "server_cert_days",
        "out of range",
    );
    check_error(
        with_line("max_body_bytes", "max_body_bytes = -1"),
        "max_body_bytes",
        "out of range",
    );
    check_error(
        with_line("server_names", "server_names = [\"bad name\"]"),
        "server_names",
        "neither an IP",
    );
    check_error(
        with_line("contact", "contact = [\"http://x\"]"),
        "contact",
        "RFC 9116",
    );
    check_error(
        with_line("expires", "expires = \"tomorrow\""),
        "expires",
        "",
    );
    check_error(with_line("ttl_days", "ttl_days = \"ten\""), "ttl_days", "");
    check_error(
        with_line("server_names", "server_names = []"),
        "server_names",
        "at least one",
    );
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    check_error(
        with_line("listen", "lissten = \"127.0.0.1:1\""),
        "lissten",
        "unknown field `lissten`",
    );
    check_error(
        with_line("ttl_days", "ttl_dayz = 3"),
        "ttl_dayz",
        "unknown field `ttl_dayz`",
    );
    let text = format!("{}\n[extra]\nx = 1\n", default_toml(NOW));
    check_error(text, "[extra]", "unknown field `extra`");
}

#[test]
fn missing_keys_are_named() {
    let text = default_toml(NOW).replace("listen = \"127.0.0.1:8443\"\n", "");
    let err = Config::parse(&text, "c.toml").unwrap_err();
    assert!(err.message.contains("missing field `listen`"), "{err}");
}

#[test]
fn store_urls_never_appear_in_errors_or_debug() {
    let text = with_line("store", "store = \"mysql://root:hunter2@db\"");
    let err = Config::parse(&text, "c.toml").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let text = with_line("store", "store = \"postgres://root:hunter2@db/x\"");
    let config = Config::parse(&text, "c.toml").unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "=",
        "[[[",
        "listen = 1",
        "\u{0}",
        "a = \"\\u0000\"",
        "[tls]\n[tls]\n",
    ] {
        assert!(Config::parse(text, "g").is_err(), "{text:?}");
    }
}

#[test]
fn warnings_for_expired_security_txt_and_remote_listen() {
    let mut config = Config::defaults(NOW);
    let later = NOW + time::Duration::days(400);
    assert!(
        config
            .warnings(later)
            .iter()
            .any(|w| w.contains("in the past"))
    );
    config.listen = "0.0.0.0:8443".parse().unwrap();
    assert!(config.warnings(NOW).iter().any(|w| w.contains("loopback")));
}

#[test]
fn settings_added_later_are_optional() {
    // A file written before `welllog.ingest_memory_bytes` existed still parses,
    // with the default.
    let older: String = default_toml(NOW)
        .lines()
        .filter(|l| !l.starts_with("ingest_memory_bytes"))
        .map(|l| format!("{l}\n"))
        .collect();
    let parsed = Config::parse(&older, "rempart.toml").unwrap();
    assert_eq!(parsed, Config::defaults(NOW));
}

#[test]
fn access_rules_are_checked_where_they_are_written() {
    check_error(
        with_line("max_duration", "max_duration = \"8 hours\""),
        "max_duration",
        "unknown unit",
    );
    check_error(
        with_line("ticket_pattern", "ticket_pattern = \"[A-Z+\""),
        "ticket_pattern",
        "not a regular expression",
    );
    check_error(
        with_line("webhook", "webhook = \"http://hooks.example.com/x\""),
        "webhook",
        "loopback",
    );
    check_error(
        with_line("reviewer_role", "reviewer_role = \"boss\""),
        "reviewer_role",
        "",
    );
    check_error(
        with_line("labels = { data", "labels = { Data = \"pii\" }"),
        "labels = { Data",
        "lowercase",
    );
    for sneaky in [
        "http://127.0.0.1@evil.example/",
        "http://localhost:@evil.example/",
        "http://127.evil.example/",
        "ftp://127.0.0.1/",
        "https://user:secret@hooks.example.com/x",
    ] {
        check_error(
            with_line("webhook", &format!("webhook = \"{sneaky}\"")),
            "webhook",
            "a webhook is https://",
        );
    }
    let local = with_line("webhook", "webhook = \"http://127.0.0.1:9000/hook\"");
    let parsed = Config::parse(&local, "rempart.toml").unwrap();
    assert_eq!(
        parsed.access.webhook.url(),
        Some("http://127.0.0.1:9000/hook")
    );
    assert_eq!(parsed.access.max_duration.millis(), 8 * 3_600_000);
    assert_eq!(parsed.access.threshold[0].approvals.get(), 2);
}

#[test]
fn a_file_without_an_access_section_gets_the_default_rules() {
    let text = default_toml(NOW);
    let start = text.find("[access]").unwrap();
    let end = text.find("[security_txt]").unwrap();
    let older = format!("{}{}", &text[..start], &text[end..]);
    let parsed = Config::parse(&older, "rempart.toml").unwrap();
    assert_eq!(parsed, Config::defaults(NOW));
}
