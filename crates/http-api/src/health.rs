//! Liveness and readiness, for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::{ApiContext, ApiError};

/// The process is up and serving HTTP; says nothing about its dependencies.
pub(crate) async fn alive() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// The process can do its work: the database answers. 503 otherwise, so traffic goes elsewhere.
pub(crate) async fn ready(State(context): State<ApiContext>) -> Result<Json<Value>, ApiError> {
    context.store.ping().await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::Unavailable {
            what: "the database",
        }
    })?;
    Ok(Json(json!({"status": "ready"})))
}
