//! The HTTP API against a real server: authentication, roles, bad input,
//! security.txt, OpenAPI and metrics.

mod common;

use common::{Backend, Deployment, json};

/// Every route but the two public ones, with a method and a body that would
/// be valid for an admin.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/v1/whoami"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/v1/users"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users/admin"),
    ("POST", "/v1/users/admin/disable"),
    ("POST", "/v1/users/admin/token"),
    ("GET", "/v1/machines"),
    ("POST", "/v1/machines"),
    ("POST", "/v1/machines/m/revoke"),
];

fn assert_error_body(body: &str, error: &str) {
    let value = json(body);
    assert_eq!(value["error"], error, "{body}");
    assert!(
        value["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

fn request(
    server: &common::Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[&str],
) -> (u16, String) {
    let url = format!("{}{path}", server.url);
    let mut args = vec!["-X", method];
    let header;
    if let Some(token) = token {
        header = format!("Authorization: Bearer {token}");
        args.extend(["-H", header.as_str()]);
    }
    args.extend(extra);
    args.push(&url);
    server.curl(&args)
}

fn public_routes_and_authentication(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();

    let (status, body) = server.get("/healthz", None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ok");

    let (status, body) = server.get("/.well-known/security.txt", None);
    assert_eq!(status, 200);
    for field in ["Contact: mailto:", "Expires: ", "Preferred-Languages: en"] {
        assert!(body.contains(field), "{field} missing from {body}");
    }

    let wrong = format!("rpt_{}", "A".repeat(43));
    for (method, path) in PROTECTED {
        for token in [None, Some("garbage"), Some(wrong.as_str())] {
            let (status, body) = request(&server, method, path, token, &[]);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_error_body(&body, "unauthorized");
        }
    }
    // The 401 names the scheme, as RFC 6750 asks.
    let out = server.curl(&["-i", &format!("{}/v1/whoami", server.url)]).1;
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{out}"
    );

    let (status, body) = server.get("/v1/whoami", Some(&deployment.admin_token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["actor"], "admin");
}

fn roles_are_enforced(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let out = server.cli(
        &deployment.admin_token,
        &["user", "add", "erin", "--role", "engineer"],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let engineer = common::stdout(&out).trim().to_owned();

    let (status, _) = server.get("/v1/whoami", Some(&engineer));
    assert_eq!(status, 200);
    let (status, _) = server.get("/v1/users/erin", Some(&engineer));
    assert_eq!(status, 200, "a user may read their own account");
    for (method, path) in PROTECTED {
        if matches!(*path, "/v1/whoami" | "/v1/openapi.json") {
            continue;
        }
        let body = r#"{"name":"x","roles":["admin"]}"#;
        let (status, text) = request(
            &server,
            method,
            path,
            Some(&engineer),
            &["-H", "Content-Type: application/json", "-d", body],
        );
        assert_eq!(status, 403, "{method} {path} as engineer: {text}");
        assert_error_body(&text, "forbidden");
    }
}

fn bad_input_gets_a_clear_4xx(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let token = deployment.admin_token.as_str();
    let json_type = ["-H", "Content-Type: application/json"];
    let post = |body: &str, extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--data-binary", body]);
        request(&server, "POST", "/v1/users", Some(token), &args)
    };

    let cases: &[(&str, &[&str], u16, &str)] = &[
        ("{not json", &json_type, 400, "malformed_json"),
        ("", &json_type, 400, "malformed_json"),
        (
            r#"{"name":"bob","roles":["engineer"],"admin":true}"#,
            &json_type,
            422,
            "invalid_body",
        ),
        (
            r#"{"name":"Bob!","roles":["engineer"]}"#,
            &json_type,
            422,
            "invalid_body",
        ),
        (
            r#"{"name":"bob","roles":[]}"#,
            &json_type,
            422,
            "invalid_body",
        ),
        (
            r#"{"name":"bob","roles":["root"]}"#,
            &json_type,
            422,
            "invalid_body",
        ),
        (
            r#"{"name":"bob","roles":["engineer"],"email":"nope"}"#,
            &json_type,
            422,
            "invalid_body",
        ),
        (
            r#"{"name":"bob","roles":["engineer"]}"#,
            &["-H", "Content-Type: text/plain"],
            415,
            "unsupported_media_type",
        ),
        (
            r#"{"name":"bob","roles":["engineer"]}"#,
            &[],
            415,
            "unsupported_media_type",
        ),
    ];
    for (body, extra, status, error) in cases {
        let (got, text) = post(body, extra);
        assert_eq!(got, *status, "{body:?}: {text}");
        assert_error_body(&text, error);
        // The unknown field is named in the detail.
        if body.contains("\"admin\"") {
            assert!(text.contains("admin"), "{text}");
        }
    }

    // Larger than max_body_bytes (1 MiB by default): 413, and the server lives on.
    // Over HTTP/1.1: on HTTP/2 the server answers 413 then resets the unread
    // stream with NO_ERROR (RFC 9113 §8.1), which curl 7.88 reports as an
    // error instead of showing the answer.
    let big = format!(
        r#"{{"name":"bob","roles":["engineer"],"email":"{}@x"}}"#,
        "a".repeat(2 << 20)
    );
    let file = deployment.dir.path().join("big.json");
    std::fs::write(&file, big).expect("write");
    let at_file = format!("@{}", file.display());
    let (got, text) = request(
        &server,
        "POST",
        "/v1/users",
        Some(token),
        &[
            "--http1.1",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &at_file,
        ],
    );
    assert_eq!(got, 413, "{text}");
    assert_error_body(&text, "body_too_large");

    // A bad CSR is a 400 that says why; a duplicate is a 409.
    let (got, text) = request(
        &server,
        "POST",
        "/v1/machines",
        Some(token),
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"name":"m1","role":"agent","csr_pem":"junk"}"#,
        ],
    );
    assert_eq!(got, 400, "{text}");
    assert!(text.contains("csr_pem"), "{text}");
    assert_eq!(
        post(r#"{"name":"bob","roles":["engineer"]}"#, &json_type).0,
        201
    );
    let (got, text) = post(r#"{"name":"bob","roles":["engineer"]}"#, &json_type);
    assert_eq!(got, 409, "{text}");
    assert_error_body(&text, "conflict");

    // Unknown routes and methods get JSON too.
    let (got, text) = server.get("/v1/nothing", Some(token));
    assert_eq!(got, 404);
    assert_error_body(&text, "not_found");
    let (got, text) = request(&server, "DELETE", "/v1/users", Some(token), &[]);
    assert_eq!(got, 405, "{text}");
    assert_error_body(&text, "method_not_allowed");
    let (got, text) = server.get("/v1/users/..%2f..", Some(token));
    assert!(got == 400 || got == 404, "{got}: {text}");

    // Nothing above was a 500.
    assert_eq!(server.get("/healthz", None).0, 200);
    assert!(
        !server.log().iter().any(|l| l.contains("panicked")),
        "{:?}",
        server.log()
    );
}

fn openapi_describes_the_routes(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let (status, body) = server.get("/v1/openapi.json", Some(&deployment.admin_token));
    assert_eq!(status, 200);
    let doc = json(&body);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in PROTECTED {
        let templated = path.replace("/admin", "/{name}").replace("/m/", "/{name}/");
        let operation = &paths
            .get(&templated)
            .unwrap_or_else(|| panic!("{templated} missing from the OpenAPI document"))
            [method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{method} {templated} missing");
    }
    for public in ["/healthz", "/.well-known/security.txt"] {
        assert!(paths.contains_key(public), "{public}");
    }
    assert!(doc["components"]["schemas"]["CreateUser"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

fn metrics_count_requests_by_route(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let token = deployment.admin_token.as_str();
    for _ in 0..3 {
        assert_eq!(server.get("/v1/whoami", Some(token)).0, 200);
    }
    assert_eq!(server.get("/v1/whoami", None).0, 401);
    let (status, text) = server.get("/metrics", Some(token));
    assert_eq!(status, 200, "{text}");
    let count_line = text
        .lines()
        .find(|l| {
            l.starts_with("rempart_http_requests_total{")
                && l.contains(r#"route="/v1/whoami""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no whoami counter in {text}"));
    assert!(count_line.ends_with(" 3"), "{count_line}");
    assert!(
        text.lines()
            .any(|l| l.contains(r#"route="/v1/whoami""#) && l.contains(r#"status="401""#))
    );
    assert!(
        text.contains("rempart_http_request_duration_seconds_bucket{"),
        "{text}"
    );
}

/// A request slower than `request_timeout_secs` gets a 408 JSON answer.
fn slow_requests_time_out(backend: Backend) {
    let deployment = Deployment::init(backend);
    let config = deployment.data_dir().join("rempart.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("request_timeout_secs = 30", "request_timeout_secs = 1"),
    )
    .expect("write");
    let server = deployment.serve();
    let body = format!(
        r#"{{"name":"slow","roles":["engineer"]}}{}"#,
        " ".repeat(8 * 1024)
    );
    let file = deployment.dir.path().join("slow.json");
    std::fs::write(&file, body).expect("write");
    let at_file = format!("@{}", file.display());
    let started = std::time::Instant::now();
    let (status, text) = request(
        &server,
        "POST",
        "/v1/users",
        Some(&deployment.admin_token),
        &[
            "--http1.1",
            "--limit-rate",
            "1k",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &at_file,
        ],
    );
    assert_eq!(status, 408, "{text}");
    assert_error_body(&text, "timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // A well-log batch is timed by its handler once it has its share of the
    // ingest budget: a body trickled in still ends in 408, not a held slot.
    let lines = "{\"kind\":\"test.slow\",\"msg\":\"trickled\"}\n".repeat(3000);
    let file = deployment.dir.path().join("slow.jsonl");
    std::fs::write(&file, lines).expect("write");
    let at_file = format!("@{}", file.display());
    let started = std::time::Instant::now();
    let (status, text) = request(
        &server,
        "POST",
        "/v1/log/entries",
        Some(&deployment.admin_token),
        &[
            "--http1.1",
            "--limit-rate",
            "1k",
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            &at_file,
        ],
    );
    assert_eq!(status, 408, "{text}");
    assert_error_body(&text, "timeout");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// A client that connects and never starts TLS is dropped after the handshake
/// limit (10 s): it cannot hold a connection slot for ever.
#[test]
fn silent_connections_are_dropped() {
    use std::io::Read;
    let deployment = Deployment::init(Backend::Sqlite);
    let server = deployment.serve();
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = stream.read(&mut buf);
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(9) && waited < std::time::Duration::from_secs(15),
        "{waited:?}"
    );
}

/// A client that completes TLS and then sends nothing (no request, or only
/// the HTTP/2 preface) loses its connection slot after 10 s.
#[test]
fn idle_tls_connections_are_closed() {
    let deployment = Deployment::init(Backend::Sqlite);
    let server = deployment.serve();
    for alpn in ["http/1.1", "h2"] {
        let started = std::time::Instant::now();
        let mut client = std::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-alpn", alpn, "-connect"])
            .arg(server.addr.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl starts");
        if alpn == "h2" {
            use std::io::Write;
            let stdin = client.stdin.as_mut().expect("stdin");
            stdin
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .expect("preface");
            stdin.flush().expect("flush");
        }
        // The server must close it; s_client then exits. Bounded wait.
        let mut closed = None;
        while started.elapsed() < std::time::Duration::from_secs(25) {
            if let Ok(Some(_)) = client.try_wait() {
                closed = Some(started.elapsed());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = client.kill();
        let _ = client.wait();
        let closed = closed.unwrap_or_else(|| panic!("{alpn}: still open after 25 s"));
        assert!(
            closed >= std::time::Duration::from_secs(9)
                && closed < std::time::Duration::from_secs(20),
            "{alpn}: closed after {closed:?}"
        );
    }
    assert_eq!(server.get("/healthz", None).0, 200);
}

on_both_backends!(
    public_routes_and_authentication,
    roles_are_enforced,
    bad_input_gets_a_clear_4xx,
    openapi_describes_the_routes,
    metrics_count_requests_by_route,
    slow_requests_time_out,
);
