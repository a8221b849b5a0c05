//! The bastion's SFTP observer (issue 6) on arbitrary bytes from both sides,
//! cut into arbitrary pieces.
//!
//! Properties: nothing panics; an error ends the stream (as the relay ends
//! the channel); what it holds back stays under one packet per direction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_sftp::{MAX_PACKET, Observer};

fuzz_target!(|data: &[u8]| {
    let mut observer = Observer::default();
    // The first byte of each piece: its length and which side sent it.
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let take = usize::from(head & 0x7f).min(tail.len());
        let (piece, next) = tail.split_at(take);
        rest = next;
        let outcome = if head & 0x80 == 0 {
            observer.from_user(piece).map(|()| Vec::new())
        } else {
            observer.from_target(piece)
        };
        if outcome.is_err() {
            return;
        }
        assert!(observer.buffered() <= 2 * (MAX_PACKET + 4 + 128));
    }
    let _ = observer.finish();
});
