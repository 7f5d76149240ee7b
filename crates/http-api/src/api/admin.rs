//! Administration: OAuth clients.

use axum::Json;
use axum::extract::State;
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
