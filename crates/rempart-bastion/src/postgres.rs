//! The bastion's PostgreSQL listener (issue 7): `psql` and any libpq or
//! JDBC client reach a production database only through here.
//!
//! A connection must negotiate TLS and present a client certificate from
//! the database user CA (`rempart login --db NAME`); the certificate names
//! the user and the database, and the startup message must agree with it.
//! The grant for `db:NAME` is checked with the control plane (fail closed),
//! then the bastion opens its own session on the database with the service
//! role from its configuration. Every statement becomes a `db.query`
//! event; the session is cut, with an error the client shows, when its
//! grant ends or is revoked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::BytesMut;
use rempart_core::Secret;
use rempart_pgproxy::frontend::{self, FirstMessage};
use rempart_pgproxy::relay::{LogGone, RelayEnd, StatementLog, relay};
use rempart_pgproxy::statements::{Copy, Observer, Protocol, Statement};
use rempart_pgproxy::upstream::{self, ServiceRole};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{self, UpstreamTls};
use crate::{Bastion, Learned};

/// How long a connection may take to reach its first query.
const STARTUP_GRACE: Duration = Duration::from_secs(30);
/// How long the control plane may take to answer a grant check.
const GRANT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Session settings a client may pass to the database at startup. Others
/// (`options`, `role`, `session_authorization`, `replication`) could change
/// who the session runs as or what it is: refused.
const PASSED_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "search_path",
];

/// Where a cancel request for one of the client keys the bastion gave out
/// is sent.
#[derive(Debug, Clone)]
struct CancelTarget {
    database: config::Database,
    key: (i32, i32),
    session: String,
    user: String,
}

/// The PostgreSQL side of a bastion.
#[derive(Debug)]
pub struct DbListener {
    pub settings: config::Postgres,
    /// The bastion's certificate and key (its machine identity, issued with
    /// server names): what clients check with `sslmode=verify-full`.
    server_cert_pem: String,
    server_key_pem: Secret<String>,
    /// TLS that requires a client certificate from the database user CA;
    /// `None` until the control plane told which CA that is.
    tls: RwLock<Option<Arc<tokio_rustls::rustls::ServerConfig>>>,
    cancels: Mutex<HashMap<(i32, i32), CancelTarget>>,
    /// TLS to each database reached with `verify-full`, by name.
    upstream_tls: HashMap<String, UpstreamTlsConfig>,
    /// Open sessions' cut signals, by session id.
    open: Mutex<HashMap<String, watch::Sender<Option<String>>>>,
    pub connections: Arc<Semaphore>,
    max_connections: usize,
}

impl DbListener {
    pub fn new(
        settings: config::Postgres,
        control_plane: &config::ControlPlane,
        max_connections: usize,
    ) -> Result<DbListener> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the {what} {}", path.display()))
        };
        let server_cert_pem = read(&control_plane.cert, "machine certificate")?;
        let names = rempart_tls::cert_summary(&server_cert_pem)?.names;
        if names.is_empty() {
            anyhow::bail!(
                "{}: the machine certificate names no server; enroll the bastion with \
                 `rempart machine add NAME --role bastion --server-name HOST` so clients can check it",
                control_plane.cert.display()
            );
        }
        Ok(DbListener {
            upstream_tls: upstream_tls_configs(&settings)?,
            settings,
            server_cert_pem,
            server_key_pem: Secret::new(read(&control_plane.key, "machine key")?),
            tls: RwLock::new(None),
            cancels: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
        })
    }

    /// Takes the database user CA the control plane named.
    pub fn trust_user_ca(&self, ca_pem: &str) -> Result<()> {
        let config = rempart_tls::server_config_for_machines(
            &self.server_cert_pem,
            self.server_key_pem.expose(),
            ca_pem,
        )?;
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(config));
        Ok(())
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(TlsAcceptor::from)
    }

    /// Cuts every open session (the bastion is stopping) and waits for
    /// them to end, within `limit`.
    pub async fn stop(&self, limit: Duration) {
        let open: Vec<_> = self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for cut in open {
            cut.send_if_modified(|reason| {
                reason.get_or_insert_with(|| "the bastion is stopping".to_owned());
                true
            });
        }
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(limit, self.connections.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("some database sessions did not end in time");
        }
    }
}

/// The database user CA: until it is known, every connection is refused.
pub fn follow_user_ca(bastion: Arc<Bastion>) {
    crate::follow_authority("the database user CA", move || {
        let bastion = bastion.clone();
        async move {
            let Some(listener) = &bastion.postgres else {
                return Learned::Trusted;
            };
            match bastion.control.db_user_ca().await {
                Ok(pem) => match listener.trust_user_ca(&pem) {
                    Ok(()) => Learned::Trusted,
                    Err(err) => Learned::Unusable(err),
                },
                Err(err) => Learned::Unreachable(err),
            }
        }
    });
}

/// Accepts connections until `stop` says so.
pub async fn serve(
    bastion: Arc<Bastion>,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let Some(db) = &bastion.postgres else {
        return;
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = db.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many database connections: refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let bastion = bastion.clone();
        tokio::spawn(async move {
            connection(&bastion, stream, peer).await;
            drop(permit);
        });
    }
}

/// A refusal told to the client, and why, for the log.
struct Refusal {
    sqlstate: &'static str,
    text: String,
    /// Who the client said or proved they were, when known.
    user: Option<String>,
    database: Option<String>,
}

fn refusal(sqlstate: &'static str, text: impl Into<String>) -> Refusal {
    Refusal {
        sqlstate,
        text: text.into(),
        user: None,
        database: None,
    }
}

async fn tell<S: AsyncWrite + Unpin>(stream: &mut S, sqlstate: &str, text: &str) {
    let mut out = BytesMut::new();
    frontend::error_response(&mut out, "FATAL", sqlstate, &format!("rempart: {text}"));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// One client connection, from its first byte to its end.
async fn connection(bastion: &Arc<Bastion>, mut stream: TcpStream, peer: SocketAddr) {
    let Some(db) = bastion.postgres.as_ref() else {
        return;
    };
    // Before TLS: encryption requests, a cancel, or a plaintext startup.
    let opening = tokio::time::timeout(STARTUP_GRACE, async {
        loop {
            match frontend::read_first(&mut stream).await? {
                FirstMessage::GssEncRequest => stream.write_all(b"N").await?,
                other => return Ok::<_, frontend::FrontendError>(other),
            }
        }
    })
    .await;
    let first = match opening {
        Err(_) => return, // silent for the grace time: a scanner, or a stall
        Ok(Err(frontend::FrontendError::Io(_))) => return,
        Ok(Err(err)) => {
            tell(&mut stream, err.sqlstate(), &err.to_string()).await;
            return;
        }
        Ok(Ok(first)) => first,
    };
    match first {
        FirstMessage::Cancel {
            process_id,
            secret_key,
        } => cancel(bastion, (process_id, secret_key), peer).await,
        FirstMessage::Startup { parameters } => {
            let named = |key: &str| {
                parameters
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let text = "this bastion accepts only TLS connections with a client certificate: \
                        connect with sslmode=verify-full and the files of `rempart login --db NAME`";
            tell(&mut stream, "28000", text).await;
            let refused = Refusal {
                user: named("user"),
                database: named("database"),
                ..refusal("28000", text)
            };
            report_refusal(bastion, peer, &refused).await;
        }
        FirstMessage::GssEncRequest => {}
        FirstMessage::SslRequest => {
            let Some(acceptor) = db.acceptor() else {
                // libpq shows an error sent in answer to its SSL request.
                let text = "the bastion cannot check database certificates yet (the control plane \
                            has not named its CA); try again shortly";
                tell(&mut stream, "08006", text).await;
                return;
            };
            if stream.write_all(b"S").await.is_err() {
                return;
            }
            let handshake = tokio::time::timeout(STARTUP_GRACE, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    // No certificate, an expired one, or another CA's.
                    let refused = refusal(
                        "28000",
                        format!(
                            "the TLS handshake failed (a valid certificate from `rempart login --db` is required): {err}"
                        ),
                    );
                    report_refusal(bastion, peer, &refused).await;
                    return;
                }
                Err(_) => return,
            };
            secure_session(bastion, tls, peer).await;
        }
    }
}

async fn secure_session(
    bastion: &Arc<Bastion>,
    mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
) {
    let started = tokio::time::Instant::now();
    let admitted = tokio::time::timeout(STARTUP_GRACE, admit(bastion, &mut tls, peer)).await;
    let admitted = match admitted {
        Err(_) => Err(refusal(
            "08006",
            format!("the startup took more than {} s", STARTUP_GRACE.as_secs()),
        )),
        Ok(result) => result,
    };
    match admitted {
        Ok(session) => run_session(bastion, tls, session, started).await,
        Err(refused) => {
            if !refused.text.is_empty() {
                tell(&mut tls, refused.sqlstate, &refused.text).await;
            }
            report_refusal(bastion, peer, &refused).await;
        }
    }
}

/// Who, where and by which grant: what every event of a session says.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub user: String,
    pub grant: String,
    /// The grant for `db:NAME.write` the session runs with the write role
    /// by, if any.
    pub write_grant: Option<String>,
    pub ends_at: OffsetDateTime,
    pub database: config::Database,
    pub client: SocketAddr,
}

/// A session the bastion let through, with its database connection ready.
struct Admitted {
    info: SessionInfo,
    upstream: Upstream,
    parameters: Vec<(String, String)>,
    cancel_key: Option<(i32, i32)>,
    pending: BytesMut,
}

/// The connection to the database: TLS or, where configured, plain; one
/// stream type for the startup, the relay and cancel requests.
enum Upstream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Upstream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Upstream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Upstream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Upstream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Upstream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Upstream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Upstream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Upstream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Upstream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Identity, database, grant, then the database connection.
async fn admit(
    bastion: &Arc<Bastion>,
    tls: &mut tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
) -> Result<Admitted, Refusal> {
    let db = bastion
        .postgres
        .as_ref()
        .ok_or_else(|| refusal("08006", "no database listener"))?;
    // The handshake verified the chain and the dates; this reads the names.
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| refusal("28000", "no client certificate"))?;
    let proven = rempart_tls::database_user_of(certificate.as_ref())
        .map_err(|e| refusal("28000", format!("the client certificate: {e}")))?;
    let parameters = match frontend::read_first(tls).await {
        Ok(FirstMessage::Startup { parameters }) => parameters,
        Ok(_) => return Err(refusal("08P01", "a startup message was expected")),
        Err(frontend::FrontendError::Io(_)) => {
            return Err(Refusal {
                user: Some(proven.user),
                database: Some(proven.database),
                ..refusal("08006", "")
            });
        }
        Err(err) => return Err(refusal(err.sqlstate(), err.to_string())),
    };
    let with_names = |sqlstate, text: String| Refusal {
        sqlstate,
        text,
        user: Some(proven.user.clone()),
        database: Some(proven.database.clone()),
    };
    let asked = |key: &str| {
        parameters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let user = asked("user").unwrap_or_default();
    if user != proven.user {
        return Err(with_names(
            "28000",
            format!(
                "the certificate is {}'s: connect as user {0}, not {user:?}",
                proven.user
            ),
        ));
    }
    let database_name = asked("database").unwrap_or(user);
    if database_name != proven.database {
        return Err(with_names(
            "28000",
            format!(
                "the certificate is for db:{}, not db:{database_name}: run `rempart login --db {database_name}`",
                proven.database
            ),
        ));
    }
    let Some(database) = db.settings.database(database_name).cloned() else {
        return Err(with_names(
            "3D000",
            format!("db:{database_name} is not served by this bastion"),
        ));
    };
    let mut settings = Vec::new();
    for (key, value) in &parameters {
        match key.as_str() {
            // The session's name on the database is the bastion's (below).
            "user" | "database" | "application_name" => {}
            key if PASSED_SETTINGS.contains(&key) => settings.push((key.to_owned(), value.clone())),
            other => {
                return Err(with_names(
                    "28000",
                    format!("the startup setting {other:?} is not passed to the database"),
                ));
            }
        }
    }
    // The grant, with the control plane: no answer, no session.
    let check = tokio::time::timeout(
        GRANT_CHECK_TIMEOUT,
        bastion.control.check_db_grant(&proven.user, &database.name),
    )
    .await
    .unwrap_or_else(|_| {
        Err(anyhow!(
            "no answer within {} s",
            GRANT_CHECK_TIMEOUT.as_secs()
        ))
    });
    let check = check.map_err(|err| {
        with_names(
            "28000",
            format!(
                "your grant for db:{} cannot be checked now ({err}); the bastion refuses what it cannot check",
                database.name
            ),
        )
    })?;
    let (Some(grant), true) = (check.grant.clone(), check.allow) else {
        return Err(with_names(
            "28000",
            format!(
                "no grant for db:{}: {}",
                database.name,
                check
                    .reason
                    .unwrap_or_else(|| "request access first".to_owned())
            ),
        ));
    };
    let mut ends_at = check
        .ends_at
        .unwrap_or_else(|| OffsetDateTime::now_utc() + time::Duration::minutes(1));
    // The write role only with a grant for db:NAME.write too (asked for in
    // a request and approved); without one, or when it cannot be checked,
    // the session gets the read-only role.
    let write_grant = match &database.write_role {
        None => None,
        Some(_) => {
            let resource = database.write_resource();
            let check = tokio::time::timeout(
                GRANT_CHECK_TIMEOUT,
                bastion.control.check_db_grant(&proven.user, &resource),
            )
            .await;
            match check {
                Ok(Ok(check)) if check.allow => {
                    if let Some(end) = check.ends_at {
                        ends_at = ends_at.min(end);
                    }
                    check.grant
                }
                Ok(Ok(_)) => None,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, %resource, "the write grant cannot be checked: read-only");
                    None
                }
                Err(_) => {
                    tracing::warn!(%resource, "the write grant cannot be checked in time: read-only");
                    None
                }
            }
        }
    };
    let (role_user, password_file) = match (&write_grant, &database.write_role) {
        (Some(_), Some((user, password))) => (user.clone(), password.clone()),
        _ => (database.user.clone(), database.password_file.clone()),
    };
    let id = crate::session::new_id();
    let role = ServiceRole {
        user: role_user,
        database: database.upstream_database.clone(),
        password: read_password(password_file.as_deref())
            .map_err(|e| with_names("08006", format!("the bastion's service credential: {e:#}")))?,
        // `pg_stat_activity` shows whose session it is, by which grant.
        application_name: match asked("application_name") {
            Some(client) if !client.is_empty() => {
                format!("rempart {} {grant} {id} {client}", proven.user)
            }
            _ => format!("rempart {} {grant} {id}", proven.user),
        },
        settings,
    };
    let unreachable = |e: String| {
        with_names(
            "08006",
            format!("the database db:{} cannot be reached: {e}", database.name),
        )
    };
    let stream = connect(db, &database)
        .await
        .map_err(|e| unreachable(format!("{e:#}")))?;
    let ready = upstream::start(stream, &role)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(Admitted {
        info: SessionInfo {
            id,
            user: proven.user,
            grant,
            write_grant,
            ends_at,
            database,
            client: peer,
        },
        upstream: ready.stream,
        parameters: ready.parameters,
        cancel_key: ready.cancel_key,
        pending: ready.pending,
    })
}

fn read_password(path: Option<&std::path::Path>) -> Result<Option<Secret<String>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(Secret::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    )))
}

/// The TLS settings of a database reached with `verify-full`: built once,
/// when the bastion starts (an unreadable CA stops it there).
struct UpstreamTlsConfig {
    connector: TlsConnector,
    server_name: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsConfig")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn upstream_tls_configs(settings: &config::Postgres) -> Result<HashMap<String, UpstreamTlsConfig>> {
    let mut configs = HashMap::new();
    for database in &settings.databases {
        let UpstreamTls::VerifyFull {
            ca_cert,
            server_name,
        } = &database.tls
        else {
            continue;
        };
        let ca = std::fs::read_to_string(ca_cert).with_context(|| {
            format!(
                "postgres.database {}: reading {}",
                database.name,
                ca_cert.display()
            )
        })?;
        let config = rempart_tls::client_config(&ca, None)
            .with_context(|| format!("postgres.database {}: ca_cert", database.name))?;
        let server_name =
            rustls_pki_types::ServerName::try_from(server_name.clone()).map_err(|_| {
                anyhow!(
                    "postgres.database {}: {server_name:?} is not a server name",
                    database.name
                )
            })?;
        configs.insert(
            database.name.clone(),
            UpstreamTlsConfig {
                connector: TlsConnector::from(Arc::new(config)),
                server_name,
            },
        );
    }
    Ok(configs)
}

/// A TCP connection to the database, with TLS negotiated when configured.
async fn connect(listener: &DbListener, database: &config::Database) -> Result<Upstream> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&database.address))
        .await
        .map_err(|_| anyhow!("no connection within {} s", CONNECT_TIMEOUT.as_secs()))??;
    let _ = stream.set_nodelay(true);
    let Some(tls) = listener.upstream_tls.get(&database.name) else {
        return Ok(Upstream::Plain(stream));
    };
    stream.write_all(&frontend::ssl_request()).await?;
    let mut answer = [0u8; 1];
    tokio::time::timeout(CONNECT_TIMEOUT, stream.read_exact(&mut answer))
        .await
        .map_err(|_| anyhow!("no answer to the SSL request"))??;
    if answer[0] != b'S' {
        anyhow::bail!("the database does not offer TLS (ssl = off?)");
    }
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tls.connector.connect(tls.server_name.clone(), stream),
    )
    .await
    .map_err(|_| anyhow!("the TLS handshake took too long"))?
    .context("TLS with the database")?;
    Ok(Upstream::Tls(Box::new(stream)))
}

/// A fresh cancel key for the client: random, unique among open sessions.
fn client_key(listener: &DbListener, target: CancelTarget) -> (i32, i32) {
    let mut cancels = listener.cancels.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let key = ((rand::random::<u32>() >> 1) as i32, rand::random::<i32>());
        if key.0 != 0 && !cancels.contains_key(&key) {
            cancels.insert(key, target);
            return key;
        }
    }
}

impl SessionInfo {
    /// What each `db.query` carries: who, what, by which grant(s) and role,
    /// in which session (the session's start and end say the rest).
    fn query_fields(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("actor".into(), json!(self.user));
        map.insert("target".into(), json!(format!("db:{}", self.database.name)));
        map.insert("grant".into(), json!(self.grant));
        map.insert("session".into(), json!(self.id));
        match &self.write_grant {
            Some(write) => {
                map.insert("mode".into(), json!("write"));
                map.insert("write_grant".into(), json!(write));
            }
            None => {
                map.insert("mode".into(), json!("read"));
            }
        }
        map
    }

    /// What the session's start and end carry.
    fn fields(&self) -> Map<String, Value> {
        let mut map = self.query_fields();
        map.insert("database".into(), json!(self.database.name));
        map.insert("client".into(), json!(self.client.to_string()));
        map
    }
}

async fn run_session(
    bastion: &Arc<Bastion>,
    mut client: tokio_rustls::server::TlsStream<TcpStream>,
    admitted: Admitted,
    started: tokio::time::Instant,
) {
    let Some(db) = bastion.postgres.as_ref() else {
        return;
    };
    let Admitted {
        info: session,
        upstream,
        parameters,
        cancel_key,
        pending,
    } = admitted;
    let key = client_key(
        db,
        CancelTarget {
            database: session.database.clone(),
            key: cancel_key.unwrap_or_default(),
            session: session.id.clone(),
            user: session.user.clone(),
        },
    );
    let (cut_tx, cut_rx) = watch::channel(None::<String>);
    db.open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(session.id.clone(), cut_tx.clone());
    let mut ready = BytesMut::new();
    frontend::session_ready(&mut ready, &parameters, key);
    let begun = OffsetDateTime::now_utc();
    let mut fields = session.fields();
    fields.insert("grant_ends_at".into(), json!(rfc3339(session.ends_at)));
    fields.insert(
        "startup_ms".into(),
        json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
    );
    note_open(&bastion.config.state_dir, &session, &fields);
    bastion
        .events
        .emit("db.session.start", "success", fields.into())
        .await;
    let end = if client.write_all(&ready).await.is_ok() {
        let watcher = spawn_grant_watch(bastion.clone(), session.clone(), cut_tx.clone());
        let log = QueryLog {
            bastion: bastion.clone(),
            fields: session.query_fields(),
            redact: db.settings.redact_parameters,
        };
        let mut observer = Observer::default();
        // Bytes the database sent after its ReadyForQuery (none in practice)
        // are passed on first.
        if !pending.is_empty() {
            let _ = observer.from_server(&pending);
            let _ = client.write_all(&pending).await;
        }
        let end = relay(client, upstream, observer, log, cut_rx.clone()).await;
        watcher.abort();
        end
    } else {
        RelayEnd::default()
    };
    db.cancels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    db.open
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&session.id);
    let reason = cut_rx
        .borrow()
        .clone()
        .or(end.reason.clone())
        .unwrap_or_else(|| "the client closed the connection".to_owned());
    let mut fields = session.fields();
    fields.insert("reason".into(), json!(reason));
    fields.insert("bytes_from_client".into(), json!(end.bytes_from_client));
    fields.insert("bytes_to_client".into(), json!(end.bytes_to_client));
    fields.insert("statements".into(), json!(end.statements));
    fields.insert(
        "duration_ms".into(),
        json!((OffsetDateTime::now_utc() - begun).whole_milliseconds()),
    );
    bastion
        .events
        .emit("db.session.end", "success", fields.into())
        .await;
    note_closed(&bastion.config.state_dir, &session.id);
    tracing::info!(session = %session.id, %reason, "database session ended");
}

/// Where open database sessions are noted: what a crash would otherwise
/// leave without its `db.session.end`.
fn notes_dir(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("db-sessions")
}

/// Notes an open session (its start event's fields), written aside then
/// renamed so a crash leaves a whole note or none.
fn note_open(state_dir: &std::path::Path, session: &SessionInfo, fields: &Map<String, Value>) {
    let dir = notes_dir(state_dir);
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let aside = dir.join(format!("{}.json.new", session.id));
        std::fs::write(&aside, serde_json::to_vec(fields).unwrap_or_default())?;
        std::fs::rename(&aside, dir.join(format!("{}.json", session.id)))
    });
    if let Err(err) = written {
        tracing::error!(session = %session.id, error = %err, "the open-session note could not be written: a crash now would leave no end event");
    }
}

fn note_closed(state_dir: &std::path::Path, id: &str) {
    let _ = std::fs::remove_file(notes_dir(state_dir).join(format!("{id}.json")));
}

/// At start: database sessions a previous run left open (it was killed)
/// get their `db.session.end`, marked `recovered`; what they did is in
/// their `db.query` events as far as those were sent.
pub async fn recover(bastion: &Bastion) {
    let dir = notes_dir(&bastion.config.state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let note = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok());
        let Some(mut fields) = note else {
            tracing::error!(path = %path.display(), "an open database-session note does not parse; left in place");
            continue;
        };
        for started_only in ["grant_ends_at", "startup_ms"] {
            fields.remove(started_only);
        }
        fields.insert(
            "reason".into(),
            json!("the bastion stopped during the session (recovered at its next start)"),
        );
        fields.insert("recovered".into(), json!(true));
        bastion
            .events
            .emit("db.session.end", "failure", fields.into())
            .await;
        let _ = std::fs::remove_file(&path);
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Each statement, as it finishes, to the well-log as a `db.query` event,
/// from the session's own task.
struct QueryLog {
    bastion: Arc<Bastion>,
    fields: Map<String, Value>,
    redact: bool,
}

impl StatementLog for QueryLog {
    async fn record(&mut self, statement: Statement) -> Result<(), LogGone> {
        let outcome = if statement.error.is_some() {
            "failure"
        } else {
            "success"
        };
        let event = query_event(self.fields.clone(), &statement, self.redact);
        if self
            .bastion
            .events
            .emit_checked("db.query", outcome, event.into())
            .await
        {
            Ok(())
        } else {
            Err(LogGone)
        }
    }
}

/// A `db.query` event's fields.
pub fn query_event(
    mut fields: Map<String, Value>,
    statement: &Statement,
    redact: bool,
) -> Map<String, Value> {
    fields.insert(
        "protocol".into(),
        json!(match statement.protocol {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }),
    );
    fields.insert("sql".into(), json!(statement.sql));
    if !statement.parameters.is_empty() {
        if redact {
            fields.insert(
                "parameters_redacted".into(),
                json!(statement.parameters.len()),
            );
        } else {
            fields.insert("parameters".into(), json!(statement.parameters));
        }
    }
    if !statement.tags.is_empty() {
        fields.insert("tag".into(), json!(statement.tags.join("; ")));
    }
    fields.insert("rows".into(), json!(statement.rows));
    match statement.copy {
        Some(Copy::In(bytes)) => {
            fields.insert("copy".into(), json!({"direction": "in", "bytes": bytes}));
        }
        Some(Copy::Out(bytes)) => {
            fields.insert("copy".into(), json!({"direction": "out", "bytes": bytes}));
        }
        None => {}
    }
    fields.insert(
        "duration_us".into(),
        json!(u64::try_from(statement.duration.as_micros()).unwrap_or(u64::MAX)),
    );
    if let Some(error) = &statement.error {
        fields.insert("error".into(), json!(error));
    }
    fields
}

/// The grant, checked again every `grant_recheck` and at its known end;
/// a revoked or ended grant cuts the session.
fn spawn_grant_watch(
    bastion: Arc<Bastion>,
    session: SessionInfo,
    cut: watch::Sender<Option<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ends_at = session.ends_at;
        let mut tick = tokio::time::interval(bastion.config.grant_recheck);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            let until_end = (ends_at - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tick.tick() => {}
                () = tokio::time::sleep(until_end) => {}
            }
            if OffsetDateTime::now_utc() >= ends_at {
                break format!(
                    "your grant for db:{} ended at {}",
                    session.database.name,
                    rfc3339(ends_at)
                );
            }
            let check =
                tokio::time::timeout(bastion.config.grant_recheck, recheck(&bastion, &session))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("no answer within the recheck period")));
            match check {
                Ok((resource, check)) if !check.allow => {
                    break format!(
                        "your grant for db:{resource} ended: {}",
                        check.reason.unwrap_or_default()
                    );
                }
                Ok((_, check)) => {
                    if let Some(end) = check.ends_at {
                        ends_at = end;
                    }
                }
                Err(err) => {
                    // Revocations cannot be heard now; the known end still holds.
                    tracing::warn!(session = %session.id, error = %err, "grant recheck: the control plane did not answer");
                }
            }
        };
        tracing::info!(session = %session.id, %reason, "database session cut");
        cut.send_if_modified(|current| {
            current.get_or_insert(reason);
            true
        });
    })
}

/// The session's grants checked again: the first one no longer held, or
/// the one that ends first.
async fn recheck(
    bastion: &Bastion,
    session: &SessionInfo,
) -> Result<(String, rempart_api::GrantCheck)> {
    let name = session.database.name.clone();
    let read = bastion.control.check_db_grant(&session.user, &name).await?;
    if !read.allow || session.write_grant.is_none() {
        return Ok((name, read));
    }
    let resource = session.database.write_resource();
    let write = bastion
        .control
        .check_db_grant(&session.user, &resource)
        .await?;
    if !write.allow {
        return Ok((resource, write));
    }
    // Both hold: the session lasts until the first of them ends.
    Ok(match (read.ends_at, write.ends_at) {
        (Some(a), Some(b)) if b < a => (resource, write),
        _ => (name, read),
    })
}

/// A cancel request: passed to the database for the session whose key the
/// client holds; an unknown key is dropped, as PostgreSQL does.
async fn cancel(bastion: &Arc<Bastion>, key: (i32, i32), peer: SocketAddr) {
    let Some(db) = bastion.postgres.as_ref() else {
        return;
    };
    let target = db
        .cancels
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    let Some(target) = target else {
        tracing::info!(%peer, "a cancel request with an unknown key: ignored");
        return;
    };
    let sent = async {
        let mut stream = connect(db, &target.database).await?;
        stream
            .write_all(&frontend::cancel_request(target.key))
            .await?;
        let _ = stream.read(&mut [0u8; 1]).await;
        Ok::<_, anyhow::Error>(())
    };
    let outcome = tokio::time::timeout(CONNECT_TIMEOUT, sent)
        .await
        .unwrap_or_else(|_| Err(anyhow!("no answer")));
    let mut fields = Map::new();
    fields.insert("actor".into(), json!(target.user));
    fields.insert(
        "target".into(),
        json!(format!("db:{}", target.database.name)),
    );
    fields.insert("database".into(), json!(target.database.name));
    fields.insert("session".into(), json!(target.session));
    fields.insert("client".into(), json!(peer.to_string()));
    let result = match &outcome {
        Ok(()) => "success",
        Err(err) => {
            fields.insert("reason".into(), json!(format!("{err:#}")));
            "failure"
        }
    };
    bastion
        .events
        .emit("db.cancel", result, fields.into())
        .await;
}

/// A refused connection, to the well-log (within the failed-login budget).
async fn report_refusal(bastion: &Bastion, peer: SocketAddr, refused: &Refusal) {
    let Some(suppressed) = bastion.failure_budget() else {
        return;
    };
    let mut fields = json!({
        "client": peer.to_string(),
        "reason": refused.text,
        "sqlstate": refused.sqlstate,
    });
    if let Some(user) = &refused.user {
        fields["actor"] = json!(user);
    }
    if let Some(database) = &refused.database {
        fields["target"] = json!(format!("db:{database}"));
        fields["database"] = json!(database);
    }
    if suppressed > 0 {
        fields["suppressed_before"] = json!(suppressed);
    }
    let outcome = if refused.text.starts_with("no grant") {
        "denied"
    } else {
        "failure"
    };
    bastion.events.emit("db.auth", outcome, fields).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            protocol: Protocol::Extended,
            sql: "UPDATE cards SET pan = $1 WHERE id = $2".into(),
            parameters: vec![Some("4111111111111111".into()), None],
            tags: vec!["UPDATE 1".into()],
            rows: 0,
            copy: None,
            error: None,
            duration: Duration::from_micros(1500),
        }
    }

    #[test]
    fn a_query_event_says_what_ran() {
        let event = query_event(Map::new(), &statement(), false);
        assert_eq!(event["protocol"], "extended");
        assert_eq!(event["parameters"], json!(["4111111111111111", null]));
        assert_eq!(event["tag"], "UPDATE 1");
        assert_eq!(event["duration_us"], 1500);
        assert!(event.get("error").is_none());
    }

    #[test]
    fn redacted_parameters_are_counted_not_shown() {
        let event = query_event(Map::new(), &statement(), true);
        assert!(event.get("parameters").is_none());
        assert_eq!(event["parameters_redacted"], 2);
        assert!(
            !serde_json::to_string(&event)
                .unwrap_or_default()
                .contains("4111")
        );
    }
}
