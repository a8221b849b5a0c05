/// Why a store operation failed.
///
/// No variant ever holds a database URL: URLs may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named row does not exist, e.g. `user "bob"`.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A row with the same key already exists, e.g. `user "bob" already exists`.
    #[error("{what}")]
    Conflict { what: String },
    /// The database URL is not one the store can open.
    #[error("bad database url: {detail}")]
    BadUrl { detail: String },
    /// A stored row does not decode (an unknown role, an invalid name, ...).
    #[error("corrupt row in the database: {detail}")]
    Corrupt { detail: String },
    /// A schema migration could not be applied, or the database is newer than
    /// this binary.
    #[error("migration {version}: {detail}")]
    Migration { version: i64, detail: String },
    /// Another process already holds this SQLite store as its sole writer.
    #[error("{detail}")]
    Locked { detail: String },
    /// A caller asked for something the store cannot do (a bug in the caller).
    #[error("{detail}")]
    Invalid { detail: String },
    /// Any other error from the database or its driver.
    #[error("database error: {0}")]
    Backend(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // A column that does not decode into its Rust type holds data this
            // code never wrote (SQLite columns are dynamically typed).
            sqlx::Error::ColumnDecode { index, source } => StoreError::Corrupt {
                detail: format!("column {index}: {source}"),
            },
            other => StoreError::Backend(other),
        }
    }
}

/// Maps a unique-constraint (or primary-key) violation to
/// [`StoreError::Conflict`], any other error as usual.
pub(crate) fn conflict_or(error: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::Conflict { what: what() }
    } else {
        error.into()
    }
}

/// Whether a database error is a unique-constraint (or primary-key) violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}
