//! EMQX 5's HTTP authenticator (`POST /hooks/emqx/authn`) and HTTP authorizer
//! (`POST /hooks/emqx/authz`), with the JSON bodies docs/broker-hooks.md configures.
//!
//! EMQX reads anything but a 200 or 204 as "ignore" and moves on to its next authenticator or
//! authorizer, and by default allows what no authorizer decided. So every question the broker
//! asks gets a 200 with an explicit `deny` unless it is allowed, even when the body is unreadable
//! or the database is down (logged); only a caller that is not the broker gets a 403.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Broker, Credentials, client, connect, may_publish_to, may_subscribe_to};
use crate::{ApiContext, ApiError};

#[derive(Deserialize)]
struct Authn {
    clientid: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// `${cert_common_name}`: empty when the client showed no certificate.
    #[serde(default)]
    cert_common_name: Option<String>,
}

#[derive(Deserialize)]
struct Authz {
    clientid: String,
    #[serde(default)]
    username: Option<String>,
    topic: String,
    action: String,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_slice(body)
        .inspect_err(|error| {
            tracing::info!(%error, "broker hooks: an unreadable EMQX request was refused");
        })
        .ok()
}

/// A refusal for an error on our side: logged, never "ignore".
fn refused_on(error: &ApiError) {
    tracing::warn!(%error, "broker hooks: refused because the question could not be answered");
}

/// `{"result": "allow", "is_superuser": false}` for a client let in, with `expire_at` (the access
/// token's expiry) for a person or service, after which EMQX closes the connection; `deny`
/// otherwise. Nobody is a superuser: every publish and subscribe goes to the authorizer.
pub(super) async fn authenticate(
    State(context): State<ApiContext>,
    _broker: Broker,
    body: Bytes,
) -> Json<Value> {
    let deny = json!({"result": "deny", "is_superuser": false});
    let Some(request) = parse::<Authn>(&body) else {
        return Json(deny);
    };
    let credentials = Credentials {
        client_id: &request.clientid,
        username: request.username.as_deref(),
        password: request.password.as_deref(),
        certificate_identity: request.cert_common_name.as_deref(),
    };
    match connect(&context, &credentials).await {
        Ok(Some(admitted)) => {
            let mut answer = json!({"result": "allow", "is_superuser": false});
            if let Some(expires_at) = admitted.expires_at {
                answer["expire_at"] = Value::from(expires_at);
            }
            Json(answer)
        }
        Ok(None) => Json(deny),
        Err(error) => {
            refused_on(&error);
            Json(deny)
        }
    }
}

/// `{"result": "allow"}` when the client let in under `clientid` may `publish` to the topic or
/// `subscribe` to the filter; `{"result": "deny"}` otherwise.
pub(super) async fn authorize(
    State(context): State<ApiContext>,
    _broker: Broker,
    body: Bytes,
) -> Json<Value> {
    let allowed = match parse::<Authz>(&body) {
        Some(request) => match decide(&context, &request).await {
            Ok(allowed) => allowed,
            Err(error) => {
                refused_on(&error);
                false
            }
        },
        None => false,
    };
    Json(json!({"result": if allowed { "allow" } else { "deny" }}))
}

async fn decide(context: &ApiContext, request: &Authz) -> Result<bool, ApiError> {
    let Some(client) = client(context, &request.clientid, request.username.as_deref()).await?
    else {
        return Ok(false);
    };
    match request.action.as_str() {
        "publish" => may_publish_to(context, &client, &request.topic).await,
        "subscribe" => may_subscribe_to(context, &client, &request.topic).await,
        _ => Ok(false),
    }
}
