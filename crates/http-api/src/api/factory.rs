//! The maker's device administration (admin only; no gateway rule exposes it): making devices
//! with their secrets and certificates, listing them, new claim codes, certificates from a
//! device's own key (CSR), each device's tags, and each model's settings schema.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use model::DeviceId;
use pki::{CheckedCsr, Requester};
use registry::factory::MAX_BATCH;
use registry::{ClaimCode, Factory, FactoryDevice, ModelName, SettingsSchema, Tag};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::Admin;
use crate::{ApiContext, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevices {
    model: String,
    #[serde(default = "one")]
    count: usize,
    /// `bundle` (the default): a key and certificate made here, for devices that cannot make a key.
    /// `csr`: no certificate yet; the device sends a request for one later.
    #[serde(default)]
    certificate: CertificateMode,
}

fn one() -> usize {
    1
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CertificateMode {
    #[default]
    Bundle,
    Csr,
}

/// Makes devices; their password, claim code and private key are in this response and nowhere
/// else.
pub(crate) async fn create(
    admin: Admin,
    State(context): State<ApiContext>,
    Json(request): Json<NewDevices>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let model =
        ModelName::parse(&request.model).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if request.count == 0 || request.count > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "count must be between 1 and {MAX_BATCH}"
        )));
    }
    let pki = context.pki.clone();
    let hashers = context.devices.hashers.clone();
    let with_bundles = request.certificate == CertificateMode::Bundle;
    let now = context.identity.clock.now();
    let count = request.count;
    let batch_model = model.clone();
    // Key generation and signing take a while for a large batch: off the async workers.
    let devices = tokio::task::spawn_blocking(move || {
        Factory {
            hashers: &hashers,
            authority: with_bundles.then_some(&pki.authority),
            certificate_validity: pki.device_certificate_validity,
        }
        .make(&batch_model, count, now)
    })
    .await
    .map_err(|error| ApiError::Internal(Box::new(error)))?
    .map_err(|error| ApiError::Internal(Box::new(error)))?;
    let records: Vec<_> = devices.iter().map(|device| device.record.clone()).collect();
    let certificates: Vec<_> = devices
        .iter()
        .filter_map(|device| {
            device
                .bundle
                .as_ref()
                .map(|bundle| bundle.certificate.clone())
        })
        .collect();
    context
        .store
        .devices()
        .create(&records, &certificates)
        .await?;
    tracing::info!(admin = %admin.user.id, %model, count, "devices created");
    let ids: Vec<&str> = devices
        .iter()
        .map(|device| device.record.device_id.as_str())
        .collect();
    admin
        .audit(
            &context,
            audit::Action::DeviceCreate,
            audit::Target::new("model", model.as_str()),
            json!({ "count": count, "devices": ids }),
        )
        .await?;
    let items: Vec<Value> = devices
        .iter()
        .map(|device| factory_json(device, &context.pki.authority))
        .collect();
    Ok((StatusCode::CREATED, Json(json!({ "devices": items }))))
}

/// What the factory needs for one device: the contents of its bundle and its label.
pub(crate) fn factory_json(device: &FactoryDevice, authority: &pki::Authority) -> Value {
    let device_id = &device.record.device_id;
    let mut body = json!({
        "device_id": device_id.as_str(),
        "model": device.record.model.as_str(),
        "mqtt_password": device.password.as_str(),
        "claim_code": device.claim_code.grouped(),
        "claim_label": device.claim_code.label_uri(device_id),
        "ca_pem": authority.root_pem(),
    });
    if let Some(bundle) = &device.bundle {
        body["certificate_pem"] = format!(
            "{}{}",
            bundle.certificate.certificate_pem,
            authority.intermediate_pem()
        )
        .into();
        body["private_key_pem"] = bundle.private_key_pem.clone().into();
    }
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    after: Option<String>,
    limit: Option<u32>,
}

/// Every device, in id order, a page at a time (`?after=ID&limit=N`, at most 1000).
pub(crate) async fn list(
    _admin: Admin,
    State(context): State<ApiContext>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let after = page
        .after
        .as_deref()
        .map(DeviceId::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let devices = context.store.devices().all(after.as_ref(), limit).await?;
    let items: Vec<Value> = devices
        .iter()
        .map(|device| {
            json!({
                "device_id": device.device_id.as_str(),
                "model": device.model.as_str(),
                "owner": device.owner.map(|owner| owner.to_string()),
                "firmware_version": device.firmware_version,
                "created_at": device.created_at.to_rfc3339(),
                "claimed_at": device.claimed_at.map(model::Timestamp::to_rfc3339),
                "last_seen_at": device.last_seen_at.map(model::Timestamp::to_rfc3339),
                "online": device.online,
            })
        })
        .collect();
    let next = (devices.len() == limit as usize)
        .then(|| {
            devices
                .last()
                .map(|device| device.device_id.as_str().to_owned())
        })
        .flatten();
    Ok(Json(json!({ "devices": items, "next_after": next })))
}

/// A new claim code for an unowned device (after a release, or for a lost label), shown once.
pub(crate) async fn new_claim_code(
    admin: Admin,
    State(context): State<ApiContext>,
    Path(device_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(|_| ApiError::NotFound)?;
    let devices = context.store.devices();
    let device = devices.get(&device_id).await?.ok_or(ApiError::NotFound)?;
    let code = ClaimCode::generate();
    let hash = context.devices.hashers.claim_code_hash(&code);
    if !devices.set_claim_code(&device.device_id, &hash).await? {
        return Err(ApiError::Conflict(
            "the device has an owner; only an unowned device gets a new claim code".into(),
        ));
    }
    tracing::info!(admin = %admin.user.id, %device_id, "claim code issued");
    admin
        .audit(
            &context,
            audit::Action::DeviceClaimCode,
            audit::Target::new("device", device_id.as_str()),
            json!({}),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "device_id": device_id.as_str(),
            "claim_code": code.grouped(),
            "claim_label": code.label_uri(&device_id),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tags {
    tags: Vec<String>,
}

/// `GET /api/v1/admin/devices/{id}/tags`.
pub(crate) async fn tags(
    _admin: Admin,
    State(context): State<ApiContext>,
    Path(device_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(|_| ApiError::NotFound)?;
    let devices = context.store.devices();
    devices.get(&device_id).await?.ok_or(ApiError::NotFound)?;
    let tags = devices.tags(&device_id).await?;
    Ok(Json(tags_json(&device_id, &tags)))
}

/// `PUT /api/v1/admin/devices/{id}/tags`: replaces the device's tags (an empty list removes
/// them all).
pub(crate) async fn set_tags(
    admin: Admin,
    State(context): State<ApiContext>,
    Path(device_id): Path<String>,
    Json(request): Json<Tags>,
) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(|_| ApiError::NotFound)?;
    let tags = registry::parse_tags(&request.tags).map_err(ApiError::BadRequest)?;
    if !context.store.devices().set_tags(&device_id, &tags).await? {
        return Err(ApiError::NotFound);
    }
    let answer = tags_json(&device_id, &tags);
    admin
        .audit(
            &context,
            audit::Action::DeviceTags,
            audit::Target::new("device", device_id.as_str()),
            json!({ "tags": answer["tags"] }),
        )
        .await?;
    Ok(Json(answer))
}

fn tags_json(device_id: &DeviceId, tags: &[Tag]) -> Value {
    let tags: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    json!({ "device_id": device_id.as_str(), "tags": tags })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateQuery {
    device: Option<String>,
    expiring_within_days: Option<u32>,
}

/// `GET /api/v1/admin/certificates?device=ID` (every certificate of a device, newest first) or
/// `?expiring_within_days=N` (unrevoked ones that expire within N days, soonest first; 30 when
/// neither is given).
pub(crate) async fn certificates(
    _admin: Admin,
    State(context): State<ApiContext>,
    Query(query): Query<CertificateQuery>,
) -> Result<Json<Value>, ApiError> {
    let inventory = context.store.certificates();
    let found = match (query.device, query.expiring_within_days) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "ask for a device or for expiring certificates, not both".into(),
            ));
        }
        (Some(device), None) => {
            let device_id = DeviceId::parse(&device)
                .map_err(|error| ApiError::BadRequest(format!("device: {error}")))?;
            inventory.by_subject(device_id.as_str()).await?
        }
        (None, days) => {
            let days = days.unwrap_or(30).min(3650);
            let now = context.identity.clock.now();
            let before = now.plus(std::time::Duration::from_secs(u64::from(days) * 86_400));
            inventory.expiring(now, before).await?
        }
    };
    let items: Vec<Value> = found
        .iter()
        .map(|record| {
            let certificate = &record.certificate;
            json!({
                "serial": certificate.serial,
                "kind": certificate.kind.as_str(),
                "subject": certificate.subject,
                "not_before": certificate.not_before.to_rfc3339(),
                "not_after": certificate.not_after.to_rfc3339(),
                "revoked_at": record.revoked.as_ref().map(|(at, _)| at.to_rfc3339()),
                "revocation_reason": record.revoked.as_ref().map(|(_, reason)| reason.as_str()),
            })
        })
        .collect();
    Ok(Json(json!({ "certificates": items })))
}

/// A certificate for a device's own key: the body is its PKCS#10 request (PEM or DER) naming
/// the device. The answer is the certificate followed by the intermediate's.
pub(crate) async fn issue_certificate(
    admin: Admin,
    State(context): State<ApiContext>,
    Path(device_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, String), ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(|_| ApiError::NotFound)?;
    context
        .store
        .devices()
        .get(&device_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let request = CheckedCsr::check_for(&body, &Requester::Device(device_id.clone()))
        .map_err(|rejection| ApiError::BadRequest(rejection.to_string()))?;
    let pki = &context.pki;
    let now = context.identity.clock.now();
    let issued = pki
        .authority
        .issue_device(&request, pki.device_certificate_validity, now)
        .map_err(|error| ApiError::Internal(Box::new(error)))?;
    context.store.certificates().insert(&issued).await?;
    tracing::info!(admin = %admin.user.id, %device_id, serial = %issued.serial, "device certificate issued");
    admin
        .audit(
            &context,
            audit::Action::CertificateIssue,
            audit::Target::new("certificate", issued.serial.to_string()),
            json!({ "device_id": device_id.as_str() }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        format!(
            "{}{}",
            issued.certificate_pem,
            pki.authority.intermediate_pem()
        ),
    ))
}

/// Sets a model's settings schema (a JSON Schema); desired settings that break it are refused.
pub(crate) async fn set_settings_schema(
    admin: Admin,
    State(context): State<ApiContext>,
    Path(model): Path<String>,
    Json(schema): Json<Value>,
) -> Result<StatusCode, ApiError> {
    let model = ModelName::parse(&model).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    SettingsSchema::compile(&schema).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let now = context.identity.clock.now();
    context
        .store
        .devices()
        .set_settings_schema(&model, Some(&schema), now)
        .await?;
    tracing::info!(admin = %admin.user.id, %model, "settings schema set");
    admin
        .audit(
            &context,
            audit::Action::DeviceSchema,
            audit::Target::new("model", model.as_str()),
            json!({ "schema": "set" }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn remove_settings_schema(
    admin: Admin,
    State(context): State<ApiContext>,
    Path(model): Path<String>,
) -> Result<StatusCode, ApiError> {
    let model = ModelName::parse(&model).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = context.identity.clock.now();
    context
        .store
        .devices()
        .set_settings_schema(&model, None, now)
        .await?;
    tracing::info!(admin = %admin.user.id, %model, "settings schema removed");
    admin
        .audit(
            &context,
            audit::Action::DeviceSchema,
            audit::Target::new("model", model.as_str()),
            json!({ "schema": "removed" }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
