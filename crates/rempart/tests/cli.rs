//! The `rempart` command line against a running server, and the server's
//! own life: init, configuration errors, shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Backend, Deployment, Server, assert_refused, json, stderr, stdout};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn init_writes_a_private_data_directory(backend: Backend) {
    let deployment = Deployment::init(backend);
    let dir = deployment.data_dir();
    assert_eq!(mode(&dir), 0o700);
    for private in ["ca.key", "server.key", "admin.token", "rempart.toml"] {
        assert_eq!(mode(&dir.join(private)), 0o600, "{private}");
    }
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("token file");
    assert_eq!(token.trim(), deployment.admin_token);
    assert!(deployment.admin_token.starts_with("rpt_"));

    // Every setting is written out and commented.
    let config = std::fs::read_to_string(dir.join("rempart.toml")).expect("config");
    for key in [
        "listen",
        "server_names",
        "store",
        "server_cert_days",
        "machine_cert_days",
        "max_body_bytes",
        "request_timeout_secs",
        "hsts_max_age_secs",
        "max_connections",
        "ttl_days",
        "contact",
        "expires",
        "preferred_languages",
    ] {
        let line = config
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing"));
        let before = config.lines().nth(line - 1).expect("a line before");
        assert!(before.starts_with('#'), "{key} has no comment above it");
    }

    // Tokens are stored only as hashes.
    if backend == Backend::Sqlite {
        let db = std::fs::read(dir.join("rempart.db")).expect("db");
        let needle = deployment.admin_token.as_bytes();
        assert!(
            !db.windows(needle.len()).any(|w| w == needle),
            "the token is in the database"
        );
    }

    // A second init refuses, and changes nothing.
    let out = Command::new(BIN)
        .arg("init")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("runs");
    assert_refused(&out, "already initialised");
    assert_eq!(
        std::fs::read_to_string(dir.join("admin.token")).expect("token"),
        token
    );
}

fn user_lifecycle(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let admin = deployment.admin_token.as_str();

    let out = server.cli(
        admin,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "engineer",
            "--role",
            "security",
            "--email",
            "alice@example.com",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alice = stdout(&out).trim().to_owned();
    assert!(alice.starts_with("rpt_"));

    let out = server.cli(admin, &["user", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let users = json(&stdout(&out));
    let listed = users["users"].as_array().expect("users");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["name"], "alice");
    assert_eq!(
        listed[1]["roles"],
        serde_json::json!(["engineer", "security"])
    );
    assert_eq!(listed[1]["email"], "alice@example.com");
    assert!(listed[1]["disabled_at"].is_null());

    let out = server.cli(admin, &["user", "list"]);
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("alice")
            && l.contains("engineer,security")
            && l.contains("active")),
        "{table}"
    );

    let out = server.cli(&alice, &["whoami"]);
    assert_eq!(stdout(&out).trim(), "alice");

    // A new token replaces the old one at once.
    let out = server.cli(admin, &["user", "token", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let alice2 = stdout(&out).trim().to_owned();
    assert_ne!(alice, alice2);
    assert_refused(&server.cli(&alice, &["whoami"]), "401");
    assert_eq!(stdout(&server.cli(&alice2, &["whoami"])).trim(), "alice");

    // Disabling stops the token on the very next request.
    let out = server.cli(admin, &["user", "disable", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_refused(&server.cli(&alice2, &["whoami"]), "disabled");
    let out = server.cli(admin, &["user", "show", "alice", "--json"]);
    assert!(json(&stdout(&out))["disabled_at"].is_string());
    assert_refused(&server.cli(admin, &["user", "token", "alice"]), "disabled");

    // Refusals are one line with exit code 1.
    assert_refused(
        &server.cli(admin, &["user", "add", "admin", "--role", "admin"]),
        "already exists",
    );
    assert_refused(&server.cli(admin, &["user", "disable", "nobody"]), "404");
    assert_refused(
        &server.cli(admin, &["user", "disable", "admin"]),
        "last enabled admin",
    );
    assert_refused(&server.cli(&alice2, &["user", "list"]), "401");
}

fn machine_identities_use_mtls(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let admin = deployment.admin_token.as_str();
    let out_dir = deployment.dir.path().join("bastion");
    std::fs::create_dir(&out_dir).expect("mkdir");

    let out = server.cli(
        admin,
        &[
            "machine",
            "add",
            "bastion-1",
            "--role",
            "bastion",
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let key = out_dir.join("bastion-1.key");
    let cert = out_dir.join("bastion-1.crt");
    assert_eq!(mode(&key), 0o600);
    assert!(
        std::fs::read_to_string(&cert)
            .expect("cert")
            .contains("BEGIN CERTIFICATE")
    );
    assert!(out_dir.join("ca.crt").exists());

    // The machine authenticates with its certificate alone.
    let as_machine = |args: &[&str]| {
        server
            .cli_command(args)
            .env("REMPART_CLIENT_CERT", &cert)
            .env("REMPART_CLIENT_KEY", &key)
            .output()
            .expect("runs")
    };
    let out = as_machine(&["whoami", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let whoami = json(&stdout(&out));
    assert_eq!(whoami["actor"], "machine:bastion-1");
    assert_eq!(whoami["identity"]["role"], "bastion");
    // A machine holds no user role.
    assert_refused(&as_machine(&["user", "list"]), "403");

    // openssl agrees the certificate chains to the CA and is for client auth.
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(deployment.ca_cert())
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(verify.status.success(), "{}", stdout(&verify));

    let out = server.cli(admin, &["machine", "list", "--json"]);
    let machines = json(&stdout(&out));
    assert_eq!(machines["machines"][0]["name"], "bastion-1");
    assert!(machines["machines"][0]["revoked_at"].is_null());

    // Revocation takes effect on the next request.
    assert!(
        server
            .cli(admin, &["machine", "revoke", "bastion-1"])
            .status
            .success()
    );
    assert_refused(&as_machine(&["whoami"]), "revoked");
    let machines = json(&stdout(&server.cli(admin, &["machine", "list", "--json"])));
    assert!(machines["machines"][0]["revoked_at"].is_string());

    // A certificate from another deployment's CA does not even get through TLS.
    let other = Deployment::init(Backend::Sqlite);
    let other_server = other.serve();
    let other_dir = other.dir.path().join("m");
    std::fs::create_dir(&other_dir).expect("mkdir");
    let out = other_server.cli(
        &other.admin_token,
        &[
            "machine",
            "add",
            "intruder",
            "--role",
            "agent",
            "--out",
            other_dir.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server
        .cli_command(&["whoami"])
        .env("REMPART_CLIENT_CERT", other_dir.join("intruder.crt"))
        .env("REMPART_CLIENT_KEY", other_dir.join("intruder.key"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Refusing to overwrite an existing key.
    let out = server.cli(
        admin,
        &[
            "machine",
            "add",
            "bastion-1",
            "--role",
            "bastion",
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
    );
    assert_refused(&out, "already exists");
}

/// `serve` on an empty directory initialises it but does not print the admin
/// token: its standard output often goes to a journal or a container log.
#[test]
fn serve_keeps_the_admin_token_off_standard_output() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("fresh");
    let out_path = temp.path().join("stdout");
    let stdout_file = std::fs::File::create(&out_path).expect("stdout file");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(stdout_file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let started = std::time::Instant::now();
    while !dir.join("admin.token").exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("token written");
    let printed = std::fs::read_to_string(&out_path).expect("stdout");
    assert!(
        !printed.contains(token.trim()),
        "the token went to stdout: {printed:?}"
    );
}

fn serve_initialises_an_empty_directory(backend: Backend) {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("fresh");
    let pg = (backend == Backend::Postgres).then(common::PgDatabase::create);
    let extra: Vec<&str> = match &pg {
        Some(pg) => vec!["--store", pg.url.as_str()],
        None => vec![],
    };
    let server = Server::start(&dir, &extra);
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("token written");
    assert_eq!(
        json(&server.get("/v1/whoami", Some(token.trim())).1)["actor"],
        "admin"
    );
}

fn config_errors_name_key_and_line(backend: Backend) {
    let deployment = Deployment::init(backend);
    let dir = deployment.data_dir();
    let config_path = dir.join("rempart.toml");
    let good = std::fs::read_to_string(&config_path).expect("config");

    let out = Command::new(BIN)
        .args(["config", "check", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: "));

    let cases = [
        (
            "max_connections = 4096",
            "max_connectoins = 4096",
            "unknown field `max_connectoins`",
        ),
        (
            "server_cert_days = 365",
            "server_cert_days = 9999",
            "out of range",
        ),
        (
            "listen = \"127.0.0.1:8443\"",
            "listen = \"localhost\"",
            "socket address",
        ),
    ];
    for (from, to, message) in cases {
        let bad = good.replacen(from, to, 1);
        let line = bad.lines().position(|l| l == to).expect("replaced") + 1;
        std::fs::write(&config_path, &bad).expect("write");
        let where_ = format!("rempart.toml:{line}:");
        let out = Command::new(BIN)
            .args(["config", "check", "--data-dir"])
            .arg(&dir)
            .output()
            .expect("runs");
        assert_refused(&out, &where_);
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
        // The server refuses to start the same way.
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(&where_) && err.contains(message), "{err}");
    }
    std::fs::write(&config_path, &good).expect("restore");

    // A private file others can read stops the server, naming the file.
    let mut privates = vec!["ca.key", "admin.token"];
    if backend == Backend::Sqlite {
        privates.push("rempart.db");
    }
    for private in privates {
        let path = dir.join(private);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1));
        let expected = format!("{private} is readable by others");
        assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

fn sigterm_shuts_down_gracefully(backend: Backend) {
    let deployment = Deployment::init(backend);
    let mut server = deployment.serve();
    assert_eq!(server.get("/healthz", None).0, 200);
    let status = server
        .terminate(Duration::from_secs(15))
        .expect("stopped within 15 s");
    assert!(status.success(), "{status:?}");
    let log = server.log();
    assert!(log.iter().any(|l| l.contains("SIGTERM")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("\"stopped\"")), "{log:?}");
    // Every log line is one JSON object.
    for line in &log {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{line}"
        );
    }
}

/// A request in flight when SIGTERM arrives is still answered: the server
/// stops accepting, drains, then exits 0.
fn sigterm_drains_requests_in_flight(backend: Backend) {
    let deployment = Deployment::init(backend);
    let mut server = deployment.serve();
    // A valid body padded to 8 KiB, uploaded at 2 KiB/s: about 4 s in flight.
    let body = format!(
        r#"{{"name":"slow","roles":["engineer"]}}{}"#,
        " ".repeat(8 * 1024)
    );
    let body_file = deployment.dir.path().join("slow.json");
    std::fs::write(&body_file, body).expect("write");
    let slow = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--http1.1",
            "--limit-rate",
            "2k",
            "--cacert",
        ])
        .arg(&server.ca_cert)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/json",
        ])
        .args([
            "-H",
            &format!("Authorization: Bearer {}", deployment.admin_token),
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .arg(format!("{}/v1/users", server.url))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl starts");
    std::thread::sleep(Duration::from_millis(1000));
    let status = server
        .terminate(Duration::from_secs(20))
        .expect("stopped within 20 s");
    let answer = slow.wait_with_output().expect("curl ends");
    assert_eq!(stdout(&answer), "201", "the request in flight was answered");
    assert!(status.success(), "{status:?}");
}

fn usage_errors_exit_2(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    for args in [
        &["user", "add", "bob"][..],
        &["user", "add", "bob", "--role", "wizard"],
        &["frobnicate"],
        &["user", "add", "Bad Name", "--role", "admin"],
    ] {
        let out = server.cli(&deployment.admin_token, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    // No credential at all: one line, exit 1, before any request.
    let out = server
        .cli_command(&["user", "list"])
        .output()
        .expect("runs");
    assert_refused(&out, "no credential");
    // Nobody listening: one line, exit 1.
    let out = server
        .cli_command(&["whoami"])
        .env("REMPART_SERVER", "https://127.0.0.1:1")
        .env("REMPART_TOKEN", &deployment.admin_token)
        .output()
        .expect("runs");
    assert_refused(&out, "cannot reach");
    let out = server.cli_command(&["health"]).output().expect("runs");
    assert!(stdout(&out).starts_with("ok"), "{}", stderr(&out));
}

fn certificate_names(cert: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    stdout(&out)
}

/// The server certificate covers the names clients use: the listen address
/// given at init, and whatever `server_names` says at the next start.
#[test]
fn server_certificate_follows_the_configured_names() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let out = Command::new(BIN)
        .args(["init", "--listen", "192.0.2.7:8443", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let names = certificate_names(&dir.join("server.crt"));
    assert!(
        names.contains("IP Address:192.0.2.7") && names.contains("DNS:localhost"),
        "{names}"
    );

    let config = dir.join("rempart.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace("\"192.0.2.7\"]", "\"192.0.2.7\", \"rempart.internal\"]");
    std::fs::write(&config, text).expect("write");
    let server = Server::start(&dir, &[]);
    let names = certificate_names(&dir.join("server.crt"));
    assert!(
        names.contains("DNS:rempart.internal"),
        "renewed at start: {names}"
    );
    assert_eq!(
        server.get("/healthz", None).0,
        200,
        "served with the new certificate"
    );
}

/// SQLite has one writer: a second `serve` on the same directory is refused
/// (the first one caches identities on the strength of being the only one).
#[test]
fn a_second_server_on_one_sqlite_store_is_refused() {
    let deployment = Deployment::init(Backend::Sqlite);
    let first = deployment.serve();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(deployment.data_dir())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let last = stderr(&out)
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("error: ")
            && last.contains("another rempart process is serving this SQLite store"),
        "{last}"
    );
    assert!(
        first
            .log()
            .iter()
            .any(|l| l.contains(r#""identity_cache":true"#)),
        "{:?}",
        first.log()
    );
    assert_eq!(first.get("/healthz", None).0, 200);
}

on_both_backends!(
    init_writes_a_private_data_directory,
    user_lifecycle,
    machine_identities_use_mtls,
    serve_initialises_an_empty_directory,
    config_errors_name_key_and_line,
    sigterm_shuts_down_gracefully,
    sigterm_drains_requests_in_flight,
    usage_errors_exit_2,
);
