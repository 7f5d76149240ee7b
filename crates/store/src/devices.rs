//! The device registry: models, devices, technician grants, device state and commands.
//!
//! Whatever a person does to a device takes a `policy::Permit` for that action instead of a
//! device id, so no caller reaches these writes without the authorization check. What a device
//! does to itself (report state, answer a command) takes the id its certificate proved.

use model::{DeviceId, Timestamp, UserId};
use pki::IssuedCertificate;
use policy::{ActionSet, DeviceRelation, GrantTerms, Permission, Permit, may};
use registry::{CommandName, CommandStatus, ModelName, NewDevice, Tag};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::grants::raise_revocation_epoch;

/// Which devices an operator picks, for example as a rollout's target.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    Model(&'a ModelName),
    Tag(&'a Tag),
}

/// A device as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub model: ModelName,
    pub owner: Option<UserId>,
    pub firmware_version: Option<String>,
    pub created_at: Timestamp,
    pub claimed_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
    pub online: bool,
}

/// A technician grant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRecord {
    pub grant_id: String,
    pub device_id: DeviceId,
    pub grantee: UserId,
    pub granted_by: UserId,
    pub actions: ActionSet,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl GrantRecord {
    fn terms(&self) -> GrantTerms {
        GrantTerms {
            grantee: self.grantee,
            actions: self.actions,
            expires_at: self.expires_at,
            revoked: self.revoked_at.is_some(),
        }
    }
}

/// A device's desired and reported state.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceState {
    pub desired: Value,
    pub desired_version: i64,
    pub desired_updated_at: Option<Timestamp>,
    pub reported: Value,
    pub reported_at: Option<Timestamp>,
}

/// What a claim attempt found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// The code is right but the device already has an owner.
    AlreadyClaimed,
    /// No device with this id has this code (or no such device): one answer for both.
    WrongCode,
}

/// A command and, once the device answered, its response.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRecord {
    pub command_id: String,
    pub device_id: DeviceId,
    pub name: CommandName,
    pub payload: Value,
    pub sent_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub response: Option<Value>,
    pub answered_at: Option<Timestamp>,
}

impl CommandRecord {
    pub fn status(&self, now: Timestamp) -> CommandStatus {
        CommandStatus::at(self.answered_at.is_some(), self.expires_at, now)
    }
}

/// What a device's answer to a command found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Recorded; the command's name.
    Recorded {
        name: String,
    },
    AlreadyAnswered,
    Expired,
    /// No such command for this device.
    Unknown,
}

/// The device tables; obtained from [`crate::Store::devices`].
#[derive(Debug)]
pub struct Devices<'a> {
    pool: &'a AnyPool,
}

const DEVICE_COLUMNS: &str =
    "device_id, model, owner_id, firmware_version, created_at, claimed_at, last_seen_at, online";
const GRANT_COLUMNS: &str =
    "grant_id, device_id, grantee_id, granted_by, actions, created_at, expires_at, revoked_at";
const COMMAND_COLUMNS: &str =
    "command_id, device_id, name, payload, sent_by, created_at, expires_at, response, answered_at";

impl<'a> Devices<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Creates the devices, their models if new, and records the certificates made for them: all
    /// or none.
    pub async fn create(
        &self,
        devices: &[NewDevice],
        certificates: &[IssuedCertificate],
    ) -> Result<(), StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        crate::certificates::insert_in(&mut tx, certificates).await?;
        for device in devices {
            sqlx::query(
                "INSERT INTO device_models (name, settings_schema, created_at) VALUES ($1, NULL, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(device.model.as_str())
            .bind(device.created_at.unix_millis())
            .execute(&mut *tx)
            .await?;
            let inserted = sqlx::query(
                "INSERT INTO devices (device_id, model, owner_id, password_hash, claim_code_hash, created_at) \
                 VALUES ($1, $2, NULL, $3, $4, $5) ON CONFLICT (device_id) DO NOTHING",
            )
            .bind(device.device_id.as_str())
            .bind(device.model.as_str())
            .bind(&device.password_hash)
            .bind(&device.claim_code_hash)
            .bind(device.created_at.unix_millis())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::Conflict {
                    what: "a device with this id",
                });
            }
            sqlx::query(
                "INSERT INTO device_state (device_id, desired, desired_version, reported) \
                 VALUES ($1, '{}', 0, '{}')",
            )
            .bind(device.device_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get(&self, device_id: &DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        let query = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1");
        let row = sqlx::query(&query)
            .bind(device_id.as_str())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode_device).transpose()
    }

    /// Every device, in id order, `limit` at a time after `after` (for the maker's list).
    pub async fn all(
        &self,
        after: Option<&DeviceId>,
        limit: u32,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let query = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id > $1 ORDER BY device_id LIMIT $2"
        );
        let rows = sqlx::query(&query)
            .bind(after.map_or("", DeviceId::as_str))
            .bind(i64::from(limit))
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode_device).collect()
    }

    /// The ids of the devices `selection` picks, in id order, at most `limit` of them.
    pub async fn select(
        &self,
        selection: Selection<'_>,
        limit: u32,
    ) -> Result<Vec<DeviceId>, StoreError> {
        let (query, value) = match selection {
            Selection::Model(model) => (
                "SELECT device_id FROM devices WHERE model = $1 ORDER BY device_id LIMIT $2",
                model.as_str(),
            ),
            Selection::Tag(tag) => (
                "SELECT device_id FROM device_tags WHERE tag = $1 ORDER BY device_id LIMIT $2",
                tag.as_str(),
            ),
        };
        let rows = sqlx::query(query)
            .bind(value)
            .bind(i64::from(limit))
            .fetch_all(self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("device_id")?;
                DeviceId::parse(&id)
                    .map_err(|error| StoreError::corrupt("devices", "device_id", error))
            })
            .collect()
    }

    /// A device's tags, in order.
    pub async fn tags(&self, device_id: &DeviceId) -> Result<Vec<Tag>, StoreError> {
        let rows = sqlx::query("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag")
            .bind(device_id.as_str())
            .fetch_all(self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let tag: String = row.try_get("tag")?;
                Tag::parse(&tag).map_err(|error| StoreError::corrupt("device_tags", "tag", error))
            })
            .collect()
    }

    /// Replaces a device's tags with `tags`. Returns false when there is no such device.
    pub async fn set_tags(&self, device_id: &DeviceId, tags: &[Tag]) -> Result<bool, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        // A write to the device's row, not a read: it locks the row on PostgreSQL, so that two
        // replacements of one device's tags run one after the other instead of each deleting
        // only what it saw and both inserting (the tags would become their union).
        let exists = sqlx::query("UPDATE devices SET device_id = device_id WHERE device_id = $1")
            .bind(device_id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if !exists {
            return Ok(false);
        }
        sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
            .bind(device_id.as_str())
            .execute(&mut *tx)
            .await?;
        for tag in tags {
            sqlx::query(
                "INSERT INTO device_tags (device_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(device_id.as_str())
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The facts the policy decides on: the owner and the grants that may still admit someone.
    /// `None` when there is no such device.
    pub async fn relation(
        &self,
        device_id: &DeviceId,
        now: Timestamp,
    ) -> Result<Option<(DeviceRecord, DeviceRelation)>, StoreError> {
        let Some(device) = self.get(device_id).await? else {
            return Ok(None);
        };
        let query = format!(
            "SELECT {GRANT_COLUMNS} FROM device_grants \
             WHERE device_id = $1 AND revoked_at IS NULL AND expires_at > $2"
        );
        let rows = sqlx::query(&query)
            .bind(device_id.as_str())
            .bind(now.unix_millis())
            .fetch_all(self.pool)
            .await?;
        let grants = rows
            .iter()
            .map(decode_grant)
            .map(|grant| grant.map(|grant| grant.terms()))
            .collect::<Result<_, _>>()?;
        let relation = DeviceRelation {
            device_id: device.device_id.clone(),
            owner: device.owner,
            grants,
        };
        Ok(Some((device, relation)))
    }

    /// The devices a person owns or holds an unexpired, unrevoked grant on, with the facts the
    /// policy needs to say what they may do to each.
    pub async fn related_to(
        &self,
        user_id: UserId,
        now: Timestamp,
    ) -> Result<Vec<(DeviceRecord, DeviceRelation)>, StoreError> {
        let query = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE owner_id = $1 OR device_id IN \
             (SELECT device_id FROM device_grants WHERE grantee_id = $1 AND revoked_at IS NULL AND expires_at > $2) \
             ORDER BY device_id"
        );
        let rows = sqlx::query(&query)
            .bind(user_id.to_string())
            .bind(now.unix_millis())
            .fetch_all(self.pool)
            .await?;
        let grant_query = format!(
            "SELECT {GRANT_COLUMNS} FROM device_grants \
             WHERE grantee_id = $1 AND revoked_at IS NULL AND expires_at > $2"
        );
        let grants = sqlx::query(&grant_query)
            .bind(user_id.to_string())
            .bind(now.unix_millis())
            .fetch_all(self.pool)
            .await?
            .iter()
            .map(decode_grant)
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter()
            .map(|row| {
                let device = decode_device(row)?;
                let relation = DeviceRelation {
                    device_id: device.device_id.clone(),
                    owner: device.owner,
                    grants: grants
                        .iter()
                        .filter(|grant| grant.device_id == device.device_id)
                        .map(GrantRecord::terms)
                        .collect(),
                };
                Ok((device, relation))
            })
            .collect()
    }

    /// Makes `user_id` the owner if the code is the device's and nobody owns it yet. The check and
    /// the write are one statement, so two people racing with the same code cannot both win.
    pub async fn claim(
        &self,
        device_id: &DeviceId,
        claim_code_hash: &str,
        user_id: UserId,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let claimed = sqlx::query(
            "UPDATE devices SET owner_id = $1, claimed_at = $2 \
             WHERE device_id = $3 AND claim_code_hash = $4 AND owner_id IS NULL",
        )
        .bind(user_id.to_string())
        .bind(now.unix_millis())
        .bind(device_id.as_str())
        .bind(claim_code_hash)
        .execute(self.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(ClaimOutcome::Claimed);
        }
        let used = sqlx::query(
            "SELECT 1 FROM devices WHERE device_id = $1 AND claim_code_hash = $2 AND owner_id IS NOT NULL",
        )
        .bind(device_id.as_str())
        .bind(claim_code_hash)
        .fetch_optional(self.pool)
        .await?;
        Ok(if used.is_some() {
            ClaimOutcome::AlreadyClaimed
        } else {
            ClaimOutcome::WrongCode
        })
    }

    /// The maker's new claim code for an unowned device (after a release, or a lost label). False
    /// when the device is owned or does not exist.
    pub async fn set_claim_code(
        &self,
        device_id: &DeviceId,
        claim_code_hash: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE devices SET claim_code_hash = $1 WHERE device_id = $2 AND owner_id IS NULL",
        )
        .bind(claim_code_hash)
        .bind(device_id.as_str())
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// A factory reset: no owner, every grant revoked, the used claim code forgotten (the maker
    /// issues a new one), settings and reported state emptied, unanswered commands dropped. The
    /// desired version keeps counting, so a write based on the old state still fails.
    pub async fn release(
        &self,
        permit: &Permit<may::ManageOwnership>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let device_id = permit.device_id().as_str();
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query(
            "UPDATE devices SET owner_id = NULL, claim_code_hash = NULL, claimed_at = NULL \
             WHERE device_id = $1",
        )
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        revoke_all_grants(&mut tx, device_id, now).await?;
        sqlx::query(
            "UPDATE device_state SET desired = '{}', desired_version = desired_version + 1, \
             desired_updated_at = $1, reported = '{}', reported_at = NULL WHERE device_id = $2",
        )
        .bind(now.unix_millis())
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM device_commands WHERE device_id = $1 AND answered_at IS NULL")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        raise_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Hands the device to another account; every grant the old owner made ends.
    pub async fn transfer(
        &self,
        permit: &Permit<may::ManageOwnership>,
        new_owner: UserId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let device_id = permit.device_id().as_str();
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query("UPDATE devices SET owner_id = $1, claimed_at = $2 WHERE device_id = $3")
            .bind(new_owner.to_string())
            .bind(now.unix_millis())
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        revoke_all_grants(&mut tx, device_id, now).await?;
        raise_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_grant(
        &self,
        permit: &Permit<may::ManageGrants>,
        grant: &GrantRecord,
    ) -> Result<(), StoreError> {
        let query = format!(
            "INSERT INTO device_grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
        );
        sqlx::query(&query)
            .bind(&grant.grant_id)
            .bind(permit.device_id().as_str())
            .bind(grant.grantee.to_string())
            .bind(grant.granted_by.to_string())
            .bind(grant.actions.to_string())
            .bind(grant.created_at.unix_millis())
            .bind(grant.expires_at.unix_millis())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Every grant on the device, newest first, revoked and expired ones included.
    pub async fn grants(
        &self,
        permit: &Permit<may::ManageGrants>,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let query = format!(
            "SELECT {GRANT_COLUMNS} FROM device_grants WHERE device_id = $1 \
             ORDER BY created_at DESC, grant_id"
        );
        let rows = sqlx::query(&query)
            .bind(permit.device_id().as_str())
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode_grant).collect()
    }

    /// Revokes one grant on the device; false when there is no such unrevoked grant.
    pub async fn revoke_grant(
        &self,
        permit: &Permit<may::ManageGrants>,
        grant_id: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        let result = sqlx::query(
            "UPDATE device_grants SET revoked_at = $1 \
             WHERE grant_id = $2 AND device_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(grant_id)
        .bind(permit.device_id().as_str())
        .execute(&mut *tx)
        .await?;
        raise_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(result.rows_affected() == 1)
    }

    /// The model's settings schema, if it has one.
    pub async fn settings_schema(&self, model: &ModelName) -> Result<Option<Value>, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT settings_schema FROM device_models WHERE name = $1")
                .bind(model.as_str())
                .fetch_optional(self.pool)
                .await?;
        row.and_then(|(schema,)| schema)
            .map(|text| parse_json("device_models", "settings_schema", &text))
            .transpose()
    }

    /// Sets (or with `None` removes) a model's settings schema, creating the model if new.
    pub async fn set_settings_schema(
        &self,
        model: &ModelName,
        schema: Option<&Value>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO device_models (name, settings_schema, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET settings_schema = excluded.settings_schema",
        )
        .bind(model.as_str())
        .bind(schema.map(Value::to_string))
        .bind(now.unix_millis())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub async fn state(&self, permit: &Permit<may::ReadStatus>) -> Result<DeviceState, StoreError> {
        self.state_of(permit.device_id()).await
    }

    /// The state as the device itself reads it.
    pub async fn state_of(&self, device_id: &DeviceId) -> Result<DeviceState, StoreError> {
        let row = sqlx::query(
            "SELECT desired, desired_version, desired_updated_at, reported, reported_at \
             FROM device_state WHERE device_id = $1",
        )
        .bind(device_id.as_str())
        .fetch_one(self.pool)
        .await?;
        let desired: String = row.try_get("desired")?;
        let reported: String = row.try_get("reported")?;
        let desired_updated_at: Option<i64> = row.try_get("desired_updated_at")?;
        let reported_at: Option<i64> = row.try_get("reported_at")?;
        Ok(DeviceState {
            desired: parse_json("device_state", "desired", &desired)?,
            desired_version: row.try_get("desired_version")?,
            desired_updated_at: desired_updated_at.map(Timestamp::from_unix_millis),
            reported: parse_json("device_state", "reported", &reported)?,
            reported_at: reported_at.map(Timestamp::from_unix_millis),
        })
    }

    /// Replaces the desired settings if they are still at `expected_version`: the new version on
    /// success, `Err(current)` when someone wrote in between.
    pub async fn set_desired(
        &self,
        permit: &Permit<may::WriteSettings>,
        expected_version: i64,
        settings: &Value,
        now: Timestamp,
    ) -> Result<Result<i64, i64>, StoreError> {
        let updated = sqlx::query(
            "UPDATE device_state SET desired = $1, desired_version = desired_version + 1, \
             desired_updated_at = $2 WHERE device_id = $3 AND desired_version = $4",
        )
        .bind(settings.to_string())
        .bind(now.unix_millis())
        .bind(permit.device_id().as_str())
        .bind(expected_version)
        .execute(self.pool)
        .await?;
        let current = self.state_of(permit.device_id()).await?.desired_version;
        Ok(if updated.rows_affected() == 1 {
            Ok(current)
        } else {
            Err(current)
        })
    }

    /// Stores the state the device reports; it replaces the last report.
    pub async fn report_state(
        &self,
        device_id: &DeviceId,
        reported: &Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE device_state SET reported = $1, reported_at = $2 WHERE device_id = $3")
            .bind(reported.to_string())
            .bind(now.unix_millis())
            .bind(device_id.as_str())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Records that the device was heard from.
    pub async fn seen(&self, device_id: &DeviceId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE device_id = $2")
            .bind(now.unix_millis())
            .bind(device_id.as_str())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Records the firmware version a device runs, after it reported an update installed.
    pub async fn set_firmware_version(
        &self,
        device_id: &DeviceId,
        version: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET firmware_version = $1 WHERE device_id = $2")
            .bind(version)
            .bind(device_id.as_str())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Records a device's MQTT session coming or going; both count as being seen.
    pub async fn set_online(
        &self,
        device_id: &DeviceId,
        online: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET online = $1, last_seen_at = $2 WHERE device_id = $3")
            .bind(i64::from(online))
            .bind(now.unix_millis())
            .bind(device_id.as_str())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// The device's MQTT password hash, for authenticating it.
    pub async fn password_hash(&self, device_id: &DeviceId) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT password_hash FROM devices WHERE device_id = $1")
                .bind(device_id.as_str())
                .fetch_optional(self.pool)
                .await?;
        Ok(row.map(|(hash,)| hash))
    }

    pub async fn insert_command(
        &self,
        permit: &Permit<may::SendCommands>,
        command: &CommandRecord,
    ) -> Result<(), StoreError> {
        let query = format!(
            "INSERT INTO device_commands ({COMMAND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
        );
        sqlx::query(&query)
            .bind(&command.command_id)
            .bind(permit.device_id().as_str())
            .bind(command.name.as_str())
            .bind(command.payload.to_string())
            .bind(&command.sent_by)
            .bind(command.created_at.unix_millis())
            .bind(command.expires_at.unix_millis())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// One command sent to the device. Any permit on the device will do: a sender reads the
    /// answer to its command with its send permit, others need one to read status.
    pub async fn command<P: Permission>(
        &self,
        permit: &Permit<P>,
        command_id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let query = format!(
            "SELECT {COMMAND_COLUMNS} FROM device_commands WHERE command_id = $1 AND device_id = $2"
        );
        let row = sqlx::query(&query)
            .bind(command_id)
            .bind(permit.device_id().as_str())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode_command).transpose()
    }

    /// The commands waiting for the device, oldest first.
    pub async fn pending_commands(
        &self,
        device_id: &DeviceId,
        now: Timestamp,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let query = format!(
            "SELECT {COMMAND_COLUMNS} FROM device_commands \
             WHERE device_id = $1 AND answered_at IS NULL AND expires_at > $2 \
             ORDER BY created_at, command_id"
        );
        let rows = sqlx::query(&query)
            .bind(device_id.as_str())
            .bind(now.unix_millis())
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode_command).collect()
    }

    /// Records the device's answer, once, and only while the command lives.
    pub async fn answer_command(
        &self,
        device_id: &DeviceId,
        command_id: &str,
        response: &Value,
        now: Timestamp,
    ) -> Result<AnswerOutcome, StoreError> {
        let updated: Option<(String,)> = sqlx::query_as(
            "UPDATE device_commands SET response = $1, answered_at = $2 \
             WHERE command_id = $3 AND device_id = $4 AND answered_at IS NULL AND expires_at > $2 \
             RETURNING name",
        )
        .bind(response.to_string())
        .bind(now.unix_millis())
        .bind(command_id)
        .bind(device_id.as_str())
        .fetch_optional(self.pool)
        .await?;
        if let Some((name,)) = updated {
            return Ok(AnswerOutcome::Recorded { name });
        }
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT answered_at FROM device_commands WHERE command_id = $1 AND device_id = $2",
        )
        .bind(command_id)
        .bind(device_id.as_str())
        .fetch_optional(self.pool)
        .await?;
        Ok(match row {
            None => AnswerOutcome::Unknown,
            Some((Some(_),)) => AnswerOutcome::AlreadyAnswered,
            Some((None,)) => AnswerOutcome::Expired,
        })
    }
}

async fn revoke_all_grants(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE device_grants SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL",
    )
    .bind(now.unix_millis())
    .bind(device_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn parse_json(table: &'static str, column: &'static str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::corrupt(table, column, error))
}

fn decode_device(row: &AnyRow) -> Result<DeviceRecord, StoreError> {
    let corrupt = |column, reason: String| StoreError::corrupt("devices", column, reason);
    let device_id: String = row.try_get("device_id")?;
    let model: String = row.try_get("model")?;
    let owner: Option<String> = row.try_get("owner_id")?;
    let claimed_at: Option<i64> = row.try_get("claimed_at")?;
    let last_seen_at: Option<i64> = row.try_get("last_seen_at")?;
    let online: i64 = row.try_get("online")?;
    Ok(DeviceRecord {
        device_id: DeviceId::parse(&device_id).map_err(|e| corrupt("device_id", e.to_string()))?,
        model: ModelName::parse(&model).map_err(|e| corrupt("model", e.to_string()))?,
        owner: owner
            .map(|owner| owner.parse())
            .transpose()
            .map_err(|e: model::UserIdError| corrupt("owner_id", e.to_string()))?,
        firmware_version: row.try_get("firmware_version")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        claimed_at: claimed_at.map(Timestamp::from_unix_millis),
        last_seen_at: last_seen_at.map(Timestamp::from_unix_millis),
        online: online != 0,
    })
}

fn decode_grant(row: &AnyRow) -> Result<GrantRecord, StoreError> {
    let corrupt = |column, reason: String| StoreError::corrupt("device_grants", column, reason);
    let device_id: String = row.try_get("device_id")?;
    let grantee: String = row.try_get("grantee_id")?;
    let granted_by: String = row.try_get("granted_by")?;
    let actions: String = row.try_get("actions")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(GrantRecord {
        grant_id: row.try_get("grant_id")?,
        device_id: DeviceId::parse(&device_id).map_err(|e| corrupt("device_id", e.to_string()))?,
        grantee: grantee
            .parse()
            .map_err(|e: model::UserIdError| corrupt("grantee_id", e.to_string()))?,
        granted_by: granted_by
            .parse()
            .map_err(|e: model::UserIdError| corrupt("granted_by", e.to_string()))?,
        actions: ActionSet::parse(&actions).map_err(|e| corrupt("actions", e.to_string()))?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
        revoked_at: revoked_at.map(Timestamp::from_unix_millis),
    })
}

fn decode_command(row: &AnyRow) -> Result<CommandRecord, StoreError> {
    let corrupt = |column, reason: String| StoreError::corrupt("device_commands", column, reason);
    let device_id: String = row.try_get("device_id")?;
    let name: String = row.try_get("name")?;
    let payload: String = row.try_get("payload")?;
    let response: Option<String> = row.try_get("response")?;
    let answered_at: Option<i64> = row.try_get("answered_at")?;
    Ok(CommandRecord {
        command_id: row.try_get("command_id")?,
        device_id: DeviceId::parse(&device_id).map_err(|e| corrupt("device_id", e.to_string()))?,
        name: CommandName::parse(&name).map_err(|e| corrupt("name", e.to_string()))?,
        payload: parse_json("device_commands", "payload", &payload)?,
        sent_by: row.try_get("sent_by")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
        response: response
            .map(|text| parse_json("device_commands", "response", &text))
            .transpose()?,
        answered_at: answered_at.map(Timestamp::from_unix_millis),
    })
}
