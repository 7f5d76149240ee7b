//! What clients read before and after the flow: OpenID Provider metadata, the JWKS, and userinfo.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauth::scope::{KNOWN_SCOPES, Scopes};
use serde_json::json;

use super::key_ring;
use crate::{ApiContext, ApiError};

/// OpenID Connect Discovery 1.0 metadata (also RFC 8414).
pub(crate) async fn configuration(State(context): State<ApiContext>) -> Json<serde_json::Value> {
    let issuer = &context.oauth.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "userinfo_endpoint": format!("{issuer}/oauth2/userinfo"),
        "jwks_uri": format!("{issuer}/oauth2/jwks"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "scopes_supported": KNOWN_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "email"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

pub(crate) async fn jwks(State(context): State<ApiContext>) -> Result<Response, ApiError> {
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

/// The user an access token speaks for (OpenID Connect Core section 5.3).
pub(crate) async fn userinfo(
    State(context): State<ApiContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let refuse = |description: &str| {
        let challenge =
            format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token", "error_description": description})),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        Ok(response)
    };
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| model::authorization::credentials(value, "Bearer"))
    else {
        return refuse("a Bearer access token is required");
    };
    let claims = match super::revocation::active_claims(&context, token).await? {
        Ok(claims) => claims,
        Err(why) => return refuse(&why),
    };
    let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
    if !scopes.contains("openid") {
        return refuse("the token was not issued with the openid scope");
    }
    let Some(user) = (match claims.sub.parse() {
        Ok(user_id) => context.store.users().by_id(user_id).await?,
        Err(_) => None,
    }) else {
        return refuse("the token's user does not exist");
    };
    let mut body = json!({"sub": user.id.to_string()});
    if scopes.contains("email") {
        body["email"] = user.email.as_str().into();
        body["email_verified"] = false.into();
    }
    Ok(Json(body).into_response())
}
