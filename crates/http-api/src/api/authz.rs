//! The policy as a service, for parts that decide apart from this API (the gateway, the MQTT
//! broker hooks, services running alone): "may S do A on D" and "on which devices may S do A".
//!
//! The subject is the caller itself, or the bearer of `access_token` when a service with the
//! `authz:check` scope asks on someone's behalf.

use axum::Json;
use axum::extract::State;
use model::DeviceId;
use policy::{Action, DeviceRelation, Subject};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{Caller, PolicyReader, token_subject};
use crate::{ApiContext, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckRequest {
    /// The subject's access token; without it the caller asks about itself.
    access_token: Option<String>,
    action: String,
    device_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListRequest {
    access_token: Option<String>,
    action: String,
}

/// `{"allowed": true, "basis": "owner"}` or `{"allowed": false, "reason": "…"}`.
pub(crate) async fn check(
    State(context): State<ApiContext>,
    caller: Caller,
    reader: Result<PolicyReader, ApiError>,
    Json(request): Json<CheckRequest>,
) -> Result<Json<Value>, ApiError> {
    let subject = subject(&context, caller, reader, request.access_token.as_deref()).await?;
    let Some(subject) = subject else {
        return Ok(Json(
            json!({"allowed": false, "reason": "the token is not active"}),
        ));
    };
    let action = parse_action(&request.action)?;
    let now = context.identity.clock.now();
    let relation = match DeviceId::parse(&request.device_id) {
        Ok(device_id) => context.store.devices().relation(&device_id, now).await?,
        Err(_) => None,
    };
    let Some((_, relation)) = relation else {
        return Ok(Json(json!({"allowed": false, "reason": "no such device"})));
    };
    Ok(Json(
        match policy::decide(&subject, action, &relation, now) {
            Ok(basis) => json!({"allowed": true, "basis": basis.as_str()}),
            Err(denial) => json!({"allowed": false, "reason": denial.to_string()}),
        },
    ))
}

/// `{"all_devices": true}` when the subject's rules reach every device (admins and services, for
/// their actions); otherwise `{"all_devices": false, "device_ids": […]}`.
pub(crate) async fn devices(
    State(context): State<ApiContext>,
    caller: Caller,
    reader: Result<PolicyReader, ApiError>,
    Json(request): Json<ListRequest>,
) -> Result<Json<Value>, ApiError> {
    let subject = subject(&context, caller, reader, request.access_token.as_deref()).await?;
    let action = parse_action(&request.action)?;
    let Some(subject) = subject else {
        return Ok(Json(json!({"all_devices": false, "device_ids": []})));
    };
    let now = context.identity.clock.now();
    // A device nobody owns or was granted: if the rules allow the action there, they allow it on
    // every device.
    let unrelated = DeviceRelation {
        device_id: DeviceId::parse("any").map_err(|e| ApiError::Internal(Box::new(e)))?,
        owner: None,
        grants: Vec::new(),
    };
    if policy::decide(&subject, action, &unrelated, now).is_ok() {
        return Ok(Json(json!({"all_devices": true})));
    }
    let mut device_ids = Vec::new();
    if let Some(user_id) = subject.user_id() {
        for (device, relation) in context.store.devices().related_to(user_id, now).await? {
            if policy::decide(&subject, action, &relation, now).is_ok() {
                device_ids.push(device.device_id.as_str().to_owned());
            }
        }
    }
    Ok(Json(
        json!({"all_devices": false, "device_ids": device_ids}),
    ))
}

/// The subject asked about: `None` when the presented token is not active.
async fn subject(
    context: &ApiContext,
    Caller(caller): Caller,
    reader: Result<PolicyReader, ApiError>,
    access_token: Option<&str>,
) -> Result<Option<Subject>, ApiError> {
    let Some(token) = access_token else {
        return Ok(Some(caller));
    };
    let reader = reader.map_err(|_| {
        ApiError::Denied("asking about another token needs the authz:check scope".into())
    })?;
    let subject = token_subject(context, token).await?;
    if subject.is_none() {
        tracing::info!(client_id = %reader.client_id, "policy asked about an inactive token");
    }
    Ok(subject)
}

fn parse_action(name: &str) -> Result<Action, ApiError> {
    Action::parse(name).map_err(|error| ApiError::BadRequest(error.to_string()))
}
