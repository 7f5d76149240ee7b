//! The JSON API under `/api/v1/`. Every handler gets its caller through an extractor that checks
//! the Bearer token (signature, time, revocation) and what the caller may do, so no handler can
//! forget to.

mod admin;
mod breached;
mod caller;

use axum::Router;
use axum::routing::{get, post};

use crate::ApiContext;

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route(
            "/api/v1/admin/clients",
            get(admin::list_clients).post(admin::create_client),
        )
        // Internal: for Warden's own services running apart. No gateway rule may expose it.
        .route("/internal/breached/{sha1}", get(breached::lookup))
        .route("/internal/breached", post(breached::lookup_many))
}
