//! The OAuth 2.0 endpoints: the token endpoint (client credentials so far) and the JWKS.
//!
//! Errors here use RFC 6749's shape (`{"error": "invalid_client", "error_description": "…"}`),
//! which OAuth client libraries expect, instead of the API's own.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use oauth::client::SecretHasher;
use oauth::error::{ErrorCode, OAuthError};
use serde_json::json;
use tokens::keys::KeyRing;

use crate::{ApiContext, ApiError};

mod authorize;
mod cache;
mod discovery;
mod revocation;
mod token;

pub use cache::{ActiveTokens, ClientCache, KeyCache};
pub use revocation::active_claims;
pub use token::own_service_token;

/// The authorization server's settings.
pub struct OAuthSettings {
    /// The `iss` of every token, and the base of every OAuth URL.
    pub issuer: String,
    /// The `aud` of access tokens for Warden's own API.
    pub audience: String,
    pub access_token_lifetime: Duration,
    /// See `oauth.refresh_reuse_grace_seconds` in the configuration reference.
    pub refresh_reuse_grace: Duration,
    pub secret_hasher: SecretHasher,
    pub keys: KeyCache,
    pub clients: ClientCache,
    pub active_tokens: ActiveTokens,
}

impl fmt::Debug for OAuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSettings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .finish_non_exhaustive()
    }
}

impl OAuthSettings {
    /// How long a superseded signing key stays published: the longest token lifetime, plus a
    /// margin for clocks and caches.
    pub fn key_retention(&self) -> Duration {
        self.access_token_lifetime + Duration::from_secs(300)
    }
}

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::configuration),
        )
        .route(
            "/oauth2/authorize",
            get(authorize::authorize).post(authorize::consent),
        )
        .route("/oauth2/token", post(token::token))
        .route("/oauth2/jwks", get(discovery::jwks))
        .route("/oauth2/logout", get(authorize::end_session))
        .route("/oauth2/introspect", post(revocation::introspect))
        .route("/oauth2/revoke", post(revocation::revoke))
        .route(
            "/oauth2/userinfo",
            get(discovery::userinfo).post(discovery::userinfo),
        )
}

/// An RFC 6749 error response.
pub(crate) struct OAuthErrorResponse(pub(crate) OAuthError);

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (
            status,
            Json(json!({"error": self.0.code.as_str(), "error_description": self.0.description})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"warden\""),
            );
        }
        response
    }
}

impl From<OAuthError> for OAuthErrorResponse {
    fn from(error: OAuthError) -> Self {
        Self(error)
    }
}

/// The signing keys, from the cache while it is fresh, else from the database.
pub async fn key_ring(context: &ApiContext) -> Result<Arc<KeyRing>, ApiError> {
    let cache = &context.oauth.keys;
    if let Some((loaded, ring)) = cache.slot.read().await.as_ref()
        && loaded.elapsed() < cache.ttl
    {
        return Ok(ring.clone());
    }
    let keys = context.store.signing_keys().all().await?;
    let ring = Arc::new(KeyRing::new(keys, context.oauth.key_retention()));
    for kid in ring.unusable() {
        tracing::error!(kid, "a stored signing key cannot be parsed; it is skipped");
    }
    *cache.slot.write().await = Some((Instant::now(), ring.clone()));
    Ok(ring)
}
