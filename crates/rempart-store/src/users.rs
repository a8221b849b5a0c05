//! People and their API tokens.

use rempart_core::{Roles, TokenHash, UserName};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::cache::CachedUser;
use crate::error::conflict_or;
use crate::{Store, StoreError, describe};

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub name: UserName,
    pub roles: Roles,
    pub email: Option<String>,
    pub created_at_ms: i64,
}

/// A stored user. A disabled user keeps its row (and its history) but can no
/// longer authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: UserName,
    pub roles: Roles,
    pub email: Option<String>,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
}

const USER_COLUMNS: &str = "name, roles, email, created_at_ms, disabled_at_ms";

/// `roles` holds the admin role (roles are stored as `a,b,c`).
const IS_ADMIN: &str = "(',' || roles || ',') LIKE '%,admin,%'";

impl User {
    fn from_row(row: &AnyRow) -> Result<User, StoreError> {
        let name: String = row.try_get("name")?;
        let roles: String = row.try_get("roles")?;
        Ok(User {
            roles: decode_roles(&name, &roles)?,
            name: decode_name(name)?,
            email: row.try_get("email")?,
            created_at_ms: row.try_get("created_at_ms")?,
            disabled_at_ms: row.try_get("disabled_at_ms")?,
        })
    }
}

fn decode_name(name: String) -> Result<UserName, StoreError> {
    UserName::try_from(name.clone()).map_err(|e| StoreError::Corrupt {
        detail: format!("user name {name:?}: {e}"),
    })
}

fn decode_roles(name: &str, roles: &str) -> Result<Roles, StoreError> {
    Roles::from_csv(roles).map_err(|e| StoreError::Corrupt {
        detail: format!("roles of user {name:?}: {e}"),
    })
}

fn user_not_found(name: &UserName) -> StoreError {
    StoreError::NotFound {
        what: describe("user", name.as_str()),
    }
}

impl Store {
    /// Creates a user; [`StoreError::Conflict`] if the name is taken.
    pub async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        sqlx::query(
            "INSERT INTO users (name, roles, email, created_at_ms, disabled_at_ms)
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(user.name.as_str())
        .bind(user.roles.to_csv())
        .bind(user.email.clone())
        .bind(user.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!("{} already exists", describe("user", user.name.as_str()))
            })
        })?;
        Ok(User {
            name: user.name.clone(),
            roles: user.roles.clone(),
            email: user.email.clone(),
            created_at_ms: user.created_at_ms,
            disabled_at_ms: None,
        })
    }

    pub async fn get_user(&self, name: &UserName) -> Result<Option<User>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(User::from_row)
            .transpose()
    }

    /// Every user, disabled ones included, ordered by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(User::from_row)
            .collect()
    }

    /// Disables a user: from now on none of its tokens authenticates.
    /// Idempotent: disabling again keeps the first `disabled_at_ms`. The last
    /// enabled admin is never disabled ([`StoreError::Conflict`]): that
    /// would lock everyone out.
    pub async fn disable_user(&self, name: &UserName, at_ms: i64) -> Result<User, StoreError> {
        let (store, name) = (self.clone(), name.clone());
        self.change_identities(async move { store.disable_user_now(&name, at_ms).await })
            .await
    }

    async fn disable_user_now(&self, name: &UserName, at_ms: i64) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock the enabled admins first (row locks on PostgreSQL, the write
        // lock on SQLite), so that two admins disabling each other at once
        // are serialised and the count below is the truth.
        sqlx::query(&format!(
            "UPDATE users SET name = name WHERE disabled_at_ms IS NULL AND {IS_ADMIN}"
        ))
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "UPDATE users SET disabled_at_ms = COALESCE(disabled_at_ms, $2)
             WHERE name = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(at_ms)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| user_not_found(name))?;
        let user = User::from_row(&row)?;
        let admins: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM users WHERE disabled_at_ms IS NULL AND {IS_ADMIN}"
        ))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if admins == 0 && user.roles.contains(rempart_core::Role::Admin) {
            // Dropping `tx` rolls the change back.
            return Err(StoreError::Conflict {
                what: format!("{name} is the last enabled admin; add another admin first"),
            });
        }
        tx.commit().await?;
        Ok(user)
    }

    /// Gives a user a new token: in one transaction, revokes every token of
    /// the user and stores the new hash. [`StoreError::NotFound`] if the user
    /// does not exist.
    pub async fn replace_token(
        &self,
        user: &UserName,
        hash: &TokenHash,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let (store, user, hash) = (self.clone(), user.clone(), *hash);
        self.change_identities(async move {
            store
                .replace_token_now(&user, &hash, now_ms, expires_at_ms)
                .await
        })
        .await
    }

    async fn replace_token_now(
        &self,
        user: &UserName,
        hash: &TokenHash,
        now_ms: i64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock the user's row first: two replacements at once are then
        // serialised, and the second revokes the token the first inserted
        // (under PostgreSQL's READ COMMITTED it would not see it otherwise).
        let found = sqlx::query("UPDATE users SET name = name WHERE name = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(user_not_found(user));
        }
        sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $2
             WHERE user_name = $1 AND revoked_at_ms IS NULL",
        )
        .bind(user.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_name, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash.to_hex())
        .bind(user.as_str())
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || "this token hash is already stored".to_owned()))?;
        tx.commit().await?;
        Ok(())
    }

    /// The hot path of every request: who holds this token. `None` when the
    /// token is unknown, revoked or expired (`expires_at_ms <= now_ms`), or
    /// its user is disabled. One primary-key lookup joined to `users`.
    pub async fn user_for_token(
        &self,
        hash: &TokenHash,
        now_ms: i64,
    ) -> Result<Option<(UserName, Roles)>, StoreError> {
        let ticket = match self.identity_cache.as_deref().map(|c| c.user(hash, now_ms)) {
            Some(Ok(cached)) => return Ok(Some((cached.name, cached.roles))),
            Some(Err(ticket)) => Some(ticket),
            None => None,
        };
        let Some(row) = sqlx::query(
            "SELECT u.name, u.roles, t.expires_at_ms
             FROM api_tokens t JOIN users u ON u.name = t.user_name
             WHERE t.token_hash = $1
               AND t.revoked_at_ms IS NULL
               AND (t.expires_at_ms IS NULL OR t.expires_at_ms > $2)
               AND u.disabled_at_ms IS NULL",
        )
        .bind(hash.to_hex())
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let name: String = row.try_get(0)?;
        let roles: String = row.try_get(1)?;
        let expires_at_ms: Option<i64> = row.try_get(2)?;
        let roles = decode_roles(&name, &roles)?;
        let name = decode_name(name)?;
        if let (Some(cache), Some(ticket)) = (self.identity_cache.as_deref(), ticket) {
            let cached = CachedUser {
                name: name.clone(),
                roles: roles.clone(),
                expires_at_ms,
            };
            cache.put_user(ticket, *hash, cached);
        }
        Ok(Some((name, roles)))
    }
}
