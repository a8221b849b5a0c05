//! The well-log shared by several control-plane nodes on PostgreSQL.
//!
//! Any node submits a batch of entries ([`Store::welllog_submit`]) in one
//! transaction. Exactly one node, the holder of an advisory lock
//! ([`Sequencer`]), gives each pending batch the next contiguous range of
//! sequence numbers, in a transaction run on the very connection that holds
//! the lock: if that node dies, its session ends, the lock is released and
//! its unfinished transaction is rolled back, so a successor never sees half
//! a sequencing. `first_seq` is also UNIQUE, so two sequencers reading the
//! same end of the log could not both commit. Every node then reads the
//! sequenced entries in order ([`Store::welllog_read`]) into its own copy of
//! the log's files, where its tree, checkpoints and proofs come from.
//!
//! Nothing is deleted: an erasure nulls a payload, keeps its leaf hash, and
//! is recorded in `welllog_erasures` so that every node applies it.

use std::ops::Range;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};

use crate::{Backend, Store, StoreError};

/// The PostgreSQL advisory lock that makes a session the sequencer
/// ("RMPTSEQ" in ASCII).
const PG_SEQUENCER_LOCK: i64 = 0x52_4D_50_54_53_45_51;

/// The PostgreSQL advisory lock that orders erasures ("RMPTERA").
const PG_ERASURE_LOCK: i64 = 0x52_4D_50_54_45_52_41;

/// The PostgreSQL notification channel; payloads are [`Notice`] names.
pub const NOTIFY_CHANNEL: &str = "rempart_welllog";

/// Entry rows per `INSERT` statement (4 parameters each, far below the
/// parameter limits of both backends).
const ROWS_PER_INSERT: usize = 4000;

/// A sequenced entry as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    pub seq: u64,
    /// SHA-256(0x00 ‖ payload), the entry's Merkle leaf.
    pub leaf: [u8; 32],
    /// `None` once erased.
    pub payload: Option<Vec<u8>>,
}

/// What a notification on [`NOTIFY_CHANNEL`] announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A batch waits for the sequencer.
    Submitted,
    /// Batches received sequence numbers.
    Sequenced,
    /// Payloads were erased.
    Erased,
}

impl Notice {
    fn as_str(self) -> &'static str {
        match self {
            Notice::Submitted => "submitted",
            Notice::Sequenced => "sequenced",
            Notice::Erased => "erased",
        }
    }

    fn parse(payload: &str) -> Option<Notice> {
        [Notice::Submitted, Notice::Sequenced, Notice::Erased]
            .into_iter()
            .find(|n| n.as_str() == payload)
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid {
        detail: format!("{what} {value} is out of range"),
    })
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        detail: format!("{what} is negative ({value})"),
    })
}

fn leaf_of(row: &AnyRow, column: &str, seq: u64) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.try_get(column)?;
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        detail: format!("well-log entry {seq}: the leaf hash is not 32 bytes"),
    })
}

/// Sends a notice to every listening node, at commit (PostgreSQL only).
async fn notify(
    conn: &mut AnyConnection,
    backend: Backend,
    notice: Notice,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(notice.as_str())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// `SELECT first_seq + entries` of the last sequenced batch: where the next
/// batch starts.
const END_OF_LOG: &str = "SELECT first_seq + entries FROM welllog_batches \
     WHERE first_seq IS NOT NULL ORDER BY first_seq DESC LIMIT 1";

async fn end_of_log(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let end: Option<i64> = sqlx::query(END_OF_LOG)
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    to_u64(end.unwrap_or(0), "the end of the shared well-log")
}

impl Store {
    /// Stores a batch of entries (each its leaf hash and canonical bytes) for
    /// the sequencer; returns the batch's id. Durable once this returns.
    pub async fn welllog_submit(
        &self,
        node: &str,
        entries: &[([u8; 32], Vec<u8>)],
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        if entries.is_empty() {
            return Err(StoreError::Invalid {
                detail: "a well-log batch holds at least one entry".to_owned(),
            });
        }
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO welllog_batches (node, entries, submitted_ms) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(node)
        .bind(to_i64(entries.len() as u64, "batch size")?)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for (chunk_index, chunk) in entries.chunks(ROWS_PER_INSERT).enumerate() {
            let sql = insert_entries_sql(chunk.len());
            let mut query = sqlx::query(&sql);
            for (i, (leaf, payload)) in chunk.iter().enumerate() {
                let position = (chunk_index * ROWS_PER_INSERT + i) as i64;
                query = query
                    .bind(id)
                    .bind(position)
                    .bind(&leaf[..])
                    .bind(&payload[..]);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        // After the commit, in a statement of its own: a notifying
        // transaction's commit takes a database-wide lock, and submissions
        // from every node should not queue on it with their inserts.
        notify(&mut conn, self.backend, Notice::Submitted).await?;
        Ok(id)
    }

    /// This node's batches from `from_id` on that are sequenced: (batch id,
    /// first sequence number).
    pub async fn welllog_sequenced(
        &self,
        node: &str,
        from_id: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        sqlx::query(
            "SELECT id, first_seq FROM welllog_batches \
             WHERE node = $1 AND id >= $2 AND first_seq IS NOT NULL ORDER BY id",
        )
        .bind(node)
        .bind(from_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, to_u64(row.try_get(1)?, "first_seq")?)))
        .collect()
    }

    /// How many entries the shared log has sequenced.
    pub async fn welllog_size(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        end_of_log(&mut conn).await
    }

    /// The sequenced entries from `from` on: the rest of the batch that holds
    /// `from` (a copy can stop inside a batch: a crash between two of its
    /// segment files), then whole batches up to the one that holds entry
    /// `from + at_least - 1` (or the log's end). Every batch read is checked
    /// to be complete and contiguous: a missing, extra or misplaced row is
    /// [`StoreError::Corrupt`], naming the entry.
    pub async fn welllog_read(
        &self,
        from: u64,
        at_least: u64,
    ) -> Result<Vec<SharedEntry>, StoreError> {
        let holder: Option<i64> = sqlx::query(
            "SELECT first_seq FROM welllog_batches \
             WHERE first_seq IS NOT NULL AND first_seq <= $1 ORDER BY first_seq DESC LIMIT 1",
        )
        .bind(to_i64(from, "entry")?)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
        let start = to_u64(holder.unwrap_or(0), "first_seq")?;
        // The batches first, then their entries by primary key: a join lets
        // the planner scan the whole entries table, once per read.
        let batches: Vec<(i64, u64, u64)> = sqlx::query(
            "SELECT id, first_seq, entries FROM welllog_batches \
             WHERE first_seq >= $1 AND first_seq < $2 ORDER BY first_seq",
        )
        .bind(to_i64(start, "entry")?)
        .bind(to_i64(from.saturating_add(at_least.max(1)), "entry")?)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                to_u64(row.try_get(1)?, "first_seq")?,
                to_u64(row.try_get(2)?, "entries")?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
        let mut by_batch: std::collections::HashMap<i64, Vec<AnyRow>> =
            std::collections::HashMap::new();
        for chunk in batches.chunks(ROWS_PER_INSERT) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT batch_id, position, leaf, payload FROM welllog_entries \
                 WHERE batch_id IN ({}) ORDER BY batch_id, position",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (id, _, _) in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                by_batch.entry(row.try_get(0)?).or_default().push(row);
            }
        }
        let mut rows: Vec<(u64, u64, AnyRow)> = Vec::new();
        for (id, first, count) in &batches {
            for row in by_batch.remove(id).unwrap_or_default() {
                rows.push((*first, *count, row));
            }
        }
        let mut entries = Vec::with_capacity(rows.len());
        let mut expected = start;
        // The end of the batch being read.
        let mut batch_end = start;
        for (first, count, row) in &rows {
            let (first, count) = (*first, *count);
            let position = to_u64(row.try_get("position")?, "position")?;
            if position == 0 {
                if expected != batch_end || first != expected {
                    return Err(StoreError::Corrupt {
                        detail: format!(
                            "the shared well-log has no batch starting at entry {expected} (next found: {first})"
                        ),
                    });
                }
                batch_end = first.saturating_add(count);
            }
            let seq = first.saturating_add(position);
            if seq != expected || seq >= batch_end {
                return Err(StoreError::Corrupt {
                    detail: format!(
                        "the shared well-log's entry {expected} is missing or misplaced"
                    ),
                });
            }
            if seq >= from {
                entries.push(SharedEntry {
                    seq,
                    leaf: leaf_of(row, "leaf", seq)?,
                    payload: row.try_get("payload")?,
                });
            }
            expected += 1;
        }
        if expected != batch_end {
            return Err(StoreError::Corrupt {
                detail: format!("the shared well-log's entry {expected} is missing"),
            });
        }
        Ok(entries)
    }

    /// The leaf hash of sequenced entry `seq`, if there is one.
    pub async fn welllog_leaf(&self, seq: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let seq_i64 = to_i64(seq, "entry")?;
        let row = sqlx::query(
            "SELECT e.leaf FROM welllog_batches b JOIN welllog_entries e ON e.batch_id = b.id \
             WHERE b.id = (SELECT id FROM welllog_batches WHERE first_seq IS NOT NULL \
                           AND first_seq <= $1 ORDER BY first_seq DESC LIMIT 1) \
               AND e.position = $1 - b.first_seq",
        )
        .bind(seq_i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| leaf_of(&row, "leaf", seq)).transpose()
    }

    /// Erases the payloads of sequenced entries (their leaves stay) and
    /// records each erasure for every node; returns how many were erased now
    /// (an entry erased before counts zero). An unknown entry is
    /// [`StoreError::NotFound`] and nothing is erased.
    pub async fn welllog_erase(&self, seqs: &[u64], now_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            // Erasures commit one transaction at a time, so their ids grow in
            // commit order: a node that has applied erasure N never sees one
            // below N appear later (ids are given at insert, not at commit).
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_ERASURE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let mut erased = 0;
        for &seq in seqs {
            let batch = sqlx::query(
                "SELECT id, first_seq, entries FROM welllog_batches \
                 WHERE first_seq IS NOT NULL AND first_seq <= $1 ORDER BY first_seq DESC LIMIT 1",
            )
            .bind(to_i64(seq, "entry")?)
            .fetch_optional(&mut *tx)
            .await?;
            let not_found = || StoreError::NotFound {
                what: format!("well-log entry {seq}"),
            };
            let Some(batch) = batch else {
                return Err(not_found());
            };
            let id: i64 = batch.try_get(0)?;
            let first = to_u64(batch.try_get(1)?, "first_seq")?;
            let count = to_u64(batch.try_get(2)?, "entries")?;
            if seq >= first.saturating_add(count) {
                return Err(not_found());
            }
            let updated = sqlx::query(
                "UPDATE welllog_entries SET payload = NULL \
                 WHERE batch_id = $1 AND position = $2 AND payload IS NOT NULL",
            )
            .bind(id)
            .bind(to_i64(seq - first, "position")?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 {
                sqlx::query("INSERT INTO welllog_erasures (seq, erased_ms) VALUES ($1, $2)")
                    .bind(to_i64(seq, "entry")?)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                erased += 1;
            }
        }
        if erased > 0 {
            notify(&mut tx, self.backend, Notice::Erased).await?;
        }
        tx.commit().await?;
        Ok(erased)
    }

    /// Erasures recorded after `after_id`, in order: (erasure id, entry).
    pub async fn welllog_erasures(
        &self,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        sqlx::query("SELECT id, seq FROM welllog_erasures WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(to_i64(limit, "limit")?)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, to_u64(row.try_get(1)?, "seq")?)))
            .collect()
    }

    /// Which of `seqs` have an erasure recorded (an entry without a payload
    /// and without one was nulled behind the store's back).
    pub async fn welllog_erased_among(&self, seqs: &[u64]) -> Result<Vec<u64>, StoreError> {
        let mut found = Vec::new();
        for chunk in seqs.chunks(ROWS_PER_INSERT) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT DISTINCT seq FROM welllog_erasures WHERE seq IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for seq in chunk {
                query = query.bind(to_i64(*seq, "entry")?);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push(to_u64(row.try_get(0)?, "seq")?);
            }
        }
        Ok(found)
    }

    /// Records `value` for the setting `name` if none is recorded yet, and
    /// returns the recorded one: the first node's value wins, and the others
    /// compare theirs to it.
    pub async fn welllog_claim_setting(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO welllog_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query("SELECT value FROM welllog_settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// A connection of its own that may become the sequencer.
    pub async fn welllog_sequencer(&self) -> Result<Sequencer, StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        if self.backend == Backend::Postgres {
            // The lock lives as long as the session: have the server close
            // the session of a host that vanished (power loss, partition)
            // within about 15 s, instead of TCP's two hours. A process that
            // is merely paused still answers keepalives and keeps the lock:
            // sequencing then waits; it never forks.
            for setting in [
                "SET tcp_keepalives_idle = 5",
                "SET tcp_keepalives_interval = 2",
                "SET tcp_keepalives_count = 3",
                "SET tcp_user_timeout = 15000",
            ] {
                sqlx::query(setting).execute(&mut conn).await?;
            }
        }
        Ok(Sequencer {
            conn,
            backend: self.backend,
            leading: false,
        })
    }

    /// Notifications of the shared log's changes, on a connection of their
    /// own (PostgreSQL only; `None` on SQLite).
    pub async fn welllog_notifications(&self) -> Result<Option<Notifications>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(self.url.expose()).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(Some(Notifications { listener }))
    }
}

fn insert_entries_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO welllog_entries (batch_id, position, leaf, payload) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        let p = row * 4;
        sql.push_str(&format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4));
    }
    sql
}

/// A session that may hold the sequencer's lock. While it holds it, it is
/// the only one that sequences; dropping it (or its process dying) ends the
/// session and releases the lock.
pub struct Sequencer {
    conn: AnyConnection,
    backend: Backend,
    leading: bool,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("backend", &self.backend)
            .field("leading", &self.leading)
            .finish()
    }
}

impl Sequencer {
    /// Takes the sequencer's lock if it is free; whether this session holds it.
    /// On SQLite, one process serves the store (see [`Store::open_exclusive`])
    /// and `BEGIN IMMEDIATE` serialises writers: it always leads.
    pub async fn try_lead(&mut self) -> Result<bool, StoreError> {
        if !self.leading {
            self.leading = match self.backend {
                Backend::Sqlite => true,
                Backend::Postgres => sqlx::query("SELECT pg_try_advisory_lock($1)")
                    .bind(PG_SEQUENCER_LOCK)
                    .fetch_one(&mut self.conn)
                    .await?
                    .try_get(0)?,
            };
        }
        Ok(self.leading)
    }

    /// Gives the oldest pending batches (up to `max_batches`, and to about
    /// `max_entries`) the next sequence numbers, in one transaction; the range
    /// sequenced, or `None` when nothing was pending.
    pub async fn sequence(
        &mut self,
        max_batches: u64,
        max_entries: u64,
    ) -> Result<Option<Range<u64>>, StoreError> {
        if !self.leading {
            return Err(StoreError::Invalid {
                detail: "only the holder of the sequencer's lock sequences".to_owned(),
            });
        }
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let mut tx = self.conn.begin_with(begin).await?;
        let start = end_of_log(&mut tx).await?;
        // The oldest pending batches, each given the entries of those before
        // it as its offset from `start`; stop before the batch that would
        // begin past `max_entries`. One statement, whatever the count.
        let ends = sqlx::query(
            "UPDATE welllog_batches SET first_seq = numbered.first_seq \
             FROM (SELECT id, $1 + running - entries AS first_seq \
                   FROM (SELECT id, entries, SUM(entries) OVER (ORDER BY id) AS running \
                         FROM (SELECT id, entries FROM welllog_batches \
                               WHERE first_seq IS NULL ORDER BY id LIMIT $2) AS pending) AS summed \
                   WHERE running - entries < $3) AS numbered \
             WHERE welllog_batches.id = numbered.id AND welllog_batches.first_seq IS NULL \
             RETURNING welllog_batches.first_seq + welllog_batches.entries",
        )
        .bind(to_i64(start, "entry")?)
        .bind(to_i64(max_batches, "limit")?)
        .bind(to_i64(max_entries, "limit")?)
        .fetch_all(&mut *tx)
        .await?;
        let mut end = start;
        for row in &ends {
            end = end.max(to_u64(row.try_get(0)?, "first_seq + entries")?);
        }
        if ends.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        notify(&mut tx, self.backend, Notice::Sequenced).await?;
        tx.commit().await?;
        Ok(Some(start..end))
    }
}

/// A listening session on [`NOTIFY_CHANNEL`].
pub struct Notifications {
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifications")
    }
}

impl Notifications {
    /// The next notice. Cancel-safe. If the session is lost it reconnects,
    /// and notices sent meanwhile are lost: listeners also poll.
    pub async fn next(&mut self) -> Result<Option<Notice>, StoreError> {
        let notification = self.listener.recv().await?;
        Ok(Notice::parse(notification.payload()))
    }
}
