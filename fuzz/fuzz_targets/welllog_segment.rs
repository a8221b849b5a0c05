//! The segment reader on arbitrary bytes: records decode or are refused,
//! never a panic, and a decoded record's payload matches its leaf hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_welllog::segment::{decode_header, decode_record};

fuzz_target!(|data: &[u8]| {
    let _ = decode_header(data);
    let mut rest = data;
    while !rest.is_empty() {
        match decode_record(rest) {
            Ok((record, used)) => {
                assert!(used > 0 && used <= rest.len());
                if let Some(payload) = &record.payload {
                    assert_eq!(rempart_merkle::leaf_hash(payload), record.leaf);
                }
                rest = &rest[used..];
            }
            Err(_) => rest = &rest[1..],
        }
    }
});
