//! Rempart's bastion (issue 6): the only way into servers.
//!
//! It terminates the user's SSH connection ([`server`]), accepts only
//! certificates from the deployment's user CA, checks the grant for
//! `host:TARGET` with the control plane on every connection, then opens its
//! own connection to the target's stock sshd ([`upstream`]) with a
//! per-session certificate the control plane signed after that check.
//! Channels are relayed ([`relay`]) with PTY sessions recorded as asciicast
//! ([`recording`]) and every step sent to the well-log ([`events`]); a
//! session ends within seconds of its grant ending or being revoked
//! ([`watch`]).
//!
//! Architecture invariants: the bastion holds no CA key (a compromised
//! bastion cannot mint access); when a grant cannot be checked, the
//! connection is refused; nothing the user sends reaches a target before
//! the grant check passed.
#![forbid(unsafe_code)]

pub mod buffer;
pub mod config;
pub mod control;
pub mod events;
pub mod postgres;
pub mod recording;
pub mod relay;
pub mod server;
pub mod session;
pub mod ship;
pub mod upstream;
pub mod watch;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use russh::keys::ssh_key::Fingerprint;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

pub use config::BastionConfig;
use control::ControlPlane;
use events::Events;

/// Recording parts listed in `ssh.session.end` at most (each has its own
/// `ssh.recording` event).
const MAX_LISTED_PARTS: usize = 64;

/// How long a connection may take to authenticate.
const LOGIN_GRACE: Duration = Duration::from_secs(30);

/// What every connection shares.
#[derive(Debug)]
pub struct Bastion {
    pub config: BastionConfig,
    pub control: ControlPlane,
    pub events: Events,
    user_ca: RwLock<Option<Fingerprint>>,
    /// Wakes the shipper when a session ended.
    pub ship_now: tokio::sync::Notify,
    /// Failed logins written to the well-log in the current window, and
    /// those left out since the last one written.
    failures: Mutex<FailureWindow>,
    /// Sessions open now, by id: cut when the bastion stops.
    pub open_sessions: Mutex<std::collections::HashMap<String, Arc<session::Session>>>,
    /// The PostgreSQL listener's state, when `[postgres]` is configured.
    pub postgres: Option<postgres::DbListener>,
}

/// Where the bastion listens, once it does.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub ssh: std::net::SocketAddr,
    pub postgres: Option<std::net::SocketAddr>,
}

#[derive(Debug)]
struct FailureWindow {
    started: std::time::Instant,
    written: u32,
    suppressed: u64,
}

/// Failed-login events written per [`FAILURE_WINDOW`] at most: anyone can
/// fail a login, and the log must not be theirs to flood.
const FAILURES_PER_WINDOW: u32 = 100;
const FAILURE_WINDOW: Duration = Duration::from_secs(10);

impl Bastion {
    /// The user CA's fingerprint, once the control plane has told it.
    pub fn user_ca(&self) -> Option<Fingerprint> {
        *self.user_ca.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a failed-login event may be written now: `Some(n)` with
    /// the number left out before it, `None` (and counted) when over budget.
    pub fn failure_budget(&self) -> Option<u64> {
        let mut window = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if window.started.elapsed() >= FAILURE_WINDOW {
            window.started = std::time::Instant::now();
            window.written = 0;
        }
        if window.written >= FAILURES_PER_WINDOW {
            window.suppressed += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.suppressed))
    }

    pub fn recordings_dir(&self) -> PathBuf {
        self.config.state_dir.join("recordings")
    }
}

/// The bastion's host key (Ed25519, made on first start, mode 0600).
fn host_key(state_dir: &Path) -> Result<PrivateKey> {
    let path = state_dir.join("host_key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return PrivateKey::from_openssh(text.as_bytes())
            .with_context(|| format!("{}: not an OpenSSH private key", path.display()));
    }
    let key = upstream::session_key()?;
    let text = key
        .to_openssh(LineEnding::LF)
        .context("encoding the host key")?;
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    let public = key.public_key().to_openssh().unwrap_or_default();
    std::fs::write(state_dir.join("host_key.pub"), format!("{public}\n"))?;
    tracing::info!(fingerprint = %key.fingerprint(HashAlg::Sha256), "made the bastion's host key");
    Ok(key)
}

fn ssh_config(key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Rempart_bastion".into()),
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        keys: vec![key],
        preferred: upstream::preferred(),
        // OpenSSH asks with "none" first: answering at once keeps the
        // connection setup short; real refusals still take a constant time.
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        window_size: 2 * 1024 * 1024,
        maximum_packet_size: 32_768,
        nodelay: true,
        ..russh::server::Config::default()
    }
}

/// What one attempt to learn a CA from the control plane came to.
pub(crate) enum Learned {
    Trusted,
    /// The control plane answered with something that cannot be used.
    Unusable(anyhow::Error),
    /// The control plane could not be asked.
    Unreachable(anyhow::Error),
}

/// Learns a CA (`what`) from the control plane with `attempt`, and again
/// every five minutes; until it is known, what it vouches for is refused.
pub(crate) fn follow_authority<F, Fut>(what: &'static str, mut attempt: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Learned> + Send,
{
    tokio::spawn(async move {
        loop {
            let wait = match attempt().await {
                Learned::Trusted => Duration::from_secs(300),
                Learned::Unusable(err) => {
                    tracing::error!(error = %format!("{err:#}"), what, "the control plane's CA is not usable");
                    Duration::from_secs(5)
                }
                Learned::Unreachable(err) => {
                    tracing::warn!(error = %err, what, "cannot learn the CA yet; refused until then");
                    Duration::from_secs(2)
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
}

/// The user CA: until it is known, every login is refused.
fn follow_user_ca(bastion: Arc<Bastion>) {
    follow_authority("the SSH user CA", move || {
        let bastion = bastion.clone();
        async move {
            match bastion.control.user_ca().await {
                Ok(line) => match PublicKey::from_openssh(&line) {
                    Ok(key) => {
                        *bastion.user_ca.write().unwrap_or_else(|e| e.into_inner()) =
                            Some(key.fingerprint(HashAlg::Sha256));
                        Learned::Trusted
                    }
                    Err(err) => Learned::Unusable(err.into()),
                },
                Err(err) => Learned::Unreachable(err),
            }
        }
    });
}

/// Runs the bastion until `shutdown` completes. `on_listening` is told the
/// bound addresses (tests bind port 0).
pub async fn run(
    config: BastionConfig,
    on_listening: impl FnOnce(Listening),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let key = host_key(&config.state_dir)?;
    let control = ControlPlane::connect(&config.control_plane)?;
    let events = Events::start(control.clone(), &config.state_dir);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let (db_listener, postgres) = match &config.postgres {
        Some(settings) => {
            let bound = tokio::net::TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("listening on {} (postgres)", settings.listen))?;
            let state = postgres::DbListener::new(
                settings.clone(),
                &config.control_plane,
                config.max_connections,
            )?;
            (Some(bound), Some(state))
        }
        None => (None, None),
    };
    let bastion = Arc::new(Bastion {
        config,
        control,
        events,
        user_ca: RwLock::new(None),
        ship_now: tokio::sync::Notify::new(),
        failures: Mutex::new(FailureWindow {
            started: std::time::Instant::now(),
            written: 0,
            suppressed: 0,
        }),
        open_sessions: Mutex::new(std::collections::HashMap::new()),
        postgres,
    });
    postgres::recover(&bastion).await;
    if let Err(err) = ship::recover(&bastion).await {
        tracing::error!(error = %format!("{err:#}"), "sessions left open by the previous run could not all be recovered");
    }
    follow_user_ca(bastion.clone());
    ship::start(bastion.clone());
    let ssh = Arc::new(ssh_config(key));
    let (stop_db, stopping) = tokio::sync::watch::channel(false);
    let mut db_address = None;
    if let Some(db_listener) = db_listener {
        db_address = Some(db_listener.local_addr()?);
        postgres::follow_user_ca(bastion.clone());
        tokio::spawn(postgres::serve(bastion.clone(), db_listener, stopping));
        tracing::info!(address = ?db_address, "bastion listening for PostgreSQL");
    }
    tracing::info!(%address, "bastion listening");
    on_listening(Listening {
        ssh: address,
        postgres: db_address,
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections: refused");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let bastion = bastion.clone();
        let ssh = ssh.clone();
        tokio::spawn(async move {
            let outcome = Arc::new(Mutex::new(None));
            let refusals = Arc::new(Mutex::new(server::Refusals::default()));
            let authenticated = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let handler = server::Connection::new(
                bastion.clone(),
                Some(peer),
                outcome.clone(),
                refusals.clone(),
                authenticated.clone(),
            );
            let connection = async move {
                match russh::server::run_stream(ssh, stream, handler).await {
                    Ok(running) => {
                        if let Err(err) = running.await {
                            tracing::debug!(%peer, error = %err, "ssh connection ended with an error");
                        }
                    }
                    Err(err) => tracing::debug!(%peer, error = %err, "ssh handshake failed"),
                }
            };
            tokio::pin!(connection);
            // Like sshd's LoginGraceTime: a connection that has not
            // authenticated in time is closed (dropping it closes the socket).
            tokio::select! {
                () = &mut connection => {}
                () = tokio::time::sleep(LOGIN_GRACE) => {
                    if authenticated.load(std::sync::atomic::Ordering::Relaxed) {
                        connection.await;
                    } else {
                        tracing::info!(%peer, "not authenticated within the login grace time: closed");
                    }
                }
            }
            let session = outcome.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(session) = session {
                end_session(&bastion, &session).await;
            } else {
                let refusals =
                    std::mem::take(&mut *refusals.lock().unwrap_or_else(|e| e.into_inner()));
                server::report_refusal(&bastion, Some(peer), &refusals).await;
            }
            drop(permit);
        });
    }
    let _ = stop_db.send(true);
    stop(&bastion, &limit).await;
    tracing::info!("bastion stopped");
    Ok(())
}

/// On shutdown: every open session is cut with a reason and ends as usual
/// (events, recordings, summary), then the events are flushed to the
/// control plane or the spool. Bounded: what does not finish in time is
/// recovered at the next start from its open-session note.
async fn stop(bastion: &Bastion, connections: &Arc<Semaphore>) {
    let open: Vec<_> = bastion
        .open_sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    tracing::info!(
        sessions = open.len(),
        "bastion stopping: cutting open sessions"
    );
    for session in &open {
        session.end("the bastion is stopping".to_owned());
    }
    let all = u32::try_from(bastion.config.max_connections).unwrap_or(u32::MAX);
    let ssh_sessions = async {
        if tokio::time::timeout(Duration::from_secs(20), connections.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("some connections did not end within 20 s");
        }
    };
    let db_sessions = async {
        if let Some(db) = &bastion.postgres {
            db.stop(Duration::from_secs(20)).await;
        }
    };
    tokio::join!(ssh_sessions, db_sessions);
    if tokio::time::timeout(Duration::from_secs(10), bastion.events.flush())
        .await
        .is_err()
    {
        tracing::warn!("events not flushed within 10 s");
    }
}

/// After the user's connection closed: the relays finish (and with them
/// the recordings), the target connection closes, and the end event says
/// how it went.
async fn end_session(bastion: &Bastion, session: &session::Session) {
    let reason = session
        .cut_reason()
        .unwrap_or_else(|| "the user closed the connection".to_owned());
    session
        .closed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    bastion
        .open_sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&session.id);
    session.end(reason.clone());
    let _ = session
        .upstream
        .disconnect(russh::Disconnect::ByApplication, "session over", "en")
        .await;
    let relays: Vec<_> =
        std::mem::take(&mut *session.relays.lock().unwrap_or_else(|e| e.into_inner()));
    for relay in relays {
        let _ = tokio::time::timeout(Duration::from_secs(10), relay).await;
    }
    let all: Vec<_> = session
        .recordings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|r| {
            json!({
                "sha256": r.sha256,
                "bytes": r.bytes,
                "name": r.path.file_stem().map(|n| n.to_string_lossy().into_owned()),
            })
        })
        .collect();
    // Each part has its own event; the end event lists the first ones (a
    // long session's hundreds of parts would not fit one entry).
    for part in &all {
        let mut fields = session.fields();
        fields.insert("recording".into(), part.clone());
        bastion
            .events
            .emit("ssh.recording", "success", fields.into())
            .await;
    }
    let recordings: Vec<_> = all.iter().take(MAX_LISTED_PARTS).cloned().collect();
    let mut fields = session.fields();
    let duration = OffsetDateTime::now_utc() - session.started;
    fields.insert("reason".into(), json!(reason));
    fields.insert(
        "bytes_from_user".into(),
        json!(
            session
                .bytes_from_user
                .load(std::sync::atomic::Ordering::Relaxed)
        ),
    );
    fields.insert(
        "bytes_to_user".into(),
        json!(
            session
                .bytes_to_user
                .load(std::sync::atomic::Ordering::Relaxed)
        ),
    );
    fields.insert("duration_ms".into(), json!(duration.whole_milliseconds()));
    fields.insert("recordings".into(), json!(recordings));
    fields.insert("recording_parts".into(), json!(all.len()));
    bastion
        .events
        .emit("ssh.session.end", "success", fields.into())
        .await;
    let summary = session.summary(&reason);
    match ship::enqueue(&bastion.config.state_dir, &summary) {
        Ok(()) => {
            ship::note_closed(&bastion.config.state_dir, &session.id);
            bastion.ship_now.notify_one();
        }
        Err(err) => {
            tracing::error!(session = %session.id, error = %format!("{err:#}"), "the session's summary could not be queued")
        }
    }
    tracing::info!(session = %session.id, %reason, "session ended");
}
