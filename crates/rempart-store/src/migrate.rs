//! A small versioned migration runner.
//!
//! Each migration exists once per backend (the SQL dialects differ in their
//! DDL) and is applied in its own transaction together with its row in
//! `schema_migrations`, so a crash leaves either all of it or none of it.

use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

use crate::{Backend, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration this binary knows, in version order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "identities",
        sqlite: include_str!("../migrations/sqlite/0001_identities.sql"),
        postgres: include_str!("../migrations/postgres/0001_identities.sql"),
    },
    Migration {
        version: 2,
        name: "welllog_shared",
        sqlite: include_str!("../migrations/sqlite/0002_welllog_shared.sql"),
        postgres: include_str!("../migrations/postgres/0002_welllog_shared.sql"),
    },
    Migration {
        version: 3,
        name: "access",
        sqlite: include_str!("../migrations/sqlite/0003_access.sql"),
        postgres: include_str!("../migrations/postgres/0003_access.sql"),
    },
    Migration {
        version: 4,
        name: "ssh_sessions",
        sqlite: include_str!("../migrations/sqlite/0004_ssh_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0004_ssh_sessions.sql"),
    },
];

/// The key of the PostgreSQL advisory lock that serialises migration runs of
/// control-plane processes starting together ("REMPART" in ASCII).
const PG_MIGRATION_LOCK: i64 = 0x52_45_4D_50_41_52_54;

/// The newest schema version this binary knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database schema up to date.
pub(crate) async fn run(pool: &AnyPool, backend: Backend, now_ms: i64) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if backend == Backend::Sqlite {
        // SQLite has no advisory locks: each migration takes the write lock
        // (BEGIN IMMEDIATE) and re-checks its version inside the transaction.
        return run_on(&mut conn, backend, now_ms).await;
    }
    // The lock belongs to the session, so everything below must run on this
    // one connection.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PG_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = run_on(&mut conn, backend, now_ms).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PG_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    if result.is_err() || unlocked.is_err() {
        // Ending the session is the sure way to release the lock; never hand
        // a connection that may still hold it back to the pool.
        let _ = conn.close().await;
    }
    result?;
    unlocked?;
    Ok(())
}

async fn run_on(conn: &mut AnyConnection, backend: Backend, now_ms: i64) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY NOT NULL,
            name TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await?;

    let newest: Option<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max();
    let known = latest_version();
    if let Some(newest) = newest.filter(|&v| v > known) {
        return Err(StoreError::Migration {
            version: newest,
            detail: format!(
                "database schema version {newest} is newer than this rempart knows ({known})"
            ),
        });
    }

    for migration in MIGRATIONS
        .iter()
        .filter(|m| newest.is_none_or(|v| m.version > v))
    {
        apply(conn, backend, migration, now_ms)
            .await
            .map_err(|e| StoreError::Migration {
                version: migration.version,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

async fn apply(
    conn: &mut AnyConnection,
    backend: Backend,
    migration: &Migration,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let (begin, sql) = match backend {
        // IMMEDIATE takes the write lock now, so that a second process waits
        // (busy_timeout) here rather than failing half-way.
        Backend::Sqlite => ("BEGIN IMMEDIATE", migration.sqlite),
        Backend::Postgres => ("BEGIN", migration.postgres),
    };
    let mut tx = conn.begin_with(begin).await?;
    let already = sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
        .bind(migration.version)
        .fetch_optional(&mut *tx)
        .await?;
    if already.is_some() {
        // Another process applied it between our check and our lock.
        return tx.rollback().await;
    }
    // raw_sql: a migration file holds several statements. Called through
    // `Executor` because `RawSql::execute`'s future is not provably `Send`.
    (&mut *tx).execute(sqlx::raw_sql(sql)).await?;
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        "applied schema migration"
    );
    Ok(())
}
