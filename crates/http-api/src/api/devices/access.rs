//! The one place a device request is authorized: the caller's token becomes a policy subject, the
//! path's device is loaded with its owner and grants, and the policy decides. A handler declares
//! the action it needs by the permit type it asks for and cannot get the device otherwise.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use model::DeviceId;
use policy::{Basis, Denial, DeviceRelation, Permission, Permit, Subject};
use store::DeviceRecord;

use audit::{Record, Target};
use serde_json::json;

use crate::api::caller::Caller;
use crate::journal::{Origin, actor_of, device_denied};
use crate::{ApiContext, ApiError};

/// A device from the path that the caller may take action `P` on.
#[derive(Debug)]
pub(crate) struct Authorized<P: Permission> {
    pub permit: Permit<P>,
    pub device: DeviceRecord,
    pub relation: DeviceRelation,
    /// Where the request came from, for the audit records it leaves.
    pub origin: Origin,
}

impl<P: Permission> Authorized<P> {
    pub fn subject(&self) -> &Subject {
        self.permit.subject()
    }

    /// An audit record of `action` by the caller on this device, naming on what basis the caller
    /// was let in (owner, grant, admin, service); the device is the target unless the caller
    /// changes it.
    pub fn audit_record(&self, context: &ApiContext, action: audit::Action) -> Record {
        device_record(context, self.subject(), &self.device.device_id, action)
            .detail(json!({ "basis": self.permit.basis().as_str() }))
    }

    /// Appends `record` from this request and waits for its commit.
    pub async fn audit(&self, context: &ApiContext, record: Record) -> Result<(), ApiError> {
        context.audit(&self.origin, record).await
    }
}

/// A record of `action` by `subject` on `device_id`.
fn device_record(
    context: &ApiContext,
    subject: &Subject,
    device_id: &DeviceId,
    action: audit::Action,
) -> Record {
    context
        .audit_record(
            actor_of(subject),
            action,
            Target::new("device", device_id.as_str()),
        )
        .device(device_id.as_str())
}

impl<P: Permission + Send + Sync> FromRequestParts<ApiContext> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let Caller(subject) = Caller::from_request_parts(parts, context).await?;
        let origin = Origin::of(parts);
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
        let permit = match policy::authorize::<P>(&subject, &relation, now) {
            Ok(permit) => permit,
            Err(denial) => {
                tracing::info!(%subject, device_id = %device_id, action = %P::ACTION, %denial, "device access denied");
                // A caller who cannot even see the device learns nothing, and leaves nothing in
                // its owner's log; one who can see it but may not do this is recorded.
                if denial != Denial::NotVisible {
                    let record = device_denied(now, &subject, &device_id, P::ACTION, &denial);
                    context.audit(&origin, record).await?;
                }
                return Err(denial_error(denial));
            }
        };
        let access = Self {
            permit,
            device,
            relation,
            origin,
        };
        // Reads by anyone but the owner are what the owner's access log is for.
        let read = matches!(
            P::ACTION,
            policy::Action::ReadStatus | policy::Action::ReadEvents
        );
        if read && access.permit.basis() != Basis::Owner {
            let record = access
                .audit_record(context, audit::Action::DeviceRead)
                .detail(json!({ "permission": P::ACTION.as_str(), "path": parts.uri.path() }));
            access.audit(context, record).await?;
        }
        Ok(access)
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
