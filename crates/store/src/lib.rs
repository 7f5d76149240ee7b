//! The only crate that speaks SQL.
//!
//! Warden keeps its data in SQLite (the single-machine default, a file in the data directory) or in
//! PostgreSQL (for several replicas). Both sit behind the one [`Store`] type and run the same SQL
//! text, written in the common subset of the two dialects with `$1`-style bound parameters; where a
//! dialect differs, the difference is spelled out next to the query. Schema changes are numbered
//! migrations kept per backend in `migrations/`, applied at start; a database whose schema is newer
//! than this binary knows is refused rather than guessed at.
//!
//! Values cross the boundary as plain integers, text and bytes (sqlx's `Any` driver), so that one
//! query serves both backends; timestamps are Unix milliseconds.

mod audit;
mod certificates;
mod clients;
mod counters;
mod devices;
mod error;
mod events;
mod firmware;
mod grants;
mod keys;
mod leases;
mod migrate;
mod purge;
mod second_factor;
mod sessions;
mod throttle;
mod url;
mod users;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use audit::{AuditJournal, StoredAuditKey};
pub use certificates::{CertificateRecord, Certificates, StoredCa};
pub use clients::OAuthClients;
pub use counters::{Counted, ThrottleCounters};
pub use devices::{
    AnswerOutcome, ClaimOutcome, CommandRecord, DeviceRecord, DeviceState, Devices, GrantRecord,
    Selection,
};
pub use error::StoreError;
pub use events::{Events, RetentionScope, StoredEvent};
pub use firmware::{DeviceUpdate, Firmware, Release, Rollout};
pub use grants::{CodeRecord, Grants, Redemption, RefreshRecord};
pub use keys::SigningKeys;
pub use leases::JobLeases;
pub use migrate::{LATEST_SCHEMA_VERSION, MigrationReport};
pub use purge::PurgeReport;
pub use second_factor::{SecondFactor, SecondFactors};
pub use sessions::Sessions;
pub use throttle::LoginThrottle;
pub use url::{Backend, DatabaseUrl, DatabaseUrlError};
pub use users::{NewUser, UserRecord, Users};

/// A transaction that writes. On SQLite it takes the write lock at its start (`BEGIN
/// IMMEDIATE`): a deferred transaction that reads and then writes fails at once with "database
/// is locked" when another connection wrote in between (WAL cannot upgrade a stale read
/// snapshot, and the busy timeout does not apply), while an immediate one waits its turn.
/// PostgreSQL's row locks need nothing of the kind.
pub(crate) async fn begin_write(pool: &AnyPool) -> Result<Transaction<'static, Any>, sqlx::Error> {
    if pool.connect_options().database_url.scheme() == "sqlite" {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}

/// How the connection pool behaves; the defaults suit a single machine.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// How long a request waits for a free connection before it is told the database is unavailable.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle on Warden's database. Cheap to clone; clones share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// What an integrity check found; empty `problems` means the database is sound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrityReport {
    pub problems: Vec<String>,
}

impl IntegrityReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Connects and brings the schema up to date: what `warden serve` does at start.
    pub async fn open(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::connect(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema, for tools that only look.
    pub async fn connect(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        // Registers the SQLite and PostgreSQL drivers with sqlx's `Any` front; idempotent.
        install_default_drivers();
        let backend = url.backend();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; FULL makes every commit
                        // durable before it is acknowledged, also across a power cut.
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url.connection_string())
            .await
            .map_err(StoreError::Connect)?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers whether the database takes queries right now (used by `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn users(&self) -> Users<'_> {
        Users::new(&self.pool)
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions::new(&self.pool)
    }

    pub fn job_leases(&self) -> JobLeases<'_> {
        JobLeases::new(&self.pool)
    }

    pub fn throttle_counters(&self) -> ThrottleCounters<'_> {
        ThrottleCounters::new(&self.pool, self.backend)
    }

    pub fn login_throttle(&self) -> LoginThrottle<'_> {
        LoginThrottle::new(&self.pool)
    }

    pub fn signing_keys(&self) -> SigningKeys<'_> {
        SigningKeys::new(&self.pool, "signing_keys")
    }

    /// The firmware-signing keys: their `private_pem` holds the key sealed by the caller.
    pub fn firmware_keys(&self) -> SigningKeys<'_> {
        SigningKeys::new(&self.pool, "firmware_keys")
    }

    pub fn firmware(&self) -> Firmware<'_> {
        Firmware::new(&self.pool)
    }

    pub fn oauth_clients(&self) -> OAuthClients<'_> {
        OAuthClients::new(&self.pool)
    }

    pub fn grants(&self) -> Grants<'_> {
        Grants::new(&self.pool)
    }

    pub fn second_factor(&self) -> SecondFactors<'_> {
        SecondFactors::new(&self.pool)
    }

    pub fn certificates(&self) -> Certificates<'_> {
        Certificates::new(&self.pool)
    }

    pub fn devices(&self) -> Devices<'_> {
        Devices::new(&self.pool)
    }

    pub fn events(&self) -> Events<'_> {
        Events::new(&self.pool, self.backend)
    }

    pub fn audit(&self) -> AuditJournal<'_> {
        AuditJournal::new(&self.pool)
    }

    /// Checks the database's own consistency.
    ///
    /// SQLite runs its full `integrity_check` and `foreign_key_check`. PostgreSQL checks its pages
    /// itself on every read, so there the check reads every row of every Warden table, which is
    /// where damage would surface.
    pub async fn check_integrity(&self) -> Result<IntegrityReport, StoreError> {
        let mut problems = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
                    .fetch_all(&self.pool)
                    .await?;
                problems.extend(
                    rows.into_iter()
                        .map(|(line,)| line)
                        .filter(|line| line != "ok"),
                );
                let violations: Vec<(String,)> =
                    sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                        .fetch_all(&self.pool)
                        .await?;
                problems.extend(
                    violations
                        .into_iter()
                        .map(|(table,)| format!("foreign key violation in table {table}")),
                );
            }
            Backend::Postgres => {
                for table in migrate::TABLES {
                    // The table names come from our own constant list, never from input.
                    let query = format!("SELECT count(*) FROM {table}");
                    if let Err(error) = sqlx::query(&query).execute(&self.pool).await {
                        problems.push(format!("table {table} cannot be read: {error}"));
                    }
                }
            }
        }
        Ok(IntegrityReport { problems })
    }

    /// Waits for queries in flight and closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `rows` parenthesised lists of `columns` numbered parameters, `($1,$2),($3,$4)`, for a
/// multi-row `VALUES`.
pub(crate) fn values_list(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}
