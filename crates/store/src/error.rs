//! What can go wrong in the store, by cause.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error(
        "the database schema is at version {found}, newer than this Warden knows (up to {supported}); \
         run the Warden release that wrote it, or restore a backup taken before the upgrade"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    #[error("the database holds a value this Warden cannot read ({table}.{column}): {reason}")]
    CorruptValue {
        table: &'static str,
        column: &'static str,
        reason: String,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// A stored value this Warden cannot parse back.
    pub(crate) fn corrupt(
        table: &'static str,
        column: &'static str,
        reason: impl ToString,
    ) -> Self {
        StoreError::CorruptValue {
            table,
            column,
            reason: reason.to_string(),
        }
    }

    /// True when the cause is that the database could not be reached or answered in time, which
    /// callers report as "unavailable" rather than as a fault of the request.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Connect(_)
                | StoreError::Database(
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
                )
        )
    }
}
