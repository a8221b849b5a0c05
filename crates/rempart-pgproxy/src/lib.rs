//! Rempart's PostgreSQL proxy (issue 7): production databases reached
//! only through the bastion, with every statement in the well-log.
//!
//! The protocol side lives here; the bastion (`rempart-bastion`'s
//! `postgres` module) adds the listener, TLS, the user's identity, the
//! grant check and the events:
//! - [`frontend`]: a client's first message (SSL and GSS encryption
//!   requests, cancel requests, the startup message), read with checked
//!   lengths, and the messages the proxy sends a client itself;
//! - [`upstream`]: the proxy's own startup on the real database
//!   (SCRAM-SHA-256 or trust; cleartext and MD5 refused);
//! - [`statements`]: reads the two streams of a session and says which
//!   statements ran, with their SQL, parameters, command tag, row count,
//!   duration and error, for simple and extended (pipelined) queries and
//!   COPY;
//! - [`relay`]: the session's bytes both ways through the observer, and
//!   the cut that ends it with an error the client shows.
#![forbid(unsafe_code)]

pub mod frontend;
pub mod relay;
pub mod statements;
pub mod upstream;
