//! A granted session's bytes, both ways, read by the [`Observer`] on the
//! way: each finished statement goes to the caller (who logs it), and a
//! cut ends the session with a PostgreSQL error the client shows.
//!
//! Fail closed: a stream the observer cannot follow is not passed on
//! blindly (what cannot be logged does not run); the session ends with a
//! protocol error instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::frontend;
use crate::statements::{Observer, Statement};

const CHUNK: usize = 64 * 1024;
/// How long a cut may wait for the message under way and for the client
/// to take the error: a client that reads nothing cannot hold it back.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// How a relayed session ended, and what went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayEnd {
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub statements: u64,
    /// Why, when it was not the client or the database closing normally.
    pub reason: Option<String>,
}

/// Where finished statements go: the caller's log. Called in the relay's
/// own task (no hop through another task per statement); it may wait when
/// the log is behind (back-pressure, never a lost statement) and fails
/// when the log is gone, which ends the session.
pub trait StatementLog {
    fn record(
        &mut self,
        statement: Statement,
    ) -> impl std::future::Future<Output = Result<(), LogGone>> + Send;
}

/// The statement log can take no more: the session must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogGone;

/// A channel is a log: what the tests and simple callers use.
impl StatementLog for mpsc::Sender<Statement> {
    async fn record(&mut self, statement: Statement) -> Result<(), LogGone> {
        self.send(statement).await.map_err(|_| LogGone)
    }
}

/// Relays until either side closes or `cut` gets a reason. Statements go
/// to `statements` as they finish.
pub async fn relay<C, U, L>(
    client: C,
    upstream: U,
    observer: Observer,
    statements: L,
    cut: watch::Receiver<Option<String>>,
) -> RelayEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    L: StatementLog,
{
    let observer = Arc::new(Mutex::new(observer));
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    // Either pump ending stops the other.
    let (stop_tx, stop_rx) = watch::channel(None::<String>);
    let to_upstream = pump_from_client(
        client_read,
        upstream_write,
        observer.clone(),
        cut.clone(),
        stop_rx.clone(),
        stop_tx.clone(),
    );
    let to_client = pump_from_server(
        upstream_read,
        client_write,
        observer,
        statements,
        cut,
        stop_rx,
        stop_tx,
    );
    let ((from_client, client_reason), (to_client_bytes, count, server_reason)) =
        tokio::join!(to_upstream, to_client);
    RelayEnd {
        bytes_from_client: from_client,
        bytes_to_client: to_client_bytes,
        statements: count,
        reason: server_reason.or(client_reason),
    }
}

fn lock(observer: &Mutex<Observer>) -> std::sync::MutexGuard<'_, Observer> {
    observer.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tells the other pump to stop; the first reason given stands (an empty
/// one: a side closed normally).
fn stop_with(stop: &watch::Sender<Option<String>>, reason: String) {
    stop.send_if_modified(|current| {
        if current.is_none() {
            *current = Some(reason);
            true
        } else {
            false
        }
    });
}

/// The reason a cut or a stop carries, once one is set.
async fn stopped(receiver: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = receiver.borrow_and_update().clone() {
            return reason;
        }
        if receiver.changed().await.is_err() {
            // The sender is gone: nobody can cut any more; wait for ever.
            std::future::pending::<()>().await;
        }
    }
}

async fn pump_from_client<R, W>(
    mut client: R,
    mut upstream: W,
    observer: Arc<Mutex<Observer>>,
    mut cut: watch::Receiver<Option<String>>,
    mut stop: watch::Receiver<Option<String>>,
    stop_tx: watch::Sender<Option<String>>,
) -> (u64, Option<String>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    let reason = loop {
        let n = tokio::select! {
            read = client.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break None,
                Ok(n) => n,
            },
            _ = stopped(&mut cut) => break None,
            _ = stopped(&mut stop) => break None,
        };
        if let Err(err) = lock(&observer).from_client(&buffer[..n]) {
            // Not passed on: what cannot be read cannot be logged.
            let reason = format!("the proxy cannot follow the client's messages: {err}");
            stop_with(&stop_tx, reason.clone());
            break Some(reason);
        }
        if upstream.write_all(&buffer[..n]).await.is_err() {
            break None;
        }
        total += n as u64;
    };
    // The database sees the end of the stream and ends its session (an
    // open transaction is rolled back).
    let _ = tokio::time::timeout(CUT_GRACE, upstream.shutdown()).await;
    stop_with(&stop_tx, String::new());
    (total, reason)
}

async fn pump_from_server<R, W, L>(
    mut upstream: R,
    mut client: W,
    observer: Arc<Mutex<Observer>>,
    mut statements: L,
    mut cut: watch::Receiver<Option<String>>,
    mut stop: watch::Receiver<Option<String>>,
    stop_tx: watch::Sender<Option<String>>,
) -> (u64, u64, Option<String>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    L: StatementLog,
{
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut count = 0u64;
    let mut tell_client = None;
    let reason = loop {
        let n = tokio::select! {
            read = upstream.read(&mut buffer) => match read {
                // The database closing may follow a cut or a stop (the
                // other pump closed it): the client is told why, below.
                Ok(0) | Err(_) => break None,
                Ok(n) => n,
            },
            reason = stopped(&mut cut) => break Some(reason),
            reason = stopped(&mut stop) => {
                if reason.is_empty() {
                    break None;
                }
                break Some(reason);
            }
        };
        let finished = lock(&observer).from_server(&buffer[..n]);
        let finished = match finished {
            Ok(finished) => finished,
            Err(err) => {
                let reason = format!("the proxy cannot follow the database's messages: {err}");
                stop_with(&stop_tx, reason.clone());
                break Some(reason);
            }
        };
        if client.write_all(&buffer[..n]).await.is_err() {
            break None;
        }
        total += n as u64;
        for statement in finished {
            count += 1;
            if statements.record(statement).await.is_err() {
                tracing::error!("the statement log is gone: the session ends");
                let reason = "the proxy cannot log statements".to_owned();
                stop_with(&stop_tx, reason.clone());
                tell_client = Some(("58000", format!("rempart: {reason}")));
                break;
            }
        }
        if tell_client.is_some() {
            break Some("the proxy cannot log statements".to_owned());
        }
    };
    // Why it ended, if not by a side closing normally: a cut (SQLSTATE
    // 57P01, as an administrator's termination) or a protocol error.
    let cut_reason = cut.borrow().clone();
    let stop_reason = stop.borrow().clone().filter(|r| !r.is_empty());
    let reason = match (tell_client.is_some(), cut_reason, stop_reason) {
        (true, _, _) => reason,
        (false, Some(why), _) => {
            tell_client = Some(("57P01", format!("rempart: {why}")));
            Some(why)
        }
        (false, None, Some(why)) => {
            tell_client = Some(("08P01", format!("rempart: {why}")));
            Some(why)
        }
        (false, None, None) => reason,
    };
    stop_with(&stop_tx, String::new());
    if let Some((sqlstate, text)) = tell_client {
        let _ = tokio::time::timeout(CUT_GRACE, async {
            // Finish the message under way, so the error is read as one.
            loop {
                let remaining = lock(&observer).server_message_remaining();
                if remaining == 0 {
                    break;
                }
                let want = remaining.min(buffer.len());
                let n = match upstream.read(&mut buffer[..want]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let _ = lock(&observer).from_server(&buffer[..n]);
                if client.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
                total += n as u64;
            }
            let mut out = BytesMut::new();
            frontend::error_response(&mut out, "FATAL", sqlstate, &text);
            let _ = client.write_all(&out).await;
        })
        .await;
    }
    let _ = tokio::time::timeout(CUT_GRACE, client.shutdown()).await;
    (total, count, reason)
}
