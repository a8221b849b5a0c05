//! Syslog for the well-log: framing on a stream ([`Framer`], RFC 6587 octet
//! counting and LF-terminated), parsing of RFC 5424 and RFC 3164 messages
//! ([`parse`] into a [`Message`]), and recognition of what sshd reports
//! ([`sshd::recognise`]: accepted and failed logins, invalid users).
//!
//! ```
//! use time::macros::datetime;
//!
//! let received = datetime!(2026-12-10 07:00:00 UTC);
//! let line = b"Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2";
//! let message = rempart_syslog::parse(line, received).unwrap();
//! assert_eq!(message.host.as_deref(), Some("LabSZ"));
//! assert_eq!(message.app.as_deref(), Some("sshd"));
//! assert_eq!(message.pid.as_deref(), Some("24200"));
//! let login = rempart_syslog::sshd::recognise(&message.msg).unwrap();
//! assert_eq!(login.user, "webmaster");
//! assert!(login.invalid_user);
//! ```
//!
//! Architecture invariant: no I/O and no panics on any input; every byte
//! that arrives is either a message or an error that says why.
#![forbid(unsafe_code)]

mod frame;
mod message;
pub mod sshd;

pub use frame::{FrameError, Framer, MAX_FRAME};
pub use message::{Format, Message, ParseError, parse, to_event};
