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
}

/// The firmware tables; obtained from [`crate::Store::firmware`].
#[derive(Debug)]
pub struct Firmware<'a> {
    pool: &'a AnyPool,
}

const RELEASE_COLUMNS: &str =
    "release_id, model, version, size, sha256, notes, manifest, created_at";
const UPDATE_COLUMNS: &str =
    "device_id, release_id, state, progress, reason, offered_at, updated_at";

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
        now: Timestamp,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut offered = Vec::new();
        for device_id in devices {
            let inserted = sqlx::query(&format!(
                "INSERT INTO device_updates ({UPDATE_COLUMNS}) VALUES ($1, $2, $3, NULL, NULL, $4, $4) \
                 ON CONFLICT (device_id, release_id) DO NOTHING"
            ))
            .bind(device_id.as_str())
            .bind(release_id)
            .bind(OtaState::Offered.as_str())
            .bind(now.unix_millis())
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
    })
}
