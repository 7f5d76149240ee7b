//! Firmware releases and each device's way through an update.

use firmware::OtaState;
use model::{DeviceId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// A release as stored: the file is in the firmware directory under `sha256`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub release_id: String,
    pub model: String,
    pub version: String,
    pub size: u64,
    pub sha256: String,
    pub notes: String,
    /// The signed manifest (a compact JWS) devices are sent.
    pub manifest: String,
    pub created_at: Timestamp,
}

/// Where one device is with one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceUpdate {
    pub device_id: DeviceId,
    pub release_id: String,
    pub state: OtaState,
    pub progress: Option<u8>,
    pub reason: Option<String>,
    pub offered_at: Timestamp,
    pub updated_at: Timestamp,
    /// The offer lets the device go to an older version than it runs.
    pub allow_downgrade: bool,
}

/// The firmware tables; obtained from [`crate::Store::firmware`].
#[derive(Debug)]
pub struct Firmware<'a> {
    pool: &'a AnyPool,
}

const RELEASE_COLUMNS: &str =
    "release_id, model, version, size, sha256, notes, manifest, created_at";
const UPDATE_COLUMNS: &str =
    "device_id, release_id, state, progress, reason, offered_at, updated_at, allow_downgrade";

impl<'a> Firmware<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Stores a release; one with the same model and version is a [`StoreError::Conflict`].
    pub async fn insert_release(&self, release: &Release) -> Result<(), StoreError> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO firmware_releases ({RELEASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(release.release_id.as_str())
        .bind(release.model.as_str())
        .bind(release.version.as_str())
        .bind(i64::try_from(release.size).unwrap_or(i64::MAX))
        .bind(release.sha256.as_str())
        .bind(release.notes.as_str())
        .bind(release.manifest.as_str())
        .bind(release.created_at.unix_millis())
        .execute(self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict {
                what: "a release of this model with this version",
            });
        }
        Ok(())
    }

    pub async fn release(&self, release_id: &str) -> Result<Option<Release>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM firmware_releases WHERE release_id = $1"
        ))
        .bind(release_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(release_of).transpose()
    }

    /// Every release, of one model or of all, newest first.
    pub async fn releases(&self, model: Option<&str>) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM firmware_releases \
             WHERE $1 IS NULL OR model = $1 ORDER BY created_at DESC, release_id DESC"
        ))
        .bind(model)
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(release_of).collect()
    }

    /// Offers `release_id` to `devices`: each gets an update in the `offered` state, unless it
    /// has one for this release already. Returns the devices newly offered it.
    pub async fn offer(
        &self,
        release_id: &str,
        devices: &[DeviceId],
        allow_downgrade: bool,
        now: Timestamp,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        let mut offered = Vec::new();
        for device_id in devices {
            let inserted = sqlx::query(&format!(
                "INSERT INTO device_updates ({UPDATE_COLUMNS}) \
                 VALUES ($1, $2, $3, NULL, NULL, $4, $4, $5) \
                 ON CONFLICT (device_id, release_id) DO NOTHING"
            ))
            .bind(device_id.as_str())
            .bind(release_id)
            .bind(OtaState::Offered.as_str())
            .bind(now.unix_millis())
            .bind(i64::from(allow_downgrade))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                offered.push(device_id.clone());
            }
        }
        tx.commit().await?;
        Ok(offered)
    }

    pub async fn update(
        &self,
        device_id: &DeviceId,
        release_id: &str,
    ) -> Result<Option<DeviceUpdate>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {UPDATE_COLUMNS} FROM device_updates WHERE device_id = $1 AND release_id = $2"
        ))
        .bind(device_id.as_str())
        .bind(release_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(update_of).transpose()
    }

    /// The newest update of a device that is not over yet: the offer it is still to act on.
    pub async fn open_update(
        &self,
        device_id: &DeviceId,
    ) -> Result<Option<DeviceUpdate>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {UPDATE_COLUMNS} FROM device_updates WHERE device_id = $1 AND state IN ($2, $3, $4) \
             ORDER BY offered_at DESC, release_id DESC LIMIT 1"
        ))
        .bind(device_id.as_str())
        .bind(OtaState::Offered.as_str())
        .bind(OtaState::Downloading.as_str())
        .bind(OtaState::Installing.as_str())
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(update_of).transpose()
    }

    /// A device's updates, newest offer first.
    pub async fn updates_of(&self, device_id: &DeviceId) -> Result<Vec<DeviceUpdate>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {UPDATE_COLUMNS} FROM device_updates WHERE device_id = $1 \
             ORDER BY offered_at DESC, release_id DESC"
        ))
        .bind(device_id.as_str())
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(update_of).collect()
    }

    /// Moves an update from `from` to what `to` says, only if it is still in `from` (a report
    /// racing another loses and is decided again). Returns whether it moved.
    pub async fn advance(
        &self,
        from: &DeviceUpdate,
        to: &DeviceUpdate,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "UPDATE device_updates SET state = $1, progress = $2, reason = $3, updated_at = $4 \
             WHERE device_id = $5 AND release_id = $6 AND state = $7 AND updated_at = $8",
        )
        .bind(to.state.as_str())
        .bind(to.progress.map(i64::from))
        .bind(to.reason.as_deref())
        .bind(to.updated_at.unix_millis())
        .bind(from.device_id.as_str())
        .bind(from.release_id.as_str())
        .bind(from.state.as_str())
        .bind(from.updated_at.unix_millis())
        .execute(self.pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }
}

/// A staged rollout as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    pub rollout_id: String,
    pub release_id: String,
    /// Cumulative percentages, as `firmware::Stages` checks them.
    pub stages: Vec<u8>,
    pub soak_seconds: Option<u64>,
    /// The failure percentage above which the rollout aborts itself.
    pub failure_threshold: u8,
    pub allow_downgrade: bool,
    /// `running`, `paused`, `completed` or `aborted`.
    pub state: String,
    pub stage: usize,
    /// When every device of the current stage had finished.
    pub stage_done_at: Option<Timestamp>,
    /// Why it was aborted.
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const ROLLOUT_COLUMNS: &str = "rollout_id, release_id, stages, soak_seconds, failure_threshold, \
     allow_downgrade, state, stage, stage_done_at, reason, created_at, updated_at";

impl Firmware<'_> {
    /// Stores a new rollout with its target devices in `order`.
    pub async fn insert_rollout(
        &self,
        rollout: &Rollout,
        order: &[DeviceId],
    ) -> Result<(), StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query(&format!(
            "INSERT INTO rollouts ({ROLLOUT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(rollout.rollout_id.as_str())
        .bind(rollout.release_id.as_str())
        .bind(stages_text(&rollout.stages))
        .bind(
            rollout
                .soak_seconds
                .map(|seconds| i64::try_from(seconds).unwrap_or(i64::MAX)),
        )
        .bind(i64::from(rollout.failure_threshold))
        .bind(i64::from(rollout.allow_downgrade))
        .bind(rollout.state.as_str())
        .bind(i64::try_from(rollout.stage).unwrap_or(i64::MAX))
        .bind(rollout.stage_done_at.map(Timestamp::unix_millis))
        .bind(rollout.reason.as_deref())
        .bind(rollout.created_at.unix_millis())
        .bind(rollout.updated_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        for (position, device_id) in order.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rollout_devices (rollout_id, device_id, position) VALUES ($1, $2, $3)",
            )
            .bind(rollout.rollout_id.as_str())
            .bind(device_id.as_str())
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn rollout(&self, rollout_id: &str) -> Result<Option<Rollout>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE rollout_id = $1"
        ))
        .bind(rollout_id)
        .fetch_optional(self.pool)
        .await?;
        row.as_ref().map(rollout_of).transpose()
    }

    /// The newest `limit` rollouts, newest first.
    pub async fn recent_rollouts(&self, limit: u32) -> Result<Vec<Rollout>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts ORDER BY created_at DESC, rollout_id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(rollout_of).collect()
    }

    /// Rollouts in `state`, oldest first.
    pub async fn rollouts_in(&self, state: &str) -> Result<Vec<Rollout>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE state = $1 ORDER BY created_at, rollout_id"
        ))
        .bind(state)
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(rollout_of).collect()
    }

    /// Writes a rollout's state, stage, stage end and reason, if it is still as `from` says
    /// (state, stage and last change): two replicas tending it at once change it once.
    pub async fn update_rollout(&self, from: &Rollout, to: &Rollout) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "UPDATE rollouts SET state = $1, stage = $2, stage_done_at = $3, reason = $4, updated_at = $5 \
             WHERE rollout_id = $6 AND state = $7 AND stage = $8 AND updated_at = $9",
        )
        .bind(to.state.as_str())
        .bind(i64::try_from(to.stage).unwrap_or(i64::MAX))
        .bind(to.stage_done_at.map(Timestamp::unix_millis))
        .bind(to.reason.as_deref())
        .bind(to.updated_at.unix_millis())
        .bind(from.rollout_id.as_str())
        .bind(from.state.as_str())
        .bind(i64::try_from(from.stage).unwrap_or(i64::MAX))
        .bind(from.updated_at.unix_millis())
        .execute(self.pool)
        .await?
        .rows_affected();
        Ok(moved == 1)
    }

    /// The rollout's devices at positions below `reach`, in order.
    pub async fn rollout_devices(
        &self,
        rollout_id: &str,
        reach: usize,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT device_id FROM rollout_devices WHERE rollout_id = $1 AND position < $2 ORDER BY position",
        )
        .bind(rollout_id)
        .bind(i64::try_from(reach).unwrap_or(i64::MAX))
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|(id,)| {
                DeviceId::parse(&id)
                    .map_err(|error| StoreError::corrupt("rollout_devices", "device_id", error))
            })
            .collect()
    }

    /// How many devices the rollout targets.
    pub async fn rollout_size(&self, rollout_id: &str) -> Result<usize, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM rollout_devices WHERE rollout_id = $1")
                .bind(rollout_id)
                .fetch_one(self.pool)
                .await?;
        Ok(usize::try_from(count).unwrap_or_default())
    }

    /// Where the rollout's offered devices stand with its release: (state, devices) pairs.
    pub async fn rollout_states(
        &self,
        rollout: &Rollout,
    ) -> Result<Vec<(OtaState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT u.state, COUNT(*) FROM rollout_devices r JOIN device_updates u \
             ON u.device_id = r.device_id AND u.release_id = $2 \
             WHERE r.rollout_id = $1 GROUP BY u.state",
        )
        .bind(rollout.rollout_id.as_str())
        .bind(rollout.release_id.as_str())
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|(state, count)| {
                let state = OtaState::parse(&state).ok_or_else(|| {
                    StoreError::corrupt("device_updates", "state", "unknown state")
                })?;
                Ok((state, u64::try_from(count).unwrap_or_default()))
            })
            .collect()
    }

    /// Ends every update of `release_id` that is still only offered to one of `devices`: they
    /// fail with `reason` (an aborted rollout). Returns the devices whose offer ended.
    pub async fn withdraw_offers(
        &self,
        release_id: &str,
        devices: &[DeviceId],
        reason: &str,
        now: Timestamp,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let mut withdrawn = Vec::new();
        for device_id in devices {
            let ended = sqlx::query(
                "UPDATE device_updates SET state = $1, reason = $2, updated_at = $3 \
                 WHERE device_id = $4 AND release_id = $5 AND state = $6",
            )
            .bind(OtaState::Failed.as_str())
            .bind(reason)
            .bind(now.unix_millis())
            .bind(device_id.as_str())
            .bind(release_id)
            .bind(OtaState::Offered.as_str())
            .execute(self.pool)
            .await?
            .rows_affected();
            if ended == 1 {
                withdrawn.push(device_id.clone());
            }
        }
        Ok(withdrawn)
    }
}

fn stages_text(stages: &[u8]) -> String {
    stages
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn rollout_of(row: &AnyRow) -> Result<Rollout, StoreError> {
    let corrupt = |column, reason: &str| StoreError::corrupt("rollouts", column, reason);
    let stages: String = row.try_get("stages")?;
    let soak: Option<i64> = row.try_get("soak_seconds")?;
    let threshold: i64 = row.try_get("failure_threshold")?;
    let downgrade: i64 = row.try_get("allow_downgrade")?;
    let stage: i64 = row.try_get("stage")?;
    let done_at: Option<i64> = row.try_get("stage_done_at")?;
    Ok(Rollout {
        rollout_id: row.try_get("rollout_id")?,
        release_id: row.try_get("release_id")?,
        stages: stages
            .split(',')
            .map(|part| {
                part.parse::<u8>()
                    .map_err(|_| corrupt("stages", "not percentages"))
            })
            .collect::<Result<_, _>>()?,
        soak_seconds: soak.and_then(|seconds| u64::try_from(seconds).ok()),
        failure_threshold: u8::try_from(threshold)
            .map_err(|_| corrupt("failure_threshold", "out of range"))?,
        allow_downgrade: downgrade != 0,
        state: row.try_get("state")?,
        stage: usize::try_from(stage).map_err(|_| corrupt("stage", "negative"))?,
        stage_done_at: done_at.map(Timestamp::from_unix_millis),
        reason: row.try_get("reason")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
    })
}

fn release_of(row: &AnyRow) -> Result<Release, StoreError> {
    let size: i64 = row.try_get("size")?;
    Ok(Release {
        release_id: row.try_get("release_id")?,
        model: row.try_get("model")?,
        version: row.try_get("version")?,
        size: u64::try_from(size)
            .map_err(|_| StoreError::corrupt("firmware_releases", "size", "negative"))?,
        sha256: row.try_get("sha256")?,
        notes: row.try_get("notes")?,
        manifest: row.try_get("manifest")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}

fn update_of(row: &AnyRow) -> Result<DeviceUpdate, StoreError> {
    let device_id: String = row.try_get("device_id")?;
    let state: String = row.try_get("state")?;
    let progress: Option<i64> = row.try_get("progress")?;
    let downgrade: i64 = row.try_get("allow_downgrade")?;
    Ok(DeviceUpdate {
        device_id: DeviceId::parse(&device_id)
            .map_err(|error| StoreError::corrupt("device_updates", "device_id", error))?,
        release_id: row.try_get("release_id")?,
        state: OtaState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("device_updates", "state", "unknown state"))?,
        progress: progress.and_then(|progress| u8::try_from(progress).ok()),
        reason: row.try_get("reason")?,
        offered_at: Timestamp::from_unix_millis(row.try_get("offered_at")?),
        updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
        allow_downgrade: downgrade != 0,
    })
}
