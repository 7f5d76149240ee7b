//! The one place a device request is authorized: the caller's token becomes a policy subject, the
//! path's device is loaded with its owner and grants, and the policy decides. A handler declares
//! the action it needs by the permit type it asks for and cannot get the device otherwise.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use model::DeviceId;
use policy::{Denial, DeviceRelation, Permission, Permit, Subject};
use store::DeviceRecord;

use crate::api::caller::Caller;
use crate::{ApiContext, ApiError};

/// A device from the path that the caller may take action `P` on.
#[derive(Debug)]
pub(crate) struct Authorized<P: Permission> {
    pub permit: Permit<P>,
    pub device: DeviceRecord,
    pub relation: DeviceRelation,
}

impl<P: Permission> Authorized<P> {
    pub fn subject(&self) -> &Subject {
        self.permit.subject()
    }
}

impl<P: Permission + Send + Sync> FromRequestParts<ApiContext> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let Caller(subject) = Caller::from_request_parts(parts, context).await?;
        let params = RawPathParams::from_request_parts(parts, context)
            .await
            .map_err(|_| ApiError::NotFound)?;
        let device_id = params
            .iter()
            .find(|(name, _)| *name == "device_id")
            .and_then(|(_, value)| DeviceId::parse(value).ok())
            .ok_or(ApiError::NotFound)?;
        let now = context.identity.clock.now();
        let (device, relation) = context
            .store
            .devices()
            .relation(&device_id, now)
            .await?
            .ok_or(ApiError::NotFound)?;
        let permit = policy::authorize::<P>(&subject, &relation, now).map_err(|denial| {
            tracing::info!(%subject, device_id = %device_id, action = %P::ACTION, %denial, "device access denied");
            denial_error(denial)
        })?;
        Ok(Self {
            permit,
            device,
            relation,
        })
    }
}

/// A device the caller may not see is answered as if it did not exist.
pub(crate) fn denial_error(denial: Denial) -> ApiError {
    match denial {
        Denial::NotVisible => ApiError::NotFound,
        Denial::NotPermitted(_) | Denial::MissingScope { .. } => {
            ApiError::Denied(denial.to_string())
        }
    }
}
