//! Rempart's PostgreSQL proxy (issue 7, being built): production databases
//! reached only through the bastion, with every statement in the well-log.
//!
//! Built so far: [`statements`], which reads the two streams of a session
//! (after authentication) and says which statements ran, with their SQL,
//! parameters, command tag, row count, duration and error, for simple and
//! extended (pipelined) queries and COPY. The listener, TLS, the user's
//! authentication, the grant check and the upstream connection come next.
#![forbid(unsafe_code)]

pub mod statements;
