//! Device events: batched inserts that skip resends, keyset-paged reads, and retention deletes.

use async_trait::async_trait;
use events::{Body, Cursor, Event, EventLog, EventLogError, EventQuery, Order, TopicSelector};
use model::{DeviceId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::{Backend, Store, StoreError, values_list};

/// Columns one event binds in an insert.
const INSERT_COLUMNS: usize = 8;

/// An event as read back, with its position in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub sequence: i64,
    pub event: Event,
}

impl StoredEvent {
    /// Where a page that ends with this event continues.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            received_at: self.event.received_at,
            sequence: self.sequence,
        }
    }
}

/// The events table; obtained from [`crate::Store::events`].
#[derive(Debug)]
pub struct Events<'a> {
    pool: &'a AnyPool,
    backend: Backend,
}

impl<'a> Events<'a> {
    pub(crate) fn new(pool: &'a AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }

    /// Inserts `batch` in one statement (one transaction); events whose device already has their
    /// message id are skipped. Returns how many were new.
    pub async fn append(&self, batch: &[Event]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut sql = String::with_capacity(160 + batch.len() * 48);
        sql.push_str(
            "INSERT INTO device_events (device_id, message_id, topic, received_at, device_time, \
             content_type, body_json, body_bytes) VALUES ",
        );
        sql.push_str(&values_list(batch.len(), INSERT_COLUMNS));
        sql.push_str(" ON CONFLICT (device_id, message_id) DO NOTHING");
        // Batches vary in size, so their statements are not worth caching per connection.
        let mut query = sqlx::query(&sql).persistent(false);
        for event in batch {
            let (json, bytes) = match &event.body {
                Body::Json(text) => (Some(text.as_str()), None),
                Body::Bytes(bytes) => (None, Some(bytes.as_slice())),
            };
            query = query
                .bind(event.device_id.as_str())
                .bind(event.message_id.as_str())
                .bind(event.topic.as_str())
                .bind(event.received_at.unix_millis())
                .bind(event.device_time.map(Timestamp::unix_millis))
                .bind(event.content_type.as_str())
                .bind(json)
                .bind(bytes);
        }
        let done = query.execute(self.pool).await?;
        Ok(done.rows_affected())
    }

    /// One page of `device_id`'s events received at or after `not_before` (the start of the
    /// reader's right to see them), in the query's order.
    pub async fn page(
        &self,
        device_id: &DeviceId,
        query: &EventQuery,
        not_before: Option<Timestamp>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = String::from(
            "SELECT sequence, message_id, topic, received_at, device_time, content_type, \
             body_json, body_bytes FROM device_events WHERE device_id = $1 \
             AND received_at >= $2 AND received_at < $3",
        );
        let from = query
            .from
            .max(not_before)
            .map_or(i64::MIN, Timestamp::unix_millis);
        let to = query.to.map_or(i64::MAX, Timestamp::unix_millis);
        let mut texts: Vec<String> = Vec::new();
        let mut next = 4;
        let mut parameter = || {
            let name = format!("${next}");
            next += 1;
            name
        };
        if let Some(selector) = &query.topic {
            let root = format!("devices/{device_id}/");
            match selector.full(&root) {
                TopicSelector::Exact(topic) => {
                    sql.push_str(&format!(" AND topic = {}", parameter()));
                    texts.push(topic);
                }
                TopicSelector::Prefix(prefix) => {
                    let p = parameter();
                    sql.push_str(&format!(" AND substr(topic, 1, length({p})) = {p}"));
                    texts.push(prefix);
                }
            }
        }
        for field in &query.fields {
            let (path, value) = (parameter(), parameter());
            // Both compare the member's value as text, with JSON's true and false spelled as
            // such (SQLite's json_extract alone would give 1 and 0).
            let member = match self.backend {
                Backend::Sqlite => format!(
                    "CASE json_type(body_json, {path}) WHEN 'true' THEN 'true' \
                     WHEN 'false' THEN 'false' \
                     ELSE CAST(json_extract(body_json, {path}) AS TEXT) END"
                ),
                Backend::Postgres => format!("(body_json::jsonb ->> {path})"),
            };
            sql.push_str(&format!(
                " AND body_json IS NOT NULL AND {member} = {value}"
            ));
            texts.push(match self.backend {
                Backend::Sqlite => format!("$.\"{}\"", field.name()),
                Backend::Postgres => field.name().to_owned(),
            });
            texts.push(field.value.clone());
        }
        let (compare, direction) = match query.order {
            Order::NewestFirst => ("<", "DESC"),
            Order::OldestFirst => (">", "ASC"),
        };
        let cursor = query.after;
        if cursor.is_some() {
            let (at, sequence) = (parameter(), parameter());
            sql.push_str(&format!(
                " AND (received_at, sequence) {compare} ({at}, {sequence})"
            ));
        }
        let limit_parameter = parameter();
        sql.push_str(&format!(
            " ORDER BY received_at {direction}, sequence {direction} LIMIT {limit_parameter}"
        ));
        let mut statement = sqlx::query(&sql)
            .bind(device_id.as_str())
            .bind(from)
            .bind(to);
        for text in &texts {
            statement = statement.bind(text.as_str());
        }
        if let Some(cursor) = cursor {
            statement = statement
                .bind(cursor.received_at.unix_millis())
                .bind(cursor.sequence);
        }
        let rows = statement
            .bind(i64::from(limit))
            .fetch_all(self.pool)
            .await?;
        rows.iter()
            .map(|row| stored_event(device_id, row))
            .collect()
    }

    /// Deletes up to `limit` events in `scope` received before `cutoff`, oldest first; returns
    /// how many. Retention calls it until it returns less than `limit`, so no transaction grows
    /// large.
    pub async fn delete_received_before(
        &self,
        cutoff: Timestamp,
        scope: RetentionScope<'_>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut models: &[String] = &[];
        let condition = match scope {
            RetentionScope::Model(model) => {
                models = std::slice::from_ref(model);
                " AND EXISTS (SELECT 1 FROM devices d WHERE d.device_id = e.device_id AND d.model = $3)"
                    .to_owned()
            }
            RetentionScope::AllBut([]) => String::new(),
            RetentionScope::AllBut(except) => {
                models = except;
                let list: Vec<String> = (0..except.len()).map(|i| format!("${}", i + 3)).collect();
                format!(
                    " AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = e.device_id \
                     AND d.model IN ({}))",
                    list.join(", ")
                )
            }
        };
        let sql = format!(
            "DELETE FROM device_events WHERE sequence IN (SELECT e.sequence FROM device_events e \
             WHERE e.received_at < $1{condition} ORDER BY e.received_at LIMIT $2)"
        );
        let mut query = sqlx::query(&sql)
            .bind(cutoff.unix_millis())
            .bind(i64::from(limit));
        for model in models {
            query = query.bind(model.as_str());
        }
        Ok(query.execute(self.pool).await?.rows_affected())
    }
}

/// Whose events a retention delete reaches.
#[derive(Clone, Copy, Debug)]
pub enum RetentionScope<'a> {
    /// Devices of this model.
    Model(&'a String),
    /// Every other device, and events of devices no longer in the registry.
    AllBut(&'a [String]),
}

fn stored_event(device_id: &DeviceId, row: &AnyRow) -> Result<StoredEvent, StoreError> {
    let json: Option<String> = row.try_get("body_json")?;
    let bytes: Option<Vec<u8>> = row.try_get("body_bytes")?;
    let body = match (json, bytes) {
        (Some(text), None) => Body::Json(text),
        (None, Some(bytes)) => Body::Bytes(bytes),
        _ => {
            return Err(StoreError::corrupt(
                "device_events",
                "body_json",
                "exactly one of body_json and body_bytes must be set",
            ));
        }
    };
    let device_time: Option<i64> = row.try_get("device_time")?;
    Ok(StoredEvent {
        sequence: row.try_get("sequence")?,
        event: Event {
            device_id: device_id.clone(),
            message_id: row.try_get("message_id")?,
            topic: row.try_get("topic")?,
            received_at: Timestamp::from_unix_millis(row.try_get("received_at")?),
            device_time: device_time.map(Timestamp::from_unix_millis),
            content_type: row.try_get("content_type")?,
            body,
        },
    })
}

#[async_trait]
impl EventLog for Store {
    async fn append(&self, batch: &[Event]) -> Result<u64, EventLogError> {
        self.events()
            .append(batch)
            .await
            .map_err(|error| EventLogError {
                message: error.to_string(),
                unavailable: error.is_unavailable(),
            })
    }

    async fn reachable(&self) -> bool {
        self.ping().await.is_ok()
    }
}
