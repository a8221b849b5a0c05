//! The API's routes, one module per resource.

pub mod access;
pub mod log;
pub mod machines;
pub mod meta;
pub mod sessions;
pub mod ssh;
pub mod training;
pub mod users;

use time::OffsetDateTime;

/// Store timestamps are Unix milliseconds; the API speaks RFC 3339.
pub(crate) fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}
