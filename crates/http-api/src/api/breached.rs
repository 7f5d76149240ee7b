//! `GET /internal/breached/{sha1}`: whether a SHA-1 is in the breached-password set, for services
//! that run apart from the process holding the filter.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::caller::BreachReader;
use crate::{ApiContext, ApiError};

pub(crate) async fn lookup(
    caller: BreachReader,
    State(context): State<ApiContext>,
    Path(sha1_hex): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut sha1 = [0u8; 20];
    if sha1_hex.len() != 40 || hex::decode_to_slice(&sha1_hex, &mut sha1).is_err() {
        return Err(ApiError::BadRequest(
            "the path must end in a SHA-1 as 40 hex digits".into(),
        ));
    }
    let breached = context.identity.breached.contains_sha1(&sha1);
    // The hash is not logged: it is as good as the password for a common one.
    tracing::debug!(client_id = %caller.client_id, "breached-password lookup");
    Ok(Json(json!({ "breached": breached })))
}
