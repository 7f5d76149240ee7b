//! Commands to a device over HTTP: sent with a time to live, answered by the device, and read
//! back by id. A sender may wait (briefly) for the answer in the same request.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::Timestamp;
use policy::{Permission, Permit, may};
use registry::command::TTL_RANGE;
use registry::{CommandName, CommandStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use store::CommandRecord;

use super::Authorized;
use crate::{ApiContext, ApiError};

/// How often a waiting sender looks for an answer given to another replica; answers given to this
/// one wake it at once.
const POLL: Duration = Duration::from_millis(500);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCommand {
    name: String,
    #[serde(default)]
    payload: Value,
    /// How long the device has to answer; 60 s unless given.
    ttl_seconds: Option<u64>,
    /// How long to wait for the answer before answering 202; none unless given.
    #[serde(default)]
    wait_seconds: u64,
}

pub(crate) async fn send(
    State(context): State<ApiContext>,
    access: Authorized<may::SendCommands>,
    Json(request): Json<NewCommand>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = CommandName::parse(&request.name)
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let ttl = Duration::from_secs(request.ttl_seconds.unwrap_or(60));
    if ttl < TTL_RANGE.0 || ttl > TTL_RANGE.1 {
        return Err(ApiError::BadRequest(format!(
            "ttl_seconds must be between {} and {}",
            TTL_RANGE.0.as_secs(),
            TTL_RANGE.1.as_secs()
        )));
    }
    let max_wait = context.devices.max_command_wait;
    if Duration::from_secs(request.wait_seconds) > max_wait {
        return Err(ApiError::BadRequest(format!(
            "wait_seconds can be at most {}",
            max_wait.as_secs()
        )));
    }
    let now = context.identity.clock.now();
    let command = CommandRecord {
        command_id: format!("cmd_{}", uuid::Uuid::now_v7().simple()),
        device_id: access.device.device_id.clone(),
        name,
        payload: request.payload,
        sent_by: access.subject().to_string(),
        created_at: now,
        expires_at: now.plus(ttl),
        response: None,
        answered_at: None,
    };
    context
        .store
        .devices()
        .insert_command(&access.permit, &command)
        .await?;
    tracing::info!(subject = %access.subject(), device_id = %command.device_id, command = %command.name, command_id = %command.command_id, "command sent");
    let record = access
        .audit_record(&context, audit::Action::DeviceCommand)
        .detail(json!({ "command": command.name.as_str(), "command_id": command.command_id }));
    access.audit(&context, record).await?;
    if let Some(messages) = context.devices.messages() {
        messages.command(&command).await;
    }
    let wait = Duration::from_secs(request.wait_seconds).min(ttl);
    let command = if wait.is_zero() {
        command
    } else {
        wait_for_answer(&context, &access.permit, &command.command_id, wait).await?
    };
    let now = context.identity.clock.now();
    let status = match command.status(now) {
        CommandStatus::Pending => StatusCode::ACCEPTED,
        CommandStatus::Answered | CommandStatus::Expired => StatusCode::OK,
    };
    Ok((status, Json(command_json(&command, now))))
}

pub(crate) async fn read(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadStatus>,
    Path((_, command_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let command = context
        .store
        .devices()
        .command(&access.permit, &command_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(command_json(&command, context.identity.clock.now())))
}

async fn wait_for_answer<P: Permission>(
    context: &ApiContext,
    permit: &Permit<P>,
    command_id: &str,
    wait: Duration,
) -> Result<CommandRecord, ApiError> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the read, so an answer between the read and the wait still wakes us.
        let answered = context.devices.command_answers.notified();
        tokio::pin!(answered);
        answered.as_mut().enable();
        let command = context
            .store
            .devices()
            .command(permit, command_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let now = context.identity.clock.now();
        if command.status(now) != CommandStatus::Pending || tokio::time::Instant::now() >= until {
            return Ok(command);
        }
        tokio::select! {
            () = &mut answered => {}
            () = tokio::time::sleep(POLL.min(until - tokio::time::Instant::now())) => {}
        }
    }
}

pub(crate) fn command_json(command: &CommandRecord, now: Timestamp) -> Value {
    json!({
        "command_id": command.command_id,
        "device_id": command.device_id.as_str(),
        "name": command.name.as_str(),
        "payload": command.payload,
        "status": command.status(now).as_str(),
        "created_at": command.created_at.to_rfc3339(),
        "expires_at": command.expires_at.to_rfc3339(),
        "response": command.response,
        "answered_at": command.answered_at.map(Timestamp::to_rfc3339),
    })
}
