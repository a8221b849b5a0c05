//! Syslog into the well-log from real senders: util-linux `logger` over TCP
//! (LF and octet-counted framing) and UDP, the 2,000 real sshd lines of
//! loghub over a raw TCP connection, and `openssl s_client` over TLS with a
//! machine identity's certificate.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Backend, Deployment, Server, json, stderr, stdout};

fn with_syslog(deployment: &Deployment) -> Server {
    let config = deployment.data_dir().join("rempart.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text
        .replacen("tcp = \"\"", "tcp = \"127.0.0.1:0\"", 1)
        .replacen("tls = \"\"", "tls = \"127.0.0.1:0\"", 1)
        .replacen("udp = \"\"", "udp = \"127.0.0.1:0\"", 1);
    std::fs::write(&config, text).expect("write");
    deployment.serve()
}

/// Every entry of the log, read through the API in pages.
fn all_entries(server: &Server, token: &str) -> Vec<serde_json::Value> {
    let mut entries = Vec::new();
    loop {
        let from = entries.len().to_string();
        let out = server.cli(
            token,
            &["log", "tail", "--from", &from, "-n", "1000", "--json"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let page: Vec<serde_json::Value> = stdout(&out).lines().map(json).collect();
        if page.is_empty() {
            return entries;
        }
        entries.extend(page.into_iter().map(|e| e["entry"].clone()));
    }
}

/// Waits until `count` entries satisfy `matches` (bounded: 15 s).
fn wait_for(
    server: &Server,
    token: &str,
    count: usize,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found: Vec<_> = all_entries(server, token)
            .into_iter()
            .filter(|e| matches(e))
            .collect();
        if found.len() >= count || Instant::now() > deadline {
            assert_eq!(found.len(), count, "entries found: {found:?}");
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn logger(server: &Server, args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("logger runs");
    assert!(out.status.success(), "logger {args:?}: {}", stderr(&out));
    let _ = server;
}

fn syslog_over_tcp_and_udp(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = with_syslog(&deployment);
    let admin = deployment.admin_token.as_str();
    let tcp = server.listening["syslog tcp listening"].port().to_string();
    let udp = server.listening["syslog udp listening"].port().to_string();

    logger(
        &server,
        &[
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &tcp,
            "--rfc5424",
            "-t",
            "rempart-test",
            "hello over tcp",
        ],
    );
    logger(
        &server,
        &[
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &tcp,
            "--octet-count",
            "--rfc5424",
            "-t",
            "rempart-test",
            "hello octet counted",
        ],
    );
    logger(
        &server,
        &[
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &udp,
            "--rfc3164",
            "-t",
            "rempart-test",
            "hello over udp",
        ],
    );
    let found = wait_for(&server, admin, 3, |e| e["program"] == "rempart-test");
    let messages: Vec<&str> = found.iter().filter_map(|e| e["msg"].as_str()).collect();
    for expected in ["hello over tcp", "hello octet counted", "hello over udp"] {
        assert!(messages.contains(&expected), "{messages:?}");
    }
    for entry in &found {
        assert_eq!(entry["kind"], "syslog");
        assert_eq!(entry["source"], "syslog");
        assert!(
            entry["raw"]
                .as_str()
                .is_some_and(|raw| raw.contains("hello")),
            "{entry}"
        );
        assert!(
            entry["sender"]
                .as_str()
                .is_some_and(|s| s.starts_with("syslog-")),
            "{entry}"
        );
    }

    // The 2,000 real sshd lines, as a forwarder would send them.
    let log = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/loghub/OpenSSH_2k.log"),
    )
    .expect("loghub");
    let mut stream =
        std::net::TcpStream::connect(server.listening["syslog tcp listening"]).expect("connect");
    stream.write_all(&log).expect("send");
    drop(stream);
    let sshd = wait_for(&server, admin, 2000, |e| e["program"] == "sshd");
    let logins: Vec<_> = sshd.iter().filter(|e| e["kind"] == "ssh.auth").collect();
    assert!(logins.len() > 300, "{}", logins.len());
    let accepted = logins
        .iter()
        .find(|e| e["outcome"] == "success")
        .expect("one accepted login");
    assert_eq!(accepted["actor"], "fztu");
    assert_eq!(accepted["src_ip"], "119.137.62.142");
    assert_eq!(accepted["host"], "LabSZ");
    assert!(
        logins
            .iter()
            .any(|e| e["reason"] == "invalid user" && e["actor"] == "webmaster")
    );
}

fn syslog_over_tls_needs_a_machine_identity(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = with_syslog(&deployment);
    let admin = deployment.admin_token.as_str();
    let tls = server.listening["syslog tls listening"].to_string();
    let out_dir = deployment.dir.path().join("agent");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = server.cli(
        admin,
        &[
            "machine",
            "add",
            "agent-1",
            "--role",
            "agent",
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let send = |with_cert: bool, line: &str| {
        let mut command = Command::new("timeout");
        command
            .args([
                "10", "openssl", "s_client", "-quiet", "-connect", &tls, "-CAfile",
            ])
            .arg(deployment.ca_cert());
        if with_cert {
            command
                .arg("-cert")
                .arg(out_dir.join("agent-1.crt"))
                .arg("-key")
                .arg(out_dir.join("agent-1.key"));
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl starts");
        let framed = format!("{} {line}", line.len());
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(framed.as_bytes())
            .expect("write");
        let _ = child.wait();
    };
    send(true, "<13>1 - agent-1 auditd - - - tls works");
    let found = wait_for(&server, admin, 1, |e| e["msg"] == "tls works");
    assert_eq!(found[0]["sender"], "machine:agent-1");
    assert_eq!(found[0]["host"], "agent-1");

    // Without a certificate, or once revoked: nothing gets in.
    send(false, "<13>1 - intruder x - - - no cert");
    assert!(
        server
            .cli(admin, &["machine", "revoke", "agent-1"])
            .status
            .success()
    );
    send(true, "<13>1 - agent-1 auditd - - - after revocation");
    std::thread::sleep(Duration::from_millis(800));
    let all = all_entries(&server, admin);
    assert!(
        !all.iter()
            .any(|e| e["msg"] == "no cert" || e["msg"] == "after revocation"),
        "{all:?}"
    );
}

on_both_backends!(
    syslog_over_tcp_and_udp,
    syslog_over_tls_needs_a_machine_identity
);
