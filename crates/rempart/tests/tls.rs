//! TLS only, modern only: real handshakes with `openssl s_client`.

mod common;

use std::process::Command;

use common::{Backend, Deployment, Server, raw_exchange};

/// Runs `openssl s_client` with `args` and says whether a session was set up,
/// and with which protocol and cipher.
fn handshake(server: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(server.addr.to_string())
        .arg("-CAfile")
        .arg(&server.ca_cert)
        .args(["-servername", "localhost", "-verify_return_error"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let established =
        text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)");
    (established, text)
}

fn modern_tls_only(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();

    let (ok, text) = handshake(&server, &["-tls1_3"]);
    assert!(ok, "TLS 1.3 must be accepted: {text}");
    assert!(text.contains("TLSv1.3"), "{text}");

    for suite in [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ] {
        let (ok, text) = handshake(&server, &["-tls1_2", "-cipher", suite]);
        assert!(
            ok,
            "TLS 1.2 {suite} (ECDHE + AEAD) must be accepted: {text}"
        );
    }

    // Refused: old versions, and TLS 1.2 without AEAD or without ECDHE.
    let refused: &[&[&str]] = &[
        &["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"],
        &["-tls1", "-cipher", "ALL:@SECLEVEL=0"],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"], // CBC, not AEAD
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"],    // CBC with SHA-1
        &["-tls1_2", "-cipher", "AES128-GCM-SHA256"],         // static RSA key exchange
        &["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"], // finite-field DHE
    ];
    for args in refused {
        let (ok, text) = handshake(&server, args);
        assert!(!ok, "{args:?} must be refused: {text}");
    }
}

fn plain_http_gets_no_service(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let answer = raw_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // And the server still serves TLS afterwards.
    assert_eq!(server.get("/healthz", None).0, 200);
}

fn untrusted_ca_is_refused_by_the_cli(backend: Backend) {
    let deployment = Deployment::init(backend);
    let server = deployment.serve();
    let other = Deployment::init(Backend::Sqlite);
    let out = server
        .cli_command(&["whoami"])
        .env("REMPART_CA_CERT", other.ca_cert())
        .env("REMPART_TOKEN", &deployment.admin_token)
        .output()
        .expect("runs");
    common::assert_refused(&out, "cannot reach");
    // And a plain-HTTP server URL is refused before anything is sent.
    let out = server
        .cli_command(&["whoami"])
        .env("REMPART_SERVER", format!("http://{}", server.addr))
        .env("REMPART_TOKEN", &deployment.admin_token)
        .output()
        .expect("runs");
    common::assert_refused(&out, "https://");
}

on_both_backends!(
    modern_tls_only,
    plain_http_gets_no_service,
    untrusted_ca_is_refused_by_the_cli
);
