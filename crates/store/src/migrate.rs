//! Numbered schema migrations, one SQL file per backend, applied in order and recorded.
//!
//! sqlx's own migrator keeps one directory for one database kind; Warden ships two dialects of the
//! same schema and must refuse a schema newer than it knows with a message an operator can act on,
//! so the few lines that apply migrations are written here.

use sqlx::{AnyConnection, Executor};

use crate::{Backend, Store, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// A migration from its number and file stem; both dialects' files must exist.
macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            sqlite: include_str!(concat!("../migrations/sqlite/", $file, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $file, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_users"),
    migration!(2, "0002_sessions_and_login_throttle"),
    migration!(3, "0003_signing_keys_and_oauth_clients"),
    migration!(4, "0004_authorization_code_flow"),
    migration!(5, "0005_revocation"),
    migration!(6, "0006_second_factor"),
    migration!(7, "0007_private_key_jwt"),
    migration!(8, "0008_revocation_epoch"),
    migration!(9, "0009_pki"),
    migration!(10, "0010_devices"),
    migration!(11, "0011_events"),
    migration!(12, "0012_audit"),
    migration!(13, "0013_firmware"),
    migration!(14, "0014_rollouts"),
    migration!(15, "0015_device_tags"),
    migration!(16, "0016_cluster_coordination"),
];

/// Every table the migrations create, for checks that walk them all.
pub(crate) const TABLES: &[&str] = &[
    "warden_schema",
    "users",
    "sessions",
    "login_throttle",
    "signing_keys",
    "oauth_clients",
    "authorization_codes",
    "refresh_tokens",
    "revoked_grants",
    "revoked_access_tokens",
    "recovery_codes",
    "used_client_assertions",
    "revocation_epoch",
    "ca_certificates",
    "certificates",
    "crl_number",
    "device_models",
    "devices",
    "device_grants",
    "device_state",
    "device_commands",
    "device_events",
    "audit_entries",
    "audit_head",
    "audit_checkpoints",
    "audit_keys",
    "firmware_keys",
    "firmware_releases",
    "device_updates",
    "rollouts",
    "rollout_devices",
    "device_tags",
    "job_leases",
    "throttle_counters",
];

/// The newest schema this binary knows.
pub const LATEST_SCHEMA_VERSION: i64 = 16;

/// What [`Store::migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    pub from_version: i64,
    pub to_version: i64,
}

impl Store {
    /// Applies every migration the database lacks, all in one transaction.
    ///
    /// Several processes may start at once against one database. The transaction first takes
    /// the database's write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock, which
    /// also covers creating the bookkeeping table), then reads the version, so each migration runs
    /// exactly once and a failed one leaves the schema as it was.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut connection = self.pool.acquire().await?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        connection.execute(begin).await?;
        let outcome = migrate_locked(&mut connection, self.backend).await;
        let end = if outcome.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        if let Err(error) = connection.execute(end).await {
            // A connection in an unknown transaction state must not go back to the pool.
            drop(connection.detach());
            return Err(outcome.err().unwrap_or(StoreError::Database(error)));
        }
        outcome
    }

    /// The version of the newest migration applied, 0 for an empty database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut connection = self.pool.acquire().await?;
        read_version(&mut connection, self.backend).await
    }
}

/// Warden's key for PostgreSQL's advisory lock around migrations ("WARDEN" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x5741_5244_454e;

async fn migrate_locked(
    connection: &mut AnyConnection,
    backend: Backend,
) -> Result<MigrationReport, StoreError> {
    let bookkeeping = match backend {
        Backend::Sqlite => {
            "CREATE TABLE IF NOT EXISTS warden_schema (\
                version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT"
        }
        Backend::Postgres => {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *connection)
                .await?;
            "CREATE TABLE IF NOT EXISTS warden_schema (\
                version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        }
    };
    connection.execute(sqlx::raw_sql(bookkeeping)).await?;
    let from_version = read_version(connection, backend).await?;
    check_not_newer(from_version)?;
    let mut to_version = from_version;
    for migration in MIGRATIONS.iter().filter(|m| m.version > from_version) {
        apply(connection, backend, migration).await?;
        to_version = migration.version;
    }
    Ok(MigrationReport {
        from_version,
        to_version,
    })
}

async fn read_version(connection: &mut AnyConnection, backend: Backend) -> Result<i64, StoreError> {
    let exists = match backend {
        Backend::Sqlite => {
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'warden_schema'"
        }
        Backend::Postgres => "SELECT count(*) FROM pg_tables WHERE tablename = 'warden_schema'",
    };
    let (tables,): (i64,) = sqlx::query_as(exists).fetch_one(&mut *connection).await?;
    if tables == 0 {
        return Ok(0);
    }
    let (version,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM warden_schema")
        .fetch_one(&mut *connection)
        .await?;
    Ok(version)
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

async fn apply(
    connection: &mut AnyConnection,
    backend: Backend,
    migration: &Migration,
) -> Result<(), StoreError> {
    let failed = |source| StoreError::Migration {
        version: migration.version,
        name: migration.name,
        source,
    };
    let sql = match backend {
        Backend::Sqlite => migration.sqlite,
        Backend::Postgres => migration.postgres,
    };
    connection
        .execute(sqlx::raw_sql(sql))
        .await
        .map_err(failed)?;
    let applied_at = model::Timestamp::from_system_time(std::time::SystemTime::now());
    sqlx::query("INSERT INTO warden_schema (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(migration.version)
        .bind(migration.name)
        .bind(applied_at.unix_millis())
        .execute(&mut *connection)
        .await
        .map_err(failed)?;
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
