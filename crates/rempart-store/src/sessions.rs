//! Bastion sessions and their recordings (migration 4).

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::is_unique_violation;
use crate::{Store, StoreError};

/// A session's summary, as the bastion reports it when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSession {
    pub id: String,
    pub user: String,
    pub target: String,
    pub grant: String,
    pub bastion: String,
    pub client: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub reason: String,
    pub bytes_from_user: i64,
    pub bytes_to_user: i64,
    pub received_at_ms: i64,
}

/// A recording's description (its content is read apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    pub session: String,
    pub name: String,
    pub sha256: String,
    pub size: i64,
}

/// What storing something that may already be there did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// The same thing was stored before (a retry).
    Again,
}

fn session_from_row(row: &AnyRow) -> Result<SshSession, StoreError> {
    Ok(SshSession {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        target: row.try_get("target")?,
        grant: row.try_get("grant_id")?,
        bastion: row.try_get("bastion")?,
        client: row.try_get("client")?,
        started_at_ms: row.try_get("started_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        reason: row.try_get("reason")?,
        bytes_from_user: row.try_get("bytes_from_user")?,
        bytes_to_user: row.try_get("bytes_to_user")?,
        received_at_ms: row.try_get("received_at_ms")?,
    })
}

const SESSION_COLUMNS: &str = "id, user_name, target, grant_id, bastion, client, started_at_ms, ended_at_ms, reason, bytes_from_user, bytes_to_user, received_at_ms";

impl Store {
    /// Stores a recording; the same one again is [`Stored::Again`], another
    /// content under the same name a conflict.
    pub async fn add_recording(
        &self,
        info: &RecordingInfo,
        content: &[u8],
        bastion: &str,
        now_ms: i64,
    ) -> Result<Stored, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO ssh_recordings (session_id, name, sha256, size, content, bastion, received_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&info.session)
        .bind(&info.name)
        .bind(&info.sha256)
        .bind(info.size)
        .bind(content)
        .bind(bastion)
        .bind(now_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(Stored::New),
            Err(e) if is_unique_violation(&e) => {
                let existing = self.recordings_of(&info.session).await?;
                if existing
                    .iter()
                    .any(|r| r.name == info.name && r.sha256 == info.sha256)
                {
                    Ok(Stored::Again)
                } else {
                    Err(StoreError::Conflict {
                        what: format!(
                            "recording {} of session {} is stored already with another content",
                            info.name, info.session
                        ),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn recordings_of(&self, session: &str) -> Result<Vec<RecordingInfo>, StoreError> {
        sqlx::query(
            "SELECT session_id, name, sha256, size FROM ssh_recordings WHERE session_id = $1 ORDER BY name",
        )
        .bind(session)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(RecordingInfo {
                session: row.try_get("session_id")?,
                name: row.try_get("name")?,
                sha256: row.try_get("sha256")?,
                size: row.try_get("size")?,
            })
        })
        .collect()
    }

    pub async fn recording_content(
        &self,
        session: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT content FROM ssh_recordings WHERE session_id = $1 AND name = $2")
                .bind(session)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(row) => Some(row.try_get("content")?),
            None => None,
        })
    }

    /// Stores a session's summary; the same one again is [`Stored::Again`].
    pub async fn add_ssh_session(&self, session: &SshSession) -> Result<Stored, StoreError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO ssh_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&session.id)
        .bind(&session.user)
        .bind(&session.target)
        .bind(&session.grant)
        .bind(&session.bastion)
        .bind(&session.client)
        .bind(session.started_at_ms)
        .bind(session.ended_at_ms)
        .bind(&session.reason)
        .bind(session.bytes_from_user)
        .bind(session.bytes_to_user)
        .bind(session.received_at_ms)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(Stored::New),
            Err(e) if is_unique_violation(&e) => match self.ssh_session(&session.id).await? {
                Some(stored)
                    if SshSession {
                        received_at_ms: session.received_at_ms,
                        ..stored.clone()
                    } == *session =>
                {
                    Ok(Stored::Again)
                }
                _ => Err(StoreError::Conflict {
                    what: format!("session {} is stored already, differently", session.id),
                }),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn ssh_session(&self, id: &str) -> Result<Option<SshSession>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM ssh_sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    /// The newest sessions first, at most `limit`.
    pub async fn list_ssh_sessions(&self, limit: i64) -> Result<Vec<SshSession>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM ssh_sessions ORDER BY started_at_ms DESC, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }
}
