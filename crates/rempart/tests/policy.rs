//! `rempart policy check` and `compile` on the example data centre and on
//! broken copies of it.

mod common;

use std::process::Command;

use common::{BIN, assert_refused, stderr, stdout};

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/datacenter")
}

fn rempart(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("runs")
}

#[test]
fn the_example_checks_and_compiles() {
    let dir = example();
    let out = rempart(&["policy", "check", dir.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "ok: 6 hosts, 5 groups, 7 rules; 3 invariants hold"
    );
    let out = rempart(&[
        "policy",
        "compile",
        dir.to_str().expect("utf-8"),
        "--host",
        "db",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("table inet rempart {"), "{script}");
    assert!(script.contains("tcp dport 5432 accept"), "{script}");
    assert_refused(
        &rempart(&[
            "policy",
            "compile",
            dir.to_str().expect("utf-8"),
            "--host",
            "nope",
        ]),
        "no host \"nope\"",
    );
}

#[test]
fn broken_policies_are_refused_with_their_place() {
    let work = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example().join("policy.toml")).expect("example");
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, text.replacen("\"tcp/443\"", "\"tcp/70000\"", 1)).expect("write");
    let out = rempart(&["policy", "check", bad.to_str().expect("utf-8")]);
    assert_refused(&out, "bad.toml:");
    assert!(
        stderr(&out).contains("a port is 1 to 65535"),
        "{}",
        stderr(&out)
    );

    let breach = work.path().join("breach.toml");
    std::fs::write(
        &breach,
        format!(
            "{text}\n[[rule]]\nfrom = \"host:office-pc\"\nto = \"group:db\"\nservice = \"ssh\"\n"
        ),
    )
    .expect("write");
    let out = rempart(&["policy", "check", breach.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1 invariant violation"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("e.g. 10.20.0.50 → 10.10.2.20 tcp/22"),
        "{}",
        stdout(&out)
    );
}

/// A network namespace made for one test, removed when dropped (also when
/// the test fails).
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("rempart-t-{}", common::random_hex(4));
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip runs");
        assert!(out.status.success(), "ip netns add: {}", stderr(&out));
        Netns(name)
    }

    /// `nft ARGS` inside the namespace, with `input` on standard input.
    fn nft(&self, args: &[&str], input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nft runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        child.wait_with_output().expect("nft ends")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Every host's compiled script is accepted by the real `nft`, replaces the
/// previous `table inet rempart` in one go, and leaves other tables alone.
#[test]
fn compiled_rulesets_apply_with_the_real_nft() {
    let ns = Netns::new();
    let other = ns.nft(
        &["-f", "-"],
        "table inet other {\n\tchain c {\n\t\ttype filter hook input priority 10; policy accept;\n\t}\n}\n",
    );
    assert!(other.status.success(), "{}", stderr(&other));
    let dir = example();
    for host in ["edge", "api-1", "api-2", "db", "bastion", "office-pc"] {
        let out = rempart(&[
            "policy",
            "compile",
            dir.to_str().expect("utf-8"),
            "--host",
            host,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let applied = ns.nft(&["-f", "-"], &stdout(&out));
        assert!(applied.status.success(), "{host}: {}", stderr(&applied));
        let listed = ns.nft(&["-j", "list", "table", "inet", "rempart"], "");
        assert!(listed.status.success(), "{}", stderr(&listed));
        let json: serde_json::Value =
            serde_json::from_slice(&listed.stdout).expect("nft -j is JSON");
        let comments: Vec<String> = json["nftables"]
            .as_array()
            .expect("objects")
            .iter()
            .filter_map(|o| o["rule"]["comment"].as_str().map(str::to_owned))
            .collect();
        // The rules of this host only: the previous host's are gone.
        assert!(!comments.is_empty(), "{host}: no rules");
        let script = stdout(&out);
        for comment in &comments {
            assert!(
                script.contains(comment.as_str()),
                "{host}: {comment} is not its own"
            );
        }
    }
    let tables = ns.nft(&["list", "tables"], "");
    let tables = stdout(&tables);
    assert!(tables.contains("table inet other"), "{tables}");
    assert!(tables.contains("table inet rempart"), "{tables}");
}

/// The live ruleset read back from the real `nft` proves equal to the policy
/// for every host; a rule added or removed behind Rempart's back is found,
/// with a packet on which they differ; an accept-all cannot be proven.
#[test]
fn live_rulesets_are_proven_equal_to_the_policy() {
    use rempart_policy::validate::{compare, desired, read_ruleset};
    let ns = Netns::new();
    let dir = example();
    let policy = rempart_policy::load(&dir).expect("loads");
    let today = time::OffsetDateTime::now_utc().date();
    let live = |ns: &Netns| {
        let listed = ns.nft(&["-j", "list", "table", "inet", "rempart"], "");
        assert!(listed.status.success(), "{}", stderr(&listed));
        String::from_utf8(listed.stdout).expect("utf-8")
    };
    for host in ["edge", "api-1", "api-2", "db", "bastion", "office-pc"] {
        let out = rempart(&[
            "policy",
            "compile",
            dir.to_str().expect("utf-8"),
            "--host",
            host,
        ]);
        assert!(ns.nft(&["-f", "-"], &stdout(&out)).status.success());
        let read = read_ruleset(&live(&ns)).expect("readable");
        let wanted = desired(&policy, host, today).expect("a host");
        assert_eq!(compare(&read, &wanted), Ok(()), "{host}");
    }
    // office-pc is loaded last. Behind Rempart's back: telnet from anywhere.
    let added = ns.nft(
        &[
            "add", "rule", "inet", "rempart", "input", "tcp", "dport", "23", "accept",
        ],
        "",
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let wanted = desired(&policy, "office-pc", today).expect("a host");
    let difference = compare(&read_ruleset(&live(&ns)).expect("readable"), &wanted)
        .expect_err("an extra accept");
    assert_eq!(
        (
            difference.chain,
            difference.port,
            difference.accepted_by_ruleset
        ),
        ("input", 23, true)
    );
    assert!(
        difference
            .to_string()
            .contains("accepted by the ruleset but not allowed by the policy"),
        "{difference}"
    );
    // Back to the policy, then a rule removed: the policy's flow is dropped.
    let out = rempart(&[
        "policy",
        "compile",
        dir.to_str().expect("utf-8"),
        "--host",
        "office-pc",
    ]);
    assert!(ns.nft(&["-f", "-"], &stdout(&out)).status.success());
    let json: serde_json::Value = serde_json::from_str(&live(&ns)).expect("json");
    let handle = json["nftables"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["rule"]["comment"].is_string() && o["rule"]["chain"] == "output")
        .map(|o| o["rule"]["handle"].to_string())
        .expect("a policy rule in output");
    let deleted = ns.nft(
        &[
            "delete", "rule", "inet", "rempart", "output", "handle", &handle,
        ],
        "",
    );
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let difference = compare(&read_ruleset(&live(&ns)).expect("readable"), &wanted)
        .expect_err("a missing accept");
    assert_eq!(
        (difference.chain, difference.accepted_by_ruleset),
        ("output", false)
    );
    // An accept of everything cannot be proven: refused, not guessed.
    let everything = ns.nft(&["add", "rule", "inet", "rempart", "input", "accept"], "");
    assert!(everything.status.success(), "{}", stderr(&everything));
    let refused = read_ruleset(&live(&ns)).expect_err("unprovable");
    assert!(
        refused.to_string().contains("cannot be proven"),
        "{refused}"
    );
}

impl Netns {
    /// `rempart ARGS` inside the namespace (its nft sees only this one).
    fn rempart(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, common::BIN])
            .args(args)
            .output()
            .expect("runs")
    }
}

/// plan, apply and drift with the real nft: apply replaces the table and
/// proves it; a change behind Rempart's back is drift (exit 1, with the
/// packet); a policy that does not resolve applies nothing.
#[test]
fn plan_apply_and_drift() {
    let ns = Netns::new();
    let dir = example();
    let dir = dir.to_str().expect("utf-8");
    let plan = ns.rempart(&["policy", "plan", dir, "--host", "api-1"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains("table inet rempart is absent"),
        "{}",
        stdout(&plan)
    );
    assert_refused(
        &ns.rempart(&["policy", "drift", dir, "--host", "api-1"]),
        "drift on api-1",
    );

    let applied = ns.rempart(&["policy", "apply", dir, "--host", "api-1"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert!(
        stdout(&applied)
            .contains("proven equal to the policy (before, in a scratch namespace, and live)"),
        "{}",
        stdout(&applied)
    );
    let drift = ns.rempart(&["policy", "drift", dir, "--host", "api-1"]);
    assert!(drift.status.success(), "{}", stderr(&drift));
    assert!(
        stdout(&ns.rempart(&["policy", "plan", dir, "--host", "api-1"])).starts_with("no change")
    );

    let added = ns.nft(
        &[
            "add", "rule", "inet", "rempart", "input", "udp", "dport", "161", "accept",
        ],
        "",
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let drift = ns.rempart(&["policy", "drift", dir, "--host", "api-1"]);
    assert_refused(
        &drift,
        "udp/161 is accepted by the ruleset but not allowed by the policy",
    );
    assert!(stdout(&ns.rempart(&["policy", "plan", dir, "--host", "api-1"])).contains("udp/161"));
    assert!(
        ns.rempart(&["policy", "apply", dir, "--host", "api-1"])
            .status
            .success()
    );
    assert!(
        ns.rempart(&["policy", "drift", dir, "--host", "api-1"])
            .status
            .success()
    );

    // A bad policy applies nothing: the table stays as it was.
    let work = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example().join("policy.toml")).expect("example");
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, text.replacen("group:db", "group:dbs", 1)).expect("write");
    assert_refused(
        &ns.rempart(&[
            "policy",
            "apply",
            bad.to_str().expect("utf-8"),
            "--host",
            "api-1",
        ]),
        "unknown group \"dbs\"",
    );
    assert!(
        ns.rempart(&["policy", "drift", dir, "--host", "api-1"])
            .status
            .success()
    );
}

#[test]
fn reach_and_blast_from_the_cli() {
    let dir = example();
    let dir = dir.to_str().expect("utf-8");
    let out = rempart(&["policy", "reach", dir, "--to", "group:db", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let pairs: Vec<(String, String)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["from"].as_str().expect("from").to_owned(),
                r["service"].as_str().expect("service").to_owned(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("host:api-1".into(), "postgres".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.iter().all(|(from, _)| from != "internet"),
        "{pairs:?}"
    );
    let csv = stdout(&rempart(&[
        "policy", "reach", dir, "--from", "internet", "--csv",
    ]));
    assert_eq!(csv.lines().next(), Some("from,to,service,ports,rule"));
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("internet,host:edge,https,tcp/443,"), "{csv}");
    assert_refused(
        &rempart(&["policy", "reach", dir, "--to", "group:nope"]),
        "no group \"nope\"",
    );
    let work = tempfile::tempdir().expect("tempdir");
    let map = work.path().join("map.svg");
    let out = rempart(&[
        "policy",
        "reach",
        dir,
        "--svg",
        map.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let drawing = std::fs::read_to_string(&map).expect("the map");
    assert!(
        drawing.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{drawing}"
    );
    assert!(drawing.trim_end().ends_with("</svg>"));
    assert!(
        drawing.contains("<title>host:api-1 → host:db: postgres</title>"),
        "{drawing}"
    );
    assert!(drawing.contains(">internet</text>"), "{drawing}");
    assert_eq!(
        drawing.matches("<circle").count(),
        7,
        "six hosts and the internet"
    );

    let out = rempart(&["policy", "blast", dir, "--host", "api-1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reached: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(reached.as_array().expect("list").len(), 1);
    assert_eq!(reached[0]["reached"], "host:db");
    assert_eq!(reached[0]["path"][0]["service"], "postgres");
}

#[test]
fn lint_from_the_cli() {
    let dir = example();
    let out = rempart(&["policy", "lint", dir.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let work = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example().join("policy.toml")).expect("example");
    let file = work.path().join("dup.toml");
    std::fs::write(
        &file,
        format!(
            "{text}\n[[rule]]\nfrom = \"group:api\"\nto = \"host:db\"\nservice = \"postgres\"\n"
        ),
    )
    .expect("write");
    let out = rempart(&["policy", "lint", file.to_str().expect("utf-8")]);
    assert_refused(&out, "1 lint finding");
    let rule = text
        .lines()
        .position(|l| l.contains("from = \"group:api\""))
        .map(|i| i + 1)
        .expect("the api rule");
    assert!(
        stdout(&out).contains(&format!(
            "shadowed: earlier rules (line {rule}) already allow all of it"
        )),
        "{}",
        stdout(&out)
    );
}
