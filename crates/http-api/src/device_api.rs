//! What a device does over HTTPS on the device listener, where it has already shown a
//! certificate from Warden's CA: read its desired settings, report its state, fetch the commands
//! waiting for it and answer them. (Over MQTT the same happens on the device's topics.)
//!
//! Every request proves both of the device's credentials: its certificate (unrevoked, a device
//! certificate) and its password, as HTTP Basic with the device id as the user name.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use events::{Event, MessageProperties};
use model::DeviceId;
use pki::CertificateKind;
use registry::DevicePassword;
use serde_json::{Value, json};
use store::AnswerOutcome;

use crate::api::command_json;
use crate::pki::{PeerCertificate, presented_record};
use crate::{ApiContext, ApiError};

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/device/state", get(read_state))
        .route("/device/state/reported", put(report_state))
        .route("/device/commands", get(pending_commands))
        .route("/device/commands/{command_id}/response", post(answer))
}

/// A device that proved its certificate and its password; the proof also marks it seen.
#[derive(Debug)]
pub(crate) struct AuthenticatedDevice {
    pub device_id: DeviceId,
}

impl FromRequestParts<ApiContext> for AuthenticatedDevice {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let certificate = parts.extensions.get::<PeerCertificate>().cloned();
        let (user, password) = basic_credentials(parts).ok_or(ApiError::Unauthorized)?;
        let device_id = authenticate_device(
            context,
            certificate
                .as_ref()
                .map(|PeerCertificate(der)| der.as_ref()),
            &user,
            &password,
        )
        .await?;
        Ok(Self { device_id })
    }
}

/// A device's two credentials, over HTTPS or MQTT: the certificate the TLS handshake verified (in
/// the inventory, unrevoked, a device certificate) and the password, presented under the
/// certificate's device id. A success marks the device seen.
pub async fn authenticate_device(
    context: &ApiContext,
    certificate: Option<&[u8]>,
    user: &str,
    password: &str,
) -> Result<DeviceId, ApiError> {
    let record = presented_record(context, certificate).await?;
    let certificate = &record.certificate;
    if certificate.kind != CertificateKind::Device {
        return Err(ApiError::Denied("this is for devices' certificates".into()));
    }
    let device_id = DeviceId::parse(&certificate.subject)
        .map_err(|_| ApiError::Internal("an inventory subject does not parse".into()))?;
    if user != device_id.as_str() {
        return Err(ApiError::Denied(
            "the user name must be the id in the certificate".into(),
        ));
    }
    let stored = context.store.devices().password_hash(&device_id).await?;
    let password = DevicePassword::from_presented(password);
    match stored {
        Some(hash) if context.devices.hashers.password_matches(&password, &hash) => {
            let now = context.identity.clock.now();
            context.store.devices().seen(&device_id, now).await?;
            Ok(device_id)
        }
        _ => {
            tracing::info!(%device_id, "device password refused");
            Err(ApiError::Unauthorized)
        }
    }
}

/// Sends a device that just connected what it must find retained: its desired settings and the
/// firmware offer it has not finished, from the database. A broker that keeps retained messages
/// only in memory lost them when it restarted; sending them again is harmless, since a device
/// takes desired settings by version and an offer once per release.
pub async fn redeliver(context: &ApiContext, device_id: &DeviceId) -> Result<(), ApiError> {
    let Some(messages) = context.devices.messages() else {
        return Ok(());
    };
    let state = context.store.devices().state_of(device_id).await?;
    if state.desired_version > 0 {
        messages
            .desired(device_id, state.desired_version, &state.desired)
            .await;
    }
    let firmware = context.store.firmware();
    if let Some(update) = firmware.open_update(device_id).await?
        && let Some(release) = firmware.release(&update.release_id).await?
    {
        let offer = crate::firmware::offer_message(&release, update.allow_downgrade);
        messages.ota(device_id, &offer).await;
    }
    Ok(())
}

/// Stores a device's report of its whole state (a JSON object), replacing the last one.
pub async fn record_report(
    context: &ApiContext,
    device_id: &DeviceId,
    reported: &Value,
) -> Result<(), ApiError> {
    if !reported.is_object() {
        return Err(ApiError::BadRequest(
            "reported state must be a JSON object".into(),
        ));
    }
    let now = context.identity.clock.now();
    context
        .store
        .devices()
        .report_state(device_id, reported, now)
        .await?;
    Ok(())
}

/// Records a device's answer to one of its commands, once and only while the command lives, and
/// wakes the senders waiting on this replica. Returns the command's name.
pub async fn record_answer(
    context: &ApiContext,
    device_id: &DeviceId,
    command_id: &str,
    response: &Value,
) -> Result<String, ApiError> {
    let now = context.identity.clock.now();
    let outcome = context
        .store
        .devices()
        .answer_command(device_id, command_id, response, now)
        .await?;
    match outcome {
        AnswerOutcome::Recorded { name } => {
            context.devices.command_answers.notify_waiters();
            Ok(name)
        }
        AnswerOutcome::AlreadyAnswered => Err(ApiError::Conflict(
            "the command was already answered".into(),
        )),
        AnswerOutcome::Expired => Err(ApiError::Conflict(
            "the command expired before this answer came".into(),
        )),
        AnswerOutcome::Unknown => Err(ApiError::NotFound),
    }
}

fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let header = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = model::authorization::credentials(header, "Basic")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The desired settings and their version; the device applies them and reports back.
async fn read_state(
    State(context): State<ApiContext>,
    device: AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let state = context.store.devices().state_of(&device.device_id).await?;
    Ok(Json(json!({
        "desired": {"version": state.desired_version, "settings": state.desired},
    })))
}

/// The device's whole reported state (a JSON object), replacing the last report.
async fn report_state(
    State(context): State<ApiContext>,
    device: AuthenticatedDevice,
    Json(reported): Json<Value>,
) -> Result<StatusCode, ApiError> {
    record_report(&context, &device.device_id, &reported).await?;
    store_event(&context, &device.device_id, "state/reported", &reported).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The unanswered, unexpired commands for the device, oldest first.
async fn pending_commands(
    State(context): State<ApiContext>,
    device: AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let now = context.identity.clock.now();
    let commands = context
        .store
        .devices()
        .pending_commands(&device.device_id, now)
        .await?;
    let items: Vec<Value> = commands
        .iter()
        .map(|command| command_json(command, now))
        .collect();
    Ok(Json(json!({ "commands": items })))
}

/// The device's answer to one command (any JSON), accepted once and only while the command lives.
async fn answer(
    State(context): State<ApiContext>,
    device: AuthenticatedDevice,
    Path(command_id): Path<String>,
    Json(response): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let name = record_answer(&context, &device.device_id, &command_id, &response).await?;
    // The same message the device would have published over MQTT.
    let message = json!({"command_id": command_id, "response": response});
    let tail = format!("commands/{name}/response");
    store_event(&context, &device.device_id, &tail, &message).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores what the device sent over HTTPS as the event its MQTT twin would be, after it was
/// applied and before the device hears "done". The store and the application are separate
/// transactions: a crash between them leaves an applied message without its event; a report
/// sent again restores it, an answer sent again is refused as already given (docs/events.md).
async fn store_event(
    context: &ApiContext,
    device_id: &DeviceId,
    tail: &str,
    message: &Value,
) -> Result<(), ApiError> {
    let event = Event::received(
        device_id.clone(),
        format!("devices/{device_id}/{tail}"),
        message.to_string().into_bytes(),
        MessageProperties::default(),
        context.identity.clock.now(),
    );
    context
        .devices
        .events
        .record(event)
        .await
        .map_err(|_| ApiError::Unavailable {
            what: "event storage",
        })
}
