//! The identity cache of a sole-writer store.
//!
//! Every API request asks who holds a token or a certificate. On SQLite each
//! of those lookups costs two thread hand-offs (sqlx runs SQLite on a worker
//! thread), which dominated the request path. When this process is the only
//! writer of the database ([`Store::open_exclusive`](crate::Store::open_exclusive)
//! holds a lock that makes sure of it), every change to an identity goes
//! through this store, which clears the cache when it commits: a cached answer
//! can never outlive a disable, a token replacement or a revocation.
//!
//! The race between a lookup that read the database before a change committed
//! and the change's invalidation is closed by a generation number: a lookup
//! caches its answer only if no invalidation happened since it started.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rempart_core::{Roles, TokenHash, UserName};

use crate::Machine;

/// More distinct credentials than this in use at once is unexpected; the cache
/// starts over rather than grow.
const MAX_ENTRIES: usize = 10_000;
/// A backstop, not the mechanism: every change clears the cache as it
/// commits, and no entry is served longer than this anyway.
const MAX_AGE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct CachedUser {
    pub name: UserName,
    pub roles: Roles,
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Entries {
    generation: u64,
    users: HashMap<TokenHash, (Instant, CachedUser)>,
    machines: HashMap<String, (Instant, Machine)>,
}

#[derive(Debug, Default)]
pub(crate) struct IdentityCache {
    entries: RwLock<Entries>,
}

/// Where a lookup started, to cache its answer only if nothing changed since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl IdentityCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // maps are still coherent (every write is a single insert or clear).
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached user whose token is still valid at `now_ms`, or the ticket to
    /// present when caching the database's answer.
    pub fn user(&self, hash: &TokenHash, now_ms: i64) -> Result<CachedUser, Ticket> {
        let entries = self.read();
        match entries.users.get(hash) {
            Some((at, user))
                if at.elapsed() < MAX_AGE && user.expires_at_ms.is_none_or(|end| end > now_ms) =>
            {
                Ok(user.clone())
            }
            _ => Err(Ticket(entries.generation)),
        }
    }

    pub fn machine(&self, cert_sha256: &str, now_ms: i64) -> Result<Machine, Ticket> {
        let entries = self.read();
        match entries.machines.get(cert_sha256) {
            Some((at, machine)) if at.elapsed() < MAX_AGE && machine.not_after_ms > now_ms => {
                Ok(machine.clone())
            }
            _ => Err(Ticket(entries.generation)),
        }
    }

    pub fn put_user(&self, ticket: Ticket, hash: TokenHash, user: CachedUser) {
        let mut entries = self.write();
        if entries.generation == ticket.0 {
            if entries.users.len() >= MAX_ENTRIES {
                entries.users.clear();
            }
            entries.users.insert(hash, (Instant::now(), user));
        }
    }

    pub fn put_machine(&self, ticket: Ticket, cert_sha256: String, machine: Machine) {
        let mut entries = self.write();
        if entries.generation == ticket.0 {
            if entries.machines.len() >= MAX_ENTRIES {
                entries.machines.clear();
            }
            entries
                .machines
                .insert(cert_sha256, (Instant::now(), machine));
        }
    }

    /// Called after every committed change to users, tokens or machines.
    pub fn invalidate(&self) {
        let mut entries = self.write();
        entries.generation += 1;
        entries.users.clear();
        entries.machines.clear();
    }
}

#[cfg(test)]
mod tests {
    use rempart_core::{ApiToken, Role};

    use super::*;

    fn user(expires_at_ms: Option<i64>) -> CachedUser {
        CachedUser {
            name: "alice".parse().unwrap(),
            roles: Roles::new([Role::Engineer]).unwrap(),
            expires_at_ms,
        }
    }

    #[test]
    fn an_invalidation_during_a_lookup_keeps_its_answer_out() {
        let cache = IdentityCache::default();
        let hash = ApiToken::generate().hash();
        let ticket = cache.user(&hash, 0).unwrap_err();
        // The lookup read the database, then a change committed...
        cache.invalidate();
        // ...so its (possibly stale) answer is not cached.
        cache.put_user(ticket, hash, user(None));
        assert!(cache.user(&hash, 0).is_err());

        let ticket = cache.user(&hash, 0).unwrap_err();
        cache.put_user(ticket, hash, user(None));
        assert_eq!(cache.user(&hash, 0).unwrap().name.as_str(), "alice");
        cache.invalidate();
        assert!(cache.user(&hash, 0).is_err());
    }

    #[test]
    fn expired_tokens_are_not_served_from_the_cache() {
        let cache = IdentityCache::default();
        let hash = ApiToken::generate().hash();
        let ticket = cache.user(&hash, 0).unwrap_err();
        cache.put_user(ticket, hash, user(Some(100)));
        assert!(cache.user(&hash, 99).is_ok());
        assert!(cache.user(&hash, 100).is_err());
    }
}
