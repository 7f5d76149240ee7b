//! Removing what has expired, so that tables stay bounded: sessions, authorization codes, refresh
//! tokens, revoked-token records, stale login throttles, the gateway's shared throttle counters
//! that are back at full allowance, and device commands a week after they expired (answered or
//! not: their answer was there to be read while the command lived).

use model::Timestamp;

use crate::{Store, StoreError};

/// How long a command is kept after it expired.
const COMMAND_KEEP_MILLIS: i64 = 7 * 24 * 60 * 60 * 1000;

/// How many rows each purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub sessions: u64,
    pub authorization_codes: u64,
    pub refresh_tokens: u64,
    pub revoked_access_tokens: u64,
    pub client_assertions: u64,
    pub login_throttles: u64,
    pub throttle_counters: u64,
    pub device_commands: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.sessions
            + self.authorization_codes
            + self.refresh_tokens
            + self.revoked_access_tokens
            + self.client_assertions
            + self.login_throttles
            + self.throttle_counters
            + self.device_commands
    }
}

impl Store {
    /// Deletes rows that expired before `now`. Login throttles are forgotten once they have had no
    /// failure for `throttle_memory_millis` and are not locked.
    pub async fn purge_expired(
        &self,
        now: Timestamp,
        throttle_memory_millis: i64,
    ) -> Result<PurgeReport, StoreError> {
        let now_ms = now.unix_millis();
        let delete = |sql: &'static str, at: i64| async move {
            Ok::<u64, StoreError>(
                sqlx::query(sql)
                    .bind(at)
                    .execute(&self.pool)
                    .await?
                    .rows_affected(),
            )
        };
        Ok(PurgeReport {
            sessions: delete("DELETE FROM sessions WHERE expires_at <= $1", now_ms).await?,
            authorization_codes: delete("DELETE FROM authorization_codes WHERE expires_at <= $1", now_ms).await?,
            refresh_tokens: delete("DELETE FROM refresh_tokens WHERE expires_at <= $1", now_ms).await?,
            revoked_access_tokens: delete("DELETE FROM revoked_access_tokens WHERE expires_at <= $1", now_ms).await?,
            client_assertions: delete("DELETE FROM used_client_assertions WHERE expires_at <= $1", now_ms).await?,
            login_throttles: delete(
                "DELETE FROM login_throttle WHERE last_failure_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)",
                now_ms - throttle_memory_millis,
            )
            .await?,
            throttle_counters: delete(
                "DELETE FROM throttle_counters WHERE tat_micros <= $1",
                now_ms.saturating_mul(1000),
            )
            .await?,
            device_commands: delete(
                "DELETE FROM device_commands WHERE expires_at <= $1",
                now_ms - COMMAND_KEEP_MILLIS,
            )
            .await?,
        })
    }
}
