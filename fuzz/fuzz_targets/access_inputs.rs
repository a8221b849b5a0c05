//! What people type into access requests and rules: durations (`2h`),
//! labels (`env=prod`) and resources (`host:db-1`), on arbitrary UTF-8.
//!
//! Properties: nothing panics; an accepted duration is positive and formats
//! to text that parses back to it; an accepted label or resource prints back
//! as the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_access::ResourceRef;
use rempart_access::duration::{format_duration, parse_duration};
use rempart_access::labels::parse_label;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ms) = parse_duration(text) {
        assert!(ms > 0);
        assert_eq!(parse_duration(&format_duration(ms)), Ok(ms), "{text:?}");
    }
    if let Ok((key, value)) = parse_label(text) {
        assert_eq!(format!("{key}={value}"), text);
    }
    if let Ok(resource) = text.parse::<ResourceRef>() {
        assert_eq!(resource.to_string(), text);
    }
});
