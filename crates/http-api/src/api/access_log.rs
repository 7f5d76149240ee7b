//! Reading the audit journal (docs/audit.md): an owner reads the access log of their device (who
//! did what, when, since they claimed it); admins read and export everything. Technicians read
//! none of it: a device's log needs the permission to manage its grants, which is never granted.

use std::collections::HashMap;

use audit::{Action, Entry, MAX_PAGE, Query as AuditQuery, Target};
use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use model::{Timestamp, UserId};
use policy::may;
use serde_json::{Value, json};
use store::Store;

use super::Authorized;
use super::caller::Admin;
use crate::{ApiContext, ApiError};

/// A page when the caller names no `limit`.
const DEFAULT_PAGE: u32 = 100;
/// Entries one export reads per database query.
const EXPORT_PAGE: u32 = 1_000;

/// `GET /api/v1/devices/{id}/access-log`: what was done to the device and by whom, newest first
/// unless `order=oldest`, since the caller's ownership began.
pub(crate) async fn device_log(
    State(context): State<ApiContext>,
    access: Authorized<may::ManageGrants>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut query = parse(&parameters, false)?;
    query.device = Some(access.device.device_id.as_str().to_owned());
    // An owner reads their own period; what happened under a previous owner is not theirs.
    if let Some(claimed_at) = access.device.claimed_at {
        query.from = Some(query.from.map_or(claimed_at, |from| from.max(claimed_at)));
    }
    let page = context.store.audit().query(&query).await?;
    let emails = emails_of(&context.store, &page).await?;
    let items: Vec<Value> = page
        .iter()
        .map(|entry| owner_view(entry, &emails))
        .collect();
    Ok(Json(
        json!({ "entries": items, "next_cursor": next_cursor(&page, &query) }),
    ))
}

/// `GET /api/v1/admin/audit`: any entries, filtered by device, actor or action.
pub(crate) async fn admin_log(
    admin: Admin,
    State(context): State<ApiContext>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = parse(&parameters, true)?;
    let page = context.store.audit().query(&query).await?;
    admin
        .audit(
            &context,
            Action::AuditRead,
            Target::new("audit", ""),
            json!({ "entries": page.len() }),
        )
        .await?;
    let items: Vec<Value> = page.iter().map(Entry::to_json).collect();
    Ok(Json(
        json!({ "entries": items, "next_cursor": next_cursor(&page, &query) }),
    ))
}

/// `GET /api/v1/admin/audit/export`: every entry the filters select, as NDJSON (one entry per
/// line, with its hashes, so a log pipeline can verify the chain), oldest first unless
/// `order=newest`, streamed page by page.
pub(crate) async fn admin_export(
    admin: Admin,
    State(context): State<ApiContext>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut query = parse(&parameters, true)?;
    if find(&parameters, "limit").is_some() {
        return Err(ApiError::BadRequest(
            "an export has no limit; it streams every entry the filters select".into(),
        ));
    }
    query.limit = EXPORT_PAGE;
    // A log pipeline reads in the order entries were written.
    query.newest_first &= find(&parameters, "order").is_some();
    admin
        .audit(
            &context,
            Action::AuditRead,
            Target::new("audit", ""),
            json!({ "export": "ndjson" }),
        )
        .await?;
    let store = context.store.clone();
    let stream = futures_util::stream::unfold(Some(query), move |query| {
        let store = store.clone();
        async move {
            let mut query = query?;
            let page = match store.audit().query(&query).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "audit export cut short");
                    return None;
                }
            };
            if page.is_empty() {
                return None;
            }
            let mut chunk = String::new();
            for entry in &page {
                chunk.push_str(&entry.to_json().to_string());
                chunk.push('\n');
            }
            let more = page.len() == query.page_size() as usize;
            query.after = page.last().map(|last| last.seq);
            Some((
                Ok::<_, std::convert::Infallible>(chunk),
                more.then_some(query),
            ))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The query the parameters ask for; filters on device, actor and action are for admins.
fn parse(parameters: &[(String, String)], admin: bool) -> Result<AuditQuery, ApiError> {
    let bad = |message: String| ApiError::BadRequest(message);
    let time = |name: &str, text: &str| {
        Timestamp::parse_rfc3339(text).ok_or_else(|| {
            bad(format!(
                "{name} must be an RFC 3339 time, as 2026-12-03T08:00:00Z"
            ))
        })
    };
    let mut query = AuditQuery {
        newest_first: true,
        limit: DEFAULT_PAGE,
        ..AuditQuery::default()
    };
    for (name, value) in parameters {
        match (name.as_str(), admin) {
            ("from", _) => query.from = Some(time("from", value)?),
            ("to", _) => query.to = Some(time("to", value)?),
            ("order", _) => {
                query.newest_first = match value.as_str() {
                    "newest" => true,
                    "oldest" => false,
                    _ => return Err(bad("order must be newest or oldest".into())),
                }
            }
            ("cursor", _) => {
                query.after = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|seq| *seq >= 0)
                        .ok_or_else(|| bad("cursor must be a next_cursor from a page".into()))?,
                );
            }
            ("limit", _) => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|limit| (1..=MAX_PAGE).contains(limit))
                    .ok_or_else(|| bad(format!("limit must be a number from 1 to {MAX_PAGE}")))?;
            }
            ("device", true) => query.device = Some(value.clone()),
            ("action", true) => {
                Action::parse(value).ok_or_else(|| bad(format!("unknown action {value:?}")))?;
                query.action = Some(value.clone());
            }
            ("actor", true) => {
                let (kind, id) = value
                    .split_once(':')
                    .ok_or_else(|| bad("actor must be KIND:ID, as user:…, client:…".into()))?;
                query.actor = Some((kind.to_owned(), id.to_owned()));
            }
            (other, _) => return Err(bad(format!("unknown parameter {other:?}"))),
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        return Err(bad("from must be before to".into()));
    }
    Ok(query)
}

fn find<'a>(parameters: &'a [(String, String)], name: &str) -> Option<&'a str> {
    parameters
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Where the next page starts, when this one was full.
fn next_cursor(page: &[Entry], query: &AuditQuery) -> Option<String> {
    (page.len() == query.page_size() as usize)
        .then(|| page.last().map(|last| last.seq.to_string()))
        .flatten()
}

/// The e-mail addresses of the people a page names without one, looked up once each.
async fn emails_of(store: &Store, page: &[Entry]) -> Result<HashMap<String, String>, ApiError> {
    let mut emails = HashMap::new();
    for entry in page {
        let actor = &entry.record.actor;
        if actor.kind() != "user" || actor.label().is_some() || emails.contains_key(actor.id()) {
            continue;
        }
        if let Ok(user_id) = actor.id().parse::<UserId>()
            && let Some(user) = store.users().by_id(user_id).await?
        {
            emails.insert(actor.id().to_owned(), user.email.to_string());
        }
    }
    Ok(emails)
}

/// What an owner sees of an entry: who, what, when and how it ended; not where the actor was.
fn owner_view(entry: &Entry, emails: &HashMap<String, String>) -> Value {
    let record = &entry.record;
    let email = record
        .actor
        .label()
        .or_else(|| emails.get(record.actor.id()).map(String::as_str));
    json!({
        "seq": entry.seq,
        "at": record.at.to_rfc3339_millis(),
        "actor": { "kind": record.actor.kind(), "id": record.actor.id(), "email": email },
        "action": record.action,
        "outcome": record.outcome.as_str(),
        "detail": record.detail_json(),
    })
}
