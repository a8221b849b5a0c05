//! Syslog from the network: framing in arbitrary chunks, parsing, sshd
//! recognition and the event built from it. Never a panic or a hang, and
//! every non-empty frame becomes an entry that fits the event schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_syslog::{Framer, parse, to_event};
use rempart_welllog::{Source, Stamp, canonical_entry};

fuzz_target!(|data: &[u8]| {
    let received = time::OffsetDateTime::UNIX_EPOCH;
    let stamp = Stamp {
        received,
        sender: "fuzz".to_owned(),
        source: Source::Syslog,
    };
    // The first byte chooses the chunk size the stream arrives in.
    let (chunk, stream) = match data.split_first() {
        Some((size, rest)) => (usize::from(*size).max(1), rest),
        None => return,
    };
    let mut framer = Framer::default();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next_frame() {
            frames.extend(frame.ok());
        }
    }
    frames.extend(framer.finish());
    for frame in frames {
        if let Ok(message) = parse(&frame, received) {
            let event = to_event(&message, received);
            canonical_entry(event, &stamp).expect("every parsed message makes a valid entry");
        }
    }
});
