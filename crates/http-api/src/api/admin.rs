//! Administration: OAuth clients and accounts.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use oauth::client::Registration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::Admin;
use crate::{ApiContext, ApiError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewClient {
    name: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    first_party: bool,
    /// Public keys (a JWK Set) for `private_key_jwt`, instead of a secret.
    #[serde(default)]
    jwks: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPage {
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/admin/users`: accounts in e-mail order, a page at a time (`?after=EMAIL&limit=N`,
/// at most 1000); never a password hash.
pub(crate) async fn list_users(
    _admin: Admin,
    State(context): State<ApiContext>,
    Query(page): Query<UserPage>,
) -> Result<Json<Value>, ApiError> {
    let after = page
        .after
        .as_deref()
        .map(model::Email::parse)
        .transpose()
        .map_err(|error| ApiError::BadRequest(format!("after: {error}")))?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let users = context.store.users().list(after.as_ref(), limit).await?;
    let items: Vec<Value> = users
        .iter()
        .map(|user| {
            json!({
                "user_id": user.id.to_string(),
                "email": user.email.as_str(),
                "role": user.role.as_str(),
                "created_at": user.created_at.to_rfc3339(),
            })
        })
        .collect();
    let next = (users.len() == limit as usize)
        .then(|| users.last().map(|user| user.email.as_str().to_owned()))
        .flatten();
    Ok(Json(json!({ "users": items, "next_after": next })))
}

pub(crate) async fn list_clients(
    _admin: Admin,
    State(context): State<ApiContext>,
) -> Result<Json<Value>, ApiError> {
    let clients = context.store.oauth_clients().all().await?;
    let items: Vec<Value> = clients
        .iter()
        .map(|client| {
            json!({
                "client_id": client.client_id,
                "name": client.name,
                "kind": client.kind.as_str(),
                "scope": client.allowed_scopes.to_string(),
                "redirect_uris": client.redirect_uris,
                "first_party": client.first_party,
                "auth_method": match (&client.jwks, client.kind) {
                    (Some(_), _) => "private_key_jwt",
                    (None, oauth::client::ClientKind::Public) => "none",
                    (None, oauth::client::ClientKind::Confidential) => "client_secret_basic",
                },
            })
        })
        .collect();
    Ok(Json(json!({"clients": items})))
}

/// Registers a client; a confidential client's secret is in this response and nowhere else.
pub(crate) async fn create_client(
    admin: Admin,
    State(context): State<ApiContext>,
    Json(request): Json<NewClient>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let registration = Registration {
        name: request.name,
        scope: request.scope,
        public: request.public,
        redirect_uris: request.redirect_uris,
        first_party: request.first_party,
        jwks: request.jwks.map(|jwks| jwks.to_string()),
    };
    let (client, secret) = registration
        .register(&context.oauth.secret_hasher, context.identity.clock.now())
        .map_err(|error| ApiError::BadRequest(error.to_string()))?;
    context.store.oauth_clients().insert(&client).await?;
    tracing::info!(admin = %admin.user.id, client_id = %client.client_id, "client registered");
    admin
        .audit(
            &context,
            audit::Action::ClientCreate,
            audit::Target::new("client", &client.client_id),
            json!({ "kind": client.kind.as_str(), "scope": client.allowed_scopes.to_string() }),
        )
        .await?;
    let mut body = json!({"client_id": client.client_id, "kind": client.kind.as_str()});
    if let Some(secret) = secret {
        body["client_secret"] = secret.as_str().into();
    }
    Ok((StatusCode::CREATED, Json(body)))
}
