//! The proxy's own connection to the real database: the startup message
//! for the service role, then authentication by SCRAM-SHA-256 (or none,
//! when the server trusts the proxy's address), up to the first
//! `ReadyForQuery`. Cleartext and MD5 passwords are refused: the service
//! password is never sent in a form a listener could reuse.
//!
//! What the server said on the way (its parameters, the key that cancels a
//! query) is kept for the client's side of the session.

use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use rempart_core::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the whole startup may take.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the database did not answer within {} s", STARTUP_TIMEOUT.as_secs())]
    Timeout,
    #[error("the connection to the database failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the database refused the service role: {0}")]
    Refused(String),
    #[error(
        "the database asks for a {0} password; configure scram-sha-256 for the service role (pg_hba.conf)"
    )]
    WeakAuthentication(&'static str),
    #[error("the database asks for a password and none is configured")]
    NoPassword,
    #[error("the database's SCRAM exchange failed: {0}")]
    Scram(String),
    #[error("an unexpected message from the database during startup")]
    Unexpected,
}

/// Who the proxy is on the database.
#[derive(Debug)]
pub struct ServiceRole {
    pub user: String,
    pub database: String,
    pub password: Option<Secret<String>>,
    /// Shown in `pg_stat_activity`: which user and grant the session is for.
    pub application_name: String,
    /// Session settings the client asked for at startup (`client_encoding`,
    /// `DateStyle`, …), passed on; `client_encoding` is UTF8 unless given.
    pub settings: Vec<(String, String)>,
}

/// A connection ready for queries.
#[derive(Debug)]
pub struct Ready<S> {
    pub stream: S,
    /// `ParameterStatus` values (server_version, client_encoding, …).
    pub parameters: Vec<(String, String)>,
    /// `BackendKeyData`: what a cancel request for this session names.
    pub cancel_key: Option<(i32, i32)>,
    /// Bytes already read past the first `ReadyForQuery` (none in practice).
    pub pending: BytesMut,
}

/// Runs the startup on `stream` (plain TCP or TLS).
pub async fn start<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    role: &ServiceRole,
) -> Result<Ready<S>, UpstreamError> {
    tokio::time::timeout(STARTUP_TIMEOUT, start_inner(stream, role))
        .await
        .map_err(|_| UpstreamError::Timeout)?
}

async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
) -> Result<Message, UpstreamError> {
    loop {
        if let Some(message) = Message::parse(buffer)? {
            return Ok(message);
        }
        if stream.read_buf(buffer).await? == 0 {
            return Err(UpstreamError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

fn error_text(body: &postgres_protocol::message::backend::ErrorResponseBody) -> String {
    let mut fields = body.fields();
    let (mut code, mut text) = (String::new(), String::new());
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => text = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    format!("{code}: {text}")
}

async fn start_inner<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    role: &ServiceRole,
) -> Result<Ready<S>, UpstreamError> {
    let mut out = BytesMut::new();
    let mut startup = vec![
        ("user", role.user.as_str()),
        ("database", role.database.as_str()),
        ("application_name", role.application_name.as_str()),
    ];
    if !role
        .settings
        .iter()
        .any(|(name, _)| name == "client_encoding")
    {
        startup.push(("client_encoding", "UTF8"));
    }
    startup.extend(
        role.settings
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    frontend::startup_message(startup, &mut out)?;
    stream.write_all(&out).await?;
    let mut buffer = BytesMut::new();
    let mut parameters = Vec::new();
    let mut cancel_key = None;
    let mut scram: Option<ScramSha256> = None;
    loop {
        match read_message(&mut stream, &mut buffer).await? {
            Message::AuthenticationOk => {}
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut offered = false;
                while let Some(mechanism) = mechanisms.next()? {
                    offered |= mechanism == SCRAM_SHA_256;
                }
                if !offered {
                    return Err(UpstreamError::Scram(
                        "the database offers no SCRAM-SHA-256".into(),
                    ));
                }
                let password = role.password.as_ref().ok_or(UpstreamError::NoPassword)?;
                let exchange =
                    ScramSha256::new(password.expose().as_bytes(), ChannelBinding::unsupported());
                let mut out = BytesMut::new();
                frontend::sasl_initial_response(SCRAM_SHA_256, exchange.message(), &mut out)?;
                stream.write_all(&out).await?;
                scram = Some(exchange);
            }
            Message::AuthenticationSaslContinue(body) => {
                let exchange = scram.as_mut().ok_or(UpstreamError::Unexpected)?;
                exchange
                    .update(body.data())
                    .map_err(|e| UpstreamError::Scram(e.to_string()))?;
                let mut out = BytesMut::new();
                frontend::sasl_response(exchange.message(), &mut out)?;
                stream.write_all(&out).await?;
            }
            Message::AuthenticationSaslFinal(body) => {
                // Checks the server's signature: it knows the password too.
                scram
                    .as_mut()
                    .ok_or(UpstreamError::Unexpected)?
                    .finish(body.data())
                    .map_err(|e| UpstreamError::Scram(e.to_string()))?;
            }
            Message::AuthenticationCleartextPassword => {
                return Err(UpstreamError::WeakAuthentication("cleartext"));
            }
            Message::AuthenticationMd5Password(_) => {
                return Err(UpstreamError::WeakAuthentication("MD5"));
            }
            Message::ParameterStatus(body) => {
                parameters.push((body.name()?.to_owned(), body.value()?.to_owned()));
            }
            Message::BackendKeyData(body) => {
                cancel_key = Some((body.process_id(), body.secret_key()));
            }
            Message::NoticeResponse(_) => {}
            Message::ErrorResponse(body) => return Err(UpstreamError::Refused(error_text(&body))),
            Message::ReadyForQuery(_) => {
                return Ok(Ready {
                    stream,
                    parameters,
                    cancel_key,
                    pending: buffer,
                });
            }
            _ => return Err(UpstreamError::Unexpected),
        }
    }
}
