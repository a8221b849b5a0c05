//! Incident search over the well-log: a query language ([`Query::parse`])
//! and an index ([`Index`]) that follows the log.
//!
//! ```text
//! since:2h host:db-1 actor:alice kind:ssh.* outcome:failure src_ip:10.0.0.7 "invalid user" root
//! ```
//!
//! Terms are ANDed: a time window (`since:`/`until:`, relative like `2h`,
//! `30m`, `7d` or RFC 3339), `host:`, `actor:`, `target:`, `outcome:`,
//! `kind:` (exact, or a prefix ending in `.*`), any other `field:value`, and
//! free text (words, or "phrases"). Hits come newest first, as sequence
//! numbers, so each can be fetched and proven.
//!
//! The index is a SQLite file with B-tree indexes on (field, time) and an
//! FTS5 table for text. It is derived data: deleted, it is rebuilt from the
//! log, which stays the only source of truth.
//!
//! Architecture invariant: this crate never reads the well-log's files; it
//! is given entries (sequence number and canonical bytes) to index.
#![forbid(unsafe_code)]

mod index;
mod query;

pub use index::{Index, IndexError};
pub use query::{Kind, Query, QueryError};
