//! Access requests through the real server and CLI, on SQLite and on
//! PostgreSQL: the whole life of a request, the four-eyes rule, thresholds,
//! concurrent approvals, revocation, cancellation, grant checks by a bastion
//! machine identity, bad input, and the well-log record of every change.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Backend, Deployment, Server, advance_clock, assert_refused, json, stderr, stdout};

struct People {
    alice: String,
    sam: String,
    kim: String,
    lee: String,
}

fn add_user(server: &Server, admin: &str, name: &str, roles: &[&str]) -> String {
    let mut args = vec!["user", "add", name];
    for role in roles {
        args.push("--role");
        args.push(role);
    }
    let out = server.cli(admin, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn people(server: &Server, admin: &str) -> People {
    People {
        alice: add_user(server, admin, "alice", &["engineer"]),
        sam: add_user(server, admin, "sam", &["security"]),
        // Kim reviews, and is an engineer too: she may request, never approve her own.
        kim: add_user(server, admin, "kim", &["security", "engineer"]),
        lee: add_user(server, admin, "lee", &["security"]),
    }
}

/// A bastion machine identity's certificate and key.
fn bastion(deployment: &Deployment, server: &Server, admin: &str) -> (PathBuf, PathBuf) {
    let dir = deployment.dir.path().join("bastion");
    std::fs::create_dir(&dir).expect("mkdir");
    let out = server.cli(
        admin,
        &[
            "machine",
            "add",
            "bastion-1",
            "--role",
            "bastion",
            "--out",
            dir.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    (dir.join("bastion-1.crt"), dir.join("bastion-1.key"))
}

fn check(
    server: &Server,
    machine: &(PathBuf, PathBuf),
    user: &str,
    resource: &str,
) -> serde_json::Value {
    let out = server
        .cli_command(&[
            "grant",
            "check",
            "--user",
            user,
            "--resource",
            resource,
            "--json",
        ])
        .env("REMPART_CLIENT_CERT", &machine.0)
        .env("REMPART_CLIENT_KEY", &machine.1)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    json(&stdout(&out))
}

fn request(server: &Server, token: &str, resources: &[&str], duration: &str) -> String {
    let mut args = vec![
        "access",
        "request",
        "--reason",
        "INC-4711 the payments replica is stuck",
        "--for",
        duration,
    ];
    for resource in resources {
        args.push("--resource");
        args.push(resource);
    }
    let out = server.cli(token, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn state(server: &Server, token: &str, id: &str) -> serde_json::Value {
    let out = server.cli(token, &["access", "show", id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&stdout(&out))
}

fn approve(server: &Server, token: &str, id: &str) -> std::process::Output {
    server.cli(
        token,
        &["access", "approve", id, "--comment", "checked the ticket"],
    )
}

/// The well-log entries of `kind` about `target`.
fn logged(server: &Server, admin: &str, kind: &str, target: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let query = format!("kind:{kind} target:{target}");
    loop {
        let out = server.cli(admin, &["log", "search", &query, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let result = json(&stdout(&out));
        let hits = result["hits"].as_array().expect("hits").len();
        // The index follows the log: wait until it covers it. On PostgreSQL
        // the node's copy of the shared log may itself trail the entry just
        // written, so an index that covers the copy can still lack it: every
        // caller expects at least one entry, so wait for one too.
        if (result["indexed"] == result["size"] && hits > 0) || Instant::now() > deadline {
            return hits;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn life_of_a_request(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let admin = deployment.admin_token.as_str();
    let p = people(&server, admin);
    let machine = bastion(&deployment, &server, admin);
    for (kind, name, labels) in [
        ("host", "db-1", vec!["env=prod", "data=pii"]),
        ("db", "payments", vec!["env=prod"]),
    ] {
        let mut args = vec!["resource", "add", kind, name];
        for label in &labels {
            args.push("--label");
            args.push(label);
        }
        let out = server.cli(admin, &args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let resources = json(&stdout(
        &server.cli(&p.alice, &["resource", "list", "--json"]),
    ));
    assert_eq!(resources["resources"].as_array().expect("list").len(), 2);

    // A request for one approval: pending, then approved by a reviewer.
    let id = request(&server, &p.alice, &["db:payments"], "2h");
    let shown = state(&server, &p.alice, &id);
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["approvals_needed"], 1);
    assert_eq!(
        check(&server, &machine, "alice", "db:payments")["allow"],
        false
    );
    // The requester cannot approve (no reviewer role); nor a machine.
    assert_refused(&approve(&server, &p.alice, &id), "403");
    let out = approve(&server, &p.sam, &id);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(state(&server, &p.alice, &id)["state"], "approved");
    let allowed = check(&server, &machine, "alice", "db:payments");
    assert_eq!(allowed["allow"], true, "{allowed}");
    assert_eq!(allowed["grant"], id.as_str());
    // Nothing for another resource or another user.
    assert_eq!(
        check(&server, &machine, "alice", "host:db-1")["reason"],
        "no approved request"
    );
    assert_eq!(
        check(&server, &machine, "kim", "db:payments")["allow"],
        false
    );
    // Deciding it again is refused, and changes nothing.
    assert_refused(&approve(&server, &p.lee, &id), "can no longer be reviewed");
    assert_refused(
        &server.cli(&p.lee, &["access", "deny", &id, "--reason", "too late"]),
        "can no longer be reviewed",
    );

    // Revocation ends it at once for every check.
    let out = server.cli(
        &p.sam,
        &["access", "revoke", &id, "--reason", "incident closed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked = check(&server, &machine, "alice", "db:payments");
    assert_eq!(revoked["allow"], false);
    assert!(
        revoked["reason"]
            .as_str()
            .expect("reason")
            .starts_with("revoked at"),
        "{revoked}"
    );
    assert_refused(
        &server.cli(&p.sam, &["access", "revoke", &id, "--reason", "again"]),
        "only an approved grant is revoked",
    );

    // PII needs two distinct approvals; a reviewer counts once.
    let pii = request(&server, &p.alice, &["host:db-1"], "1h");
    assert_eq!(state(&server, &p.alice, &pii)["approvals_needed"], 2);
    assert!(approve(&server, &p.sam, &pii).status.success());
    assert_refused(&approve(&server, &p.sam, &pii), "counts once");
    assert_eq!(state(&server, &p.alice, &pii)["state"], "pending");
    assert!(approve(&server, &p.lee, &pii).status.success());
    assert_eq!(state(&server, &p.alice, &pii)["state"], "approved");
    assert_eq!(
        check(&server, &machine, "alice", "host:db-1")["allow"],
        true
    );

    // A requester never approves their own request, even as a reviewer.
    let own = request(&server, &p.kim, &["db:payments"], "30m");
    assert_refused(
        &approve(&server, &p.kim, &own),
        "never reviews their own request",
    );
    assert_eq!(state(&server, &p.kim, &own)["approvals"], 0);

    // One deny ends a request.
    let denied = request(&server, &p.alice, &["host:db-1"], "1h");
    assert!(approve(&server, &p.sam, &denied).status.success());
    let out = server.cli(
        &p.lee,
        &["access", "deny", &denied, "--reason", "no ticket context"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(state(&server, &p.alice, &denied)["state"], "denied");
    assert_refused(
        &approve(&server, &p.kim, &denied),
        "can no longer be reviewed",
    );

    // Only the requester cancels, and only while pending.
    let cancelled = request(&server, &p.alice, &["db:payments"], "1h");
    assert_refused(
        &server.cli(&p.sam, &["access", "cancel", &cancelled]),
        "only alice cancels",
    );
    assert!(
        server
            .cli(&p.alice, &["access", "cancel", &cancelled])
            .status
            .success()
    );
    assert_eq!(state(&server, &p.alice, &cancelled)["state"], "cancelled");
    assert_refused(
        &approve(&server, &p.sam, &cancelled),
        "can no longer be reviewed",
    );

    // Listing: reviewers see everyone's, engineers their own, by state.
    let all = json(&stdout(&server.cli(&p.sam, &["access", "list", "--json"])));
    assert_eq!(all["requests"].as_array().expect("list").len(), 5);
    let kims = json(&stdout(
        &server.cli(&p.kim, &["access", "list", "--mine", "--json"]),
    ));
    assert_eq!(kims["requests"].as_array().expect("list").len(), 1);
    let alices = json(&stdout(&server.cli(
        &p.alice,
        &["access", "list", "--state", "approved", "--json"],
    )));
    let ids: Vec<&str> = alices["requests"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![pii.as_str()]);
    // Someone else's request is not shown to an engineer.
    assert_refused(&server.cli(&p.alice, &["access", "show", &own]), "404");

    // A disabled user loses their grants at once.
    assert!(
        server
            .cli(admin, &["user", "disable", "alice"])
            .status
            .success()
    );
    let disabled = check(&server, &machine, "alice", "host:db-1");
    assert_eq!(disabled["allow"], false);
    assert_eq!(disabled["reason"], "user alice is disabled");

    // A person cannot ask the bastion's question.
    assert_refused(
        &server.cli(
            &p.sam,
            &[
                "grant",
                "check",
                "--user",
                "alice",
                "--resource",
                "host:db-1",
            ],
        ),
        "bastion machine identity",
    );

    // Every change is in the well-log.
    assert_eq!(
        logged(
            &server,
            admin,
            "access.request.create",
            &format!("request:{id}")
        ),
        1
    );
    assert_eq!(
        logged(
            &server,
            admin,
            "access.review.approve",
            &format!("request:{pii}")
        ),
        2
    );
    assert_eq!(
        logged(
            &server,
            admin,
            "access.grant.start",
            &format!("request:{pii}")
        ),
        1
    );
    assert_eq!(
        logged(
            &server,
            admin,
            "access.grant.revoke",
            &format!("request:{id}")
        ),
        1
    );
    assert_eq!(
        logged(
            &server,
            admin,
            "access.review.deny",
            &format!("request:{denied}")
        ),
        1
    );
    assert_eq!(
        logged(
            &server,
            admin,
            "access.request.cancel",
            &format!("request:{cancelled}")
        ),
        1
    );
}

/// Two approvals arriving at the same instant on a request that needs two
/// more: both count, and exactly one grant starts (one `access.grant.start`).
fn simultaneous_approvals_start_one_grant(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let admin = deployment.admin_token.as_str();
    let p = people(&server, admin);
    let out = server.cli(
        admin,
        &["resource", "add", "host", "db-1", "--label", "data=pii"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for round in 0..3 {
        let id = request(&server, &p.alice, &["host:db-1"], "1h");
        let (a, b) = std::thread::scope(|scope| {
            let first = scope.spawn(|| approve(&server, &p.sam, &id));
            let second = scope.spawn(|| approve(&server, &p.lee, &id));
            (first.join().expect("sam"), second.join().expect("lee"))
        });
        assert!(
            a.status.success() && b.status.success(),
            "round {round}: {} {}",
            stderr(&a),
            stderr(&b)
        );
        let shown = state(&server, &p.alice, &id);
        assert_eq!(shown["state"], "approved");
        assert_eq!(shown["approvals"], 2);
        assert_eq!(
            logged(
                &server,
                admin,
                "access.grant.start",
                &format!("request:{id}")
            ),
            1,
            "round {round}"
        );
    }
}

/// Bad requests get a clear error and store nothing.
fn bad_requests_change_nothing(backend: Backend) {
    let deployment = Deployment::init(backend);
    let config = deployment.data_dir().join("rempart.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "ticket_pattern = \"\"",
            "ticket_pattern = \"[A-Z]+-[0-9]+\"",
        ),
    )
    .expect("write");
    let server = deployment.serve();
    let admin = deployment.admin_token.as_str();
    let p = people(&server, admin);
    assert!(
        server
            .cli(admin, &["resource", "add", "host", "db-1"])
            .status
            .success()
    );
    let ask = |resource: &str, reason: &str, duration: &str| {
        server.cli(
            &p.alice,
            &[
                "access",
                "request",
                "--resource",
                resource,
                "--reason",
                reason,
                "--for",
                duration,
            ],
        )
    };
    let reason = "INC-4711 the payments replica is stuck";
    assert_refused(
        &ask("host:nope", reason, "1h"),
        "unknown resource host:nope",
    );
    assert_refused(&ask("vm:db-1", reason, "1h"), "unknown resource kind");
    assert_refused(
        &ask("host:db-1", reason, "9h"),
        "longer than the maximum of 8h",
    );
    assert_refused(&ask("host:db-1", reason, "2 hours"), "duration");
    assert_refused(
        &ask("host:db-1", "because", "1h"),
        "at least 20 are required",
    );
    assert_refused(
        &ask("host:db-1", "the payments replica is stuck again", "1h"),
        "must name a ticket matching [A-Z]+-[0-9]+",
    );
    // Sam (security only) may not request: the rules allow engineers.
    assert_refused(
        &server.cli(
            &p.sam,
            &[
                "access",
                "request",
                "--resource",
                "host:db-1",
                "--reason",
                reason,
                "--for",
                "1h",
            ],
        ),
        "may not request host:db-1",
    );
    assert_refused(
        &server.cli(admin, &["resource", "add", "host", "db-1"]),
        "already exists",
    );
    assert_refused(
        &server.cli(admin, &["resource", "add", "host", "Bad Name"]),
        "resource name",
    );
    assert_refused(&approve(&server, &p.sam, "12345"), "no request 12345");
    let listed = json(&stdout(&server.cli(&p.sam, &["access", "list", "--json"])));
    assert!(
        listed["requests"].as_array().expect("list").is_empty(),
        "nothing was stored"
    );
    // A person has at most 20 requests waiting.
    for _ in 0..20 {
        request(&server, &p.alice, &["host:db-1"], "1h");
    }
    assert_refused(
        &ask("host:db-1", reason, "1h"),
        "already has 20 requests waiting",
    );
    let waiting = json(&stdout(&server.cli(&p.sam, &["access", "list", "--json"])));
    assert_eq!(waiting["requests"].as_array().expect("list").len(), 20);
}

/// Requests and grants end by the clock: a pending request expires after
/// `pending_for`, a grant at its end, each at once for every check.
fn requests_and_grants_expire_with_the_clock(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = Server::start(&deployment.data_dir(), &["--danger-test-clock"]);
    let admin = deployment.admin_token.as_str();
    let p = people(&server, admin);
    let machine = bastion(&deployment, &server, admin);
    assert!(
        server
            .cli(admin, &["resource", "add", "host", "web-1"])
            .status
            .success()
    );

    let stale = request(&server, &p.alice, &["host:web-1"], "2h");
    advance_clock(&server, admin, "25h");
    assert_eq!(state(&server, &p.alice, &stale)["state"], "expired");
    assert_refused(
        &approve(&server, &p.sam, &stale),
        "can no longer be reviewed",
    );

    let id = request(&server, &p.alice, &["host:web-1"], "2h");
    assert!(approve(&server, &p.sam, &id).status.success());
    assert_eq!(
        check(&server, &machine, "alice", "host:web-1")["allow"],
        true
    );
    advance_clock(&server, admin, "119m");
    assert_eq!(
        check(&server, &machine, "alice", "host:web-1")["allow"],
        true
    );
    advance_clock(&server, admin, "2m");
    let ended = check(&server, &machine, "alice", "host:web-1");
    assert_eq!(ended["allow"], false);
    assert!(
        ended["reason"]
            .as_str()
            .expect("reason")
            .starts_with("expired at"),
        "{ended}"
    );
    assert_eq!(state(&server, &p.alice, &id)["state"], "expired");
    assert_refused(
        &server.cli(&p.sam, &["access", "revoke", &id, "--reason", "too late"]),
        "only an approved grant is revoked",
    );
    // Nobody acted on these ends: the control plane logs them, once each.
    for (kind, request) in [("access.request.expire", &stale), ("access.grant.end", &id)] {
        let target = format!("request:{request}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while logged(&server, admin, kind, &target) == 0 {
            assert!(Instant::now() < deadline, "no {kind} for {target}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        logged(&server, admin, "access.grant.end", &format!("request:{id}")),
        1
    );

    // A server without the flag has no such route.
    drop(server);
    let plain = deployment.serve();
    let (status, _) = plain.curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {admin}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        "{\"advance\":\"1h\"}",
        &format!("{}/v1/danger/clock", plain.url),
    ]);
    assert_eq!(status, 404);
}

/// No grant without current training: requests are refused and checks deny,
/// naming what is missing; completions come one by one or from a CSV file.
fn training_gates_grants(backend: Backend) {
    let deployment = Deployment::init(backend);
    let config = deployment.data_dir().join("rempart.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "required_training = []",
            "required_training = [\"security-basics\"]",
        ),
    )
    .expect("write");
    let server = Server::start(&deployment.data_dir(), &["--danger-test-clock"]);
    let admin = deployment.admin_token.as_str();
    let p = people(&server, admin);
    let machine = bastion(&deployment, &server, admin);
    assert!(
        server
            .cli(admin, &["resource", "add", "host", "web-1"])
            .status
            .success()
    );
    let out = server.cli(
        &p.sam,
        &[
            "training",
            "module",
            "add",
            "security-basics",
            "--valid-for",
            "365d",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ask = || {
        server.cli(
            &p.alice,
            &[
                "access",
                "request",
                "--resource",
                "host:web-1",
                "--reason",
                "INC-4711 the payments replica is stuck",
                "--for",
                "1h",
            ],
        )
    };
    assert_refused(
        &ask(),
        "training missing: security-basics (never completed)",
    );

    let long_ago = (time::OffsetDateTime::now_utc() - time::Duration::days(400))
        .date()
        .to_string();
    let out = server.cli(
        &p.sam,
        &[
            "training",
            "record",
            "alice",
            "security-basics",
            "--on",
            &long_ago,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_refused(&ask(), "training missing: security-basics (expired");

    let csv = deployment.dir.path().join("training.csv");
    let today = time::OffsetDateTime::now_utc().date().to_string();
    std::fs::write(
        &csv,
        format!("user,module,completed_on\nalice,security-basics,{today}\n"),
    )
    .expect("write");
    let out = server.cli(
        &p.sam,
        &["training", "import", csv.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "recorded 1");
    // A bad file is refused whole, naming its line.
    std::fs::write(
        &csv,
        "user,module,completed_on\nbob,security-basics,2026-01-01\n",
    )
    .expect("write");
    assert_refused(
        &server.cli(
            &p.sam,
            &["training", "import", csv.to_str().expect("utf-8")],
        ),
        "no user \"bob\"",
    );

    let status = json(&stdout(
        &server.cli(&p.alice, &["training", "status", "--json"]),
    ));
    let module = &status["users"][0]["modules"][0];
    assert_eq!(module["module"], "security-basics");
    assert_eq!(module["state"], "current");
    assert_eq!(module["required"], true);
    assert!(status["users"][0]["missing"].is_null());
    // Engineers see only their own.
    assert_refused(&server.cli(&p.alice, &["training", "status", "kim"]), "403");

    let out = ask();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    assert!(approve(&server, &p.sam, &id).status.success());
    assert_eq!(
        check(&server, &machine, "alice", "host:web-1")["allow"],
        true
    );
    // A year later the training has lapsed: the check says so, whatever grant.
    advance_clock(&server, admin, "366d");
    let lapsed = check(&server, &machine, "alice", "host:web-1");
    assert_eq!(lapsed["allow"], false);
    assert!(
        lapsed["reason"]
            .as_str()
            .expect("reason")
            .starts_with("training missing: security-basics (expired"),
        "{lapsed}"
    );
    let status = json(&stdout(
        &server.cli(&p.sam, &["training", "status", "alice", "--json"]),
    ));
    assert_eq!(status["users"][0]["modules"][0]["state"], "expired");
    // A renewal counts at the next check (no answer is kept from before it):
    // the training gap is gone, and what remains is that there is no grant
    // (the old one ended long ago).
    let out = server.cli(&p.sam, &["training", "record", "alice", "security-basics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let renewed = check(&server, &machine, "alice", "host:web-1");
    assert_eq!(renewed["reason"], "no approved request", "{renewed}");
    // Nobody certifies their own training.
    assert_refused(
        &server.cli(&p.kim, &["training", "record", "kim", "security-basics"]),
        "cannot record their own training",
    );
    assert_eq!(logged(&server, admin, "training.record", "user:alice"), 3);
}

/// A small local webhook receiver: records each POSTed body until dropped.
struct Webhook {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Webhook {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stopping) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let mut reader = BufReader::new(stream);
                // Requests on this connection (keep-alive), until it closes.
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    let mut saw_request = false;
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        saw_request = true;
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(value) = lower.strip_prefix("content-length:") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    if !saw_request || line != "\r\n" {
                        break;
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        break;
                    }
                    seen.lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&body).into_owned());
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if reader.get_mut().write_all(answer).is_err() {
                        break;
                    }
                }
            }
        });
        Webhook {
            url,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits (10 s at most) for a body containing `needle`.
    fn wait_for(&self, needle: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(body) = self
                .bodies
                .lock()
                .expect("lock")
                .iter()
                .find(|b| b.contains(needle))
            {
                return json(body);
            }
            assert!(
                Instant::now() < deadline,
                "no webhook body with {needle:?}: {:?}",
                self.bodies.lock().expect("lock")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The configured webhook hears of new requests and of decisions, as
/// Slack-style `{"text": ...}` messages.
fn webhook_hears_requests_and_decisions(backend: Backend) {
    let hook = Webhook::start();
    let deployment = Deployment::init(backend);
    let config = deployment.data_dir().join("rempart.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("webhook = \"\"", &format!("webhook = \"{}\"", hook.url)),
    )
    .expect("write");
    let server = deployment.serve();
    let admin = deployment.admin_token.as_str();
    let p = people(&server, admin);
    assert!(
        server
            .cli(admin, &["resource", "add", "db", "payments"])
            .status
            .success()
    );
    let id = request(&server, &p.alice, &["db:payments"], "2h");
    let created = hook.wait_for(&format!("Access request {id}: alice asks for db:payments"));
    assert!(
        created["text"]
            .as_str()
            .expect("text")
            .contains("INC-4711 the payments replica is stuck"),
        "{created}"
    );
    assert!(approve(&server, &p.sam, &id).status.success());
    hook.wait_for(&format!(
        "Access request {id} of alice: approved by sam (1 of 1)"
    ));
    hook.wait_for("Access granted to alice on db:payments");
    let out = server.cli(
        &p.sam,
        &["access", "revoke", &id, "--reason", "incident closed"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    hook.wait_for("was revoked by sam: incident closed");
}

on_both_backends!(
    webhook_hears_requests_and_decisions,
    life_of_a_request,
    simultaneous_approvals_start_one_grant,
    bad_requests_change_nothing,
    requests_and_grants_expire_with_the_clock,
    training_gates_grants
);
