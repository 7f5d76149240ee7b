//! `GET /internal/breached/{sha1}` and `POST /internal/breached`: whether a SHA-1, or each of a
//! list of them, is in the breached-password set, for services that run apart from the process
//! holding the filter.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::BreachReader;
use crate::{ApiContext, ApiError};

/// Hashes one `POST` may ask about: a request's time stays under a millisecond or so, and the
/// list fits the default body limit (about 43 bytes of JSON per hash).
pub(crate) const MAX_HASHES_PER_REQUEST: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lookups {
    sha1: Vec<String>,
}

pub(crate) async fn lookup(
    caller: BreachReader,
    State(context): State<ApiContext>,
    Path(sha1_hex): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(sha1) = parse_sha1(&sha1_hex) else {
        return Err(ApiError::BadRequest(
            "the path must end in a SHA-1 as 40 hex digits".into(),
        ));
    };
    let breached = context.identity.breached.contains_sha1(&sha1);
    // The hash is not logged: it is as good as the password for a common one.
    tracing::debug!(client_id = %caller.client_id, "breached-password lookup");
    Ok(Json(json!({ "breached": breached })))
}

/// `{"sha1": [HEX, …]}` → `{"breached": [bool, …]}` in the same order. The filter looks a list up
/// with many memory reads in flight at once, several times faster per hash than one request each.
pub(crate) async fn lookup_many(
    caller: BreachReader,
    State(context): State<ApiContext>,
    Json(request): Json<Lookups>,
) -> Result<Json<Value>, ApiError> {
    if request.sha1.len() > MAX_HASHES_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_HASHES_PER_REQUEST} hashes per request, found {}",
            request.sha1.len()
        )));
    }
    let mut sha1s = Vec::with_capacity(request.sha1.len());
    for (index, sha1_hex) in request.sha1.iter().enumerate() {
        let Some(sha1) = parse_sha1(sha1_hex) else {
            return Err(ApiError::BadRequest(format!(
                "sha1[{index}] is not a SHA-1 as 40 hex digits"
            )));
        };
        sha1s.push(sha1);
    }
    let breached = context.identity.breached.contains_each_sha1(&sha1s);
    // The hashes are not logged, as for a single lookup.
    tracing::debug!(client_id = %caller.client_id, hashes = sha1s.len(), "breached-password lookups");
    Ok(Json(json!({ "breached": breached })))
}

fn parse_sha1(sha1_hex: &str) -> Option<[u8; 20]> {
    let mut sha1 = [0u8; 20];
    (sha1_hex.len() == 40 && hex::decode_to_slice(sha1_hex, &mut sha1).is_ok()).then_some(sha1)
}
