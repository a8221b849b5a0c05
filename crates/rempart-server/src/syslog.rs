//! Syslog listeners feeding the well-log: plain TCP, TLS with a machine's
//! client certificate (RFC 5425), and UDP as best effort.
//!
//! Over TCP and TLS a connection's messages are appended in batches as they
//! arrive; reading waits while a batch is being written, which is the
//! back-pressure (a sender faster than the disk is slowed, not buffered).
//! Syslog has no acknowledgement, so the lossless path stays HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use rempart_syslog::Framer;
use rempart_welllog::{Source, Stamp};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::now_ms;
use crate::state::AppState;

/// Syslog connections served at once, per listener.
const MAX_CONNECTIONS: usize = 1024;
/// Messages appended together at most.
const MAX_BATCH: usize = 4096;

/// Turns frames into canonical entries; a message that does not parse is
/// still kept, whole (only empty ones are dropped).
fn entries(frames: Vec<Vec<u8>>, sender: &str) -> Vec<Vec<u8>> {
    let received = OffsetDateTime::now_utc();
    let stamp = Stamp {
        received,
        sender: sender.to_owned(),
        source: Source::Syslog,
    };
    frames
        .iter()
        .filter_map(|frame| rempart_syslog::parse(frame, received).ok())
        .filter_map(|message| {
            let event = rempart_syslog::to_event(&message, received);
            match rempart_welllog::canonical_entry(event, &stamp) {
                Ok(entry) => Some(entry),
                Err(err) => {
                    tracing::warn!(error = %err, sender, "syslog: a message does not fit the event schema");
                    None
                }
            }
        })
        .collect()
}

async fn append(state: &AppState, frames: Vec<Vec<u8>>, sender: &str) -> bool {
    let batch = entries(frames, sender);
    if batch.is_empty() {
        return true;
    }
    match state.welllog.append(batch).await {
        Ok(_) => true,
        Err(err) => {
            tracing::error!(error = %err, sender, "syslog: the well-log refused a batch");
            false
        }
    }
}

/// Reads a stream to its end, appending its messages as they come.
async fn read_stream(state: &AppState, mut stream: impl AsyncRead + Unpin, sender: &str) {
    let mut framer = Framer::default();
    // Large reads make large batches: fewer fsyncs per entry.
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        framer.push(&buffer[..read]);
        let mut frames = Vec::new();
        while let Some(frame) = framer.next_frame() {
            match frame {
                Ok(frame) => frames.push(frame),
                Err(err) => tracing::warn!(error = %err, sender, "syslog: a frame was refused"),
            }
            if frames.len() >= MAX_BATCH
                && !append(state, std::mem::take(&mut frames), sender).await
            {
                return;
            }
        }
        if !frames.is_empty() && !append(state, frames, sender).await {
            return;
        }
    }
    if let Some(last) = framer.finish() {
        append(state, vec![last], sender).await;
    }
}

/// Starts the listeners `[syslog]` enables; they stop when `stop` turns true.
pub async fn start(
    state: &AppState,
    machine_tls: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let settings = state.config.syslog.clone();
    if let Some(addr) = settings.tcp.0 {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("syslog tcp {addr}: {e}"))?;
        tracing::info!(address = %listener.local_addr()?, "syslog tcp listening");
        tokio::spawn(accept_loop(listener, state.clone(), None, stop.clone()));
    }
    if let (Some(addr), Some(tls)) = (settings.tls.0, machine_tls) {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("syslog tls {addr}: {e}"))?;
        tracing::info!(address = %listener.local_addr()?, "syslog tls listening");
        tokio::spawn(accept_loop(
            listener,
            state.clone(),
            Some(TlsAcceptor::from(tls)),
            stop.clone(),
        ));
    }
    if let Some(addr) = settings.udp.0 {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("syslog udp {addr}: {e}"))?;
        tracing::info!(address = %socket.local_addr()?, "syslog udp listening");
        tokio::spawn(udp_loop(socket, state.clone(), stop));
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    state: AppState,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "syslog: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => read_stream(&state, tcp, &format!("syslog-tcp:{}", remote.ip())).await,
                Some(acceptor) => serve_tls(&state, acceptor, tcp, remote).await,
            }
        });
    }
}

/// RFC 5425: the sender is the machine identity of its client certificate,
/// checked against the store like any API call; unknown, revoked or expired
/// certificates are refused.
async fn serve_tls(
    state: &AppState,
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
) {
    let handshake =
        tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
    let Ok(Ok(tls)) = handshake else {
        tracing::debug!(%remote, "syslog tls: handshake failed");
        return;
    };
    let fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| rempart_tls::der_sha256_hex(leaf.as_ref()));
    let Some(fingerprint) = fingerprint else {
        return;
    };
    let machine = match state.store.machine_for_cert(&fingerprint, now_ms()).await {
        Ok(Some(machine)) => machine,
        Ok(None) => {
            tracing::warn!(%remote, "syslog tls: the certificate is not an active machine identity");
            return;
        }
        Err(err) => {
            tracing::error!(error = %err, "syslog tls: the store did not answer; refusing");
            return;
        }
    };
    read_stream(state, tls, &format!("machine:{}", machine.name)).await;
}

async fn udp_loop(socket: UdpSocket, state: AppState, mut stop: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (len, remote) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(err) => {
                    tracing::warn!(error = %err, "syslog udp: receive failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // One datagram, one message (RFC 5426); more already waiting join it.
        let mut frames = vec![buffer[..len].to_vec()];
        while frames.len() < MAX_BATCH {
            match socket.try_recv_from(&mut buffer) {
                Ok((len, _)) => frames.push(buffer[..len].to_vec()),
                Err(_) => break,
            }
        }
        append(&state, frames, &format!("syslog-udp:{}", remote.ip())).await;
    }
}
