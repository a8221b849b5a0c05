//! Event canonicalisation on arbitrary JSON lines: accepted entries are
//! canonical (canonicalising them again changes nothing but the stamp).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_welllog::{Source, Stamp, canonical_entry};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let stamp = Stamp {
        received: time::OffsetDateTime::UNIX_EPOCH,
        sender: "fuzz".to_owned(),
        source: Source::Api,
    };
    if let Ok(bytes) = canonical_entry(value, &stamp) {
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).expect("canonical JSON parses");
        assert!(parsed.get("kind").is_some());
        assert_eq!(serde_json::to_vec(&parsed).expect("serialises"), bytes);
    }
});
