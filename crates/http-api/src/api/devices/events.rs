//! A device's events over HTTP: pages by time with a cursor, exports as NDJSON or CSV that are
//! streamed page by page, never built in memory, and a live tail as Server-Sent Events.
//!
//! People see the events of the current ownership only: an owner, and the technicians they
//! granted, read what arrived since the device was claimed, not what a previous owner's device
//! sent. Admins and services read all of it.

use std::time::Duration;

use axum::Json;
use axum::body::Body as ResponseBody;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use events::{Body, Cursor, EventQuery, FieldFilter, MAX_PAGE, Order, TopicSelector};
use model::{DeviceId, Timestamp};
use policy::{Subject, may};
use serde_json::{Value, json};
use store::{Store, StoredEvent};

use super::Authorized;
use crate::{ApiContext, ApiError};

/// A page when the caller names no `limit`.
const DEFAULT_PAGE: u32 = 100;
/// Rows one export reads per database query.
const EXPORT_PAGE: u32 = 1_000;

/// `GET /api/v1/devices/{id}/events`: one page, and the cursor of the next when there may be one.
pub(crate) async fn list(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadEvents>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let request = EventsRequest::parse(&parameters, &["limit"])?;
    let limit = match find(&parameters, "limit") {
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be a number from 1 to {MAX_PAGE}"))
            })?,
        None => DEFAULT_PAGE,
    };
    let not_before = not_before(&access);
    let page = context
        .store
        .events()
        .page(access.permit.device_id(), &request.query, not_before, limit)
        .await?;
    let next_cursor = (page.len() == limit as usize)
        .then(|| page.last().map(|last| last.cursor().encode()))
        .flatten();
    let items: Vec<Value> = page.iter().map(event_json).collect();
    Ok(Json(json!({ "events": items, "next_cursor": next_cursor })))
}

/// `GET /api/v1/devices/{id}/events/export?format=ndjson|csv`: every event the query selects,
/// streamed. A database error midway ends the stream early, which the client sees as a body
/// cut short (an NDJSON or CSV reader reports the incomplete last line).
pub(crate) async fn export(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadEvents>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let request = EventsRequest::parse(&parameters, &["format"])?;
    let format = match find(&parameters, "format").unwrap_or("ndjson") {
        "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::BadRequest(format!(
                "format {other:?} is not offered: ndjson or csv"
            )));
        }
    };
    let export = Export {
        store: context.store.clone(),
        device_id: access.permit.device_id().clone(),
        query: request.query,
        not_before: not_before(&access),
        format,
        header_sent: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(export, |mut export| async move {
        let chunk = export.next_chunk().await?;
        Some((chunk, export))
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        ResponseBody::from_stream(stream),
    )
        .into_response())
}

/// How often a live reader looks for events committed by other replicas; commits in this
/// process wake it at once.
const LIVE_POLL: Duration = Duration::from_secs(1);
/// Events one live poll reads at most.
const LIVE_PAGE: u32 = 100;

/// `GET /api/v1/devices/{id}/events/live`: new events as Server-Sent Events, oldest first, each
/// with its cursor as the event id. A client that reconnects with `Last-Event-ID` (or `cursor`)
/// continues where it left off; without either, the stream starts after the newest event. The
/// stream ends after the access token lifetime, so that a reconnect proves the caller's access
/// again.
pub(crate) async fn live(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadEvents>,
    headers: HeaderMap,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let request = EventsRequest::parse(&parameters, &[])?;
    let mut query = request.query;
    if parameters.iter().any(|(name, _)| name == "order") {
        return Err(ApiError::BadRequest(
            "a live stream is always oldest first; leave out order".into(),
        ));
    }
    query.order = Order::OldestFirst;
    let device_id = access.permit.device_id().clone();
    let not_before = not_before(&access);
    let resume = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| Cursor::decode(text).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("Last-Event-ID is not a cursor this API gave out".into())
                })
        })
        .transpose()?;
    if let Some(cursor) = resume {
        query.after = Some(cursor);
    }
    if query.after.is_none() {
        // Only what arrives from now on: start after the newest event there is.
        let newest = EventQuery {
            order: Order::NewestFirst,
            ..query.clone()
        };
        let last = context
            .store
            .events()
            .page(&device_id, &newest, not_before, 1)
            .await?;
        query.after = Some(last.first().map_or(
            Cursor {
                received_at: Timestamp::from_unix_millis(i64::MIN),
                sequence: i64::MIN,
            },
            StoredEvent::cursor,
        ));
    }
    let tail = Tail {
        store: context.store.clone(),
        device_id,
        query,
        not_before,
        committed: context.devices.events.committed(),
        waiting: std::collections::VecDeque::new(),
        ends_at: tokio::time::Instant::now() + context.oauth.access_token_lifetime,
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = tail.next_event().await?;
        Some((Ok::<_, std::convert::Infallible>(event), tail))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// A live reader's place: what it asks, where it is, and events read but not yet sent.
struct Tail {
    store: Store,
    device_id: DeviceId,
    query: EventQuery,
    not_before: Option<Timestamp>,
    committed: tokio::sync::watch::Receiver<u64>,
    waiting: std::collections::VecDeque<StoredEvent>,
    ends_at: tokio::time::Instant,
}

impl Tail {
    /// The next event to send; `None` ends the stream (its time is up, or the database failed).
    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(stored) = self.waiting.pop_front() {
                let data = event_json(&stored).to_string();
                return Some(
                    SseEvent::default()
                        .event("device-event")
                        .id(stored.cursor().encode())
                        .data(data),
                );
            }
            if tokio::time::Instant::now() >= self.ends_at {
                return None;
            }
            let page = match self
                .store
                .events()
                .page(&self.device_id, &self.query, self.not_before, LIVE_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, device_id = %self.device_id, "live events ended");
                    return None;
                }
            };
            if let Some(last) = page.last() {
                self.query.after = Some(last.cursor());
            }
            let full = page.len() == LIVE_PAGE as usize;
            self.waiting.extend(page);
            if self.waiting.is_empty() && !full {
                tokio::select! {
                    _ = self.committed.changed() => {}
                    () = tokio::time::sleep(LIVE_POLL) => {}
                    () = tokio::time::sleep_until(self.ends_at) => {}
                }
            }
        }
    }
}

fn not_before(access: &Authorized<may::ReadEvents>) -> Option<Timestamp> {
    match access.subject() {
        Subject::Person { .. } => Some(
            access
                .device
                .claimed_at
                .unwrap_or(Timestamp::from_unix_millis(i64::MAX)),
        ),
        Subject::Admin { .. } | Subject::Service { .. } => None,
    }
}

/// The query parameters both endpoints share: `from`, `to` (RFC 3339), `order`
/// (`newest`|`oldest`), `topic`, `cursor`, and `field.NAME=VALUE`. Any other parameter but
/// `extra` is refused, so that a misspelt filter never silently widens an answer.
struct EventsRequest {
    query: EventQuery,
}

impl EventsRequest {
    fn parse(parameters: &[(String, String)], extra: &[&str]) -> Result<Self, ApiError> {
        let bad = |message: String| ApiError::BadRequest(message);
        let time = |name: &str, text: &str| {
            Timestamp::parse_rfc3339(text).ok_or_else(|| {
                bad(format!(
                    "{name} must be an RFC 3339 time, as 2026-12-03T08:00:00Z"
                ))
            })
        };
        let mut query = EventQuery::default();
        for (name, value) in parameters {
            match name.as_str() {
                "from" => query.from = Some(time("from", value)?),
                "to" => query.to = Some(time("to", value)?),
                "order" => {
                    query.order = match value.as_str() {
                        "newest" => Order::NewestFirst,
                        "oldest" => Order::OldestFirst,
                        _ => return Err(bad("order must be newest or oldest".into())),
                    }
                }
                "topic" => {
                    query.topic =
                        Some(TopicSelector::parse(value).map_err(|error| bad(error.to_string()))?);
                }
                "cursor" => {
                    query.after =
                        Some(Cursor::decode(value).map_err(|error| bad(error.to_string()))?);
                }
                other if extra.contains(&other) => {}
                other => match other.strip_prefix("field.") {
                    Some(field) => query.fields.push(
                        FieldFilter::new(field, value).map_err(|error| bad(error.to_string()))?,
                    ),
                    None => {
                        return Err(bad(format!(
                            "unknown parameter {other:?}: from, to, order, topic, cursor, field.NAME, {}",
                            extra.join(", ")
                        )));
                    }
                },
            }
        }
        let query = query.checked().map_err(|error| bad(error.to_string()))?;
        Ok(Self { query })
    }
}

fn find<'a>(parameters: &'a [(String, String)], name: &str) -> Option<&'a str> {
    parameters
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// An event as the API shows it: a JSON payload as JSON, any other as base64.
fn event_json(stored: &StoredEvent) -> Value {
    let event = &stored.event;
    let (payload, payload_base64) = match &event.body {
        // Stored JSON was parsed on receipt; should it not parse now, it is shown as bytes.
        Body::Json(text) => match serde_json::from_str::<Value>(text) {
            Ok(value) => (value, Value::Null),
            Err(_) => (Value::Null, STANDARD.encode(text).into()),
        },
        Body::Bytes(bytes) => (Value::Null, STANDARD.encode(bytes).into()),
    };
    json!({
        "message_id": event.message_id,
        "topic": event.topic,
        "received_at": event.received_at.to_rfc3339_millis(),
        "device_time": event.device_time.map(Timestamp::to_rfc3339_millis),
        "content_type": event.content_type,
        "payload": payload,
        "payload_base64": payload_base64,
    })
}

#[derive(Clone, Copy)]
enum Format {
    Ndjson,
    Csv,
}

const CSV_HEADER: &str =
    "received_at,device_time,topic,message_id,content_type,payload_encoding,payload\r\n";

/// An export in progress: reads one page per chunk and remembers where it ended.
struct Export {
    store: Store,
    device_id: DeviceId,
    query: EventQuery,
    not_before: Option<Timestamp>,
    format: Format,
    header_sent: bool,
    done: bool,
}

impl Export {
    /// The next piece of the body; `None` when the export is complete (or failed, logged).
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, std::io::Error>> {
        if self.done {
            return None;
        }
        let mut chunk = Vec::new();
        if !self.header_sent {
            self.header_sent = true;
            if let Format::Csv = self.format {
                chunk.extend_from_slice(CSV_HEADER.as_bytes());
            }
        }
        let page = match self
            .store
            .events()
            .page(&self.device_id, &self.query, self.not_before, EXPORT_PAGE)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, device_id = %self.device_id, "event export cut short");
                self.done = true;
                return Some(Err(std::io::Error::other(error)));
            }
        };
        self.done = page.len() < EXPORT_PAGE as usize;
        self.query.after = page.last().map(StoredEvent::cursor);
        for stored in &page {
            match self.format {
                Format::Ndjson => {
                    chunk.extend_from_slice(event_json(stored).to_string().as_bytes());
                    chunk.push(b'\n');
                }
                Format::Csv => csv_row(&mut chunk, stored),
            }
        }
        Some(Ok(chunk))
    }
}

/// One CSV record (RFC 4180: CRLF line ends, fields quoted when they hold a comma, quote or
/// line break, quotes doubled).
fn csv_row(out: &mut Vec<u8>, stored: &StoredEvent) {
    let event = &stored.event;
    let (encoding, payload) = match &event.body {
        Body::Json(text) => ("json", text.clone()),
        Body::Bytes(bytes) => ("base64", STANDARD.encode(bytes)),
    };
    let fields = [
        event.received_at.to_rfc3339_millis(),
        event
            .device_time
            .map(Timestamp::to_rfc3339_millis)
            .unwrap_or_default(),
        event.topic.clone(),
        event.message_id.clone(),
        event.content_type.clone(),
        encoding.to_owned(),
        payload,
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(field.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(field.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}
