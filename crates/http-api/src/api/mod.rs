//! The JSON API under `/api/v1/`. Every handler gets its caller through an extractor that checks
//! the Bearer token (signature, time, revocation) and what the caller may do, so no handler can
//! forget to.

mod access_log;
mod admin;
mod authz;
mod breached;
pub(crate) mod caller;
mod devices;
mod factory;

use axum::Router;
use axum::routing::{get, post, put};

pub use caller::subject_of;
pub(crate) use devices::{Authorized, command_json};

use crate::ApiContext;

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route(
            "/api/v1/admin/clients",
            get(admin::list_clients).post(admin::create_client),
        )
        .route(
            "/api/v1/admin/devices",
            get(factory::list).post(factory::create),
        )
        .route("/api/v1/admin/users", get(admin::list_users))
        .route("/api/v1/admin/certificates", get(factory::certificates))
        .route(
            "/api/v1/admin/devices/{device_id}/claim-code",
            post(factory::new_claim_code),
        )
        .route(
            "/api/v1/admin/devices/{device_id}/tags",
            get(factory::tags).put(factory::set_tags),
        )
        .route(
            "/api/v1/admin/devices/{device_id}/certificate",
            post(factory::issue_certificate),
        )
        .route(
            "/api/v1/admin/models/{model}/settings-schema",
            put(factory::set_settings_schema).delete(factory::remove_settings_schema),
        )
        .route("/api/v1/admin/audit", get(access_log::admin_log))
        .route("/api/v1/admin/audit/export", get(access_log::admin_export))
        .route(
            "/api/v1/devices/{device_id}/access-log",
            get(access_log::device_log),
        )
        .route("/api/v1/authz/check", post(authz::check))
        .route("/api/v1/authz/devices", post(authz::devices))
        .merge(devices::routes())
}

/// For Warden's own services running apart, on the mutual-TLS listener only: no gateway rule
/// exposes them on the public one.
pub(crate) fn internal_routes() -> Router<ApiContext> {
    Router::new()
        .route("/internal/breached/{sha1}", get(breached::lookup))
        .route("/internal/breached", post(breached::lookup_many))
}
