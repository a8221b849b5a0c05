//! Signed notes and checkpoints from outside (a witness's copy, a checkpoint
//! file given to `log verify`): parsed or refused, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rempart_merkle::checkpoint::{Checkpoint, NoteVerifier};

fn verifier() -> &'static NoteVerifier {
    static KEY: OnceLock<NoteVerifier> = OnceLock::new();
    KEY.get_or_init(|| {
        NoteVerifier::from_text("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .expect("the reference key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = verifier().verify(text);
    let _ = Checkpoint::parse(text);
    let _ = NoteVerifier::from_text(text);
    let _ = rempart_merkle::checkpoint::NoteSigner::from_text(text);
});
