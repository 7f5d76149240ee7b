//! Who is calling the API, as proven by a Bearer access token.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use model::Role;
use oauth::scope::Scopes;
use store::UserRecord;

use crate::oauth::active_claims;
use crate::{ApiContext, ApiError};

/// An administrator: a user with the admin role, calling with a token that carries the `admin`
/// scope. Both are required, so neither a stolen low-scope token of an admin nor a customer's
/// token can administer.
#[derive(Debug)]
pub(crate) struct Admin {
    pub user: UserRecord,
}

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let claims = bearer_claims(parts, context).await?;
        let user = match claims.sub.parse() {
            Ok(user_id) => context.store.users().by_id(user_id).await?,
            Err(_) => None,
        }
        .ok_or(ApiError::Forbidden)?;
        let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
        if !scopes.contains("admin") || user.role != Role::Admin {
            return Err(ApiError::Forbidden);
        }
        Ok(Self { user })
    }
}

/// A service asking the breached-password set: a client authenticated with client credentials
/// (the token's subject is the client itself, no user) whose token carries `breach:read`.
#[derive(Debug)]
pub(crate) struct BreachReader {
    pub client_id: String,
}

impl FromRequestParts<ApiContext> for BreachReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let claims = bearer_claims(parts, context).await?;
        let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
        if !scopes.contains("breach:read") || claims.sub != claims.client_id {
            return Err(ApiError::Forbidden);
        }
        Ok(Self {
            client_id: claims.client_id,
        })
    }
}

/// The claims of the request's active Bearer access token.
async fn bearer_claims(
    parts: &Parts,
    context: &ApiContext,
) -> Result<tokens::jwt::AccessClaims, ApiError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    active_claims(context, token).await?.map_err(|why| {
        tracing::info!(why, "API call with an inactive token");
        ApiError::Unauthorized
    })
}
