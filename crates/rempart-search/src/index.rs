//! The search index: a SQLite file beside the log.

use std::path::Path;
use std::str::FromStr;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::query::{Kind, Query};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Database(#[from] sqlx::Error),
    #[error("search index: entry {seq} is not the next one ({expected})")]
    OutOfOrder { seq: u64, expected: u64 },
    #[error("search index: made by an older version (format {found}, now {FORMAT})")]
    Outdated { found: i64 },
}

/// What the index holds, and how. Raised when that changes: an index of an
/// older format is rebuilt from the log. 2: `sql` (db.query) and `command`
/// (ssh.exec) are searchable as text, beside `msg` and `reason`.
const FORMAT: i64 = 2;

/// The fields free text is searched in.
pub(crate) const TEXT_FIELDS: [&str; 4] = ["msg", "reason", "sql", "command"];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    actor TEXT,
    target TEXT,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE INDEX IF NOT EXISTS entries_host_ts ON entries(host, ts);
CREATE INDEX IF NOT EXISTS entries_actor_ts ON entries(actor, ts);
CREATE INDEX IF NOT EXISTS entries_kind_ts ON entries(kind, ts);
CREATE INDEX IF NOT EXISTS entries_target_ts ON entries(target, ts);
CREATE VIRTUAL TABLE IF NOT EXISTS entry_text USING fts5(text, kv, content='', contentless_delete=1);
";

/// Fields kept in columns, or not worth indexing as `field:value`.
const NOT_KV: [&str; 9] = [
    "ts", "kind", "host", "actor", "target", "outcome", "msg", "raw", "received",
];

/// Rows inserted per statement (SQLite allows 32,766 bound parameters).
const ROWS_PER_STATEMENT: usize = 500;

/// One entry reduced to what search needs.
struct Indexed {
    seq: i64,
    ts: i64,
    kind: String,
    host: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    text: String,
    kv: String,
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn reduce(seq: u64, payload: &[u8]) -> Option<Indexed> {
    let Value::Object(fields) = serde_json::from_slice::<Value>(payload).ok()? else {
        return None;
    };
    let string = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
    let ts = string("ts")
        .and_then(|ts| OffsetDateTime::parse(&ts, &Rfc3339).ok())
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    let mut text = String::new();
    for key in TEXT_FIELDS {
        if let Some(value) = string(key) {
            text.push_str(&value);
            text.push('\n');
        }
    }
    // `field value` pairs, matched as phrases for `field:value` terms.
    let mut kv = String::new();
    for (key, value) in &fields {
        if NOT_KV.contains(&key.as_str()) {
            continue;
        }
        if let Some(value) = text_of(value) {
            kv.push_str(&format!("{key} {value}\n"));
        }
    }
    Some(Indexed {
        seq: i64::try_from(seq).ok()?,
        ts,
        kind: string("kind").unwrap_or_default(),
        host: string("host"),
        actor: string("actor"),
        target: string("target"),
        outcome: string("outcome"),
        text,
        kv,
    })
}

/// An FTS5 phrase: double quotes doubled, the whole quoted.
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[derive(Debug, Clone)]
pub struct Index {
    pool: SqlitePool,
}

impl Index {
    /// Opens the index, or starts it again from nothing if it cannot be
    /// opened (it is derived data, written without fsync: a crash of the
    /// machine may leave it damaged, and the log rebuilds it).
    pub async fn open_or_rebuild(path: &Path) -> Result<Index, IndexError> {
        match Index::open(path).await {
            Ok(index) => Ok(index),
            Err(err) => {
                tracing::warn!(error = %err, path = %path.display(), "search index damaged; rebuilding it from the log");
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
                Index::open(path).await
            }
        }
    }

    pub async fn open(path: &Path) -> Result<Index, IndexError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Derived data: rebuilt from the log if a crash loses its end.
            .synchronous(SqliteSynchronous::Off)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        let index = Index { pool };
        let format = index.mark("format").await?;
        if index.indexed().await? == 0 {
            index.set_mark("format", FORMAT as u64).await?;
        } else if format < FORMAT as u64 {
            index.pool.close().await;
            return Err(IndexError::Outdated {
                found: format as i64,
            });
        }
        Ok(index)
    }

    /// How many entries (from seq 0) are indexed.
    pub async fn indexed(&self) -> Result<u64, IndexError> {
        let value: Option<i64> = sqlx::query("SELECT value FROM meta WHERE key = 'indexed'")
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.get(0));
        Ok(value.unwrap_or(0).max(0) as u64)
    }

    /// Indexes consecutive entries that start where the index ends. Erased
    /// entries (no payload) are counted but have nothing to index.
    pub async fn add(&self, entries: &[(u64, Option<Vec<u8>>)]) -> Result<(), IndexError> {
        let Some((first, _)) = entries.first() else {
            return Ok(());
        };
        let expected = self.indexed().await?;
        if *first != expected {
            return Err(IndexError::OutOfOrder {
                seq: *first,
                expected,
            });
        }
        let rows: Vec<Indexed> = entries
            .iter()
            .filter_map(|(seq, payload)| payload.as_ref().and_then(|p| reduce(*seq, p)))
            .collect();
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO entries (seq, ts, kind, host, actor, target, outcome) ",
            );
            insert.push_values(chunk, |mut b, row| {
                b.push_bind(row.seq)
                    .push_bind(row.ts)
                    .push_bind(&row.kind)
                    .push_bind(&row.host)
                    .push_bind(&row.actor)
                    .push_bind(&row.target)
                    .push_bind(&row.outcome);
            });
            insert.build().execute(&mut *tx).await?;
            let mut text = QueryBuilder::<Sqlite>::new("INSERT INTO entry_text (rowid, text, kv) ");
            text.push_values(chunk, |mut b, row| {
                b.push_bind(row.seq).push_bind(&row.text).push_bind(&row.kv);
            });
            text.build().execute(&mut *tx).await?;
        }
        let next = entries.last().map_or(expected, |(seq, _)| seq + 1);
        sqlx::query("INSERT INTO meta (key, value) VALUES ('indexed', $1) ON CONFLICT(key) DO UPDATE SET value = $1")
            .bind(i64::try_from(next).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes an erased entry from the index, so that no search finds it by
    /// what it said.
    pub async fn forget(&self, seq: u64) -> Result<(), IndexError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM entries WHERE seq = $1")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM entry_text WHERE rowid = $1")
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A number kept beside the index (e.g. how far retention has looked).
    pub async fn mark(&self, key: &str) -> Result<u64, IndexError> {
        let value: Option<i64> = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.get(0));
        Ok(value.unwrap_or(0).max(0) as u64)
    }

    pub async fn set_mark(&self, key: &str, value: u64) -> Result<(), IndexError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = $2")
            .bind(key)
            .bind(i64::try_from(value).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The sequence numbers of the newest `limit` matches.
    pub async fn search(&self, query: &Query, limit: u32) -> Result<Vec<u64>, IndexError> {
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT e.seq FROM ");
        let mut matches: Vec<String> = query
            .text
            .iter()
            .map(|t| format!("text:{}", phrase(t)))
            .collect();
        matches.extend(
            query
                .fields
                .iter()
                .map(|(field, value)| format!("kv:{}", phrase(&format!("{field} {value}")))),
        );
        let text = !matches.is_empty();
        if text {
            // FTS5 drives: it walks its matches from the newest rowid down
            // and the query stops at the limit.
            sql.push("entry_text t JOIN entries e ON e.seq = t.rowid WHERE entry_text MATCH ")
                .push_bind(matches.join(" AND "));
        } else {
            sql.push("entries e WHERE 1 = 1");
        }
        let millis = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        if let Some(since) = query.since {
            sql.push(" AND e.ts >= ").push_bind(millis(since));
        }
        if let Some(until) = query.until {
            sql.push(" AND e.ts < ").push_bind(millis(until));
        }
        for (column, value) in [
            ("host", &query.host),
            ("actor", &query.actor),
            ("target", &query.target),
            ("outcome", &query.outcome),
        ] {
            if let Some(value) = value {
                sql.push(format!(" AND e.{column} = "))
                    .push_bind(value.clone());
            }
        }
        match &query.kind {
            Some(Kind::Exact(kind)) => {
                sql.push(" AND e.kind = ").push_bind(kind.clone());
            }
            Some(Kind::Prefix(prefix)) => {
                // `ssh.*`: ssh itself, or anything under `ssh.` (a range, so
                // that the (kind, ts) index serves it).
                sql.push(" AND (e.kind = ")
                    .push_bind(prefix.clone())
                    .push(" OR (e.kind >= ")
                    .push_bind(format!("{prefix}."))
                    .push(" AND e.kind < ")
                    .push_bind(format!("{prefix}/"))
                    .push("))");
            }
            None => {}
        }
        // Text matches come by arrival, newest first (FTS5 walks its rowids
        // backwards and stops at the limit); the others by event time.
        sql.push(if text {
            " ORDER BY t.rowid DESC LIMIT "
        } else {
            " ORDER BY e.ts DESC, e.seq DESC LIMIT "
        })
        .push_bind(i64::from(limit));
        let rows = sql.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|row| row.get::<i64, _>(0).max(0) as u64)
            .collect())
    }
}
