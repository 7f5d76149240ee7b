//! The OAuth 2.0 endpoints: the token endpoint (client credentials so far) and the JWKS.
//!
//! Errors here use RFC 6749's shape (`{"error": "invalid_client", "error_description": "…"}`),
//! which OAuth client libraries expect, instead of the API's own.

use std::fmt;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oauth::client::{ClientSecret, SecretHasher};
use oauth::error::{ErrorCode, OAuthError};
use oauth::grant;
use serde::Deserialize;
use serde_json::json;
use tokens::jwt::{self, AccessClaims};
use tokens::keys::KeyRing;

use crate::{ApiContext, ApiError};

/// The authorization server's settings.
#[derive(Clone)]
pub struct OAuthSettings {
    /// The `iss` of every token, and the base of every OAuth URL.
    pub issuer: String,
    /// The `aud` of access tokens for Warden's own API.
    pub audience: String,
    pub access_token_lifetime: Duration,
    pub secret_hasher: SecretHasher,
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
        .route("/oauth2/token", post(token))
        .route("/oauth2/jwks", get(jwks))
}

/// An RFC 6749 error response.
struct OAuthErrorResponse(OAuthError);

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

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// The signing keys as they are now in the database (a rotation by `warden admin keys rotate` in
/// another process is seen at the next request).
pub(crate) async fn key_ring(context: &ApiContext) -> Result<KeyRing, ApiError> {
    let keys = context.store.signing_keys().all().await?;
    Ok(KeyRing::new(keys, context.oauth.key_retention()))
}

async fn jwks(State(context): State<ApiContext>) -> Result<Response, ApiError> {
    let ring = key_ring(&context).await?;
    let now = context.identity.clock.now();
    let mut response = Json(ring.jwks(now)).into_response();
    // Verifiers may cache the set briefly; new keys are published long before they sign.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

async fn token(
    State(context): State<ApiContext>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, ApiError> {
    match issue_token(&context, &headers, form).await {
        Ok(response) => Ok(response),
        Err(TokenFailure::OAuth(error)) => Ok(OAuthErrorResponse(error).into_response()),
        Err(TokenFailure::Api(error)) => Err(error),
    }
}

enum TokenFailure {
    OAuth(OAuthError),
    Api(ApiError),
}

impl From<OAuthError> for TokenFailure {
    fn from(error: OAuthError) -> Self {
        TokenFailure::OAuth(error)
    }
}

impl From<ApiError> for TokenFailure {
    fn from(error: ApiError) -> Self {
        TokenFailure::Api(error)
    }
}

impl From<store::StoreError> for TokenFailure {
    fn from(error: store::StoreError) -> Self {
        TokenFailure::Api(error.into())
    }
}

async fn issue_token(
    context: &ApiContext,
    headers: &HeaderMap,
    form: TokenForm,
) -> Result<Response, TokenFailure> {
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidRequest, "grant_type is required"))?;
    if grant_type != "client_credentials" {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type {grant_type:?} is not supported"),
        )
        .into());
    }
    let (client_id, secret) = client_credentials_of(headers, &form)?;
    let client = context.store.oauth_clients().by_id(&client_id).await?;
    grant::authenticate_client(
        client.as_ref(),
        secret.as_ref(),
        &context.oauth.secret_hasher,
    )?;
    let Some(client) = client else {
        return Err(
            OAuthError::new(ErrorCode::InvalidClient, "client authentication failed").into(),
        );
    };
    let scopes = grant::client_credentials(&client, form.scope.as_deref())?;

    let now = context.identity.clock.now();
    let ring = key_ring(context).await?;
    let signer = ring.signer(now).ok_or_else(|| ApiError::Unavailable {
        what: "token signing",
    })?;
    let lifetime = context.oauth.access_token_lifetime;
    let issued_at = now.unix_millis().div_euclid(1000);
    let claims = AccessClaims {
        iss: context.oauth.issuer.clone(),
        sub: client.client_id.clone(),
        aud: context.oauth.audience.clone(),
        iat: issued_at,
        exp: issued_at + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        jti: uuid::Uuid::new_v4().to_string(),
        client_id: client.client_id.clone(),
        scope: scopes.to_string(),
    };
    let access_token =
        jwt::issue(signer, &claims).map_err(|error| ApiError::Internal(Box::new(error)))?;
    tracing::info!(client_id = %client.client_id, scope = %claims.scope, "issued client-credentials token");
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    });
    if !claims.scope.is_empty() {
        body["scope"] = claims.scope.into();
    }
    Ok(Json(body).into_response())
}

/// The client's id and secret, from HTTP Basic (`client_secret_basic`, RFC 6749 section 2.3.1, with
/// form-encoded parts) or the form (`client_secret_post`). Using both at once is refused.
fn client_credentials_of(
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<(String, Option<ClientSecret>), OAuthError> {
    let invalid = |why: &str| OAuthError::new(ErrorCode::InvalidClient, why);
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "));
    match (basic, &form.client_id) {
        (Some(_), Some(_)) if form.client_secret.is_some() => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "use one client authentication method, not two",
        )),
        (Some(encoded), _) => {
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| invalid("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid("malformed Basic credentials"))?;
            Ok((
                form_decode(id),
                Some(ClientSecret::from_presented(&form_decode(secret))),
            ))
        }
        (None, Some(id)) => Ok((
            id.clone(),
            form.client_secret
                .as_deref()
                .map(ClientSecret::from_presented),
        )),
        (None, None) => Err(invalid("client authentication is required")),
    }
}

/// RFC 6749 has clients form-encode id and secret before Basic encoding.
fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map_or_else(|_| text.to_owned(), |decoded| decoded.into_owned())
}
