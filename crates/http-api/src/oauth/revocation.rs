//! Token introspection (RFC 7662) and revocation (RFC 7009), and the one check of whether an access
//! token is active that userinfo uses too.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use model::Timestamp;
use oauth::client::Client;
use oauth::token_hash;
use serde::Deserialize;
use serde_json::json;
use tokens::jwt::{self, AccessClaims, Expectations};

use super::key_ring;
use super::token::{ClientAuth, Failure, authenticate};
use crate::journal::Origin;
use crate::{ApiContext, ApiError};
use audit::{Action, Actor, Target};

#[derive(Deserialize)]
pub(crate) struct TokenParams {
    token: Option<String>,
    /// Only a hint (RFC 7009 section 2.1); every kind is tried.
    #[serde(default, rename = "token_type_hint")]
    _hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// The claims of `token` if it is an access token Warden issued that is still active: signature,
/// time, issuer, audience, and neither it nor its grant revoked. `Err` says why not.
pub async fn active_claims(
    context: &ApiContext,
    token: &str,
) -> Result<Result<AccessClaims, String>, ApiError> {
    let ring = key_ring(context).await?;
    let now = context.identity.clock.now();
    let token = token.trim();
    let hash = token_hash(token);
    let cache = &context.oauth.active_tokens;
    if let Some(claims) = cache.get(&hash, &ring, now) {
        return Ok(Ok(claims));
    }
    // The epoch before the store is asked: a revocation adopted meanwhile voids the entry.
    let epoch = cache.epoch();
    let expected = Expectations {
        issuer: &context.oauth.issuer,
        audience: &context.oauth.audience,
    };
    let claims = match jwt::verify(token, &ring, now, &expected) {
        Ok(claims) => claims,
        Err(error) => return Ok(Err(error.to_string())),
    };
    let grants = context.store.grants();
    if grants.is_access_token_revoked(&claims.jti).await? {
        return Ok(Err("the token was revoked".into()));
    }
    if let Some(grant_id) = &claims.gid
        && grants.is_revoked(grant_id).await?
    {
        return Ok(Err(
            "the grant the token was issued under was revoked".into()
        ));
    }
    cache.put(hash, &claims, &ring, epoch);
    Ok(Ok(claims))
}

/// Revokes a grant and everything issued under it; returns how many refresh tokens were live.
pub(super) async fn revoke_grant(
    context: &ApiContext,
    grant_id: &str,
    now: Timestamp,
) -> Result<u64, ApiError> {
    let revoked = context.store.grants().revoke_grant(grant_id, now).await?;
    adopt_revocations(context).await?;
    Ok(revoked)
}

/// After a revocation made here: no token found active before it is answered from memory again.
async fn adopt_revocations(context: &ApiContext) -> Result<(), ApiError> {
    let epoch = context.store.grants().revocation_epoch().await?;
    context.oauth.active_tokens.observe_epoch(epoch);
    Ok(())
}

async fn calling_client(
    context: &ApiContext,
    headers: &HeaderMap,
    params: &TokenParams,
) -> Result<Client, Response> {
    let auth = ClientAuth {
        client_id: params.client_id.as_deref(),
        client_secret: params.client_secret.as_deref(),
        assertion_type: params.client_assertion_type.as_deref(),
        assertion: params.client_assertion.as_deref(),
    };
    match authenticate(context, headers, &auth).await {
        Ok(client) => Ok(client),
        Err(Failure::OAuth(error)) => Err(super::OAuthErrorResponse(error).into_response()),
        Err(Failure::Api(error)) => Err(error.into_response()),
    }
}

/// RFC 7662: any authenticated client may ask; an inactive token is `{"active": false}` and
/// nothing else, so the answer tells nothing about why.
pub(crate) async fn introspect(
    State(context): State<ApiContext>,
    headers: HeaderMap,
    Form(params): Form<TokenParams>,
) -> Result<Response, ApiError> {
    if let Err(refusal) = calling_client(&context, &headers, &params).await {
        return Ok(refusal);
    }
    let Some(token) = params.token.as_deref() else {
        return Ok(Json(json!({"active": false})).into_response());
    };
    if let Ok(claims) = active_claims(&context, token).await? {
        return Ok(Json(json!({
            "active": true,
            "token_type": "Bearer",
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.sub,
            "aud": claims.aud,
            "iss": claims.iss,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
        }))
        .into_response());
    }
    let now = context.identity.clock.now();
    if let Some(refresh) = context
        .store
        .grants()
        .refresh_by_hash(&token_hash(token))
        .await?
        && refresh.expires_at > now
        && !context.store.grants().is_revoked(&refresh.grant_id).await?
    {
        return Ok(Json(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": refresh.scope,
            "client_id": refresh.client_id,
            "sub": refresh.user_id.to_string(),
            "exp": refresh.expires_at.unix_millis().div_euclid(1000),
        }))
        .into_response());
    }
    Ok(Json(json!({"active": false})).into_response())
}

/// RFC 7009: a client revokes its own tokens. Revoking a refresh token revokes its whole grant,
/// access tokens included. Unknown or foreign tokens get the same 200, so the endpoint cannot be
/// used to probe tokens.
pub(crate) async fn revoke(
    State(context): State<ApiContext>,
    origin: Origin,
    headers: HeaderMap,
    Form(params): Form<TokenParams>,
) -> Result<Response, ApiError> {
    let client = match calling_client(&context, &headers, &params).await {
        Ok(client) => client,
        Err(refusal) => return Ok(refusal),
    };
    let Some(token) = params.token.as_deref() else {
        return Ok(super::OAuthErrorResponse(oauth::error::OAuthError::new(
            oauth::error::ErrorCode::InvalidRequest,
            "token is required",
        ))
        .into_response());
    };
    let now = context.identity.clock.now();
    let grants = context.store.grants();
    if let Some(refresh) = grants.refresh_by_hash(&token_hash(token)).await?
        && refresh.client_id == client.client_id
    {
        let revoked = revoke_grant(&context, &refresh.grant_id, now).await?;
        tracing::info!(client_id = %client.client_id, "refresh token revoked with its grant");
        let record = context
            .audit_record(
                Actor::Client {
                    id: client.client_id.clone(),
                },
                Action::TokenRevoke,
                crate::journal::account(refresh.user_id),
            )
            .detail(json!({ "token_type": "refresh_token", "revoked_tokens": revoked }));
        context.audit(&origin, record).await?;
    } else if let Ok(claims) = active_claims(&context, token).await?
        && claims.client_id == client.client_id
    {
        grants
            .revoke_access_token(
                &claims.jti,
                Timestamp::from_unix_millis(claims.exp.saturating_mul(1000)),
            )
            .await?;
        adopt_revocations(&context).await?;
        tracing::info!(client_id = %client.client_id, "access token revoked");
        let record = context
            .audit_record(
                Actor::Client {
                    id: client.client_id.clone(),
                },
                Action::TokenRevoke,
                Target::new("access_token", &claims.jti),
            )
            .detail(json!({ "token_type": "access_token", "sub": claims.sub }));
        context.audit(&origin, record).await?;
    }
    Ok(Json(json!({})).into_response())
}
