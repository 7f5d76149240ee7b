//! Firmware over the air (docs/firmware.md). Admins upload releases, list them and offer one to
//! devices; an
//! offer is sent to each device on `devices/{id}/ota` (retained) with the signed manifest. On the
//! device listener a device fetches the firmware-signing keys and the file of a release offered
//! to it, with `Range` so that a cut download resumes; it reports progress on
//! `devices/{id}/ota/status`, which moves its update through `firmware::OtaState`. Owners read
//! where their device is.

use std::io::SeekFrom;

use audit::{Action, Target};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use firmware::{MAX_FIRMWARE_BYTES, NewRelease, OtaState, PublicKey, StatusReport, UploadError};
use futures_util::TryStreamExt;
use model::DeviceId;
use model::Timestamp;
use policy::may;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{DeviceUpdate, Release};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::api::Authorized;
use crate::api::caller::Admin;
use crate::device_api::AuthenticatedDevice;
use crate::{ApiContext, ApiError};

/// Stored firmware files; the composition root decides where they are.
#[async_trait::async_trait]
pub trait FirmwareFiles: Send + Sync + std::fmt::Debug {
    /// The file whose SHA-256 is `sha256`, opened for reading.
    async fn open(&self, sha256: &str) -> std::io::Result<tokio::fs::File>;
    /// Makes a release from `content` (stored under its SHA-256, the manifest signed) and
    /// stores it.
    async fn publish(
        &self,
        new: NewRelease<'_>,
        content: &mut (dyn AsyncRead + Send + Unpin),
        now: Timestamp,
    ) -> Result<Release, UploadError>;
}

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/api/v1/admin/firmware", get(list_releases))
        .route("/api/v1/admin/firmware/{release_id}/offers", post(offer))
        .route("/api/v1/devices/{device_id}/firmware", get(device_updates))
}

/// The upload, which takes bodies up to `firmware::MAX_FIRMWARE_BYTES` and more time than other
/// requests (see `crate::router`).
pub(crate) fn upload_routes() -> Router<ApiContext> {
    Router::new().route("/api/v1/admin/firmware", post(upload))
}

pub(crate) fn device_routes() -> Router<ApiContext> {
    Router::new()
        .route("/device/firmware/keys", get(keys))
        .route("/device/firmware/{release_id}", get(download))
}

/// `GET /api/v1/admin/firmware`: every release, newest first.
async fn list_releases(
    _admin: Admin,
    State(context): State<ApiContext>,
) -> Result<Json<Value>, ApiError> {
    let releases = context.store.firmware().releases(None).await?;
    let items: Vec<Value> = releases.iter().map(release_json).collect();
    Ok(Json(json!({ "releases": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    model: String,
    version: String,
    #[serde(default)]
    notes: String,
}

/// `POST /api/v1/admin/firmware?model=…&version=…&notes=…`: makes a release from the body (the
/// firmware file as it is, streamed to disk while it is hashed, never held in memory).
async fn upload(
    admin: Admin,
    State(context): State<ApiContext>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_FIRMWARE_BYTES) {
        return Err(ApiError::PayloadTooLarge);
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let mut content = StreamReader::new(stream);
    let new = NewRelease {
        model: &query.model,
        version: &query.version,
        notes: &query.notes,
    };
    let now = context.identity.clock.now();
    let release = context
        .devices
        .firmware_files
        .publish(new, &mut content, now)
        .await
        .map_err(|error| match error {
            UploadError::Invalid(message) => ApiError::BadRequest(message),
            UploadError::TooLarge => ApiError::PayloadTooLarge,
            UploadError::Conflict(message) => ApiError::Conflict(message),
            UploadError::Failed(error) => ApiError::Internal(error),
        })?;
    admin
        .audit(
            &context,
            Action::FirmwareUpload,
            Target::new("firmware", &release.release_id),
            json!({ "model": release.model, "version": release.version, "sha256": release.sha256, "size": release.size }),
        )
        .await?;
    tracing::info!(release = %release.release_id, model = %release.model, version = %release.version, "firmware uploaded");
    Ok((StatusCode::CREATED, Json(release_json(&release))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfferRequest {
    devices: Vec<String>,
    /// Offer also to devices that run a newer version.
    #[serde(default)]
    allow_downgrade: bool,
}

/// The most devices one offer names; rollouts offer in stages of at most this many.
const MAX_OFFER: usize = 1_000;

/// `POST /api/v1/admin/firmware/{release_id}/offers`: offers the release to devices of its model.
/// A device already offered it is left as it is; one that runs a newer version is refused unless
/// the request allows downgrades. Each newly offered device is sent the manifest.
async fn offer(
    admin: Admin,
    State(context): State<ApiContext>,
    Path(release_id): Path<String>,
    Json(request): Json<OfferRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let release = context
        .store
        .firmware()
        .release(&release_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if request.devices.is_empty() || request.devices.len() > MAX_OFFER {
        return Err(ApiError::BadRequest(format!(
            "devices must name 1 to {MAX_OFFER} devices"
        )));
    }
    let mut devices = Vec::with_capacity(request.devices.len());
    for text in &request.devices {
        devices.push(
            DeviceId::parse(text)
                .map_err(|error| ApiError::BadRequest(format!("{text:?}: {error}")))?,
        );
    }
    check_targets(&context, &release, &devices, request.allow_downgrade).await?;
    let offered = offer_to(&context, &release, &devices, request.allow_downgrade).await?;
    let ids: Vec<&str> = offered.iter().map(DeviceId::as_str).collect();
    admin
        .audit(
            &context,
            Action::FirmwareOffer,
            Target::new("firmware", &release.release_id),
            json!({ "devices": ids, "version": release.version, "allow_downgrade": request.allow_downgrade }),
        )
        .await?;
    tracing::info!(release = %release.release_id, offered = offered.len(), "firmware offered");
    Ok((StatusCode::CREATED, Json(json!({ "offered": ids }))))
}

/// Checks that every one of `devices` exists, is of the release's model, and, unless downgrades
/// are allowed, runs no newer version.
pub(crate) async fn check_targets(
    context: &ApiContext,
    release: &Release,
    devices: &[DeviceId],
    allow_downgrade: bool,
) -> Result<(), ApiError> {
    let version = firmware::parse_version(&release.version)
        .map_err(|error| ApiError::Internal(error.into()))?;
    for device_id in devices {
        let device = context
            .store
            .devices()
            .get(device_id)
            .await?
            .ok_or_else(|| ApiError::BadRequest(format!("there is no device {device_id}")))?;
        if device.model.as_str() != release.model {
            return Err(ApiError::BadRequest(format!(
                "device {device_id} is a {}, the release is for {}",
                device.model, release.model
            )));
        }
        let running = device
            .firmware_version
            .as_deref()
            .and_then(|running| firmware::parse_version(running).ok());
        if let Some(running) = running
            && running > version
            && !allow_downgrade
        {
            return Err(ApiError::Conflict(format!(
                "device {device_id} runs {running}, newer than {version}: a downgrade must be allowed"
            )));
        }
    }
    Ok(())
}

/// Offers `release` to the (checked) `devices` not offered it before, and sends each of them the
/// signed manifest, retained on `devices/{id}/ota`. Returns the devices newly offered it.
pub(crate) async fn offer_to(
    context: &ApiContext,
    release: &Release,
    devices: &[DeviceId],
    allow_downgrade: bool,
) -> Result<Vec<DeviceId>, ApiError> {
    let now = context.identity.clock.now();
    let offered = context
        .store
        .firmware()
        .offer(&release.release_id, devices, allow_downgrade, now)
        .await?;
    let message = offer_message(release, allow_downgrade);
    if let Some(messages) = context.devices.messages() {
        for device_id in &offered {
            messages.ota(device_id, &message).await;
        }
    }
    Ok(offered)
}

/// What a device is sent on `devices/{id}/ota`.
pub(crate) fn offer_message(release: &Release, allow_downgrade: bool) -> Value {
    json!({
        "release": release.release_id,
        "manifest": release.manifest,
        "allow_downgrade": allow_downgrade,
    })
}

/// `GET /api/v1/devices/{id}/firmware`: the version the device runs and its updates.
async fn device_updates(
    State(context): State<ApiContext>,
    access: Authorized<may::ReadStatus>,
) -> Result<Json<Value>, ApiError> {
    let updates = context
        .store
        .firmware()
        .updates_of(&access.device.device_id)
        .await?;
    let items: Vec<Value> = updates.iter().map(update_json).collect();
    Ok(Json(json!({
        "device_id": access.device.device_id.as_str(),
        "firmware_version": access.device.firmware_version,
        "updates": items,
    })))
}

/// `GET /device/firmware/keys`: the public keys that sign manifests (a device trusts them
/// because the device listener proved itself with Warden's CA).
async fn keys(
    State(context): State<ApiContext>,
    _device: AuthenticatedDevice,
) -> Result<Json<Value>, ApiError> {
    let keys: Vec<PublicKey> = context
        .store
        .firmware_keys()
        .all()
        .await?
        .into_iter()
        .filter(|key| key.retired_at.is_none())
        .map(|key| PublicKey {
            kid: key.kid,
            x: key.public_x,
            y: key.public_y,
        })
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `GET /device/firmware/{release_id}`: the file of a release offered to the calling device and
/// not finished yet, streamed; one `Range` of bytes gives 206 with that part.
async fn download(
    State(context): State<ApiContext>,
    device: AuthenticatedDevice,
    Path(release_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let firmware = context.store.firmware();
    let update = firmware.update(&device.device_id, &release_id).await?;
    // Offered to this device and not over: anything else is answered as if it did not exist.
    let release = match update {
        Some(update) if !update.state.is_final() => firmware.release(&release_id).await?,
        _ => None,
    }
    .ok_or(ApiError::NotFound)?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|text| parse_range(text, release.size))
        {
            Some(range) => Some(range),
            None => return Ok(unsatisfiable(release.size)),
        },
    };
    let mut file = context
        .devices
        .firmware_files
        .open(&release.sha256)
        .await
        .map_err(|error| ApiError::Internal(Box::new(error)))?;
    let (status, start, length) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, release.size),
    };
    file.seek(SeekFrom::Start(start))
        .await
        .map_err(|error| ApiError::Internal(Box::new(error)))?;
    let body = Body::from_stream(ReaderStream::new(file.take(length)));
    let mut response = (status, body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", release.sha256)) {
        response_headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(value) = HeaderValue::from_str(&format!(
            "bytes {start}-{}/{}",
            start + length - 1,
            release.size
        ))
    {
        response_headers.insert(header::CONTENT_RANGE, value);
    }
    Ok(response)
}

/// One `bytes=` range (RFC 9110 section 14.1.2) within a file of `size` bytes, as inclusive
/// offsets; `None` when it is not one range this file can satisfy.
fn parse_range(text: &str, size: u64) -> Option<(u64, u64)> {
    let spec = text.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = if first.is_empty() {
        // The last N bytes.
        let suffix: u64 = last.parse().ok().filter(|n| *n > 0)?;
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            size - 1
        } else {
            last.parse::<u64>().ok()?.min(size - 1)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

/// Applies a device's report on `devices/{id}/ota/status`: its update for the release moves as
/// the state machine allows. A report on a release not offered to it, or a move backwards, is
/// refused with the reason.
pub async fn record_ota_status(
    context: &ApiContext,
    device_id: &DeviceId,
    payload: &[u8],
) -> Result<OtaState, String> {
    let report = StatusReport::parse(payload).map_err(|error| error.to_string())?;
    let firmware = context.store.firmware();
    // A report that loses a race with another is decided again on the fresh state.
    for _ in 0..3 {
        let current = firmware
            .update(device_id, &report.release)
            .await
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("release {} was not offered to this device", report.release))?;
        let state = current
            .state
            .after(report.state)
            .map_err(|error| error.to_string())?;
        let next = DeviceUpdate {
            state,
            progress: report.progress.or(current.progress),
            reason: report.reason.clone(),
            updated_at: context.identity.clock.now(),
            ..current.clone()
        };
        if firmware
            .advance(&current, &next)
            .await
            .map_err(|error| error.to_string())?
        {
            if state == OtaState::Succeeded && current.state != OtaState::Succeeded {
                installed(context, device_id, &report.release).await?;
            }
            return Ok(state);
        }
    }
    Err("the update kept changing under the report".into())
}

/// A device installed a release: it runs that version from now on.
async fn installed(
    context: &ApiContext,
    device_id: &DeviceId,
    release_id: &str,
) -> Result<(), String> {
    let release = context
        .store
        .firmware()
        .release(release_id)
        .await
        .map_err(|error| error.to_string())?
        .ok_or("the release is gone")?;
    context
        .store
        .devices()
        .set_firmware_version(device_id, &release.version)
        .await
        .map_err(|error| error.to_string())
}

fn release_json(release: &Release) -> Value {
    json!({
        "release_id": release.release_id,
        "model": release.model,
        "version": release.version,
        "size": release.size,
        "sha256": release.sha256,
        "notes": release.notes,
        "manifest": release.manifest,
        "created_at": release.created_at.to_rfc3339(),
    })
}

fn update_json(update: &DeviceUpdate) -> Value {
    json!({
        "release_id": update.release_id,
        "state": update.state.as_str(),
        "progress": update.progress,
        "reason": update.reason,
        "offered_at": update.offered_at.to_rfc3339(),
        "updated_at": update.updated_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_are_read_as_rfc_9110_writes_them() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=500-", 1000), Some((500, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-5000", 1000), Some((0, 999)));
        assert_eq!(parse_range("bytes=900-5000", 1000), Some((900, 999)));
        for unsatisfiable in [
            "bytes=1000-",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "bytes=-0",
            "items=0-1",
            "bytes=a-b",
            "bytes=",
        ] {
            assert_eq!(parse_range(unsatisfiable, 1000), None, "{unsatisfiable}");
        }
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
