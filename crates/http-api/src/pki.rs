//! The CA's public face: its certificates (the trust anchor devices and services are given) and
//! the signed revocation list, in PEM and DER. Anyone may fetch them; they hold nothing secret.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use model::Timestamp;
use pki::{Authority, RevokedCertificate};

use crate::{ApiContext, ApiError};

/// The CA and the revocation list last signed.
#[derive(Debug)]
pub struct PkiContext {
    pub authority: Authority,
    /// A list's `nextUpdate` is this far after its `thisUpdate`.
    pub crl_validity: Duration,
    crl: tokio::sync::Mutex<Option<SignedCrl>>,
}

#[derive(Debug)]
struct SignedCrl {
    this_update: Timestamp,
    revoked: Vec<RevokedCertificate>,
    der: Arc<Vec<u8>>,
    pem: Arc<String>,
}

impl PkiContext {
    pub fn new(authority: Authority, crl_validity: Duration) -> Self {
        Self {
            authority,
            crl_validity,
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
