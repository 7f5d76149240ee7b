//! Technician grants on one device, managed by its owner.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::{Email, Timestamp};
use policy::{ActionSet, may};
use registry::GrantRequest;
use serde::Deserialize;
use serde_json::{Value, json};
use store::GrantRecord;

use super::Authorized;
use crate::{ApiContext, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGrant {
    /// The technician's e-mail address.
    email: String,
    /// Action names, for example `["read_status", "read_events"]`.
    scopes: Vec<String>,
    expires_in_seconds: u64,
}

pub(crate) async fn create(
    State(context): State<ApiContext>,
    access: Authorized<may::ManageGrants>,
    Json(request): Json<NewGrant>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |message: String| ApiError::BadRequest(message);
    let actions = ActionSet::parse(&request.scopes.join(",")).map_err(|e| bad(e.to_string()))?;
    let email = Email::parse(&request.email).map_err(|e| bad(e.to_string()))?;
    let grantee = context
        .store
        .users()
        .by_email(&email)
        .await?
        .ok_or_else(|| bad("there is no account with that e-mail address".into()))?;
    let now = context.identity.clock.now();
    let lifetime = Duration::from_secs(request.expires_in_seconds);
    let grant_request = GrantRequest {
        grantee: grantee.id,
        grantee_role: grantee.role,
        actions,
        expires_at: now.plus(lifetime),
    };
    // Only a person can own a device, so a permit to manage grants always has one.
    let owner = access
        .subject()
        .user_id()
        .ok_or_else(|| ApiError::Internal("a grant permit without a person".into()))?;
    grant_request
        .check(owner, now)
        .map_err(|error| bad(error.to_string()))?;
    let grant = GrantRecord {
        grant_id: format!("gr_{}", uuid::Uuid::now_v7().simple()),
        device_id: access.device.device_id.clone(),
        grantee: grantee.id,
        granted_by: owner,
        actions,
        created_at: now,
        expires_at: grant_request.expires_at,
        revoked_at: None,
    };
    context
        .store
        .devices()
        .insert_grant(&access.permit, &grant)
        .await?;
    tracing::info!(device_id = %grant.device_id, grantee = %grant.grantee, scopes = %actions, "grant made");
    let record = access
        .audit_record(&context, audit::Action::GrantCreate)
        .detail(json!({
            "grant_id": grant.grant_id,
            "grantee": { "user_id": grant.grantee.to_string(), "email": email.as_str() },
            "scopes": grant.actions.iter().map(policy::Action::as_str).collect::<Vec<_>>(),
            "expires_at": grant.expires_at.to_rfc3339(),
        }));
    access.audit(&context, record).await?;
    Ok((
        StatusCode::CREATED,
        Json(grant_json(&grant, Some(&email), now)),
    ))
}

/// Every grant on the device, past ones included, newest first.
pub(crate) async fn list(
    State(context): State<ApiContext>,
    access: Authorized<may::ManageGrants>,
) -> Result<Json<Value>, ApiError> {
    let grants = context.store.devices().grants(&access.permit).await?;
    let now = context.identity.clock.now();
    let users = context.store.users();
    let mut items = Vec::with_capacity(grants.len());
    for grant in &grants {
        let email = users.by_id(grant.grantee).await?.map(|user| user.email);
        items.push(grant_json(grant, email.as_ref(), now));
    }
    Ok(Json(json!({ "grants": items })))
}

/// Ends a grant at once: the technician's next request is refused.
pub(crate) async fn revoke(
    State(context): State<ApiContext>,
    access: Authorized<may::ManageGrants>,
    Path((_, grant_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let now = context.identity.clock.now();
    if context
        .store
        .devices()
        .revoke_grant(&access.permit, &grant_id, now)
        .await?
    {
        tracing::info!(device_id = %access.device.device_id, %grant_id, "grant revoked");
        let record = access
            .audit_record(&context, audit::Action::GrantRevoke)
            .detail(json!({ "grant_id": grant_id }));
        access.audit(&context, record).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

fn grant_json(grant: &GrantRecord, email: Option<&Email>, now: Timestamp) -> Value {
    json!({
        "grant_id": grant.grant_id,
        "device_id": grant.device_id.as_str(),
        "grantee": {"user_id": grant.grantee.to_string(), "email": email.map(Email::as_str)},
        "scopes": grant.actions.iter().map(policy::Action::as_str).collect::<Vec<_>>(),
        "created_at": grant.created_at.to_rfc3339(),
        "expires_at": grant.expires_at.to_rfc3339(),
        "revoked_at": grant.revoked_at.map(Timestamp::to_rfc3339),
        "active": grant.revoked_at.is_none() && now < grant.expires_at,
    })
}
