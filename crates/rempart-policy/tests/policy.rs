//! The policy language: the example data centre resolves as written, and
//! each kind of bad input is refused with its file, line and reason.

use std::path::Path;

use rempart_policy::{Endpoint, InvariantKind, PolicyError, parse};

const EXAMPLE: &str = include_str!("../../../examples/datacenter/policy.toml");

fn example_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/datacenter"
    ))
}

#[test]
fn the_example_data_centre_resolves() {
    let policy = rempart_policy::load(example_dir()).expect("the example loads");
    assert_eq!(policy.hosts.len(), 6);
    let names = |group: &str| -> Vec<String> {
        policy.groups[group]
            .iter()
            .map(|&h| policy.hosts[h].name.clone())
            .collect()
    };
    assert_eq!(names("api"), vec!["api-1", "api-2"], "by label");
    assert_eq!(
        names("servers"),
        vec!["edge", "api-1", "api-2", "db"],
        "nested"
    );
    assert_eq!(policy.rules.len(), 7);
    assert_eq!(policy.rules[0].from.name(), "internet");
    // The internet is every address outside the zones.
    let Endpoint::Networks { nets, .. } = &policy.rules[0].from else {
        panic!("internet is a network");
    };
    let inside: std::net::IpAddr = "10.10.1.11".parse().expect("ip");
    let outside: std::net::IpAddr = "10.11.0.1".parse().expect("ip");
    let public: std::net::IpAddr = "2001:db8::1".parse().expect("ip");
    assert!(!nets.iter().any(|n| n.contains(&inside)));
    assert!(nets.iter().any(|n| n.contains(&outside)));
    assert!(nets.iter().any(|n| n.contains(&public)));
    assert_eq!(policy.rules[0].items[0].to_string(), "tcp/443");
    assert_eq!(policy.rules[4].ticket, "SEC-12");
    assert_eq!(policy.invariants.len(), 3);
    assert_eq!(policy.invariants[2].kind, InvariantKind::Never);
    assert!(policy.rules.iter().all(|r| r.file.ends_with("policy.toml")));
    assert_eq!(
        policy.rules[0].line,
        line_of(EXAMPLE, "from = \"internet\"")
    );
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle present")
}

/// The example with `old` replaced by `new`: the error names the line of
/// `new` and contains `message`.
fn refused(old: &str, new: &str, message: &str) -> PolicyError {
    refused_at(old, new, new.lines().last().unwrap_or(new).trim(), message)
}

/// As [`refused`], the error on the line holding `needle`.
fn refused_at(old: &str, new: &str, needle: &str, message: &str) -> PolicyError {
    assert!(EXAMPLE.contains(old), "{old:?} not in the example");
    let text = EXAMPLE.replacen(old, new, 1);
    let err = parse(&[("dc.toml", &text)]).expect_err(message);
    assert_eq!(err.file, "dc.toml");
    assert_eq!(err.line, line_of(&text, needle), "{err}");
    assert!(err.message.contains(message), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("dc.toml:{}:", err.line)),
        "{err}"
    );
    err
}

#[test]
fn bad_input_names_file_line_and_problem() {
    refused("\"10.10.0.0/16\"", "\"10.10.0.0/33\"", "not a CIDR");
    refused(
        "\"10.10.0.0/16\"",
        "\"10.10.0.1/16\"",
        "host bits set: did you mean 10.10.0.0/16?",
    );
    refused(
        "networks = [\"10.20.0.0/16\", \"fd20::/48\"]",
        "networks = [\"10.10.128.0/17\", \"fd20::/48\"]",
        "overlaps a network of zone dc",
    );
    refused("\"tcp/443\"", "\"tcp/0\"", "a port is 1 to 65535");
    refused("\"tcp/443\"", "\"tcp/65536\"", "a port is 1 to 65535");
    refused(
        "to = \"group:api\"",
        "to = \"group:apis\"",
        "unknown group \"apis\"",
    );
    refused(
        "service = \"postgres\"",
        "service = \"postgresql\"",
        "unknown service \"postgresql\"",
    );
    // The cycle closes at the member of `servers` that leads back.
    refused_at(
        "members = [\"group:edge\", \"group:api\", \"group:db\"]",
        "members = [\"group:edge\", \"group:api\", \"group:db\", \"group:everything\"]\n\n[[group]]\nname = \"everything\"\nmembers = [\"group:servers\"]",
        "\"group:everything\"]",
        "groups nest in a cycle: everything → servers → everything",
    );
    refused(
        "addresses = [\"10.10.9.9\", \"fd10::9:9\"]",
        "addresses = [\"10.10.9.9\", \"fd20::9:9\"]",
        "host bastion is in two zones: dc (its zone) and office",
    );
    refused(
        "comment = \"the only thing",
        "commment = \"the only thing",
        "unknown field `commment`",
    );
    let twice = EXAMPLE.replacen("name = \"api-2\"", "name = \"api-1\"", 1);
    let err = parse(&[("dc.toml", &twice)]).expect_err("a name twice");
    let second = twice
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("name = \"api-1\""))
        .nth(1)
        .map(|(i, _)| i + 1);
    assert_eq!(Some(err.line), second, "{err}");
    let first = line_of(&twice, "name = \"api-1\"");
    assert_eq!(
        err.message,
        format!("host api-1 is already defined at dc.toml:{first}")
    );
    refused_at(
        "to = \"group:edge\"\nservice = \"https\"\ncomment",
        "to = \"group:edge\"\nservice = \"https\"\nexpires = \"soon\"\ncomment",
        "expires = \"soon\"",
        "expected a TOML datetime",
    );
    refused(
        "kind = \"never\"",
        "kind = \"sometimes\"",
        "only-from, never or only-to",
    );
    refused(
        "from = \"host:office-pc\"",
        "from = \"office-pc\"",
        "write host:NAME",
    );
}

#[test]
fn a_folder_is_one_policy_and_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (zones_hosts, rest) = EXAMPLE
        .split_once("[[group]]")
        .expect("the example has groups");
    std::fs::write(dir.path().join("10-hosts.toml"), zones_hosts).expect("write");
    std::fs::write(dir.path().join("20-rules.toml"), format!("[[group]]{rest}")).expect("write");
    let policy = rempart_policy::load(dir.path()).expect("loads as one");
    assert_eq!(policy.rules.len(), 7);
    assert!(policy.rules[0].file.ends_with("20-rules.toml"));
    std::fs::write(
        dir.path().join("30-more.toml"),
        "[[rule]]\nfrom = \"group:api\"\nto = \"host:nowhere\"\nservice = \"ssh\"\n",
    )
    .expect("write");
    let err = rempart_policy::load(dir.path()).expect_err("unknown host");
    assert!(err.file.ends_with("30-more.toml"), "{err}");
    assert_eq!(err.line, 3);
    assert!(err.message.contains("unknown host \"nowhere\""), "{err}");
}

#[test]
fn expired_rules_are_known() {
    let text = EXAMPLE.replacen(
        "ticket = \"SEC-12\"",
        "ticket = \"SEC-12\"\nexpires = 2026-06-30",
        1,
    );
    let policy = parse(&[("dc.toml", &text)]).expect("parses");
    let day = |s: &str| {
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
            .expect("day")
    };
    assert!(policy.expired_rules(day("2026-06-29")).is_empty());
    let expired = policy.expired_rules(day("2026-11-26"));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].ticket, "SEC-12");
}

/// Compiled rulesets are compared byte for byte with the files in
/// `tests/snapshots/` (run with UPDATE_SNAPSHOTS=1 to rewrite them after a
/// deliberate change, then review the diff).
#[test]
fn compiled_rulesets_match_their_snapshots() {
    let policy = rempart_policy::load(example_dir()).expect("the example loads");
    let today = time::macros::date!(2026 - 11 - 26);
    for host in ["edge", "api-1", "db", "bastion", "office-pc"] {
        let compiled = rempart_policy::compile(&policy, host, today).expect("compiles");
        let again = rempart_policy::compile(&policy, host, today).expect("compiles");
        assert_eq!(compiled, again, "deterministic");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(format!("{host}.nft"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &compiled.script).expect("write the snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&path).expect("a snapshot (UPDATE_SNAPSHOTS=1)");
        assert_eq!(
            compiled.script, expected,
            "{host}: the compiled ruleset changed"
        );
    }
    assert!(matches!(
        rempart_policy::compile(&policy, "nowhere", today),
        Err(rempart_policy::CompileError::UnknownHost(_))
    ));
}

#[test]
fn expired_rules_are_not_emitted_and_are_reported() {
    let text = EXAMPLE.replacen(
        "ticket = \"SEC-12\"",
        "ticket = \"SEC-12\"\nexpires = 2026-06-30",
        1,
    );
    let policy = parse(&[("dc.toml", &text)]).expect("parses");
    let before = rempart_policy::compile(&policy, "office-pc", time::macros::date!(2026 - 06 - 29))
        .expect("compiles");
    assert!(
        before.script.contains("tcp dport 22 accept"),
        "{}",
        before.script
    );
    assert!(before.expired.is_empty());
    let after = rempart_policy::compile(&policy, "office-pc", time::macros::date!(2026 - 07 - 01))
        .expect("compiles");
    assert!(
        !after.script.contains("tcp dport 22 accept"),
        "{}",
        after.script
    );
    assert_eq!(after.expired.len(), 1);
    assert_eq!(after.expired[0].0, "dc.toml");
}

/// The example keeps its invariants; each kind of breach is found, with the
/// rule that causes it and a flow it lets through.
#[test]
fn invariants_are_checked_with_an_example_flow() {
    let today = time::macros::date!(2026 - 11 - 26);
    let policy = rempart_policy::load(example_dir()).expect("loads");
    assert_eq!(rempart_policy::check(&policy, today), vec![]);

    let broken = |extra: &str| {
        let text = format!("{EXAMPLE}\n{extra}");
        let policy = parse(&[("dc.toml", &text)]).expect("parses");
        let violations = rempart_policy::check(&policy, today);
        assert_eq!(violations.len(), 1, "{violations:?}");
        (violations[0].clone(), text)
    };
    let (v, text) =
        broken("[[rule]]\nfrom = \"host:office-pc\"\nto = \"group:api\"\nservice = \"ssh\"\n");
    assert_eq!(v.invariant, "ssh on servers only from the bastions");
    assert_eq!(v.example.to_string(), "10.20.0.50 → 10.10.1.11 tcp/22");
    assert_eq!(v.rule_line, text.lines().count() - 2);
    assert!(
        v.to_string().contains("is broken by the rule at dc.toml:"),
        "{v}"
    );

    let (v, _) = broken("[[rule]]\nfrom = \"group:db\"\nto = \"internet\"\nservice = \"https\"\n");
    assert_eq!(v.invariant, "the database never talks to the internet");
    assert_eq!(v.example.from.to_string(), "10.10.2.20");

    let (v, _) = broken("[[rule]]\nfrom = \"internet\"\nto = \"group:api\"\nservice = \"api\"\n");
    assert_eq!(
        v.invariant,
        "nothing from the internet but https to the edge"
    );
    assert_eq!(v.example.to.to_string(), "10.10.1.11");

    // The right place but another port: still a breach of only-to.
    let (v, _) = broken("[[rule]]\nfrom = \"internet\"\nto = \"group:edge\"\nservice = \"api\"\n");
    assert_eq!(v.example.service.to_string(), "tcp/8080");

    // An expired rule breaks nothing.
    let text = format!(
        "{EXAMPLE}\n[[rule]]\nfrom = \"host:office-pc\"\nto = \"group:api\"\nservice = \"ssh\"\nexpires = 2026-01-01\n"
    );
    let policy = parse(&[("dc.toml", &text)]).expect("parses");
    assert!(rempart_policy::check(&policy, today).is_empty());
}

#[test]
fn reach_and_blast_of_the_example() {
    use rempart_policy::analysis::{Party, blast, reach};
    let today = time::macros::date!(2026 - 11 - 26);
    let policy = rempart_policy::load(example_dir()).expect("loads");
    let all = reach(&policy, today);
    let line = |from: &str, to: &str| {
        all.iter()
            .filter(|r| r.from.to_string() == from && r.to.to_string() == to)
            .map(|r| r.service.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(line("internet", "host:edge"), vec!["https"]);
    assert_eq!(line("host:bastion", "host:db"), vec!["ping", "ssh"]);
    assert!(line("host:api-1", "host:api-2").is_empty());
    assert!(line("host:db", "internet").is_empty());
    assert!(
        line("host:office-pc", "host:db").is_empty(),
        "only through the bastion"
    );

    let names = |host: &str| {
        blast(&policy, host, today)
            .into_iter()
            .map(|(party, path)| (party.to_string(), path.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names("api-1"), vec![("host:db".to_owned(), 1)]);
    assert_eq!(names("db"), vec![]);
    assert_eq!(
        names("office-pc"),
        vec![
            ("host:bastion".to_owned(), 1),
            ("host:api-1".to_owned(), 2),
            ("host:api-2".to_owned(), 2),
            ("host:db".to_owned(), 2),
            ("host:edge".to_owned(), 2),
            ("internet".to_owned(), 3),
        ]
    );
    let from_edge = blast(&policy, "edge", today);
    let (_, path) = from_edge
        .iter()
        .find(|(p, _)| *p == Party::Host("db".into()))
        .expect("db is reached from edge");
    let hops: Vec<String> = path
        .iter()
        .map(|h| format!("{} -{}-> {}", h.from, h.service, h.to))
        .collect();
    assert_eq!(
        hops,
        vec![
            "host:edge -api-> host:api-1",
            "host:api-1 -postgres-> host:db"
        ]
    );
}

#[test]
fn lint_finds_rules_that_do_nothing_or_too_much() {
    use rempart_policy::lint::{Finding, lint};
    let today = time::macros::date!(2026 - 11 - 26);
    let policy = rempart_policy::load(example_dir()).expect("loads");
    assert_eq!(lint(&policy, today), vec![], "the example is clean");

    let extra = "\n[[group]]\nname = \"nobody\"\n\
        \n[[rule]]\nfrom = \"group:api\"\nto = \"host:db\"\nservice = \"postgres\"\n\
        \n[[rule]]\nfrom = \"group:nobody\"\nto = \"host:db\"\nservice = \"ssh\"\n\
        \n[[rule]]\nfrom = \"internet\"\nto = \"host:api-1\"\nservice = \"api\"\n\
        \n[[rule]]\nfrom = \"host:office-pc\"\nto = \"host:edge\"\nservice = \"https\"\nexpires = 2026-01-01\n\
        \n[[rule]]\nfrom = \"host:api-1\"\nto = \"group:db\"\nservice = \"postgres\"\n";
    let text = format!("{EXAMPLE}{extra}");
    // The last rule comes after one it repeats for api-1 only.
    let policy = parse(&[("dc.toml", &text)]).expect("parses");
    let findings = lint(&policy, today);
    let line = |needle: &str| line_of(&text, needle);
    let rule3 = line_of(EXAMPLE, "from = \"group:api\"");
    let shadowed_line = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("from = \"group:api\""))
        .nth(1)
        .map(|(i, _)| i + 1)
        .expect("the repeated rule");
    let kinds: Vec<(usize, &Finding)> = findings.iter().map(|f| (f.line, &f.finding)).collect();
    assert!(
        kinds.contains(&(shadowed_line, &Finding::Shadowed { by: vec![rule3] })),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.line == line("from = \"group:nobody\"")
                && matches!(&f.finding, Finding::NamesNothing { side: "source", .. })),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| matches!(&f.finding, Finding::OverBroad { to, .. } if to == "host:api-1")),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| matches!(&f.finding, Finding::Expired { .. })),
        "{findings:#?}"
    );
    // The last rule is shadowed by rule 3 too; rule 3 itself is not
    // redundant (the api-1 rule covers only part of it).
    let last = line("from = \"host:api-1\"");
    assert!(
        kinds.contains(&(last, &Finding::Shadowed { by: vec![rule3] })),
        "{findings:#?}"
    );
    assert!(!kinds.iter().any(|(l, _)| *l == rule3), "{findings:#?}");
    assert!(
        findings[0].to_string().starts_with("dc.toml:"),
        "{}",
        findings[0]
    );
}

/// `zone:NAME` is every address of a zone, declared host or not: the
/// office's whole network can be named in a rule, and compiles to an
/// interval set of the zone's CIDRs.
#[test]
fn a_zone_is_an_endpoint() {
    let text = EXAMPLE.replacen("from = \"host:office-pc\"", "from = \"zone:office\"", 1);
    let policy = parse(&[("dc.toml", &text)]).expect("parses");
    let rule = &policy.rules[4];
    let Endpoint::Networks { name, nets } = &rule.from else {
        panic!("a zone is networks: {:?}", rule.from);
    };
    assert_eq!(name, "zone:office");
    let office: Vec<String> = nets.iter().map(ToString::to_string).collect();
    assert_eq!(office, ["10.20.0.0/16", "fd20::/48"]);
    let bastion = rempart_policy::compile(&policy, "bastion", time::macros::date!(2026 - 11 - 26))
        .expect("compiles");
    assert!(
        bastion.script.contains("set zone_office_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.20.0.0/16 }"),
        "{}",
        bastion.script
    );
    assert!(
        bastion
            .script
            .contains("ip saddr @zone_office_v4 tcp dport 22 accept"),
        "{}",
        bastion.script
    );
    refused(
        "from = \"host:office-pc\"",
        "from = \"zone:offices\"",
        "unknown zone \"offices\"",
    );
}
