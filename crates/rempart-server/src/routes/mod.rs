//! The API's routes, one module per resource.

pub mod access;
pub mod db;
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

/// How long a certificate a person asked for lasts, in milliseconds: what
/// `valid_for` says (`30m`, `8h`), at most `max_ms` (the setting named
/// `setting`), which is also the default.
pub(crate) fn certificate_validity_ms(
    valid_for: Option<&str>,
    max_ms: i64,
    setting: &str,
) -> Result<i64, crate::error::ApiError> {
    use crate::error::ApiError;
    let Some(text) = valid_for else {
        return Ok(max_ms);
    };
    let ms = rempart_access::parse_duration(text)
        .map_err(|e| ApiError::bad_request(format!("valid_for: {e}")))?;
    if ms > max_ms {
        return Err(ApiError::bad_request(format!(
            "valid_for: {text} is longer than the {} minutes a certificate may last ({setting})",
            max_ms / 60_000
        )));
    }
    Ok(ms)
}
