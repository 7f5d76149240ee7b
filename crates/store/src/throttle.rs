//! Failed-login records per throttled key.

use model::{FailedAttempts, Timestamp};
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// The login throttle table; obtained from [`crate::Store::login_throttle`].
#[derive(Debug)]
pub struct LoginThrottle<'a> {
    pool: &'a AnyPool,
}

impl<'a> LoginThrottle<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// The record for `key`; an empty one when there is none.
    pub async fn get(&self, key: &str) -> Result<FailedAttempts, StoreError> {
        let row = sqlx::query(
            "SELECT failures, last_failure_at, locked_until FROM login_throttle WHERE throttle_key = $1",
        )
        .bind(key)
        .fetch_optional(self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(FailedAttempts::default());
        };
        let failures: i64 = row.try_get("failures")?;
        let last_failure: Option<i64> = row.try_get("last_failure_at")?;
        let locked_until: Option<i64> = row.try_get("locked_until")?;
        Ok(FailedAttempts {
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            last_failure: last_failure.map(Timestamp::from_unix_millis),
            locked_until: locked_until.map(Timestamp::from_unix_millis),
        })
    }

    pub async fn put(&self, key: &str, attempts: &FailedAttempts) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_throttle (throttle_key, failures, last_failure_at, locked_until) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (throttle_key) DO UPDATE SET \
             failures = excluded.failures, last_failure_at = excluded.last_failure_at, \
             locked_until = excluded.locked_until",
        )
        .bind(key)
        .bind(i64::from(attempts.failures))
        .bind(attempts.last_failure.map(Timestamp::unix_millis))
        .bind(attempts.locked_until.map(Timestamp::unix_millis))
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn clear(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_throttle WHERE throttle_key = $1")
            .bind(key)
            .execute(self.pool)
            .await?;
        Ok(())
    }
}
