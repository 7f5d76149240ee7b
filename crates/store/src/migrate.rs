//! Numbered schema migrations, one SQL file per backend, applied in order and recorded.
//!
//! sqlx's own migrator keeps one directory for one database kind; Warden ships two dialects of the
//! same schema and must refuse a schema newer than it knows with a message an operator can act on,
//! so the few lines that apply migrations are written here.

use sqlx::AnyPool;

use crate::{Backend, Store, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users",
    sqlite: include_str!("../migrations/sqlite/0001_users.sql"),
    postgres: include_str!("../migrations/postgres/0001_users.sql"),
}];

/// Every table the migrations create, for checks that walk them all.
pub(crate) const TABLES: &[&str] = &["warden_schema", "users"];

/// The newest schema this binary knows.
pub const LATEST_SCHEMA_VERSION: i64 = 1;

/// What [`Store::migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    pub from_version: i64,
    pub to_version: i64,
}

impl Store {
    /// Applies every migration the database lacks, each in its own transaction.
    ///
    /// Several processes may start at once against one database: each migration first takes the
    /// lock row, then re-reads the version, so a migration runs exactly once.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let pool = &self.pool;
        let bookkeeping = match self.backend {
            Backend::Sqlite => {
                "CREATE TABLE IF NOT EXISTS warden_schema (\
                    version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT"
            }
            Backend::Postgres => {
                "CREATE TABLE IF NOT EXISTS warden_schema (\
                    version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            }
        };
        sqlx::raw_sql(bookkeeping).execute(pool).await?;
        // Version 0 is the lock row every migration updates first; it never counts as a migration.
        sqlx::query(
            "INSERT INTO warden_schema (version, name, applied_at) VALUES (0, 'lock', 0) \
             ON CONFLICT (version) DO NOTHING",
        )
        .execute(pool)
        .await?;

        let from_version = self.schema_version().await?;
        check_not_newer(from_version)?;
        for migration in MIGRATIONS.iter().filter(|m| m.version > from_version) {
            apply(pool, self.backend, migration).await?;
        }
        Ok(MigrationReport {
            from_version,
            to_version: self.schema_version().await?,
        })
    }

    /// The version of the newest migration applied, 0 for an empty database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let exists = match self.backend {
            Backend::Sqlite => {
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'warden_schema'"
            }
            Backend::Postgres => "SELECT count(*) FROM pg_tables WHERE tablename = 'warden_schema'",
        };
        let (tables,): (i64,) = sqlx::query_as(exists).fetch_one(&self.pool).await?;
        if tables == 0 {
            return Ok(0);
        }
        let (version,): (i64,) =
            sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM warden_schema")
                .fetch_one(&self.pool)
                .await?;
        Ok(version)
    }
}

fn check_not_newer(found: i64) -> Result<(), StoreError> {
    if found > LATEST_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: LATEST_SCHEMA_VERSION,
        });
    }
    Ok(())
}

async fn apply(pool: &AnyPool, backend: Backend, migration: &Migration) -> Result<(), StoreError> {
    let failed = |source| StoreError::Migration {
        version: migration.version,
        name: migration.name,
        source,
    };
    let mut tx = pool.begin().await.map_err(failed)?;
    // Taking the row lock first serialises concurrent migrators on both backends.
    sqlx::query("UPDATE warden_schema SET applied_at = applied_at WHERE version = 0")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let (current,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM warden_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
    if current >= migration.version {
        return Ok(());
    }
    let sql = match backend {
        Backend::Sqlite => migration.sqlite,
        Backend::Postgres => migration.postgres,
    };
    sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(failed)?;
    let applied_at = model::Timestamp::from_system_time(std::time::SystemTime::now());
    sqlx::query("INSERT INTO warden_schema (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(applied_at.unix_millis())
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    tracing::info!(
        version = migration.version,
        name = migration.name,
        "applied database migration"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_without_gaps_and_end_at_the_latest_version() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1, "{}", migration.name);
        }
        assert_eq!(
            MIGRATIONS.last().map(|m| m.version),
            Some(LATEST_SCHEMA_VERSION)
        );
    }

    #[test]
    fn a_newer_schema_is_refused_with_both_versions_named() {
        assert!(check_not_newer(LATEST_SCHEMA_VERSION).is_ok());
        let error = check_not_newer(LATEST_SCHEMA_VERSION + 1).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("version {}", LATEST_SCHEMA_VERSION + 1)),
            "{message}"
        );
        assert!(message.contains("restore a backup"), "{message}");
    }
}
