//! The PostgreSQL proxy's statement observer (issue 7) on arbitrary bytes
//! from both sides, cut into arbitrary pieces.
//!
//! Properties: nothing panics; an error ends the stream (as the proxy ends
//! the connection); what it holds back stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_pgproxy::statements::{MAX_MESSAGE, Observer};

fuzz_target!(|data: &[u8]| {
    let mut observer = Observer::default();
    // The first byte of each piece: its length and which side sent it.
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let take = usize::from(head & 0x7f).min(tail.len());
        let (piece, next) = tail.split_at(take);
        rest = next;
        let outcome = if head & 0x80 == 0 {
            observer.from_client(piece).map(|()| Vec::new())
        } else {
            observer.from_server(piece)
        };
        if outcome.is_err() {
            return;
        }
        assert!(observer.buffered() <= 2 * (MAX_MESSAGE + 5 + 128));
    }
});
