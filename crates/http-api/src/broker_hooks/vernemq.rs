//! VerneMQ's webhooks (the `vmq_webhooks` plugin): one endpoint, the hook named in the
//! `vernemq-hook` header, answered in the plugin's JSON.
//!
//! Allowed answers carry `cache-control: max-age=5`: VerneMQ then skips asking again for the same
//! question for five seconds (it caches the MQTT 3 hooks only). Longer would save calls but keep a
//! revoked grant or token working for as long, and revocation must take effect within seconds.
//! Refusals are never cached by VerneMQ.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Broker, Credentials, client, connect, may_publish_to, may_subscribe_to};
use crate::{ApiContext, ApiError};

/// How long VerneMQ may reuse an allowed answer.
const CACHE_CONTROL: &str = "max-age=5";

/// The subscription "QoS" that refuses one filter: 128 (failure) in MQTT 3.1.1's SUBACK, 135
/// (not authorized) as an MQTT 5 reason code.
const REFUSED_V3: u64 = 128;
const REFUSED_V5: u64 = 135;

/// The hook's answer.
enum Answer {
    Ok,
    NotAllowed,
    /// MQTT 3 subscriptions: every filter again, refused ones with QoS 128.
    Topics(Vec<Value>),
    /// MQTT 5 subscriptions: every filter again as a modifier, refused ones with reason 135.
    TopicModifiers(Vec<Value>),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let (body, allowed) = match self {
            Answer::Ok => (json!({"result": "ok"}), true),
            Answer::NotAllowed => (json!({"result": {"error": "not_allowed"}}), false),
            Answer::Topics(topics) => (json!({"result": "ok", "topics": topics}), true),
            Answer::TopicModifiers(topics) => (
                json!({"result": "ok", "modifiers": {"topics": topics}}),
                true,
            ),
        };
        let mut response = Json(body).into_response();
        if allowed {
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            );
        }
        response
    }
}

/// `POST /hooks/vernemq`: `auth_on_register`, `auth_on_publish`, `auth_on_subscribe` and their
/// `_m5` variants. Another hook is a configuration mistake and answers 400, which VerneMQ treats
/// as a refusal.
pub(super) async fn hook(
    State(context): State<ApiContext>,
    _broker: Broker,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hook = headers
        .get("vernemq-hook")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let answer = match hook {
        "auth_on_register" | "auth_on_register_m5" => register(&context, &body).await?,
        "auth_on_publish" | "auth_on_publish_m5" => publish(&context, &body).await?,
        "auth_on_subscribe" => subscribe(&context, &body, false).await?,
        "auth_on_subscribe_m5" => subscribe(&context, &body, true).await?,
        other => {
            return Err(ApiError::BadRequest(format!(
                "the vernemq-hook header names {other:?}; configure only auth_on_register, \
                 auth_on_publish and auth_on_subscribe (and their _m5 variants) for this endpoint"
            )));
        }
    };
    Ok(answer.into_response())
}

/// The parts of a hook's body every hook has. A mountpoint puts the client's topics under a
/// prefix the topic table does not know, so any mountpoint is refused.
#[derive(Deserialize)]
struct Client {
    client_id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    mountpoint: Option<String>,
}

impl Client {
    fn in_mountpoint(&self) -> bool {
        self.mountpoint
            .as_deref()
            .is_some_and(|mountpoint| !mountpoint.is_empty())
    }
}

#[derive(Deserialize)]
struct Register {
    #[serde(flatten)]
    client: Client,
    #[serde(default)]
    password: Option<String>,
}

/// The payload, base64 in the body, is not read: the topic decides.
#[derive(Deserialize)]
struct Publish {
    #[serde(flatten)]
    client: Client,
    topic: String,
}

#[derive(Deserialize)]
struct Subscribe {
    #[serde(flatten)]
    client: Client,
    /// Each `{"topic", "qos", …}` as sent, so an allowed one goes back unchanged (MQTT 5's
    /// subscription options included).
    topics: Vec<Map<String, Value>>,
}

/// The body as `T`, or `None` (refused) when it is not that shape.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_slice(body)
        .inspect_err(|error| tracing::info!(%error, "broker hooks: an unreadable VerneMQ hook body was refused"))
        .ok()
}

async fn register(context: &ApiContext, body: &[u8]) -> Result<Answer, ApiError> {
    let Some(register) = parse::<Register>(body) else {
        return Ok(Answer::NotAllowed);
    };
    if register.client.in_mountpoint() {
        return Ok(Answer::NotAllowed);
    }
    // With `use_identity_as_username` the user name is the certificate's common name: it must
    // then name the device, which `connect` requires of the user name anyway.
    let credentials = Credentials {
        client_id: &register.client.client_id,
        username: register.client.username.as_deref(),
        password: register.password.as_deref(),
        certificate_identity: None,
    };
    Ok(match connect(context, &credentials).await? {
        Some(_) => Answer::Ok,
        None => Answer::NotAllowed,
    })
}

async fn publish(context: &ApiContext, body: &[u8]) -> Result<Answer, ApiError> {
    let Some(publish) = parse::<Publish>(body) else {
        return Ok(Answer::NotAllowed);
    };
    if publish.client.in_mountpoint() {
        return Ok(Answer::NotAllowed);
    }
    let Some(client) = client(
        context,
        &publish.client.client_id,
        publish.client.username.as_deref(),
    )
    .await?
    else {
        return Ok(Answer::NotAllowed);
    };
    Ok(if may_publish_to(context, &client, &publish.topic).await? {
        Answer::Ok
    } else {
        Answer::NotAllowed
    })
}

/// Every filter comes back: allowed ones as asked, refused ones with the refusing QoS. A
/// subscription is never narrowed or widened.
async fn subscribe(context: &ApiContext, body: &[u8], mqtt5: bool) -> Result<Answer, ApiError> {
    let Some(subscribe) = parse::<Subscribe>(body) else {
        return Ok(Answer::NotAllowed);
    };
    if subscribe.client.in_mountpoint() {
        return Ok(Answer::NotAllowed);
    }
    let Some(client) = client(
        context,
        &subscribe.client.client_id,
        subscribe.client.username.as_deref(),
    )
    .await?
    else {
        return Ok(Answer::NotAllowed);
    };
    let mut answered = Vec::with_capacity(subscribe.topics.len());
    for mut entry in subscribe.topics {
        let allowed = match entry.get("topic").and_then(Value::as_str) {
            Some(filter) => may_subscribe_to(context, &client, filter).await?,
            None => false,
        };
        if !allowed {
            let refused = if mqtt5 { REFUSED_V5 } else { REFUSED_V3 };
            entry.insert("qos".into(), Value::from(refused));
        }
        answered.push(Value::Object(entry));
    }
    Ok(if mqtt5 {
        Answer::TopicModifiers(answered)
    } else {
        Answer::Topics(answered)
    })
}
