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
    let received_text = rfc3339(received);
    frames
        .iter()
        .filter_map(|frame| rempart_syslog::parse(frame, received).ok())
        .filter_map(|message| {
            let entry = canonical_syslog_entry(&message, received, &received_text, sender);
            if entry.len() > rempart_welllog::entry::MAX_ENTRY_BYTES {
                tracing::warn!(
                    bytes = entry.len(),
                    sender,
                    "syslog: a message is larger than an entry may be"
                );
                return None;
            }
            Some(entry)
        })
        .collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The canonical entry of a syslog message, written directly: the same
/// bytes as `canonical_entry(to_event(message))` (a test holds them equal
/// over loghub's 2,000 lines), without building and sorting a JSON map per
/// message, which was most of syslog ingestion's time.
fn canonical_syslog_entry(
    message: &rempart_syslog::Message,
    received: OffsetDateTime,
    received_text: &str,
    sender: &str,
) -> Vec<u8> {
    use serde_json::Value;
    let login = (message.app.as_deref() == Some("sshd"))
        .then(|| rempart_syslog::sshd::recognise(&message.msg))
        .flatten();
    let ts = rfc3339(message.timestamp.unwrap_or(received));
    let text = |s: &str| Value::String(s.to_owned());
    let mut fields: Vec<(&str, Value)> = Vec::with_capacity(20);
    // Keys in byte order, as the canonical form sorts them.
    if let Some(login) = &login {
        fields.push(("actor", text(&login.user)));
        if let Some(method) = &login.method {
            fields.push(("auth_method", text(method)));
        }
    }
    if let Some(facility) = message.facility {
        fields.push(("facility", Value::from(facility)));
    }
    if let Some(host) = &message.host {
        fields.push(("host", text(host)));
    }
    fields.push((
        "kind",
        text(if login.is_some() {
            "ssh.auth"
        } else {
            "syslog"
        }),
    ));
    fields.push(("msg", text(&message.msg)));
    if let Some(msgid) = &message.msgid {
        fields.push(("msgid", text(msgid)));
    }
    if let Some(login) = &login {
        fields.push((
            "outcome",
            text(if login.accepted { "success" } else { "failure" }),
        ));
    }
    if let Some(pid) = &message.pid {
        fields.push(("pid", text(pid)));
    }
    if let Some(program) = &message.app {
        fields.push(("program", text(program)));
    }
    fields.push(("raw", text(&message.raw)));
    if login.as_ref().is_some_and(|l| l.invalid_user) {
        fields.push(("reason", text("invalid user")));
    }
    fields.push(("received", text(received_text)));
    fields.push(("sender", text(sender)));
    if let Some(severity) = message.severity {
        fields.push(("severity", Value::from(severity)));
    }
    fields.push(("source", text("syslog")));
    if let Some(login) = &login {
        fields.push(("src_ip", text(&login.source_ip)));
        if let Some(port) = login.source_port {
            fields.push(("src_port", Value::from(port)));
        }
    }
    if let Some(sd) = &message.structured_data {
        fields.push(("structured_data", text(sd)));
    }
    fields.push(("ts", text(&ts)));
    let mut out = Vec::with_capacity(64 + 2 * message.raw.len());
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut out, value);
    }
    out.push(b'}');
    out
}

async fn append(state: &AppState, frames: Vec<Vec<u8>>, sender: &str) -> bool {
    let batch = entries(frames, sender);
    if batch.is_empty() {
        return true;
    }
    match state.writer.append(batch).await {
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// The direct writer gives exactly the bytes of the general path.
    #[test]
    fn direct_canonical_entries_equal_the_general_path() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/testdata/loghub/OpenSSH_2k.log");
        let log = std::fs::read_to_string(path).expect("loghub");
        let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
        lines.extend([
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] An "application" event\with escapes"#.to_owned(),
            "<13>1 - - - - - -".to_owned(),
            "no header at all, \u{1} control".to_owned(),
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8".to_owned(),
        ]);
        let received = datetime!(2026-12-31 00:00:00.123 UTC);
        let stamp = rempart_welllog::Stamp {
            received,
            sender: "syslog-tcp:127.0.0.1".into(),
            source: rempart_welllog::Source::Syslog,
        };
        for line in &lines {
            let message = rempart_syslog::parse(line.as_bytes(), received).expect("parses");
            let general = rempart_welllog::canonical_entry(
                rempart_syslog::to_event(&message, received),
                &stamp,
            )
            .expect("an entry");
            let direct =
                canonical_syslog_entry(&message, received, &rfc3339(received), &stamp.sender);
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&general),
                "{line}"
            );
        }
    }
}
