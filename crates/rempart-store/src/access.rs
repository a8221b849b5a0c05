//! Access requests (issue 4): resources, requests and the rows that decide
//! them, and security training. A request is never updated; a change to it
//! is a new row, written by [`Store::transition`] under a lock on the
//! request, after the caller has checked, on the rows read under that lock,
//! that the change is allowed.

use std::collections::BTreeMap;

use rempart_access::{
    Action, ActionKind, Decision, Labels, Request, ResourceKind, ResourceRef, Review,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};

use crate::error::conflict_or;
use crate::{Backend, Store, StoreError};

/// A resource as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub resource: ResourceRef,
    pub labels: Labels,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// A request and everything that happened to it, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRows {
    pub request: Request,
    pub reviews: Vec<Review>,
    pub actions: Vec<Action>,
}

/// The row a transition adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Review(Review),
    Action(Action),
}

/// A completed training, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingRecord {
    pub user: String,
    pub module: String,
    pub completed_at_ms: i64,
    pub recorded_at_ms: i64,
    pub recorded_by: String,
}

/// A training module and how long a completion stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingModule {
    pub name: String,
    pub valid_for_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt { detail }
}

fn resource_from_row(row: &AnyRow) -> Result<Resource, StoreError> {
    let kind: String = row.try_get("kind")?;
    let name: String = row.try_get("name")?;
    let labels: String = row.try_get("labels")?;
    let kind: ResourceKind = kind.parse().map_err(corrupt)?;
    Ok(Resource {
        resource: ResourceRef::new(kind, &name).map_err(corrupt)?,
        labels: serde_json::from_str::<BTreeMap<String, String>>(&labels)
            .map_err(|e| corrupt(format!("labels of {name:?}: {e}")))?,
        created_at_ms: row.try_get("created_at_ms")?,
        created_by: row.try_get("created_by")?,
    })
}

const REQUEST_COLUMNS: &str = "id, requester, reason, created_at_ms, start_ms, duration_ms, approvals_needed, pending_until_ms";

async fn load_rows(conn: &mut AnyConnection, request: &AnyRow) -> Result<RequestRows, StoreError> {
    let id: i64 = request.try_get("id")?;
    let resources = sqlx::query(
        "SELECT kind, name FROM access_request_resources WHERE request_id = $1 ORDER BY kind, name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let kind: String = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        ResourceRef::new(kind.parse().map_err(corrupt)?, &name).map_err(corrupt)
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let reviews = sqlx::query(
        "SELECT reviewer, decision, comment, at_ms FROM access_reviews WHERE request_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let decision: String = row.try_get(1)?;
        Ok(Review {
            reviewer: row.try_get(0)?,
            decision: match decision.as_str() {
                "approve" => Decision::Approve,
                "deny" => Decision::Deny,
                other => return Err(corrupt(format!("review decision {other:?}"))),
            },
            comment: row.try_get(2)?,
            at_ms: row.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let actions = sqlx::query(
        "SELECT kind, actor, reason, at_ms FROM access_actions WHERE request_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        let kind: String = row.try_get(0)?;
        Ok(Action {
            kind: match kind.as_str() {
                "cancel" => ActionKind::Cancel,
                "revoke" => ActionKind::Revoke,
                other => return Err(corrupt(format!("request action {other:?}"))),
            },
            actor: row.try_get(1)?,
            reason: row.try_get(2)?,
            at_ms: row.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let approvals: i64 = request.try_get("approvals_needed")?;
    Ok(RequestRows {
        request: Request {
            id: id.to_string(),
            requester: request.try_get("requester")?,
            resources,
            reason: request.try_get("reason")?,
            created_at_ms: request.try_get("created_at_ms")?,
            start_ms: request.try_get("start_ms")?,
            duration_ms: request.try_get("duration_ms")?,
            approvals_needed: u32::try_from(approvals)
                .map_err(|_| corrupt(format!("request {id}: approvals_needed {approvals}")))?,
            pending_until_ms: request.try_get("pending_until_ms")?,
        },
        reviews,
        actions,
    })
}

fn request_id(id: &str) -> Result<i64, StoreError> {
    id.parse().map_err(|_| StoreError::NotFound {
        what: format!("request {id:?}"),
    })
}

impl Store {
    /// Registers a resource; [`StoreError::Conflict`] if it exists.
    pub async fn add_resource(&self, resource: &Resource) -> Result<(), StoreError> {
        let labels =
            serde_json::to_string(&resource.labels).map_err(|e| corrupt(format!("labels: {e}")))?;
        sqlx::query(
            "INSERT INTO resources (kind, name, labels, created_at_ms, created_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(resource.resource.kind.as_str())
        .bind(&resource.resource.name)
        .bind(labels)
        .bind(resource.created_at_ms)
        .bind(&resource.created_by)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("resource {} already exists", resource.resource)))?;
        Ok(())
    }

    pub async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        sqlx::query(
            "SELECT kind, name, labels, created_at_ms, created_by FROM resources ORDER BY kind, name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(resource_from_row)
        .collect()
    }

    /// The resources named, in order; [`StoreError::NotFound`] names the
    /// first unknown one.
    pub async fn get_resources(&self, refs: &[ResourceRef]) -> Result<Vec<Resource>, StoreError> {
        let mut found = Vec::with_capacity(refs.len());
        for wanted in refs {
            let row = sqlx::query(
                "SELECT kind, name, labels, created_at_ms, created_by FROM resources WHERE kind = $1 AND name = $2",
            )
            .bind(wanted.kind.as_str())
            .bind(&wanted.name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("resource {wanted}"),
            })?;
            found.push(resource_from_row(&row)?);
        }
        Ok(found)
    }

    /// Stores a new request (its resources must exist); returns its id.
    pub async fn create_request(&self, request: &Request) -> Result<String, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO access_requests (requester, reason, created_at_ms, start_ms, duration_ms, approvals_needed, pending_until_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&request.requester)
        .bind(&request.reason)
        .bind(request.created_at_ms)
        .bind(request.start_ms)
        .bind(request.duration_ms)
        .bind(i64::from(request.approvals_needed))
        .bind(request.pending_until_ms)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for resource in &request.resources {
            sqlx::query(
                "INSERT INTO access_request_resources (request_id, kind, name) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(resource.kind.as_str())
            .bind(&resource.name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id.to_string())
    }

    /// A request and its rows.
    pub async fn get_request(&self, id: &str) -> Result<Option<RequestRows>, StoreError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => Ok(Some(load_rows(&mut conn, &row).await?)),
            None => Ok(None),
        }
    }

    /// Requests, newest first: all, or one requester's; at most `limit`,
    /// older than request `before` when given (to page back).
    pub async fn list_requests(
        &self,
        requester: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RequestRows>, StoreError> {
        let before = match before {
            Some(id) => request_id(id)?,
            None => i64::MAX,
        };
        let mut conn = self.pool.acquire().await?;
        let rows = match requester {
            Some(requester) => {
                sqlx::query(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE requester = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(requester)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id < $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(load_rows(&mut conn, row).await?);
        }
        Ok(out)
    }

    /// Requests made at or after `since_ms` whose end is not logged yet,
    /// oldest first, at most `limit`.
    pub async fn requests_created_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<RequestRows>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE created_at_ms >= $1 \
             AND id NOT IN (SELECT request_id FROM access_ends) ORDER BY id LIMIT $2"
        ))
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(load_rows(&mut conn, row).await?);
        }
        Ok(out)
    }

    /// Claims the end of request `id` (`kind`: `grant` or `request`) for
    /// logging; `true` for the one caller that claims it first.
    pub async fn claim_access_end(
        &self,
        id: &str,
        kind: &str,
        ended_at_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let claimed = sqlx::query(
            "INSERT INTO access_ends (request_id, kind, ended_at_ms, logged_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id(id)?)
        .bind(kind)
        .bind(ended_at_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// `user`'s requests whose access could end after `since_ms` (the latest
    /// end a request allows: its start, or its last possible approval, plus
    /// its duration), for grant checks.
    pub async fn requests_of(
        &self,
        user: &str,
        since_ms: i64,
    ) -> Result<Vec<RequestRows>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests \
             WHERE requester = $1 AND COALESCE(start_ms, pending_until_ms) + duration_ms >= $2 \
             ORDER BY id"
        ))
        .bind(user)
        .bind(since_ms)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(load_rows(&mut conn, row).await?);
        }
        Ok(out)
    }

    /// Adds the row `decide` returns for the request `id`, given the
    /// request's rows as they are under a lock that holds until the row is
    /// committed: two reviewers deciding at the same instant are serialised,
    /// and each decides on what the other wrote. `decide`'s own refusal comes
    /// back as `Ok(Err(_))`, and nothing is written.
    pub async fn transition<E>(
        &self,
        id: &str,
        decide: impl FnOnce(&RequestRows) -> Result<Transition, E>,
    ) -> Result<Result<(RequestRows, Transition), E>, StoreError> {
        let numeric = request_id(id)?;
        let mut conn = self.pool.acquire().await?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let mut tx = conn.begin_with(begin).await?;
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1{lock}"
        ))
        .bind(numeric)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("request {id}"),
        })?;
        let mut rows = load_rows(&mut tx, &row).await?;
        let transition = match decide(&rows) {
            Ok(transition) => transition,
            Err(refused) => {
                tx.rollback().await?;
                return Ok(Err(refused));
            }
        };
        match &transition {
            Transition::Review(review) => {
                sqlx::query(
                    "INSERT INTO access_reviews (request_id, reviewer, decision, comment, at_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(numeric)
                .bind(&review.reviewer)
                .bind(review.decision.as_str())
                .bind(&review.comment)
                .bind(review.at_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    conflict_or(e, || format!("{} already reviewed request {id}", review.reviewer))
                })?;
                rows.reviews.push(review.clone());
            }
            Transition::Action(action) => {
                sqlx::query(
                    "INSERT INTO access_actions (request_id, kind, actor, reason, at_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(numeric)
                .bind(action.kind.as_str())
                .bind(&action.actor)
                .bind(&action.reason)
                .bind(action.at_ms)
                .execute(&mut *tx)
                .await?;
                rows.actions.push(action.clone());
            }
        }
        tx.commit().await?;
        Ok(Ok((rows, transition)))
    }

    /// Adds a training module; [`StoreError::Conflict`] if it exists.
    pub async fn add_training_module(&self, module: &TrainingModule) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO training_modules (name, valid_for_ms, created_at_ms, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(&module.name)
        .bind(module.valid_for_ms)
        .bind(module.created_at_ms)
        .bind(&module.created_by)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("training module {:?} already exists", module.name)))?;
        Ok(())
    }

    pub async fn training_modules(&self) -> Result<Vec<TrainingModule>, StoreError> {
        sqlx::query(
            "SELECT name, valid_for_ms, created_at_ms, created_by FROM training_modules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(TrainingModule {
                name: row.try_get(0)?,
                valid_for_ms: row.try_get(1)?,
                created_at_ms: row.try_get(2)?,
                created_by: row.try_get(3)?,
            })
        })
        .collect()
    }

    /// Records completions in one transaction (all or none); an unknown
    /// user or module is [`StoreError::NotFound`], naming it.
    pub async fn record_training(&self, records: &[TrainingRecord]) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        for record in records {
            for (table, column, value, what) in [
                ("users", "name", &record.user, "user"),
                (
                    "training_modules",
                    "name",
                    &record.module,
                    "training module",
                ),
            ] {
                let exists = sqlx::query(&format!("SELECT 1 FROM {table} WHERE {column} = $1"))
                    .bind(value)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound {
                        what: format!("{what} {value:?}"),
                    });
                }
            }
            sqlx::query(
                "INSERT INTO training_records (user_name, module, completed_at_ms, recorded_at_ms, recorded_by) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&record.user)
            .bind(&record.module)
            .bind(record.completed_at_ms)
            .bind(record.recorded_at_ms)
            .bind(&record.recorded_by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Completions, oldest first: everyone's, or one user's.
    pub async fn training_records(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<TrainingRecord>, StoreError> {
        let columns = "user_name, module, completed_at_ms, recorded_at_ms, recorded_by";
        let rows = match user {
            Some(user) => {
                sqlx::query(&format!(
                    "SELECT {columns} FROM training_records WHERE user_name = $1 ORDER BY id"
                ))
                .bind(user)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {columns} FROM training_records ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(TrainingRecord {
                    user: row.try_get(0)?,
                    module: row.try_get(1)?,
                    completed_at_ms: row.try_get(2)?,
                    recorded_at_ms: row.try_get(3)?,
                    recorded_by: row.try_get(4)?,
                })
            })
            .collect()
    }
}
