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

    /// True when the cause is that the database could not be reached, did not answer in time, or
    /// cannot take writes for now (its disk is full, it is out of resources or shutting down):
    /// callers report it as "unavailable" rather than as a fault of the request, and what was
    /// refused this way is worth trying again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect(_)
            | StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(error)) => {
                let sqlite = error
                    .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                    .is_some();
                error
                    .code()
                    .is_some_and(|code| out_of_service(sqlite, &code))
            }
            _ => false,
        }
    }
}

/// Whether a database's error code says it cannot do the work for now rather than that the work
/// is wrong. SQLite gives its result code as a number: the primary code is the low byte, and
/// `SQLITE_FULL` (13), `SQLITE_IOERR` (10, with every extended write and sync error) and
/// `SQLITE_BUSY` (5) pass. PostgreSQL gives its SQLSTATE: class 53 (insufficient resources:
/// `disk_full`, `out_of_memory`, `too_many_connections`), class 08 (connection exceptions) and
/// `57P01`–`57P03` (the server is shutting down or cannot connect now).
fn out_of_service(sqlite: bool, code: &str) -> bool {
    if sqlite {
        return code
            .parse::<u32>()
            .is_ok_and(|number| matches!(number & 0xff, 5 | 10 | 13));
    }
    code.starts_with("53") || code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::out_of_service;

    #[test]
    fn a_full_disk_and_a_server_going_away_are_out_of_service() {
        for code in ["13", "10", "778", "5"] {
            assert!(out_of_service(true, code), "SQLite {code}");
        }
        for code in ["53100", "53200", "08006", "57P01"] {
            assert!(out_of_service(false, code), "PostgreSQL {code}");
        }
    }

    #[test]
    fn refusals_of_the_work_itself_are_not() {
        // SQLite: constraint (19, 2067 unique), too big (18), mismatch (20); PostgreSQL:
        // unique violation, invalid text representation, check violation.
        for code in ["19", "2067", "18", "20"] {
            assert!(!out_of_service(true, code), "SQLite {code}");
        }
        for code in ["23505", "22P02", "23514"] {
            assert!(!out_of_service(false, code), "PostgreSQL {code}");
        }
    }
}
