//! The client's side before the session: the first message of a
//! connection (an SSL or GSS encryption request, a cancel request or the
//! startup message), read with checked lengths and a size limit, and the
//! messages the proxy itself sends a client (its own authentication's
//! outcome, errors).
//!
//! PostgreSQL's startup packets have no type byte: a length, then a
//! 32-bit code or protocol version.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest startup packet PostgreSQL itself accepts.
pub const MAX_STARTUP: usize = 10_000;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3_0: i32 = 196_608;

/// What a client opens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstMessage {
    SslRequest,
    GssEncRequest,
    Cancel {
        process_id: i32,
        secret_key: i32,
    },
    /// Protocol 3.0 and its parameters (`user`, `database`, …) in order.
    Startup {
        parameters: Vec<(String, String)>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a startup packet of {0} bytes (8 to {MAX_STARTUP})")]
    BadLength(i64),
    #[error("protocol version {major}.{minor} is not supported (3.0 is)")]
    Version { major: i32, minor: i32 },
    #[error("a malformed startup packet: {0}")]
    Malformed(&'static str),
}

impl FrontendError {
    /// The SQLSTATE a client is told.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            FrontendError::Version { .. } => "0A000",
            _ => "08P01",
        }
    }
}

/// Reads one startup-phase packet.
pub async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<FirstMessage, FrontendError> {
    let length = i64::from(stream.read_i32().await?);
    let Ok(length) = usize::try_from(length) else {
        return Err(FrontendError::BadLength(length));
    };
    if !(8..=MAX_STARTUP).contains(&length) {
        return Err(FrontendError::BadLength(length as i64));
    }
    let mut body = vec![0u8; length - 4];
    stream.read_exact(&mut body).await?;
    parse_first(&body)
}

/// Parses a startup-phase packet's body (after its length).
pub fn parse_first(body: &[u8]) -> Result<FirstMessage, FrontendError> {
    let code = body
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(FrontendError::Malformed("no code"))?;
    let rest = &body[4..];
    match code {
        SSL_REQUEST if rest.is_empty() => Ok(FirstMessage::SslRequest),
        GSSENC_REQUEST if rest.is_empty() => Ok(FirstMessage::GssEncRequest),
        CANCEL_REQUEST if rest.len() == 8 => Ok(FirstMessage::Cancel {
            process_id: i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
            secret_key: i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]),
        }),
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => {
            Err(FrontendError::Malformed("a request of the wrong length"))
        }
        PROTOCOL_3_0 => Ok(FirstMessage::Startup {
            parameters: parameters(rest)?,
        }),
        other => Err(FrontendError::Version {
            major: other >> 16,
            minor: other & 0xffff,
        }),
    }
}

/// `name\0value\0 … \0`: pairs of NUL-terminated strings, then a NUL.
fn parameters(mut rest: &[u8]) -> Result<Vec<(String, String)>, FrontendError> {
    let next = |rest: &mut &[u8]| -> Result<String, FrontendError> {
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(FrontendError::Malformed("a string without its end"))?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|_| FrontendError::Malformed("a parameter that is not UTF-8"))?
            .to_owned();
        *rest = &rest[end + 1..];
        Ok(text)
    };
    let mut found = Vec::new();
    loop {
        let name = next(&mut rest)?;
        if name.is_empty() {
            if !rest.is_empty() {
                return Err(FrontendError::Malformed("bytes after the parameters"));
            }
            return Ok(found);
        }
        let value = next(&mut rest)?;
        if found.iter().any(|(seen, _)| *seen == name) {
            return Err(FrontendError::Malformed("a parameter given twice"));
        }
        found.push((name, value));
    }
}

/// Appends one backend message: type, length, body.
fn message(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.put_u8(kind);
    out.put_u32(u32::try_from(body.len() + 4).unwrap_or(u32::MAX));
    out.put_slice(body);
}

/// An `ErrorResponse` with severity `FATAL` (the connection ends after it)
/// or `ERROR`.
pub fn error_response(out: &mut BytesMut, severity: &str, sqlstate: &str, text: &str) {
    let mut body = Vec::with_capacity(text.len() + 32);
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', sqlstate),
        (b'M', text),
    ] {
        body.push(field);
        // A NUL would end the field early; the client must see all of it.
        body.extend(value.bytes().filter(|b| *b != 0));
        body.push(0);
    }
    body.push(0);
    message(out, b'E', &body);
}

/// `AuthenticationOk`, the server's parameters, the cancel key the client
/// is to use, and `ReadyForQuery`: what follows a successful startup.
pub fn session_ready(out: &mut BytesMut, parameters: &[(String, String)], cancel_key: (i32, i32)) {
    message(out, b'R', &0i32.to_be_bytes());
    for (name, value) in parameters {
        let mut body = Vec::with_capacity(name.len() + value.len() + 2);
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
        message(out, b'S', &body);
    }
    let mut key = Vec::with_capacity(8);
    key.extend_from_slice(&cancel_key.0.to_be_bytes());
    key.extend_from_slice(&cancel_key.1.to_be_bytes());
    message(out, b'K', &key);
    message(out, b'Z', b"I");
}

/// An SSL request, as the proxy sends it to a database before TLS.
pub fn ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8i32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST.to_be_bytes());
    out
}

/// A cancel request for `key`, as sent to the database.
pub fn cancel_request(key: (i32, i32)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&key.0.to_be_bytes());
    out[12..].copy_from_slice(&key.1.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&i32::try_from(rest.len() + 8).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(rest);
        out
    }

    async fn read(bytes: &[u8]) -> Result<FirstMessage, FrontendError> {
        let mut stream = bytes;
        read_first(&mut stream).await
    }

    #[tokio::test]
    async fn the_four_openings() {
        assert_eq!(
            read(&packet(SSL_REQUEST, b"")).await.ok(),
            Some(FirstMessage::SslRequest)
        );
        assert_eq!(
            read(&ssl_request()).await.ok(),
            Some(FirstMessage::SslRequest)
        );
        assert_eq!(
            read(&packet(GSSENC_REQUEST, b"")).await.ok(),
            Some(FirstMessage::GssEncRequest)
        );
        assert_eq!(
            read(&cancel_request((7, -9))).await.ok(),
            Some(FirstMessage::Cancel {
                process_id: 7,
                secret_key: -9
            })
        );
        let startup = packet(PROTOCOL_3_0, b"user\0alice\0database\0payments\0\0");
        assert_eq!(
            read(&startup).await.ok(),
            Some(FirstMessage::Startup {
                parameters: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "payments".into())
                ]
            })
        );
    }

    #[tokio::test]
    async fn bad_openings_say_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0, 0, 4], "8 to"),
            (vec![0xff, 0xff, 0xff, 0xff], "8 to"),
            (vec![0, 1, 0, 0], "8 to"),
            (packet(SSL_REQUEST, b"x"), "wrong length"),
            (packet(PROTOCOL_3_0, b"user\0alice"), "without its end"),
            (packet(PROTOCOL_3_0, b"user\0a\0user\0b\0\0"), "twice"),
            (
                packet(PROTOCOL_3_0, b"user\0a\0\0junk"),
                "after the parameters",
            ),
            (packet(0x0002_0000, b""), "2.0 is not supported"),
            (packet(PROTOCOL_3_0, b"user\0\xff\0\0"), "UTF-8"),
        ];
        for (bytes, needle) in cases {
            let err = read(&bytes).await.expect_err(needle);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        // Truncated: the length promises more than comes.
        let mut short = packet(PROTOCOL_3_0, b"user\0a\0\0");
        short.truncate(10);
        assert!(matches!(read(&short).await, Err(FrontendError::Io(_))));
    }

    #[test]
    fn an_error_response_reads_back() {
        let mut out = BytesMut::new();
        error_response(&mut out, "FATAL", "28000", "no grant\0 for you");
        let parsed = postgres_protocol::message::backend::Message::parse(&mut out)
            .expect("parses")
            .expect("whole");
        let postgres_protocol::message::backend::Message::ErrorResponse(body) = parsed else {
            panic!("not an error");
        };
        use fallible_iterator::FallibleIterator;
        let fields: Vec<(u8, String)> = body
            .fields()
            .map(|f| {
                Ok((
                    f.type_(),
                    String::from_utf8_lossy(f.value_bytes()).into_owned(),
                ))
            })
            .collect()
            .expect("fields");
        assert!(fields.contains(&(b'C', "28000".into())));
        assert!(fields.contains(&(b'M', "no grant for you".into())));
    }
}
