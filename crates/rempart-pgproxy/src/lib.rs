//! Rempart's PostgreSQL proxy (issue 7, being built): production databases
//! reached only through the bastion, with every statement in the well-log.
//!
//! Built so far: [`statements`], which reads the two streams of a session
//! (after authentication) and says which statements ran, with their SQL,
//! parameters, command tag, row count, duration and error, for simple and
//! extended (pipelined) queries and COPY; and [`upstream`], the proxy's
//! own startup on the real database (SCRAM-SHA-256 or trust; cleartext and
//! MD5 refused). The listener, TLS, the user's authentication, the grant
//! check and the events come next.
#![forbid(unsafe_code)]

pub mod statements;
pub mod upstream;
