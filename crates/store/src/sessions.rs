//! Browser login sessions, by the SHA-256 of their token.

use model::{Timestamp, UserId};
use sqlx::AnyPool;

use crate::StoreError;
use crate::users::{USER_COLUMNS, UserRecord, decode_user};

/// The session table; obtained from [`crate::Store::sessions`].
#[derive(Debug)]
pub struct Sessions<'a> {
    pool: &'a AnyPool,
}

impl<'a> Sessions<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// A new session. With `second_factor_pending`, it does not log anyone in until
    /// [`Sessions::complete_second_factor`].
    pub async fn insert(
        &self,
        token_hash: &str,
        user_id: UserId,
        created_at: Timestamp,
        expires_at: Timestamp,
        second_factor_pending: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, second_factor_pending) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id.to_string())
        .bind(created_at.unix_millis())
        .bind(expires_at.unix_millis())
        .bind(i64::from(second_factor_pending))
        .execute(self.pool)
            .await?;
        Ok(())
    }

    /// The account a session belongs to, if the session exists and has not expired at `now`.
    pub async fn user(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.user_in_state(token_hash, now, false).await
    }

    /// The account of a session that still waits for its second factor.
    pub async fn pending_user(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.user_in_state(token_hash, now, true).await
    }

    /// The second factor was given: the session now logs its user in, until `expires_at`.
    pub async fn complete_second_factor(
        &self,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE sessions SET second_factor_pending = 0, expires_at = $1 \
             WHERE token_hash = $2 AND second_factor_pending = 1",
        )
        .bind(expires_at.unix_millis())
        .bind(token_hash)
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn user_in_state(
        &self,
        token_hash: &str,
        now: Timestamp,
        pending: bool,
    ) -> Result<Option<UserRecord>, StoreError> {
        let query = format!(
            "SELECT {USER_COLUMNS} FROM sessions JOIN users ON users.id = sessions.user_id \
             WHERE sessions.token_hash = $1 AND sessions.expires_at > $2 AND sessions.second_factor_pending = $3"
        );
        let row = sqlx::query(&query)
            .bind(token_hash)
            .bind(now.unix_millis())
            .bind(i64::from(pending))
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode_user).transpose()
    }

    pub async fn delete(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of an account except `keep` (after a password change, the other devices
    /// are logged out). Returns how many ended.
    pub async fn delete_others(&self, user_id: UserId, keep: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id.to_string())
            .bind(keep)
            .execute(self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}
