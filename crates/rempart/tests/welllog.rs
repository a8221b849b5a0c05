//! The well-log through the real server and CLI: ingestion, the control
//! plane's own events, proofs checked by the CLI, offline verification, and
//! no acknowledged entry lost to `kill -9`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Backend, Deployment, Server, json, stderr, stdout};

fn lines(range: std::ops::Range<u64>, tag: &str) -> String {
    range
        .map(|n| {
            format!(
                r#"{{"kind":"test.event","host":"web-{}","actor":"alice","outcome":"success","msg":"{tag} {n} {}","n":{n}}}"#,
                n % 3,
                "x".repeat(200)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn wait_for_checkpoint(server: &Server, token: &str, size: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = server.cli(token, &["log", "checkpoint", "--json"]);
        let checkpoint = json(&stdout(&out));
        if checkpoint["size"].as_u64().unwrap_or(0) >= size {
            return checkpoint;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {size} entries: {checkpoint}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ingest_prove_and_verify(backend: Backend) {
    let deployment = Deployment::init(backend);
    let mut server = deployment.serve();
    let admin = deployment.admin_token.as_str();

    // The control plane's own events are in the log, stamped by it.
    assert!(
        server
            .cli(admin, &["user", "add", "bob", "--role", "engineer"])
            .status
            .success()
    );
    let first = json(&stdout(&server.cli(admin, &["log", "show", "0", "--json"])));
    let event = &first["entry"];
    assert_eq!(event["kind"], "user.create", "{first}");
    assert_eq!(event["actor"], "admin");
    assert_eq!(event["target"], "user:bob");
    assert_eq!(event["source"], "internal");
    assert_eq!(event["sender"], "rempart:control-plane");

    // JSON lines: good ones are acknowledged, bad ones named by line.
    let file = deployment.dir.path().join("events.jsonl");
    let mut body = lines(0..50, "hello");
    body.push_str("{not json}\n{\"msg\":\"no kind\"}\n{\"kind\":\"x\",\"seq\":1}\n");
    std::fs::write(&file, body).expect("write");
    let out = server.cli(admin, &["log", "append", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "refused lines make it fail");
    assert!(
        stdout(&out).contains("50 entries written and synced, seq 1 to 50"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("line 51: not JSON"), "{err}");
    assert!(err.contains("line 52: `kind` is required"), "{err}");
    assert!(err.contains("line 53: `seq` is set by the server"), "{err}");

    // An engineer may write events, and the sender is who they are.
    let engineer = stdout(&server.cli(admin, &["user", "token", "bob"]))
        .trim()
        .to_owned();
    let one = deployment.dir.path().join("one.jsonl");
    std::fs::write(&one, "{\"kind\":\"test.from_bob\"}\n").expect("write");
    assert!(
        server
            .cli(&engineer, &["log", "append", one.to_str().expect("utf-8")])
            .status
            .success()
    );
    let entry = json(&stdout(
        &server.cli(admin, &["log", "show", "52", "--json"]),
    ));
    assert_eq!(entry["entry"]["sender"], "bob", "{entry}");
    // ...but not read the log.
    common::assert_refused(&server.cli(&engineer, &["log", "show", "1"]), "403");

    // Proofs, checked by the CLI against the signed checkpoint.
    let checkpoint = wait_for_checkpoint(&server, admin, 53);
    let key = checkpoint["verifier_key"].as_str().expect("key").to_owned();
    let size = checkpoint["size"].as_u64().expect("size");
    let out = server.cli(admin, &["log", "prove", "10", "--log-key", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!(
            "verified: entry 10 is in the log of {size} entries"
        )),
        "{}",
        stdout(&out)
    );
    let out = server.cli(admin, &["log", "consistency", "5", "--log-key", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("verified: the log of 5 entries"),
        "{}",
        stdout(&out)
    );
    common::assert_refused(&server.cli(admin, &["log", "prove", "9999"]), "400");
    common::assert_refused(
        &server.cli(admin, &["log", "consistency", "0"]),
        "empty tree",
    );
    // A key that is not the log's is refused.
    let wrong = "rempart.local/welllog+00000000+AXpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    assert_eq!(
        server
            .cli(admin, &["log", "prove", "10", "--log-key", wrong])
            .status
            .code(),
        Some(1)
    );

    // Keep the signed note elsewhere, as an auditor would.
    let kept = deployment.dir.path().join("kept.note");
    std::fs::write(&kept, checkpoint["note"].as_str().expect("note")).expect("write");
    assert!(
        server
            .terminate(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );

    // Offline: the files alone verify, and prove the log grew from the kept note.
    let data = deployment.data_dir();
    let verify = |extra: &[&str]| {
        Command::new(BIN)
            .args(["log", "verify", "--data-dir"])
            .arg(&data)
            .args(extra)
            .output()
            .expect("runs")
    };
    let out = verify(&["--checkpoint", kept.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: 53 entries"),
        "{}",
        stdout(&out)
    );

    // One changed byte in entry 20's payload is found, with its number.
    let segment = data.join("welllog/segments/00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let needle = b"hello 19 ";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("entry 20 is there");
    bytes[at] = b'j';
    std::fs::write(&segment, &bytes).expect("write");
    let out = verify(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fails verification at entry 20"),
        "{}",
        stderr(&out)
    );
}

/// `kill -9` while entries are being acknowledged: after each restart every
/// acknowledged entry is there, numbered as acknowledged, and the log verifies.
fn kill_9_loses_no_acknowledged_entry(backend: Backend) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let deployment = Deployment::init(backend);
    let data = deployment.data_dir();
    let admin = deployment.admin_token.clone();
    let acknowledged = Mutex::new(Vec::<(u64, u64)>::new()); // (seq, n)
    let next_n = AtomicU64::new(0);
    for cycle in 0..3u64 {
        let mut server = Server::start(&data, &[]);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Two writers keep appends in flight while the server is killed.
            for writer in 0..2 {
                let (server, admin, stop) = (&server, &admin, &stop);
                let (acknowledged, next_n) = (&acknowledged, &next_n);
                let file = deployment
                    .dir
                    .path()
                    .join(format!("batch-{cycle}-{writer}.jsonl"));
                scope.spawn(move || {
                    // Bounded: at most 300 batches per writer and cycle.
                    for _ in 0..300 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let n = next_n.fetch_add(50, Ordering::SeqCst);
                        std::fs::write(&file, lines(n..n + 50, "load")).expect("write");
                        let out = server.cli(
                            admin,
                            &["log", "append", "--json", file.to_str().expect("utf-8")],
                        );
                        if out.status.success() {
                            let result = json(&stdout(&out));
                            let mut acked = acknowledged.lock().expect("lock");
                            acked.push((result["first_seq"].as_u64().expect("first"), n));
                            acked.push((result["last_seq"].as_u64().expect("last"), n + 49));
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(800 + 300 * cycle));
            // Killed through a raw signal, with appends in flight.
            let _ = Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::SeqCst);
        });
        server.kill();
    }
    let acknowledged = acknowledged.into_inner().expect("lock");
    assert!(
        acknowledged.len() > 10,
        "the load acknowledged too little: {acknowledged:?}"
    );
    let server = Server::start(&data, &[]);
    for (seq, n) in &acknowledged {
        let out = server.cli(&admin, &["log", "show", &seq.to_string(), "--json"]);
        assert!(out.status.success(), "entry {seq}: {}", stderr(&out));
        assert_eq!(json(&stdout(&out))["entry"]["n"], *n, "entry {seq}");
    }
    drop(server);
    let out = Command::new(BIN)
        .args(["log", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// An admin's erase order removes one entry's payload; the order is logged,
/// the entry's proof still holds, search no longer finds it, verify passes.
fn erase_keeps_proofs(backend: Backend) {
    let deployment = Deployment::init(backend);
    let mut server = deployment.serve();
    let admin = deployment.admin_token.as_str();
    let file = deployment.dir.path().join("events.jsonl");
    std::fs::write(&file, lines(0..5, "secret-token-leaked")).expect("write");
    assert!(
        server
            .cli(admin, &["log", "append", file.to_str().expect("utf-8")])
            .status
            .success()
    );
    let victim = "2";
    assert!(stdout(&server.cli(admin, &["log", "show", victim])).contains("secret-token-leaked 2"));

    common::assert_refused(
        &server.cli(admin, &["log", "erase", victim, "--reason", "x"]),
        "reason",
    );
    assert!(
        server
            .cli(admin, &["user", "add", "eve", "--role", "security"])
            .status
            .success()
    );
    let security = stdout(&server.cli(admin, &["user", "token", "eve"]))
        .trim()
        .to_owned();
    common::assert_refused(
        &server.cli(
            &security,
            &["log", "erase", victim, "--reason", "not an admin"],
        ),
        "403",
    );

    let out = server.cli(
        admin,
        &[
            "log",
            "erase",
            victim,
            "--reason",
            "a leaked token was logged",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let order_seq = stdout(&out)
        .trim()
        .rsplit(' ')
        .next()
        .expect("order seq")
        .to_owned();
    let order = json(&stdout(
        &server.cli(admin, &["log", "show", &order_seq, "--json"]),
    ));
    assert_eq!(order["entry"]["kind"], "log.erase");
    assert_eq!(order["entry"]["target"], format!("log:{victim}"));
    assert_eq!(order["entry"]["reason"], "a leaked token was logged");
    let shown = json(&stdout(
        &server.cli(admin, &["log", "show", victim, "--json"]),
    ));
    assert!(shown["entry"].is_null(), "{shown}");
    assert!(
        !stdout(&server.cli(admin, &["log", "show", victim])).contains("secret-token-leaked 2")
    );

    // Its proof still holds against the signed checkpoint.
    let checkpoint = wait_for_checkpoint(&server, admin, 7);
    let key = checkpoint["verifier_key"].as_str().expect("key").to_owned();
    let out = server.cli(admin, &["log", "prove", victim, "--log-key", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Search finds its neighbours, not it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = server.cli(admin, &["log", "search", "secret-token-leaked", "--json"]);
        let result = json(&stdout(&out));
        let seqs: Vec<u64> = result["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .filter_map(|h| h["seq"].as_u64())
            .collect();
        if seqs.len() == 4 || Instant::now() > deadline {
            assert_eq!(seqs, vec![4, 3, 1, 0], "{result}");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        server
            .terminate(Duration::from_secs(15))
            .is_some_and(|s| s.success())
    );
    let out = Command::new(BIN)
        .args(["log", "verify", "--json", "--data-dir"])
        .arg(deployment.data_dir())
        .output()
        .expect("runs");
    let report = json(&stdout(&out));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["erased"], 1);
}

on_both_backends!(
    ingest_prove_and_verify,
    kill_9_loses_no_acknowledged_entry,
    erase_keeps_proofs
);
