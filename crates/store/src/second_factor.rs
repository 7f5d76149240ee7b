//! TOTP secrets and recovery codes of accounts.

use model::{Timestamp, UserId};
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// An account's second-factor state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecondFactor {
    /// Base32; `None` when TOTP is off.
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
    /// A secret shown for set-up and not yet confirmed with a code.
    pub totp_pending_secret: Option<String>,
}

/// Second-factor data; obtained from [`crate::Store::second_factor`].
#[derive(Debug)]
pub struct SecondFactors<'a> {
    pool: &'a AnyPool,
}

impl<'a> SecondFactors<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    pub async fn get(&self, user_id: UserId) -> Result<SecondFactor, StoreError> {
        let row = sqlx::query(
            "SELECT totp_secret, totp_last_step, totp_pending_secret FROM users WHERE id = $1",
        )
        .bind(user_id.to_string())
        .fetch_optional(self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(SecondFactor::default());
        };
        Ok(SecondFactor {
            totp_secret: row.try_get("totp_secret")?,
            totp_last_step: row.try_get("totp_last_step")?,
            totp_pending_secret: row.try_get("totp_pending_secret")?,
        })
    }

    pub async fn set_pending(&self, user_id: UserId, secret: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET totp_pending_secret = $1 WHERE id = $2")
            .bind(secret)
            .bind(user_id.to_string())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Turns TOTP on with the confirmed secret, the step of the code that confirmed it, and fresh
    /// recovery codes (replacing any old ones), in one transaction.
    pub async fn enable(
        &self,
        user_id: UserId,
        secret: &str,
        step: i64,
        recovery_hashes: &[String],
    ) -> Result<(), StoreError> {
        let id = user_id.to_string();
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_last_step = $2, totp_pending_secret = NULL WHERE id = $3",
        )
        .bind(secret)
        .bind(step)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)",
            )
            .bind(&id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn disable(&self, user_id: UserId) -> Result<(), StoreError> {
        let id = user_id.to_string();
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_last_step = NULL, totp_pending_secret = NULL WHERE id = $1",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that the code of `step` was used. False when that step (or a later one) was used
    /// already: the update itself decides, so two requests with one code cannot both pass.
    pub async fn use_step(&self, user_id: UserId, step: i64) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id.to_string())
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Uses up a recovery code; false when it is unknown or used.
    pub async fn use_recovery_code(
        &self,
        user_id: UserId,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(user_id.to_string())
        .bind(code_hash)
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
