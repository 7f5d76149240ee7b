//! The audit journal's tables: appends chained after the locked head, pages for readers, the
//! signed checkpoints, the audit keys, and retention by whole segments.

use async_trait::async_trait;
use audit::{
    Actor, AuditLog, AuditLogError, Checkpoint, CheckpointKey, Digest, Entry, Head, Outcome, Query,
    Record, Target,
};
use model::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::{Store, StoreError, values_list};

/// Columns one entry binds in an insert.
const INSERT_COLUMNS: usize = 15;
/// Entries per insert statement: far below both backends' parameter limits.
const INSERT_CHUNK: usize = 500;

const ENTRY_COLUMNS: &str = "seq, at, actor_kind, actor_id, actor_label, action, target_kind, \
                             target_id, device_id, outcome, source, request_id, detail, prev_hash, hash";

/// An audit key as stored: its public half in the clear, its private half sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAuditKey {
    pub id: String,
    pub public_key: Vec<u8>,
    pub sealed_private: String,
}

/// The audit tables; obtained from [`crate::Store::audit`].
#[derive(Debug)]
pub struct AuditJournal<'a> {
    pool: &'a AnyPool,
}

impl<'a> AuditJournal<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Chains `records` after the head and commits them in one transaction. The head row is
    /// written first, which takes the write lock on both backends, so concurrent appends (from
    /// this process or another replica) wait for each other and never fork the chain.
    pub async fn append(&self, records: &[Record]) -> Result<Vec<Entry>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = crate::begin_write(self.pool).await?;
        let row = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        let head = head_of(&row)?;
        let (entries, head) = audit::link(head, records.to_vec());
        for chunk in entries.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO audit_entries ({ENTRY_COLUMNS}) VALUES {}",
                values_list(chunk.len(), INSERT_COLUMNS)
            );
            let mut query = sqlx::query(&sql).persistent(false);
            for entry in chunk {
                let record = &entry.record;
                query = query
                    .bind(entry.seq)
                    .bind(record.at.unix_millis())
                    .bind(record.actor.kind())
                    .bind(record.actor.id().to_owned())
                    .bind(record.actor.label().map(str::to_owned))
                    .bind(record.action.clone())
                    .bind(record.target.kind.clone())
                    .bind(record.target.id.clone())
                    .bind(record.device.clone())
                    .bind(record.outcome.as_str())
                    .bind(record.source.clone())
                    .bind(record.request_id.clone())
                    .bind(record.detail.clone())
                    .bind(entry.prev_hash.to_hex())
                    .bind(entry.hash.to_hex());
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(head.seq)
            .bind(head.hash.to_hex())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(entries)
    }

    /// The last entry's number and hash, as the head row names them.
    pub async fn head(&self) -> Result<Head, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.pool)
            .await?;
        head_of(&row)
    }

    /// Up to `limit` entries numbered above `after`, in order: the walk of `warden audit verify`
    /// and of exports.
    pub async fn entries_after(&self, after: i64, limit: u32) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(entry_of).collect()
    }

    /// One page of entries that match `query`.
    pub async fn query(&self, query: &Query) -> Result<Vec<Entry>, StoreError> {
        enum Param {
            Text(String),
            Number(i64),
        }
        let mut params = Vec::new();
        let mut conditions = Vec::new();
        let mut condition = |left: &str, param: Param| {
            params.push(param);
            conditions.push(format!("{left} ${}", params.len()));
        };
        if let Some(device) = &query.device {
            condition("device_id =", Param::Text(device.clone()));
        }
        if let Some((kind, id)) = &query.actor {
            condition("actor_kind =", Param::Text(kind.clone()));
            condition("actor_id =", Param::Text(id.clone()));
        }
        if let Some(action) = &query.action {
            condition("action =", Param::Text(action.clone()));
        }
        if let Some(from) = query.from {
            condition("at >=", Param::Number(from.unix_millis()));
        }
        if let Some(to) = query.to {
            condition("at <", Param::Number(to.unix_millis()));
        }
        let (compare, direction) = if query.newest_first {
            ("seq <", "DESC")
        } else {
            ("seq >", "ASC")
        };
        if let Some(after) = query.after {
            condition(compare, Param::Number(after));
        }
        params.push(Param::Number(i64::from(query.page_size())));
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries{filter} ORDER BY seq {direction} LIMIT ${}",
            params.len()
        );
        let mut statement = sqlx::query(&sql);
        for param in params {
            statement = match param {
                Param::Text(text) => statement.bind(text),
                Param::Number(number) => statement.bind(number),
            };
        }
        let rows = statement.fetch_all(self.pool).await?;
        rows.iter().map(entry_of).collect()
    }

    /// Every checkpoint, in order.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, first_seq, last_seq, last_hash, at, key_id, signature, pruned_at \
             FROM audit_checkpoints ORDER BY number",
        )
        .fetch_all(self.pool)
        .await?;
        rows.iter().map(checkpoint_of).collect()
    }

    /// Signs the head into a new checkpoint when entries were appended since the last one;
    /// returns it. Runs under the head's lock, so replicas that try at once write one checkpoint.
    pub async fn checkpoint(
        &self,
        key: &CheckpointKey,
        now: Timestamp,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        let row = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        let head = head_of(&row)?;
        let last: Option<(i64, i64)> = sqlx::query_as(
            "SELECT number, last_seq FROM audit_checkpoints ORDER BY number DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (number, signed) = last.unwrap_or((0, 0));
        if head.seq <= signed {
            return Ok(None);
        }
        let checkpoint = key.checkpoint(number + 1, signed + 1, head.seq, head.hash, now);
        sqlx::query(
            "INSERT INTO audit_checkpoints \
             (number, first_seq, last_seq, last_hash, at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(checkpoint.number)
        .bind(checkpoint.first_seq)
        .bind(checkpoint.last_seq)
        .bind(checkpoint.last_hash.to_hex())
        .bind(checkpoint.at.unix_millis())
        .bind(checkpoint.key_id.clone())
        .bind(hex::encode(&checkpoint.signature))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    pub async fn keys(&self) -> Result<Vec<StoredAuditKey>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, public_key, sealed_private FROM audit_keys ORDER BY created_at, id",
        )
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, public_key, sealed_private)| {
                let public_key = hex::decode(&public_key).map_err(|_| {
                    StoreError::corrupt("audit_keys", "public_key", "not hexadecimal")
                })?;
                Ok(StoredAuditKey {
                    id,
                    public_key,
                    sealed_private,
                })
            })
            .collect()
    }

    /// Stores a new audit key; a key with the same id already stored is kept.
    pub async fn add_key(&self, key: &StoredAuditKey, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_keys (id, public_key, sealed_private, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(key.id.as_str())
        .bind(hex::encode(&key.public_key))
        .bind(key.sealed_private.as_str())
        .bind(now.unix_millis())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Retention: marks the oldest segments whose checkpoint is older than `cutoff` as removed,
    /// then deletes their entries in batches of `batch`, so no transaction grows large. A segment
    /// still open (after the last checkpoint) is never removed. Returns how many entries went.
    pub async fn remove_segments_before(
        &self,
        cutoff: Timestamp,
        now: Timestamp,
        batch: u32,
    ) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE audit_checkpoints SET pruned_at = $1 WHERE pruned_at IS NULL AND at < $2 \
             AND NOT EXISTS (SELECT 1 FROM audit_checkpoints kept \
                             WHERE kept.pruned_at IS NULL AND kept.at >= $2 \
                             AND kept.number < audit_checkpoints.number)",
        )
        .bind(now.unix_millis())
        .bind(cutoff.unix_millis())
        .execute(self.pool)
        .await?;
        let removed_up_to: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(last_seq) FROM audit_checkpoints WHERE pruned_at IS NOT NULL",
        )
        .fetch_one(self.pool)
        .await?;
        let Some(removed_up_to) = removed_up_to else {
            return Ok(0);
        };
        let mut removed = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM audit_entries WHERE seq IN \
                 (SELECT seq FROM audit_entries WHERE seq <= $1 ORDER BY seq LIMIT $2)",
            )
            .bind(removed_up_to)
            .bind(i64::from(batch.max(1)))
            .execute(self.pool)
            .await?
            .rows_affected();
            removed += deleted;
            if deleted < u64::from(batch.max(1)) {
                return Ok(removed);
            }
        }
    }
}

#[async_trait]
impl AuditLog for Store {
    async fn append(&self, records: &[Record]) -> Result<(), AuditLogError> {
        self.audit()
            .append(records)
            .await
            .map(drop)
            .map_err(|error| AuditLogError(error.to_string()))
    }
}

fn digest(row: &AnyRow, table: &'static str, column: &'static str) -> Result<Digest, StoreError> {
    let text: String = row.try_get(column)?;
    Digest::parse_hex(&text)
        .ok_or_else(|| StoreError::corrupt(table, column, "not a SHA-256 in hex"))
}

fn head_of(row: &AnyRow) -> Result<Head, StoreError> {
    Ok(Head {
        seq: row.try_get("seq")?,
        hash: digest(row, "audit_head", "hash")?,
    })
}

fn entry_of(row: &AnyRow) -> Result<Entry, StoreError> {
    let kind: String = row.try_get("actor_kind")?;
    let actor = Actor::from_parts(&kind, row.try_get("actor_id")?, row.try_get("actor_label")?)
        .ok_or_else(|| StoreError::corrupt("audit_entries", "actor_kind", "unknown actor kind"))?;
    let outcome: String = row.try_get("outcome")?;
    let outcome = Outcome::parse(&outcome)
        .ok_or_else(|| StoreError::corrupt("audit_entries", "outcome", "unknown outcome"))?;
    let target_kind: String = row.try_get("target_kind")?;
    let target_id: String = row.try_get("target_id")?;
    Ok(Entry {
        seq: row.try_get("seq")?,
        record: Record {
            at: Timestamp::from_unix_millis(row.try_get("at")?),
            actor,
            action: row.try_get("action")?,
            target: Target {
                kind: target_kind,
                id: target_id,
            },
            device: row.try_get("device_id")?,
            outcome,
            source: row.try_get("source")?,
            request_id: row.try_get("request_id")?,
            detail: row.try_get("detail")?,
        },
        prev_hash: digest(row, "audit_entries", "prev_hash")?,
        hash: digest(row, "audit_entries", "hash")?,
    })
}

fn checkpoint_of(row: &AnyRow) -> Result<Checkpoint, StoreError> {
    let signature: String = row.try_get("signature")?;
    let pruned_at: Option<i64> = row.try_get("pruned_at")?;
    Ok(Checkpoint {
        number: row.try_get("number")?,
        first_seq: row.try_get("first_seq")?,
        last_seq: row.try_get("last_seq")?,
        last_hash: digest(row, "audit_checkpoints", "last_hash")?,
        at: Timestamp::from_unix_millis(row.try_get("at")?),
        key_id: row.try_get("key_id")?,
        signature: hex::decode(signature).map_err(|_| {
            StoreError::corrupt("audit_checkpoints", "signature", "not hexadecimal")
        })?,
        pruned_at: pruned_at.map(Timestamp::from_unix_millis),
    })
}
