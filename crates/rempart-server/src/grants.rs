//! Grant checks: what one user may reach, decided from their requests,
//! their account and their training, at the instant of the check.
//!
//! On SQLite, where this process is the store's only writer, what a check
//! reads is kept in memory per user ([`AccessCache`]) and dropped after every
//! write that could change an answer (requests and their decisions, training,
//! a disabled account), whatever that write's outcome; times are compared at
//! each check, so expiry needs no write. On PostgreSQL other nodes write too:
//! every check reads the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rempart_access::request::{CheckOutcome, DenyReason, check};
use rempart_access::training::{missing, module_state};
use rempart_access::{ResourceRef, Status, status};
use rempart_store::{RequestRows, Store, StoreError, TrainingRecord};

use crate::routes::from_ms;

/// How far back a check looks for requests that ended (to say "expired at
/// …" rather than "no approved request").
const LOOKBACK_MS: i64 = 30 * 86_400_000;
/// Users kept at most; past it the cache starts again empty.
const MAX_USERS: usize = 100_000;

/// What a check needs to know of one user.
#[derive(Debug)]
pub struct UserAccess {
    exists: bool,
    disabled: bool,
    requests: Vec<RequestRows>,
    training: Vec<TrainingRecord>,
    /// Module name → validity.
    modules: BTreeMap<String, i64>,
}

impl UserAccess {
    async fn load(store: &Store, user: &str, now: i64) -> Result<UserAccess, StoreError> {
        let account = match user.parse() {
            Ok(name) => store.get_user(&name).await?,
            Err(_) => None,
        };
        let Some(account) = account else {
            return Ok(UserAccess {
                exists: false,
                disabled: false,
                requests: Vec::new(),
                training: Vec::new(),
                modules: BTreeMap::new(),
            });
        };
        Ok(UserAccess {
            exists: true,
            disabled: account.disabled_at_ms.is_some(),
            requests: store.requests_of(user, now - LOOKBACK_MS).await?,
            training: store.training_records(Some(user)).await?,
            modules: store
                .training_modules()
                .await?
                .into_iter()
                .map(|m| (m.name, m.valid_for_ms))
                .collect(),
        })
    }

    /// What of `required` this person lacks at `now`, as a sentence; `None`
    /// when every required module is current.
    pub fn training_gap(&self, required: &[String], now: i64) -> Option<String> {
        let completions = |module: &str| -> Vec<i64> {
            self.training
                .iter()
                .filter(|r| r.module == module)
                .map(|r| r.completed_at_ms)
                .collect()
        };
        missing(
            required,
            |module| module_state(self.modules.get(module).copied(), &completions(module), now),
            |at| from_ms(at).date().to_string(),
        )
    }

    /// The answer for `resource` at `now`: Ok((request, end)) or why not.
    pub fn check(
        &self,
        user: &str,
        resource: &ResourceRef,
        required_training: &[String],
        now: i64,
    ) -> Result<(String, i64), String> {
        if !self.exists {
            return Err(format!("no user {user}"));
        }
        if self.disabled {
            return Err(format!("user {user} is disabled"));
        }
        if let Some(gap) = self.training_gap(required_training, now) {
            return Err(gap);
        }
        let relevant: Vec<&RequestRows> = self
            .requests
            .iter()
            .filter(|rows| rows.request.resources.contains(resource))
            .collect();
        let statuses: Vec<Status> = relevant
            .iter()
            .map(|rows| status(&rows.request, &rows.reviews, &rows.actions, now))
            .collect();
        match check(
            relevant.iter().map(|r| &r.request).zip(statuses.iter()),
            now,
        ) {
            CheckOutcome::Allow { request, end_ms } => Ok((request, end_ms)),
            CheckOutcome::Deny(reason) => Err(match reason {
                DenyReason::NoApprovedRequest => "no approved request".to_owned(),
                DenyReason::StartsAt(at) => format!("approved, starts at {}", from_ms(at)),
                DenyReason::ExpiredAt(at) => format!("expired at {}", from_ms(at)),
                DenyReason::RevokedAt(at) => format!("revoked at {}", from_ms(at)),
            }),
        }
    }
}

/// Per-user answers' inputs, for a sole writer (see the module's comment).
#[derive(Debug)]
pub struct AccessCache {
    enabled: bool,
    generation: AtomicU64,
    users: RwLock<HashMap<String, Arc<UserAccess>>>,
}

impl AccessCache {
    pub fn new(enabled: bool) -> AccessCache {
        AccessCache {
            enabled,
            generation: AtomicU64::new(0),
            users: RwLock::new(HashMap::new()),
        }
    }

    /// What a check of `user` needs, from memory or from the store.
    pub async fn user(
        &self,
        store: &Store,
        user: &str,
        now: i64,
    ) -> Result<Arc<UserAccess>, StoreError> {
        if !self.enabled {
            return Ok(Arc::new(UserAccess::load(store, user, now).await?));
        }
        if let Some(found) = self
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
        {
            return Ok(found.clone());
        }
        // A write that commits while this loads bumps the generation: what
        // was loaded may predate it, so it is used once and not kept.
        let generation = self.generation.load(Ordering::SeqCst);
        let loaded = Arc::new(UserAccess::load(store, user, now).await?);
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            if users.len() >= MAX_USERS {
                users.clear();
            }
            users.insert(user.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Forgets everything: called after every write that could change an
    /// answer, whatever its outcome.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.users
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Runs a write, then forgets everything, whether it succeeded or not
    /// (a failed answer may still follow a commit).
    pub async fn after<T>(&self, write: impl Future<Output = T>) -> T {
        let outcome = write.await;
        self.invalidate();
        outcome
    }
}
