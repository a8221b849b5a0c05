//! The bastion's PostgreSQL listener reads a connection's first packet
//! (SSL, GSS and cancel requests, the startup message) from anyone who
//! can reach its port (issue 7): arbitrary bytes, read as the listener
//! reads them.
//!
//! Properties: nothing panics; a startup's parameters are unique and
//! non-empty by name; a packet read whole is the one parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_pgproxy::frontend::{FirstMessage, parse_first};

fuzz_target!(|data: &[u8]| {
    if let Ok(FirstMessage::Startup { parameters }) = parse_first(data) {
        for (i, (name, _)) in parameters.iter().enumerate() {
            assert!(!name.is_empty());
            assert!(parameters[..i].iter().all(|(seen, _)| seen != name));
        }
    }
    // The same bytes behind a length prefix, through the async reader.
    let mut framed = Vec::with_capacity(data.len() + 4);
    framed.extend_from_slice(&u32::try_from(data.len() + 4).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(data);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let read = runtime.block_on(async {
        let mut stream = framed.as_slice();
        rempart_pgproxy::frontend::read_first(&mut stream).await
    });
    if let (Ok(read), Ok(parsed)) = (read, parse_first(data)) {
        assert_eq!(read, parsed);
    }
});
