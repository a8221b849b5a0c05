//! Control-plane processes on one PostgreSQL: they see each other's writes,
//! and they share one well-log that exactly one of them sequences.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Backend, Deployment, Server, assert_refused, json, stderr, stdout};

/// A node is a copy of the first node's data directory (same CA, same
/// rempart.toml, same well-log key), made before it first starts.
fn copy_node(deployment: &Deployment, name: &str) -> PathBuf {
    let dir = deployment.dir.path().join(name);
    let copied = Command::new("cp")
        .arg("-a")
        .arg(deployment.data_dir())
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(copied.success());
    dir
}

#[test]
fn two_nodes_share_one_postgres() {
    let deployment = Deployment::init(Backend::Postgres);
    let second_dir = copy_node(&deployment, "second");
    let a = Server::start(&deployment.data_dir(), &[]);
    let b = Server::start(&second_dir, &[]);
    let admin = deployment.admin_token.as_str();

    let out = a.cli(admin, &["user", "add", "carol", "--role", "engineer"]);
    assert!(out.status.success());
    let carol = stdout(&out).trim().to_owned();
    let listed = json(&stdout(&b.cli(admin, &["user", "list", "--json"])));
    assert!(
        listed["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["name"] == "carol")
    );
    assert_eq!(stdout(&b.cli(&carol, &["whoami"])).trim(), "carol");

    // Disabled on B: refused on A on the very next request.
    assert!(b.cli(admin, &["user", "disable", "carol"]).status.success());
    assert_refused(&a.cli(&carol, &["whoami"]), "401");

    // A machine issued by A is recognised, then revoked, by B.
    let out_dir = deployment.dir.path().join("m");
    std::fs::create_dir(&out_dir).expect("mkdir");
    assert!(
        a.cli(
            admin,
            &[
                "machine",
                "add",
                "agent-1",
                "--role",
                "agent",
                "--out",
                out_dir.to_str().expect("utf-8")
            ]
        )
        .status
        .success()
    );
    let as_machine = |server: &Server| {
        server
            .cli_command(&["whoami"])
            .env("REMPART_CLIENT_CERT", out_dir.join("agent-1.crt"))
            .env("REMPART_CLIENT_KEY", out_dir.join("agent-1.key"))
            .output()
            .expect("runs")
    };
    assert_eq!(stdout(&as_machine(&b)).trim(), "machine:agent-1");
    assert!(
        b.cli(admin, &["machine", "revoke", "agent-1"])
            .status
            .success()
    );
    assert_refused(&as_machine(&a), "revoked");

    // One well-log: an entry appended on B is searchable on A; erased on A's
    // order, its payload goes on B too (its leaf stays: B still proves it).
    let file = deployment.dir.path().join("leak.jsonl");
    std::fs::write(
        &file,
        "{\"kind\":\"test.leak\",\"msg\":\"password hunter2leaked\"}\n",
    )
    .expect("write");
    let out = b.cli(
        admin,
        &["log", "append", "--json", file.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seq = json(&stdout(&out))["first_seq"]
        .as_u64()
        .expect("seq")
        .to_string();
    let search_hits = |server: &Server| {
        let out = server.cli(admin, &["log", "search", "hunter2leaked", "--json"]);
        json(&stdout(&out))["hits"].as_array().expect("hits").len()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while search_hits(&a) != 1 || search_hits(&b) != 1 {
        assert!(Instant::now() < deadline, "A or B never found B's entry");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = a.cli(
        admin,
        &["log", "erase", &seq, "--reason", "a password was logged"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = json(&stdout(&b.cli(admin, &["log", "show", &seq, "--json"])));
        if shown["entry"].is_null() && search_hits(&b) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still shows the erased entry: {shown}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let key = json(&stdout(&b.cli(admin, &["log", "checkpoint", "--json"])))["verifier_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = b.cli(admin, &["log", "prove", &seq, "--log-key", &key]);
        if out.status.success() {
            break;
        }
        // The proof needs a checkpoint covering the entry: one comes within a second.
        assert!(Instant::now() < deadline, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(200));
    }

    // A second `init` against the same database refuses: it belongs to A.
    let out = std::process::Command::new(common::BIN)
        .arg("init")
        .arg("--data-dir")
        .arg(deployment.dir.path().join("third"))
        .arg("--store")
        .arg(&deployment.pg.as_ref().expect("postgres").url)
        .output()
        .expect("runs");
    assert_refused(&out, "already has users");
    assert!(
        !deployment.dir.path().join("third").exists(),
        "a failed init leaves nothing"
    );
}

/// Whether `server` says (in /metrics) that it sequences the shared log.
fn sequences(server: &Server, admin: &str) -> bool {
    let (status, body) = server.get("/metrics", Some(admin));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .any(|line| line.trim() == "rempart_welllog_sequencer 1")
}

/// Waits until exactly one of the running nodes sequences; its index.
fn the_one_sequencer(nodes: &[Option<Server>], admin: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let leading: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.as_ref().is_some_and(|n| sequences(n, admin)))
            .map(|(i, _)| i)
            .collect();
        assert!(leading.len() <= 1, "several sequencers: {leading:?}");
        if let [one] = leading[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no node sequences");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn numbered_lines(first: u64, count: u64) -> String {
    (first..first + count)
        .map(|n| format!(r#"{{"kind":"test.multinode","msg":"entry {n}","n":{n}}}"#))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The latest checkpoint of a node: (size, root).
fn checkpoint(server: &Server, admin: &str) -> (u64, String) {
    let out = server.cli(admin, &["log", "checkpoint", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let value = json(&stdout(&out));
    (
        value["size"].as_u64().expect("size"),
        value["root"].as_str().expect("root").to_owned(),
    )
}

/// Every `n` in the log of `server`, in sequence order.
fn all_numbers(server: &Server, admin: &str, size: u64) -> Vec<(u64, Option<u64>)> {
    let mut numbers = Vec::new();
    let mut from = 0;
    while from < size {
        let (status, body) = server.get(
            &format!("/v1/log/entries?from={from}&limit=1000"),
            Some(admin),
        );
        assert_eq!(status, 200, "{body}");
        let list = json(&body);
        for entry in list["entries"].as_array().expect("entries") {
            numbers.push((
                entry["seq"].as_u64().expect("seq"),
                entry["entry"]["n"].as_u64(),
            ));
        }
        from = list["size"].as_u64().expect("size");
    }
    numbers
}

fn verify_offline(dir: &Path) {
    let out = Command::new(BIN)
        .args(["log", "verify", "--data-dir"])
        .arg(dir)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}: {}", dir.display(), stderr(&out));
}

/// Three nodes on one PostgreSQL accept entries; exactly one sequences them.
/// `kill -9` of the sequencer during a load hands sequencing to another node:
/// every acknowledged entry is in the shared log at the number it was
/// acknowledged with, no entry is numbered twice, and every node's copy
/// (the killed one too, after its restart) has the same tree and verifies.
#[test]
fn killing_the_sequencer_loses_and_renumbers_nothing() {
    let deployment = Deployment::init(Backend::Postgres);
    let dirs = vec![
        deployment.data_dir(),
        copy_node(&deployment, "node-b"),
        copy_node(&deployment, "node-c"),
    ];
    let admin = deployment.admin_token.clone();
    let mut nodes: Vec<Option<Server>> = dirs.iter().map(|d| Some(Server::start(d, &[]))).collect();

    // (first_seq, first n, count, acknowledged after the kill) of every
    // acknowledged batch.
    let acknowledged = Mutex::new(Vec::<(u64, u64, u64, bool)>::new());
    let next_n = AtomicU64::new(0);
    // Two cycles: the second kills the sequencer that took over in the first.
    for cycle in 0..2 {
        let killed = the_one_sequencer(&nodes, &admin);
        let killed_flag = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        let before = acknowledged.lock().expect("lock").len();
        std::thread::scope(|scope| {
            for (writer, node) in nodes.iter().enumerate() {
                let node = node.as_ref().expect("running");
                let (admin, stop, killed_flag) = (&admin, &stop, &killed_flag);
                let (acknowledged, next_n) = (&acknowledged, &next_n);
                let file = deployment
                    .dir
                    .path()
                    .join(format!("load-{cycle}-{writer}.jsonl"));
                scope.spawn(move || {
                    // Bounded: 400 batches per writer and cycle at most.
                    for _ in 0..400 {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let n = next_n.fetch_add(20, Ordering::SeqCst);
                        std::fs::write(&file, numbered_lines(n, 20)).expect("write");
                        let after_kill = killed_flag.load(Ordering::SeqCst);
                        let out = node.cli(
                            admin,
                            &["log", "append", "--json", file.to_str().expect("utf-8")],
                        );
                        if out.status.success() {
                            let result = json(&stdout(&out));
                            let first = result["first_seq"].as_u64().expect("first");
                            assert_eq!(result["last_seq"].as_u64(), Some(first + 19));
                            acknowledged
                                .lock()
                                .expect("lock")
                                .push((first, n, 20, after_kill));
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(1500));
            let pid = nodes[killed].as_ref().expect("running").pid();
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            killed_flag.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2500));
            stop.store(true, Ordering::SeqCst);
        });
        if let Some(mut dead) = nodes[killed].take() {
            dead.kill();
        }
        let acked = acknowledged.lock().expect("lock");
        let this_cycle = &acked[before..];
        assert!(
            this_cycle.iter().filter(|a| !a.3).count() >= 3,
            "cycle {cycle}: too little acknowledged before the kill: {this_cycle:?}"
        );
        assert!(
            this_cycle.iter().filter(|a| a.3).count() >= 3,
            "cycle {cycle}: nothing acknowledged after the sequencer died: {this_cycle:?}"
        );
        drop(acked);
        // Another node took over; the killed one comes back as a follower.
        let successor = the_one_sequencer(&nodes, &admin);
        assert_ne!(successor, killed);
        nodes[killed] = Some(Server::start(&dirs[killed], &[]));
        assert_eq!(the_one_sequencer(&nodes, &admin), successor);
    }
    let acknowledged = acknowledged.into_inner().expect("lock");
    let end = acknowledged
        .iter()
        .map(|(first, _, count, _)| first + count)
        .max()
        .expect("acknowledged");
    let deadline = Instant::now() + Duration::from_secs(20);
    let size = loop {
        let checkpoints: Vec<(u64, String)> = nodes
            .iter()
            .map(|n| checkpoint(n.as_ref().expect("running"), &admin))
            .collect();
        if checkpoints[0].0 >= end && checkpoints.iter().all(|c| *c == checkpoints[0]) {
            break checkpoints[0].0;
        }
        assert!(
            Instant::now() < deadline,
            "the copies do not agree: {checkpoints:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Every acknowledged entry is where it was acknowledged, and no entry
    // is in the log twice (also none of those whose answer was lost).
    let numbers = all_numbers(nodes[0].as_ref().expect("running"), &admin, size);
    assert_eq!(numbers.len() as u64, size);
    for (i, (seq, _)) in numbers.iter().enumerate() {
        assert_eq!(*seq, i as u64);
    }
    for (first, n, count, _) in &acknowledged {
        for k in 0..*count {
            assert_eq!(
                numbers[(first + k) as usize].1,
                Some(n + k),
                "entry {} should hold n = {}",
                first + k,
                n + k
            );
        }
    }
    let mut seen: Vec<u64> = numbers.iter().filter_map(|(_, n)| *n).collect();
    let total = seen.len();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), total, "an entry was numbered twice");

    // Each node's files prove the same log, offline.
    for (node, dir) in nodes.iter_mut().zip(&dirs) {
        let mut server = node.take().expect("running");
        assert!(server.terminate(Duration::from_secs(20)).is_some());
        verify_offline(dir);
    }
}

/// A node whose well-log key is not the shared log's does not start: its
/// checkpoints would not verify against the others'.
#[test]
fn a_node_with_another_log_key_is_refused() {
    let deployment = Deployment::init(Backend::Postgres);
    let stranger = copy_node(&deployment, "stranger");
    let first = deployment.serve();
    for key in ["signing.key", "verifier.key"] {
        std::fs::remove_file(stranger.join("welllog").join(key)).expect("remove the key");
    }
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&stranger)
        .env_remove("REMPART_STORE")
        .output()
        .expect("runs");
    // serve logs to stderr as it starts: its last line is the error.
    let err = stderr(&out);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        last.starts_with("error: joining the shared well-log"),
        "{err}"
    );
    assert!(last.contains("is not the shared log's"), "{err}");
    drop(first);
}

/// Whether `server` says (in /metrics) that its copy stopped.
fn copy_stopped(server: &Server, admin: &str) -> bool {
    let (status, body) = server.get("/metrics", Some(admin));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .any(|line| line.trim() == "rempart_welllog_copy_stopped 1")
}

/// The database is not trusted: an entry changed there after it was
/// acknowledged (its payload no longer matches its leaf) stops a node that
/// copies it, which then says so and takes no more entries, while a node that
/// copied it before keeps serving what it verified.
#[test]
fn a_copy_stops_at_an_entry_changed_in_the_database() {
    let deployment = Deployment::init(Backend::Postgres);
    let b_dir = copy_node(&deployment, "node-b");
    let admin = deployment.admin_token.as_str();
    let a = deployment.serve();
    let file = deployment.dir.path().join("entries.jsonl");
    std::fs::write(&file, numbered_lines(0, 5)).expect("write");
    let out = a.cli(
        admin,
        &["log", "append", "--json", file.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first = json(&stdout(&out))["first_seq"].as_u64().expect("seq");

    // Entry first+2 is rewritten in the database before B ever copies it.
    let pg = deployment.pg.as_ref().expect("postgres");
    let changed = common::psql(
        &pg.url,
        &format!(
            "UPDATE welllog_entries SET payload = convert_to('{{\"kind\":\"forged\"}}', 'UTF8') \
             FROM welllog_batches b WHERE welllog_entries.batch_id = b.id \
             AND b.first_seq + welllog_entries.position = {}",
            first + 2
        ),
    );
    assert!(changed.status.success(), "{}", stderr(&changed));
    let b = Server::start(&b_dir, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !copy_stopped(&b, admin) {
        assert!(
            Instant::now() < deadline,
            "B copied a forged entry: {:?}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        b.log()
            .iter()
            .any(|line| line.contains("cannot follow the shared log")
                && line.contains(&format!("\"seq\":{}", first + 2))),
        "{:?}",
        b.log()
    );
    // B holds only what it verified, and takes no entries any more.
    let out = b.cli(admin, &["log", "show", &(first + 2).to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let out = b.cli(admin, &["log", "append", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("stopped at a mismatch"),
        "{}",
        stderr(&out)
    );
    // A copied the entry before it was changed: it still shows the original.
    let shown = json(&stdout(
        &a.cli(admin, &["log", "show", &(first + 2).to_string(), "--json"]),
    ));
    assert_eq!(shown["entry"]["n"], 2, "{shown}");
    assert!(!copy_stopped(&a, admin));
}
