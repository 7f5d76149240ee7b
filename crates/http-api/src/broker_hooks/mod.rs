//! Authentication and authorization hooks for an existing clustered MQTT broker: VerneMQ's
//! webhooks (`vernemq`) and EMQX 5's HTTP authenticator and authorizer (`emqx`), answering from
//! `policy::topic` exactly as the built-in broker does.
//!
//! One broker-neutral core sits under both formats: who a connecting client is (a device proving
//! its password, and its certificate as far as the broker forwards it, or a person or service
//! presenting an access token as the password), remembered per client id (`sessions`) because
//! the broker's later questions carry no password; and, per publish topic or subscription filter,
//! the policy's answer with the device's relation read from the store. Deny by default: an
//! unknown client id, anything unparseable, a topic outside the table, all are refused.
//!
//! Only the broker may ask: the hooks are served on the device listener alone (mutual TLS), to a
//! workload certificate of the part named `broker`; everyone else gets 403.

mod emqx;
mod sessions;
mod vernemq;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::post;
use model::DeviceId;
use pki::CertificateKind;
use policy::topic::{
    DeviceTopic, FilterReach, MqttClient, TopicFilter, may_publish, may_subscribe,
};
use registry::DevicePassword;

pub use sessions::BrokerSessions;
use sessions::{Proof, Session};

use crate::api::subject_of;
use crate::oauth::active_claims;
use crate::pki::{PeerCertificate, presented_record};
use crate::{ApiContext, ApiError};

/// The part name in the workload certificate a broker must present.
const BROKER_PART: &str = "broker";

/// Client ids longer than this are refused: every remembered connection costs memory, and a
/// device's client id is its 16-character id.
const MAX_CLIENT_ID_BYTES: usize = 256;

pub(crate) fn routes() -> Router<ApiContext> {
    Router::new()
        .route("/hooks/vernemq", post(vernemq::hook))
        .route("/hooks/emqx/authn", post(emqx::authenticate))
        .route("/hooks/emqx/authz", post(emqx::authorize))
}

/// The broker asking: it presented a workload certificate of the part named `broker`, known to
/// the inventory and unrevoked.
#[derive(Debug)]
pub(crate) struct Broker;

impl FromRequestParts<ApiContext> for Broker {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        context: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let certificate = parts.extensions.get::<PeerCertificate>().cloned();
        let record =
            presented_record(context, certificate.as_ref().map(|peer| &peer.0[..])).await?;
        let certificate = &record.certificate;
        if certificate.kind != CertificateKind::Workload || certificate.subject != BROKER_PART {
            return Err(ApiError::Denied(format!(
                "the broker hooks answer only the workload certificate of the part {BROKER_PART}"
            )));
        }
        Ok(Self)
    }
}

/// What a client shows the broker when it connects, as the broker forwards it.
#[derive(Debug)]
pub(crate) struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// The common name of the client's certificate, when the broker passes it on (VerneMQ's
    /// `use_identity_as_username` makes it the user name; EMQX renders `${cert_common_name}`).
    pub certificate_identity: Option<&'a str>,
}

/// A connection the hooks let in.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// When the proof ends (the access token's expiry), in seconds since the epoch; `None` for
    /// a device.
    pub expires_at: Option<i64>,
}

/// Brokers render a missing value as an empty string or `null`; both mean absent.
pub(crate) fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.is_empty())
}

/// Decides whether a connecting client is let in, and remembers who it proved to be under its
/// client id. `None`: refused.
///
/// A user name (or, without one, the client id) naming a registered device makes the client
/// that device, provided the password is the device's, the client id is the device id and the
/// certificate identity, when forwarded, names it too. Otherwise the password must be an active
/// access token, under a client id that is no device's, and the client is its bearer as the
/// policy sees them.
pub(crate) async fn connect(
    context: &ApiContext,
    credentials: &Credentials<'_>,
) -> Result<Option<Admitted>, ApiError> {
    let client_id = credentials.client_id;
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
        tracing::info!("broker hooks: a client id that is empty or too long was refused");
        return Ok(None);
    }
    let username = present(credentials.username);
    let Some(password) = present(credentials.password) else {
        tracing::info!(
            client_id,
            "broker hooks: a connect without a password was refused"
        );
        return Ok(None);
    };
    let claimed = username.unwrap_or(client_id);
    let device_hash = match DeviceId::parse(claimed) {
        Ok(device_id) => context
            .store
            .devices()
            .password_hash(&device_id)
            .await?
            .map(|hash| (device_id, hash)),
        Err(_) => None,
    };
    let (proof, admitted) = match device_hash {
        Some((device_id, hash)) => {
            if client_id != device_id.as_str() {
                tracing::info!(%device_id, client_id, "broker hooks: a device must connect with its id as the client id");
                return Ok(None);
            }
            if let Some(identity) = present(credentials.certificate_identity)
                && identity != device_id.as_str()
            {
                tracing::info!(%device_id, identity, "broker hooks: the certificate names another device");
                return Ok(None);
            }
            let presented = DevicePassword::from_presented(password);
            if !context.devices.hashers.password_matches(&presented, &hash) {
                tracing::info!(%device_id, "broker hooks: device password refused");
                return Ok(None);
            }
            let now = context.identity.clock.now();
            context.store.devices().seen(&device_id, now).await?;
            (Proof::Device(device_id), Admitted { expires_at: None })
        }
        // A device's id as the client id is the device's alone: taking it would take over the
        // device's session at the broker.
        None if is_registered_device(context, client_id).await? => {
            tracing::info!(
                client_id,
                "broker hooks: a device's client id under another user name was refused"
            );
            return Ok(None);
        }
        None => match bearer(context, password).await? {
            Some((_, expires_at)) => (
                Proof::Token(password.to_owned()),
                Admitted {
                    expires_at: Some(expires_at),
                },
            ),
            None => return Ok(None),
        },
    };
    context.devices.broker_sessions.insert(
        client_id,
        Session {
            username: username.map(str::to_owned),
            proof,
        },
    );
    Ok(Some(admitted))
}

async fn is_registered_device(context: &ApiContext, client_id: &str) -> Result<bool, ApiError> {
    Ok(match DeviceId::parse(client_id) {
        Ok(device_id) => context.store.devices().get(&device_id).await?.is_some(),
        Err(_) => false,
    })
}

/// The bearer of an active access token as the policy sees them, and the token's expiry.
async fn bearer(context: &ApiContext, token: &str) -> Result<Option<(MqttClient, i64)>, ApiError> {
    let claims = match active_claims(context, token).await? {
        Ok(claims) => claims,
        Err(why) => {
            tracing::info!(
                why,
                "broker hooks: the password is no device's and no active token"
            );
            return Ok(None);
        }
    };
    match subject_of(context, &claims).await {
        Ok(subject) => Ok(Some((MqttClient::Subject(subject), claims.exp))),
        // The account is gone.
        Err(ApiError::Unauthorized) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Who the connection with this client id is, if it was let in through the hooks on this
/// replica under the same user name and its proof still holds (a token is checked again).
pub(crate) async fn client(
    context: &ApiContext,
    client_id: &str,
    username: Option<&str>,
) -> Result<Option<MqttClient>, ApiError> {
    let Some(session) = context.devices.broker_sessions.get(client_id) else {
        tracing::info!(
            client_id,
            "broker hooks: a client this replica did not let in was refused"
        );
        return Ok(None);
    };
    if session.username.as_deref() != present(username) {
        tracing::info!(
            client_id,
            "broker hooks: the user name differs from the one at connect"
        );
        return Ok(None);
    }
    match session.proof {
        Proof::Device(device_id) => Ok(Some(MqttClient::Device(device_id))),
        Proof::Token(token) => Ok(bearer(context, &token).await?.map(|(client, _)| client)),
    }
}

/// Whether `client` may publish to `topic`.
pub(crate) async fn may_publish_to(
    context: &ApiContext,
    client: &MqttClient,
    topic: &str,
) -> Result<bool, ApiError> {
    let Ok(topic) = DeviceTopic::parse(topic) else {
        return Ok(false);
    };
    let now = context.identity.clock.now();
    let relation = context
        .store
        .devices()
        .relation(&topic.device_id, now)
        .await?
        .map(|(_, relation)| relation);
    Ok(may_publish(client, &topic, relation.as_ref(), now))
}

/// Whether `client` may subscribe to `filter`.
pub(crate) async fn may_subscribe_to(
    context: &ApiContext,
    client: &MqttClient,
    filter: &str,
) -> Result<bool, ApiError> {
    let Ok(filter) = TopicFilter::parse(filter) else {
        return Ok(false);
    };
    let now = context.identity.clock.now();
    let relation = match filter.reach() {
        FilterReach::Device(device_id) => context
            .store
            .devices()
            .relation(&device_id, now)
            .await?
            .map(|(_, relation)| relation),
        FilterReach::AllDevices | FilterReach::NoDevice => None,
    };
    Ok(may_subscribe(client, &filter, relation.as_ref(), now))
}
