//! `rempart.toml` parsing: `Config::parse` on arbitrary UTF-8 text.
//!
//! Properties: it never panics; an error points at a line that exists (or
//! the one just past the end), at a column >= 1, and names the origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_config::Config;
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(config) => {
            // Exercise what `rempart serve` and `config check` do next.
            let _ = config.warnings(OffsetDateTime::UNIX_EPOCH);
            let _ = format!("{config:?}");
        }
        Err(err) => {
            let lines = text.lines().count();
            assert!(
                err.line >= 1 && err.line <= lines + 1,
                "error line {} outside 1..={} for a text of {lines} lines: {err}",
                err.line,
                lines + 1,
            );
            assert!(err.column >= 1, "error column {} < 1: {err}", err.column);
            assert_eq!(err.origin, "fuzz.toml");
            let _ = err.to_string();
        }
    }
});
