//! Leases on background jobs, so that a job runs on one replica of a cluster at a time.

use model::Timestamp;
use sqlx::AnyPool;

use crate::StoreError;

/// The job lease table; obtained from [`crate::Store::job_leases`].
#[derive(Debug)]
pub struct JobLeases<'a> {
    pool: &'a AnyPool,
}

impl<'a> JobLeases<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Takes or renews the lease on `job` for `holder` until `until`: granted when nobody holds
    /// it, when `holder` does, or when the holder let it expire (its `expires_at` is not after
    /// `now`). One statement, so that of replicas asking at once exactly one is granted.
    pub async fn take(
        &self,
        job: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= $4",
        )
        .bind(job)
        .bind(holder)
        .bind(until.unix_millis())
        .bind(now.unix_millis())
        .execute(self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Gives the lease on `job` up, if `holder` has it, so that another replica takes the job over
    /// at its next round instead of after the lease's end.
    pub async fn release(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
            .bind(job)
            .bind(holder)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Who holds the lease on `job` and until when, if anyone has taken it.
    pub async fn holder(&self, job: &str) -> Result<Option<(String, Timestamp)>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, expires_at FROM job_leases WHERE job = $1")
                .bind(job)
                .fetch_optional(self.pool)
                .await?;
        Ok(row.map(|(holder, until)| (holder, Timestamp::from_unix_millis(until))))
    }
}
