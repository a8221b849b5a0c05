//! Rempart's storage: one interface, two backends.
//!
//! [`Store`] is the only way the control plane reaches its database. It runs
//! on SQLite (the embedded default) or PostgreSQL, chosen by the URL given to
//! [`Store::open`]; [`Store::backend`] tells which. Every query is written
//! once, through sqlx's `Any` driver, with `$1, $2, …` placeholders and only
//! portable column types (`BIGINT` Unix milliseconds, `TEXT`).
//!
//! It keeps:
//! - people: [`NewUser`] in, [`User`] out, with their roles; users are
//!   disabled, never deleted;
//! - API tokens, as [`TokenHash`](rempart_core::TokenHash) only, one active
//!   token per user ([`Store::replace_token`], [`Store::user_for_token`]);
//! - machine identities, the mTLS client certificates issued by the internal
//!   CA: [`NewMachine`] in, [`Machine`] out ([`Store::machine_for_cert`]).
//!
//! Failures are a [`StoreError`]. History is never deleted: the store has no
//! `DELETE` statement. [`Store::open`] applies the schema migrations before
//! it returns.
//!
//! ```no_run
//! use rempart_core::{ApiToken, Role, Roles};
//! use rempart_store::{NewUser, Store};
//!
//! # async fn example() -> Result<(), rempart_store::StoreError> {
//! let store = Store::open("sqlite:///var/lib/rempart/rempart.db").await?;
//! let alice = store
//!     .create_user(&NewUser {
//!         name: "alice".parse().expect("a valid name"),
//!         roles: Roles::new([Role::Admin]).expect("one role"),
//!         email: None,
//!         created_at_ms: 1_700_000_000_000,
//!     })
//!     .await?;
//! let token = ApiToken::generate(); // shown to alice once, never stored
//! store.replace_token(&alice.name, &token.hash(), 1_700_000_000_000, None).await?;
//! let found = store.user_for_token(&token.hash(), 1_700_000_000_001).await?;
//! assert_eq!(found.map(|(name, _roles)| name), Some(alice.name));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod access;
mod cache;
mod error;
mod machines;
mod migrate;
mod sessions;
mod users;
mod welllog;

use std::borrow::Cow;
use std::fs::{File, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

pub use access::{RequestRows, Resource, TrainingModule, TrainingRecord, Transition};
use cache::IdentityCache;
pub use error::StoreError;
pub use machines::{Machine, NewMachine};
use rempart_core::Secret;
pub use sessions::{RecordingInfo, SshSession, Stored};
pub use users::{NewUser, User};
pub use welllog::{Notice, Notifications, Sequencer, SharedEntry};

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database: a connection pool. Cloning it is cheap and the
/// clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Present only when this process is the database's sole writer.
    identity_cache: Option<Arc<IdentityCache>>,
    /// Held for the store's lifetime: what makes this process the sole writer.
    _writer_lock: Option<Arc<File>>,
    /// For the sessions that cannot come from the pool (notifications).
    url: Arc<Secret<String>>,
}

impl Store {
    /// Opens the database and applies pending migrations.
    ///
    /// `url` is `sqlite:///abs/path/rempart.db` or `sqlite://relative.db` (the
    /// file is created if missing) or `postgres://…` / `postgresql://…`.
    /// Anything else is [`StoreError::BadUrl`], naming only the URL's scheme:
    /// the rest may hold a password.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_with(url, false).await
    }

    /// Opens the database as its sole writer, for the control plane itself.
    ///
    /// On SQLite this takes an exclusive lock on `<database>.lock` (another
    /// process holding it gets [`StoreError::Locked`]) and caches identity
    /// lookups ([`Store::user_for_token`], [`Store::machine_for_cert`]), which
    /// this store's own writes invalidate as they commit. On PostgreSQL,
    /// several nodes write, so this is the same as [`Store::open`]: no cache,
    /// every lookup reads the database.
    pub async fn open_exclusive(url: &str) -> Result<Store, StoreError> {
        Self::open_with(url, true).await
    }

    async fn open_with(url: &str, exclusive: bool) -> Result<Store, StoreError> {
        let (backend, url) = match scheme(url) {
            Some("sqlite") => (Backend::Sqlite, sqlite_url(url)?),
            Some("postgres" | "postgresql") => (Backend::Postgres, Cow::Borrowed(url)),
            Some(other) => {
                return Err(StoreError::BadUrl {
                    detail: format!(
                        "unsupported scheme {other:?}: expected sqlite://, postgres:// or postgresql://"
                    ),
                });
            }
            None => {
                return Err(StoreError::BadUrl {
                    detail: "no scheme: expected sqlite://, postgres:// or postgresql://"
                        .to_owned(),
                });
            }
        };
        let writer_lock = match (exclusive, backend) {
            (true, Backend::Sqlite) => Some(Arc::new(lock_sqlite(&url)?)),
            _ => None,
        };
        sqlx::any::install_default_drivers();

        let mut options = AnyPoolOptions::new()
            .max_connections(match backend {
                // SQLite has a single writer: more connections only queue.
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(5));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // busy_timeout first, so that switching to WAL waits for
                    // another connection's lock instead of failing. WAL is
                    // kept in the file; the two others are per connection.
                    for pragma in [
                        "PRAGMA busy_timeout=5000",
                        "PRAGMA foreign_keys=ON",
                        "PRAGMA journal_mode=WAL",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await.map_err(|e| match e {
            // sqlx's URL errors name the faulty part, never the whole URL.
            sqlx::Error::Configuration(e) => StoreError::BadUrl {
                detail: e.to_string(),
            },
            other => StoreError::from(other),
        })?;

        if let Err(e) = migrate::run(&pool, backend, now_ms()).await {
            pool.close().await;
            return Err(e);
        }
        Ok(Store {
            pool,
            backend,
            identity_cache: writer_lock.as_ref().map(|_| Arc::default()),
            _writer_lock: writer_lock,
            url: Arc::new(Secret::new(url.into_owned())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether identity lookups are served from memory (sole writer on SQLite).
    pub fn caches_identities(&self) -> bool {
        self.identity_cache.is_some()
    }

    /// Runs a change to users, tokens or machines to its end even if the
    /// caller stops waiting (a client that hangs up, a request timeout), and
    /// clears the identity cache after it, whatever its outcome: a change
    /// the database committed is never left hidden behind a cached identity.
    async fn change_identities<T: Send + 'static>(
        &self,
        change: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let cache = self.identity_cache.clone();
        let task = tokio::spawn(async move {
            let outcome = change.await;
            if let Some(cache) = cache {
                cache.invalidate();
            }
            outcome
        });
        task.await.map_err(|e| StoreError::Corrupt {
            detail: format!("an identity change did not complete: {e}"),
        })?
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection of the pool, waiting for those in use. Every
    /// clone of this store is closed too.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL's scheme, when it has a well-formed one (RFC 3986).
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    well_formed.then_some(scheme)
}

/// A SQLite URL that creates the file when it is missing (unless the URL
/// chooses its own `mode`).
fn sqlite_url(url: &str) -> Result<Cow<'_, str>, StoreError> {
    let query = url.split_once('?').map(|(_, q)| q);
    if url.contains(":memory:") || query.is_some_and(|q| q.contains("mode=memory")) {
        // Each pooled connection would see a database of its own.
        return Err(StoreError::BadUrl {
            detail: "an in-memory SQLite database cannot be shared by a pool: give a file path"
                .to_owned(),
        });
    }
    Ok(match query {
        Some(q) if q.split('&').any(|p| p.starts_with("mode=")) => Cow::Borrowed(url),
        Some(_) => Cow::Owned(format!("{url}&mode=rwc")),
        None => Cow::Owned(format!("{url}?mode=rwc")),
    })
}

/// Takes the sole-writer lock beside a SQLite database file.
fn lock_sqlite(url: &str) -> Result<File, StoreError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| StoreError::Locked {
            detail: format!("cannot open {lock_path}: {e}"),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            detail: format!(
                "another rempart process is serving this SQLite store ({lock_path} is locked)"
            ),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::Locked {
            detail: format!("cannot lock {lock_path}: {e}"),
        }),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The `what` of errors about a row: `user "bob"`.
fn describe(kind: &str, name: &str) -> String {
    format!("{kind} {name:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("sqlite:///tmp/x.db"), Some("sqlite"));
        assert_eq!(scheme("postgres://u:p@h/db"), Some("postgres"));
        assert_eq!(scheme("hunter2"), None);
        assert_eq!(scheme("/tmp/x:y"), None);
    }

    #[test]
    fn sqlite_urls_create_the_file() {
        let url = |u| sqlite_url(u).map(Cow::into_owned).ok();
        assert_eq!(
            url("sqlite://r.db").as_deref(),
            Some("sqlite://r.db?mode=rwc")
        );
        assert_eq!(
            url("sqlite://r.db?cache=shared").as_deref(),
            Some("sqlite://r.db?cache=shared&mode=rwc")
        );
        assert_eq!(
            url("sqlite://r.db?mode=ro").as_deref(),
            Some("sqlite://r.db?mode=ro")
        );
        assert_eq!(url("sqlite::memory:"), None);
    }

    #[tokio::test]
    async fn bad_urls_name_only_the_scheme() {
        for (url, expect) in [
            ("mysql://root:hunter2@db/rempart", "\"mysql\""),
            ("hunter2", "no scheme"),
        ] {
            let Err(StoreError::BadUrl { detail }) = Store::open(url).await else {
                panic!("{url} should be refused as a bad url");
            };
            assert!(detail.contains(expect), "{detail}");
            assert!(!detail.contains("hunter2"), "{detail}");
        }
    }
}

/// The futures of a store must be `Send`: servers run them on spawned tasks.
#[cfg(test)]
#[allow(dead_code)]
mod send_check {
    use super::*;
    use rempart_core::{MachineName, TokenHash, UserName};

    fn is_send<T: Send>(_: T) {}

    fn all_futures_are_send(
        s: &Store,
        u: &UserName,
        m: &MachineName,
        h: &TokenHash,
        nu: &NewUser,
        nm: &NewMachine,
    ) {
        is_send(Store::open("x"));
        is_send(s.ping());
        is_send(s.close());
        is_send(s.create_user(nu));
        is_send(s.get_user(u));
        is_send(s.list_users());
        is_send(s.disable_user(u, 0));
        is_send(s.replace_token(u, h, 0, None));
        is_send(s.user_for_token(h, 0));
        is_send(s.create_machine(nm));
        is_send(s.list_machines());
        is_send(s.revoke_machine(m, 0));
        is_send(s.machine_for_cert("x", 0));
    }
}
