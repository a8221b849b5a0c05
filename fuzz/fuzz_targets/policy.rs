//! Firewall policy files (issue 5) from arbitrary UTF-8.
//!
//! Properties: nothing panics; a refusal names a line inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = rempart_policy::parse(&[("fuzz.toml", text)]) {
        assert!(err.line >= 1 && err.line <= text.lines().count().max(1) + 1, "{err}");
    }
});
