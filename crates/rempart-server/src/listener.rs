//! The TLS listener: accepts TCP, completes the TLS handshake, and serves
//! HTTP/1.1 or HTTP/2 over it. Nothing is served without TLS: a client that
//! speaks plain HTTP fails the handshake and the connection is closed.
//!
//! Every connection holds a slot of `max_connections`, so every way of
//! holding one without doing anything is bounded in time: the handshake
//! (10 s), the first request (10 s after the handshake), and idleness
//! between requests (60 s).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::PeerCertificate;

/// A slow or silent client may hold a connection this long before TLS is up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// ... this long between TLS and its first request, or between the start of
/// a request and its headers.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and this long idle between two requests on a kept-alive connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections still busy this long after shutdown starts are dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const WATCHDOG_TICK: Duration = Duration::from_millis(500);

/// What a connection is doing, for its watchdog.
#[derive(Debug)]
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// Milliseconds after `started` of the last request's end.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Whether the connection has held its slot too long without working.
    fn overstayed(&self) -> bool {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let now = self.started.elapsed();
        if self.requests.load(Ordering::SeqCst) == 0 {
            return now > FIRST_REQUEST_TIMEOUT;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
        now.saturating_sub(last) > IDLE_TIMEOUT
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.started.elapsed().as_millis();
        self.0
            .last_ms
            .store(u64::try_from(elapsed).unwrap_or(u64::MAX), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(max_connections));
    let (stopping_tx, stopping) = watch::channel(false);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(FIRST_REQUEST_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
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
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(tcp, remote, acceptor, app, &builder, stopping).await;
        });
    }

    drop(listener);
    let _ = stopping_tx.send(true);
    // Every connection holds a permit until it ends: all permits back means
    // all connections drained.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT + Duration::from_secs(1)) => {
            tracing::warn!("shutdown: dropped connections still open after {DRAIN_TIMEOUT:?}")
        }
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    builder: &Builder<TokioExecutor>,
    mut stopping: watch::Receiver<bool>,
) {
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
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            let in_flight = activity.begin();
            request.extensions_mut().insert(ConnectInfo(remote));
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        })
    };
    let service = hyper_util::service::TowerToHyperService::new(service);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let drain = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = connection.as_mut() => {
                if let Err(err) = outcome {
                    tracing::debug!(%remote, error = %err, "connection ended with an error");
                }
                return;
            }
            _ = stopping.changed(), if deadline.is_none() => {
                connection.as_mut().graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            _ = watchdog.tick(), if deadline.is_none() => {
                if activity.overstayed() {
                    tracing::debug!(%remote, "closing a connection that holds its slot without working");
                    connection.as_mut().graceful_shutdown();
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            () = drain => {
                tracing::debug!(%remote, "dropping a connection that did not close in time");
                return;
            }
        }
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
