//! Signing keys and their timeline: the token signing keys, and (in a table of their own, their
//! private halves sealed by the caller) the firmware-signing keys.

use model::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use tokens::keys::SigningKey;

use crate::StoreError;

/// A signing key table; obtained from [`crate::Store::signing_keys`] (token keys) or
/// [`crate::Store::firmware_keys`].
#[derive(Debug)]
pub struct SigningKeys<'a> {
    pool: &'a AnyPool,
    /// The table, from this crate's two constants, never from input.
    table: &'static str,
}

impl<'a> SigningKeys<'a> {
    pub(crate) fn new(pool: &'a AnyPool, table: &'static str) -> Self {
        Self { pool, table }
    }

    pub async fn insert(&self, key: &SigningKey) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO {} (kid, private_pem, public_x, public_y, created_at, usable_from, retired_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.table
        ))
        .bind(&key.kid)
        .bind(&key.private_pem)
        .bind(&key.public_x)
        .bind(&key.public_y)
        .bind(key.created_at.unix_millis())
        .bind(key.usable_from.unix_millis())
        .bind(key.retired_at.map(Timestamp::unix_millis))
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Every key, retired ones included (the timeline decides what they are good for).
    pub async fn all(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT kid, private_pem, public_x, public_y, created_at, usable_from, retired_at \
             FROM {} ORDER BY usable_from",
            self.table
        ))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Withdraws a key at `at`; false when there is no such key or it was retired already.
    pub async fn retire(&self, kid: &str, at: Timestamp) -> Result<bool, StoreError> {
        let result = sqlx::query(&format!(
            "UPDATE {} SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL",
            self.table
        ))
        .bind(at.unix_millis())
        .bind(kid)
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

fn decode(row: &AnyRow) -> Result<SigningKey, StoreError> {
    let retired_at: Option<i64> = row.try_get("retired_at")?;
    Ok(SigningKey {
        kid: row.try_get("kid")?,
        private_pem: row.try_get("private_pem")?,
        public_x: row.try_get("public_x")?,
        public_y: row.try_get("public_y")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        usable_from: Timestamp::from_unix_millis(row.try_get("usable_from")?),
        retired_at: retired_at.map(Timestamp::from_unix_millis),
    })
}
