//! Who is calling the API, as proven by a Bearer access token.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use model::Role;
use oauth::scope::Scopes;
use policy::{ActionSet, Subject};
use store::UserRecord;

use crate::journal::{Origin, account_holder};
use crate::oauth::active_claims;
use crate::{ApiContext, ApiError};

/// An administrator: a user with the admin role, calling with a token that carries the `admin`
/// scope. Both are required, so neither a stolen low-scope token of an admin nor a customer's
/// token can administer.
#[derive(Debug)]
pub(crate) struct Admin {
    pub user: UserRecord,
    /// Where the request came from, for the audit record every admin action leaves.
    pub origin: Origin,
}

impl Admin {
    /// Records `action` by this admin on `target`, with `detail`, and waits for the commit.
    pub(crate) async fn audit(
        &self,
        context: &ApiContext,
        action: audit::Action,
        target: audit::Target,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        let record = context
            .audit_record(account_holder(&self.user), action, target)
            .detail(detail)
            .device_from_target();
        context.audit(&self.origin, record).await
    }
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
        Ok(Self {
            user,
            origin: Origin::of(parts),
        })
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
        let client_id = service_with_scope(parts, context, "breach:read").await?;
        Ok(Self { client_id })
    }
}

/// A service asking the authorization policy about someone else (the gateway, the broker hooks):
/// a client acting for itself whose token carries `authz:check`.
#[derive(Debug)]
pub(crate) struct PolicyReader {
    pub client_id: String,
}

impl FromRequestParts<ApiContext> for PolicyReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let client_id = service_with_scope(parts, context, "authz:check").await?;
        Ok(Self { client_id })
    }
}

/// The client id of a client-credentials token (no person behind it) that carries `scope`.
async fn service_with_scope(
    parts: &Parts,
    context: &ApiContext,
    scope: &str,
) -> Result<String, ApiError> {
    let claims = bearer_claims(parts, context).await?;
    let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
    if !scopes.contains(scope) || claims.sub != claims.client_id {
        return Err(ApiError::Forbidden);
    }
    Ok(claims.client_id)
}

/// Whoever calls with an active Bearer token, as the authorization policy sees them.
#[derive(Debug)]
pub(crate) struct Caller(pub Subject);

impl FromRequestParts<ApiContext> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let claims = bearer_claims(parts, context).await?;
        subject_of(context, &claims).await.map(Caller)
    }
}

/// The policy's subject for a token's claims: a client acting for itself is a service; a person
/// with the admin role is an admin only when the token carries the `admin` scope.
pub async fn subject_of(
    context: &ApiContext,
    claims: &tokens::jwt::AccessClaims,
) -> Result<Subject, ApiError> {
    let token_allows = ActionSet::allowed_by_scopes(claims.scope.split_whitespace());
    if claims.sub == claims.client_id {
        return Ok(Subject::Service {
            client_id: claims.client_id.clone(),
            token_allows,
        });
    }
    let user = match claims.sub.parse() {
        Ok(user_id) => context.store.users().by_id(user_id).await?,
        Err(_) => None,
    }
    // The account was deleted after the token was issued.
    .ok_or(ApiError::Unauthorized)?;
    let admin_scope = claims
        .scope
        .split_whitespace()
        .any(|scope| scope == "admin");
    Ok(if user.role == Role::Admin && admin_scope {
        Subject::Admin {
            user_id: user.id,
            token_allows,
        }
    } else {
        Subject::Person {
            user_id: user.id,
            role: user.role,
            token_allows,
        }
    })
}

/// The subject an access token speaks for; `None` when the token is not active or its account is
/// gone. For callers that carry tokens outside an `Authorization` header (the MQTT password, the
/// check API's `access_token`).
pub async fn token_subject(context: &ApiContext, token: &str) -> Result<Option<Subject>, ApiError> {
    match active_claims(context, token).await? {
        Ok(claims) => match subject_of(context, &claims).await {
            Ok(subject) => Ok(Some(subject)),
            Err(ApiError::Unauthorized) => Ok(None),
            Err(error) => Err(error),
        },
        Err(why) => {
            tracing::info!(why, "inactive token presented");
            Ok(None)
        }
    }
}

/// The claims of the request's active Bearer access token.
pub(crate) async fn bearer_claims(
    parts: &Parts,
    context: &ApiContext,
) -> Result<tokens::jwt::AccessClaims, ApiError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| model::authorization::credentials(value, "Bearer"))
        .ok_or(ApiError::Unauthorized)?;
    active_claims(context, token).await?.map_err(|why| {
        tracing::info!(why, "API call with an inactive token");
        ApiError::Unauthorized
    })
}
