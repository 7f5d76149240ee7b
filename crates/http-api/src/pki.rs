//! The CA's public face: its certificates (the trust anchor devices and services are given) and
//! the signed revocation list, in PEM and DER, which anyone may fetch; and, on the device
//! listener, certificate renewal for devices that prove their current certificate.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use model::DeviceId;
use model::Timestamp;
use pki::{Authority, CertificateKind, CheckedCsr, PartName, Requester, RevokedCertificate};

use crate::journal::Origin;
use crate::{ApiContext, ApiError};
use audit::{Action, Actor, Target};

/// The CA, its settings, and the revocation list last signed.
#[derive(Debug)]
pub struct PkiContext {
    pub authority: Authority,
    /// A list's `nextUpdate` is this far after its `thisUpdate`.
    pub crl_validity: Duration,
    pub device_certificate_validity: Duration,
    /// How long before its expiry a certificate may be renewed.
    pub renewal_window: Duration,
    crl: tokio::sync::Mutex<Option<SignedCrl>>,
}

/// The certificate (DER) the client presented in the TLS handshake, put on every request of the
/// connection by the listener. Present only on the device listener, where the handshake already
/// checked that it chains to Warden's CA and is within its validity.
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Arc<[u8]>);

#[derive(Debug)]
struct SignedCrl {
    this_update: Timestamp,
    revoked: Vec<RevokedCertificate>,
    der: Arc<Vec<u8>>,
    pem: Arc<String>,
}

impl PkiContext {
    pub fn new(
        authority: Authority,
        crl_validity: Duration,
        device_certificate_validity: Duration,
        renewal_window: Duration,
    ) -> Self {
        Self {
            authority,
            crl_validity,
            device_certificate_validity,
            renewal_window,
            crl: tokio::sync::Mutex::new(None),
        }
    }
}

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/pki/ca.pem", get(ca_chain))
        .route("/pki/crl.pem", get(crl_pem))
        .route("/pki/crl.der", get(crl_der))
}

pub(crate) fn device_routes() -> Router<ApiContext> {
    Router::new().route("/certificate/renew", post(renew))
}

/// A device, or a part of Warden running apart, renews its certificate: the body is a new CSR
/// (PEM or DER) for the same name; the answer (201) is the new certificate followed by the
/// intermediate's. The presented certificate must be in the inventory and unrevoked; a device's
/// must be within `renewal_window` of its expiry, while a part's short-lived one may renew at any
/// time and gets the same lifetime again. The old certificate stays valid until it expires, so a
/// client that loses the answer can retry.
async fn renew(
    State(context): State<ApiContext>,
    origin: Origin,
    certificate: Option<Extension<PeerCertificate>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let record = presented_record(
        &context,
        certificate
            .as_ref()
            .map(|Extension(PeerCertificate(der))| der.as_ref()),
    )
    .await?;
    let chain = renew_from(&context, &origin, &record, &body).await?;
    Ok(with_type(
        (StatusCode::CREATED, chain).into_response(),
        "application/pem-certificate-chain",
    ))
}

/// A device asks over MQTT (`devices/{id}/certificate/request`, docs/mqtt.md) for a new
/// certificate from `csr`. The session was let in with a valid, unrevoked certificate of this
/// device, and a revocation closes it. The certificate renewed is the device's unrevoked one that
/// is valid now and expires first, and its renewal window applies: a device that lost the answer
/// still holds that one, and asks again.
pub async fn renew_for_device(
    context: &ApiContext,
    device_id: &DeviceId,
    csr: &[u8],
) -> Result<String, ApiError> {
    let now = context.identity.clock.now();
    let current = context
        .store
        .certificates()
        .by_subject(device_id.as_str())
        .await?
        .into_iter()
        .filter(|record| {
            record.revoked.is_none()
                && record.certificate.kind == CertificateKind::Device
                && record.certificate.not_before <= now
                && now < record.certificate.not_after
        })
        .min_by_key(|record| record.certificate.not_after)
        .ok_or_else(|| ApiError::Denied("the device has no valid certificate to renew".into()))?;
    renew_from(context, &Origin::default(), &current, csr).await
}

/// Issues the renewal of `current` (an unrevoked certificate from the inventory) from `csr`, for
/// the same name: a device's only within `renewal_window` of its expiry, with the device
/// validity; a part's short-lived one at any time, with the same lifetime again. The old
/// certificate stays valid until it expires, so a client that loses the answer can ask again.
/// Returns the new certificate followed by the intermediate's.
async fn renew_from(
    context: &ApiContext,
    origin: &Origin,
    record: &store::CertificateRecord,
    csr: &[u8],
) -> Result<String, ApiError> {
    let pki = &context.pki;
    let now = context.identity.clock.now();
    let current = &record.certificate;
    let unreadable = || ApiError::Internal("an inventory subject does not parse".into());
    let issued = match current.kind {
        CertificateKind::Device => {
            let opens = Timestamp::from_unix_millis(
                current.not_after.unix_millis()
                    - i64::try_from(pki.renewal_window.as_millis()).unwrap_or(i64::MAX),
            );
            if now < opens {
                return Err(ApiError::Conflict(format!(
                    "too early to renew: renewal opens {} s before expiry, in {} s",
                    pki.renewal_window.as_secs(),
                    (opens.unix_millis() - now.unix_millis()).div_euclid(1000)
                )));
            }
            let device = DeviceId::parse(&current.subject).map_err(|_| unreadable())?;
            let request = check(csr, Requester::Device(device))?;
            pki.authority
                .issue_device(&request, pki.device_certificate_validity, now)
        }
        CertificateKind::Workload => {
            let part = PartName::parse(&current.subject).map_err(|_| unreadable())?;
            let request = check(csr, Requester::Part(part))?;
            let lifetime = Duration::from_millis(
                u64::try_from(current.not_after.unix_millis() - current.not_before.unix_millis())
                    .unwrap_or_default(),
            );
            pki.authority.issue_workload_from(&request, lifetime, now)
        }
        CertificateKind::Server => {
            return Err(ApiError::Denied(
                "a server certificate is renewed by the server itself".into(),
            ));
        }
    }
    .map_err(|error| ApiError::Internal(Box::new(error)))?;
    context.store.certificates().insert(&issued).await?;
    tracing::info!(subject = %issued.subject, serial = %issued.serial, renewed = %current.serial, "certificate renewed");
    let (actor, device) = match current.kind {
        CertificateKind::Device => (
            Actor::Device {
                id: current.subject.clone(),
            },
            Some(current.subject.clone()),
        ),
        _ => (
            Actor::Part {
                name: current.subject.clone(),
            },
            None,
        ),
    };
    let mut audited = context
        .audit_record(
            actor,
            Action::CertificateRenew,
            Target::new("certificate", issued.serial.to_string()),
        )
        .detail(serde_json::json!({ "renewed": current.serial.to_string() }));
    audited.device = device;
    context.audit(origin, audited).await?;
    Ok(format!(
        "{}{}",
        issued.certificate_pem,
        pki.authority.intermediate_pem()
    ))
}

/// The inventory record of the certificate the client presented: required, known and unrevoked.
pub(crate) async fn presented_record(
    context: &ApiContext,
    certificate: Option<&[u8]>,
) -> Result<store::CertificateRecord, ApiError> {
    let Some(der) = certificate else {
        return Err(ApiError::Denied(
            "a certificate from Warden's CA is required".into(),
        ));
    };
    let record = match pki::serial_of(der) {
        Some(serial) => context.store.certificates().by_serial(&serial).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::Denied("the certificate is not in Warden's inventory".into()))?;
    if let Some((_, reason)) = &record.revoked {
        return Err(ApiError::Denied(format!(
            "the certificate was revoked ({})",
            reason.as_str()
        )));
    }
    Ok(record)
}

fn check(body: &[u8], requester: Requester) -> Result<CheckedCsr, ApiError> {
    CheckedCsr::check_for(body, &requester)
        .map_err(|rejection| ApiError::BadRequest(rejection.to_string()))
}

/// The issuing CA's certificate, then the root's.
async fn ca_chain(State(context): State<ApiContext>) -> Response {
    let authority = &context.pki.authority;
    let chain = format!("{}{}", authority.intermediate_pem(), authority.root_pem());
    with_type(chain.into_response(), "application/pem-certificate-chain")
}

async fn crl_pem(State(context): State<ApiContext>) -> Result<Response, ApiError> {
    let (_, pem) = current_crl(&context).await?;
    Ok(with_type(
        pem.as_str().to_owned().into_response(),
        "application/x-pem-file",
    ))
}

async fn crl_der(State(context): State<ApiContext>) -> Result<Response, ApiError> {
    let (der, _) = current_crl(&context).await?;
    Ok(with_type(
        der.as_slice().to_vec().into_response(),
        "application/pkix-crl",
    ))
}

fn with_type(mut response: Response, content_type: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The list last signed while it names exactly what is revoked now and is less than half its
/// validity old; otherwise a new one, with the next CRL number.
async fn current_crl(context: &ApiContext) -> Result<(Arc<Vec<u8>>, Arc<String>), ApiError> {
    let now = context.identity.clock.now();
    let revoked = context.store.certificates().revoked(now).await?;
    let pki = &context.pki;
    let mut slot = pki.crl.lock().await;
    if let Some(signed) = slot.as_ref()
        && signed.revoked == revoked
        && now < signed.this_update.plus(pki.crl_validity / 2)
    {
        return Ok((signed.der.clone(), signed.pem.clone()));
    }
    let number = context.store.certificates().next_crl_number().await?;
    let (der, pem) = pki::revocation_list(
        &pki.authority,
        &revoked,
        u64::try_from(number).unwrap_or_default(),
        now,
        now.plus(pki.crl_validity),
    )
    .map_err(|error| ApiError::Internal(Box::new(error)))?;
    let signed = SignedCrl {
        this_update: now,
        revoked,
        der: Arc::new(der),
        pem: Arc::new(pem),
    };
    let answer = (signed.der.clone(), signed.pem.clone());
    *slot = Some(signed);
    Ok(answer)
}
