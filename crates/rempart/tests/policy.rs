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
        "ok: 6 hosts, 5 groups, 6 rules; 3 invariants hold"
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
