//! The gateway's throttle counters when replicas share them: the state of one GCRA limit per key
//! (its theoretical arrival time), counted in one statement so that replicas counting at once
//! never both take the last allowance.

use sqlx::{AnyPool, Row};

use crate::{Backend, StoreError};

/// The shared throttle counters; obtained from [`crate::Store::throttle_counters`].
#[derive(Debug)]
pub struct ThrottleCounters<'a> {
    pool: &'a AnyPool,
    backend: Backend,
}

/// One request counted: the key's theoretical arrival time afterwards (allowed), or as it stands
/// (refused), in microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Allowed { tat_micros: i64 },
    Refused { tat_micros: i64 },
}

impl<'a> ThrottleCounters<'a> {
    pub(crate) fn new(pool: &'a AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }

    /// Counts one request for `key` at `now_micros` under GCRA: it is allowed when the key's
    /// theoretical arrival time is at most `tolerance_micros` after now, and then that time moves
    /// to the later of it and now, plus `interval_micros`. A key not seen yet is allowed.
    pub async fn count(
        &self,
        key: &str,
        now_micros: i64,
        interval_micros: i64,
        tolerance_micros: i64,
    ) -> Result<Counted, StoreError> {
        // The larger of two values: SQLite's two-argument MAX, PostgreSQL's GREATEST.
        let greatest = match self.backend {
            Backend::Sqlite => "MAX",
            Backend::Postgres => "GREATEST",
        };
        let allowed = sqlx::query(&format!(
            "INSERT INTO throttle_counters (throttle_key, tat_micros) VALUES ($1, $2 + $3) \
             ON CONFLICT (throttle_key) DO UPDATE \
             SET tat_micros = {greatest}(throttle_counters.tat_micros, $2) + $3 \
             WHERE throttle_counters.tat_micros - $2 <= $4 \
             RETURNING tat_micros"
        ))
        .bind(key)
        .bind(now_micros)
        .bind(interval_micros)
        .bind(tolerance_micros)
        .fetch_optional(self.pool)
        .await?;
        if let Some(row) = allowed {
            return Ok(Counted::Allowed {
                tat_micros: row.try_get("tat_micros")?,
            });
        }
        let row = sqlx::query("SELECT tat_micros FROM throttle_counters WHERE throttle_key = $1")
            .bind(key)
            .fetch_one(self.pool)
            .await?;
        Ok(Counted::Refused {
            tat_micros: row.try_get("tat_micros")?,
        })
    }
}
