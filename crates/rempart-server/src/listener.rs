//! The TLS listener: accepts TCP, completes the TLS handshake, and serves
//! HTTP/1.1 or HTTP/2 over it. Nothing is served without TLS: a client that
//! speaks plain HTTP fails the handshake and the connection is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::PeerCertificate;

/// A slow or silent client may hold a connection this long before TLS is up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and this long between connecting and sending its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections still busy this long after shutdown starts are dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);

    loop {
        // Wait for a free slot before accepting: past the limit, connections
        // queue in the kernel's backlog instead of in our memory.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%remote, error = %err, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = peer_certificate(&tls);
            let service = app.map_request(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(peer.clone());
                }
                request.map(axum::body::Body::new)
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(err) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%remote, error = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("shutdown: dropped connections still open after {DRAIN_TIMEOUT:?}"),
    }
}

/// The address of the remote end of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnectInfo(pub SocketAddr);

fn peer_certificate(
    tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<PeerCertificate> {
    let (_, connection) = tls.get_ref();
    let leaf = connection.peer_certificates()?.first()?;
    Some(PeerCertificate {
        sha256_hex: rempart_tls::der_sha256_hex(leaf.as_ref()),
    })
}
