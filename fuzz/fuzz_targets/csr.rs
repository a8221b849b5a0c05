//! Machine certificate signing requests: `sign_machine_csr` on arbitrary
//! UTF-8 text (the PEM layer), and on the raw bytes wrapped in a
//! "CERTIFICATE REQUEST" PEM envelope (the DER and signature layers).
//!
//! Property: it never panics.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use rempart_core::{MachineName, MachineRole};
use rempart_tls::CertificateAuthority;

struct Fixture {
    ca: CertificateAuthority,
    name: MachineName,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        ca: CertificateAuthority::generate().expect("a CA is generated"),
        name: "fuzz-agent".parse().expect("a valid machine name"),
    })
}

fn pem_envelope(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 80);
    pem.push_str("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    pem
}

fuzz_target!(|data: &[u8]| {
    let Fixture { ca, name } = fixture();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ca.sign_machine_csr(text, name, MachineRole::Agent, 1);
    }
    let _ = ca.sign_machine_csr(&pem_envelope(data), name, MachineRole::Agent, 1);
});
