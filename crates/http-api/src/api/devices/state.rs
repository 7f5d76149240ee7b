//! Device state over HTTP: desired settings (versioned; written with `If-Match`) and the state the
//! device reported, with the delta still to apply.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use policy::may;
use registry::{SettingsSchema, check_settings_shape, delta};
use serde_json::{Value, json};
use store::DeviceState;

use super::Authorized;
use crate::{ApiContext, ApiError};

/// Desired and reported state and their delta; the `ETag` is the desired version.
pub(crate) async fn read(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadStatus>,
) -> Result<Response, ApiError> {
    let state = context.store.devices().state(&access.permit).await?;
    Ok(with_etag(
        Json(state_json(&state)).into_response(),
        state.desired_version,
    ))
}

/// Replaces the desired settings. The request must carry `If-Match` with the version it was based
/// on (the `ETag` of a read); a stale one is refused with 412 and changes nothing. Settings must
/// be a JSON object, and match the model's schema when it has one.
pub(crate) async fn write_desired(
    State(context): State<ApiContext>,
    access: Authorized<may::WriteSettings>,
    headers: HeaderMap,
    Json(settings): Json<Value>,
) -> Result<Response, ApiError> {
    let expected = expected_version(&headers)?;
    check_settings_shape(&settings).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let devices = context.store.devices();
    if let Some(schema) = devices.settings_schema(&access.device.model).await? {
        // A schema that no longer compiles was stored by an older Warden; it is the operator's to fix.
        let schema = SettingsSchema::compile(&schema)
            .map_err(|error| ApiError::Internal(Box::new(error)))?;
        schema
            .check(&settings)
            .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    }
    let now = context.identity.clock.now();
    let expected = match expected {
        Some(version) => version,
        None => {
            devices
                .state_of(access.permit.device_id())
                .await?
                .desired_version
        }
    };
    match devices
        .set_desired(&access.permit, expected, &settings, now)
        .await?
    {
        Ok(version) => {
            tracing::info!(subject = %access.subject(), device_id = %access.device.device_id, version, "desired settings written");
            let record = access
                .audit_record(&context, audit::Action::DeviceSettingsChange)
                .detail(json!({ "version": version }));
            access.audit(&context, record).await?;
            if let Some(messages) = context.devices.messages() {
                messages
                    .desired(&access.device.device_id, version, &settings)
                    .await;
            }
            let body = json!({"version": version, "settings": settings});
            Ok(with_etag(Json(body).into_response(), version))
        }
        Err(current) => Err(ApiError::PreconditionFailed(format!(
            "the settings changed since version {expected}; they are at version {current} now: read them and try again"
        ))),
    }
}

/// The version `If-Match` names; `None` for `*` (any current version).
fn expected_version(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let value = headers
        .get(header::IF_MATCH)
        .ok_or_else(|| {
            ApiError::PreconditionRequired(
                "send If-Match with the settings version (the ETag of GET …/state) you changed"
                    .into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not readable text".into()))?
        .trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::BadRequest(format!("If-Match {value:?} is not a settings version")))
}

fn with_etag(mut response: Response, version: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

pub(crate) fn state_json(state: &DeviceState) -> Value {
    json!({
        "desired": {
            "version": state.desired_version,
            "settings": state.desired,
            "updated_at": state.desired_updated_at.map(model::Timestamp::to_rfc3339),
        },
        "reported": {
            "state": state.reported,
            "reported_at": state.reported_at.map(model::Timestamp::to_rfc3339),
        },
        "delta": delta(&state.desired, &state.reported),
    })
}
