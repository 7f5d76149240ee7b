//! A person's devices: the list, one device, claiming with a claim code, releasing (a factory
//! reset) and transferring to another account.

use std::net::SocketAddr;

use accounts::throttle::ThrottlePolicy;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use model::{DeviceId, Email};
use policy::{Action, Subject, may};
use registry::ClaimCode;
use serde::Deserialize;
use serde_json::{Value, json};
use store::ClaimOutcome;

use super::{Authorized, device_json};
use crate::api::caller::Caller;
use crate::journal::{Origin, actor_of};
use crate::throttle::Attempt;
use crate::{ApiContext, ApiError};

/// The devices the caller owns or was granted, each with what the caller may do to it.
pub(crate) async fn list(
    Caller(subject): Caller,
    State(context): State<ApiContext>,
) -> Result<Json<Value>, ApiError> {
    let user_id = subject.user_id().ok_or_else(|| {
        ApiError::Denied("a service lists devices through /api/v1/authz/devices".into())
    })?;
    let now = context.identity.clock.now();
    let related = context.store.devices().related_to(user_id, now).await?;
    let devices: Vec<Value> = related
        .iter()
        .filter_map(|(device, relation)| {
            let permissions = policy::permissions(&subject, relation, now);
            (!permissions.is_empty()).then(|| device_json(device, permissions))
        })
        .collect();
    Ok(Json(json!({ "devices": devices })))
}

pub(crate) async fn detail(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadStatus>,
) -> Json<Value> {
    let now = context.identity.clock.now();
    let permissions = policy::permissions(access.subject(), &access.relation, now);
    let mut body = device_json(&access.device, permissions);
    body["access"] = access.permit.basis().as_str().into();
    Json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimRequest {
    device_id: String,
    claim_code: String,
}

/// Makes the caller the owner of a device whose claim code they know. Wrong codes are throttled
/// per person and per source address, like logins.
pub(crate) async fn claim(
    Caller(subject): Caller,
    State(context): State<ApiContext>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    origin: Origin,
    Json(request): Json<ClaimRequest>,
) -> Result<Json<Value>, ApiError> {
    let user_id = match &subject {
        Subject::Person {
            user_id,
            token_allows,
            ..
        }
        | Subject::Admin {
            user_id,
            token_allows,
        } => {
            if !token_allows.contains(Action::ManageOwnership) {
                return Err(ApiError::Denied(format!(
                    "the token lacks the {} scope this needs",
                    Action::ManageOwnership.required_scope()
                )));
            }
            *user_id
        }
        Subject::Service { .. } => {
            return Err(ApiError::Denied("only a person can claim a device".into()));
        }
    };
    let device_id = DeviceId::parse(request.device_id.trim())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let code = ClaimCode::parse(&request.claim_code)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let now = context.identity.clock.now();
    let keys = [
        (format!("claim-user:{user_id}"), ThrottlePolicy::PER_ACCOUNT),
        (
            format!("claim-address:{}", peer.ip()),
            ThrottlePolicy::PER_ADDRESS,
        ),
    ];
    let attempt = Attempt::begin(&context.store, keys, now)
        .await?
        .map_err(|retry_after| ApiError::TooManyAttempts { retry_after })?;
    let code_hash = context.devices.hashers.claim_code_hash(&code);
    let devices = context.store.devices();
    match devices.claim(&device_id, &code_hash, user_id, now).await? {
        ClaimOutcome::Claimed => {
            attempt.succeeded(&context.store).await?;
            tracing::info!(%user_id, %device_id, "device claimed");
            let record = claim_record(&context, &subject, &device_id);
            context.audit(&origin, record).await?;
            let (device, relation) = devices
                .relation(&device_id, now)
                .await?
                .ok_or(ApiError::NotFound)?;
            let permissions = policy::permissions(&subject, &relation, now);
            Ok(Json(device_json(&device, permissions)))
        }
        ClaimOutcome::AlreadyClaimed => Err(ApiError::Conflict(
            "this device is already claimed; its owner can release or transfer it".into(),
        )),
        ClaimOutcome::WrongCode => {
            attempt.failed(&context.store).await?;
            tracing::info!(%user_id, peer = %peer.ip(), "claim refused");
            let record = claim_record(&context, &subject, &device_id)
                .outcome(audit::Outcome::Failure)
                .detail(json!({ "reason": "wrong_claim_code" }));
            context.audit(&origin, record).await?;
            Err(ApiError::Denied(
                "the device id or the claim code is wrong".into(),
            ))
        }
    }
}

/// A claim of `device_id` by `subject`.
fn claim_record(context: &ApiContext, subject: &Subject, device_id: &DeviceId) -> audit::Record {
    context
        .audit_record(
            actor_of(subject),
            audit::Action::DeviceClaim,
            audit::Target::new("device", device_id.as_str()),
        )
        .device(device_id.as_str())
}

/// A factory reset: the owner and every grant go, and the device waits for a new claim code
/// from the maker (the old one is used up).
pub(crate) async fn release(
    State(context): State<ApiContext>,
    access: Authorized<may::ManageOwnership>,
) -> Result<StatusCode, ApiError> {
    let now = context.identity.clock.now();
    context.store.devices().release(&access.permit, now).await?;
    tracing::info!(subject = %access.subject(), device_id = %access.device.device_id, "device released");
    let record = access.audit_record(&context, audit::Action::DeviceRelease);
    access.audit(&context, record).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    /// The e-mail address of the account that becomes the owner.
    email: String,
}

pub(crate) async fn transfer(
    State(context): State<ApiContext>,
    access: Authorized<may::ManageOwnership>,
    Json(request): Json<TransferRequest>,
) -> Result<StatusCode, ApiError> {
    let email = Email::parse(&request.email).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let new_owner = context
        .store
        .users()
        .by_email(&email)
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest("there is no account with that e-mail address".into())
        })?;
    if access.device.owner == Some(new_owner.id) {
        return Err(ApiError::BadRequest(
            "that account already owns the device".into(),
        ));
    }
    let now = context.identity.clock.now();
    context
        .store
        .devices()
        .transfer(&access.permit, new_owner.id, now)
        .await?;
    tracing::info!(subject = %access.subject(), device_id = %access.device.device_id, new_owner = %new_owner.id, "device transferred");
    let record = access
        .audit_record(&context, audit::Action::DeviceTransfer)
        .detail(json!({
            "new_owner": { "user_id": new_owner.id.to_string(), "email": new_owner.email.as_str() },
        }));
    access.audit(&context, record).await?;
    Ok(StatusCode::NO_CONTENT)
}
