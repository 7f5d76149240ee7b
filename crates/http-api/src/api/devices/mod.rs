//! The device API: a person's devices, claiming, ownership, technician grants, device state and
//! commands. Every handler that touches one device gets it through [`access::Authorized`], which
//! asks the policy and hands over a permit for exactly the handler's action.

mod access;
mod commands;
mod events;
mod grants;
mod ownership;
mod state;

use axum::Router;
use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};
use store::DeviceRecord;

pub(crate) use access::Authorized;
pub(crate) use commands::command_json;

use crate::ApiContext;

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/v1/devices", get(ownership::list))
        .route("/api/v1/devices/claim", post(ownership::claim))
        .route("/api/v1/devices/{device_id}", get(ownership::detail))
        .route(
            "/api/v1/devices/{device_id}/release",
            post(ownership::release),
        )
        .route(
            "/api/v1/devices/{device_id}/transfer",
            post(ownership::transfer),
        )
        .route(
            "/api/v1/devices/{device_id}/grants",
            get(grants::list).post(grants::create),
        )
        .route(
            "/api/v1/devices/{device_id}/grants/{grant_id}",
            delete(grants::revoke),
        )
        .route("/api/v1/devices/{device_id}/state", get(state::read))
        .route(
            "/api/v1/devices/{device_id}/state/desired",
            put(state::write_desired),
        )
        .route("/api/v1/devices/{device_id}/events", get(events::list))
        .route(
            "/api/v1/devices/{device_id}/events/export",
            get(events::export),
        )
        .route("/api/v1/devices/{device_id}/events/live", get(events::live))
        .route("/api/v1/devices/{device_id}/commands", post(commands::send))
        .route(
            "/api/v1/devices/{device_id}/commands/{command_id}",
            get(commands::read),
        )
}

/// A device as the API shows it, with what the caller may do to it.
pub(crate) fn device_json(device: &DeviceRecord, permissions: policy::ActionSet) -> Value {
    json!({
        "device_id": device.device_id.as_str(),
        "model": device.model.as_str(),
        "firmware_version": device.firmware_version,
        "online": device.online,
        "last_seen_at": device.last_seen_at.map(model::Timestamp::to_rfc3339),
        "claimed": device.owner.is_some(),
        "permissions": permissions.iter().map(policy::Action::as_str).collect::<Vec<_>>(),
    })
}
