//! The rmqtt hooks: authentication, per-filter subscription and per-message publish decisions,
//! and presence, each answered through the [`Authority`] and `policy::topic`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use policy::topic::{
    DeviceTopic, FilterReach, MqttClient, TopicFilter, TopicKind, may_publish, may_subscribe,
};
use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::{AuthResult, Publish, PublishAclResult, SubscribeAclResult};

use crate::broker::publish;
use crate::terminate::Peers;
use crate::{Authority, Hello, Message};

/// A publish that was allowed but could not be stored.
struct NotStored;

/// Who each session is, by client id, from its authentication to its end.
type Sessions = Mutex<HashMap<String, Session>>;

/// A session as it was let in: who it is, and what it proved, kept to prove it again when a
/// revocation may have ended its right to be connected.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub client: MqttClient,
    credentials: Credentials,
    /// Publishes refused so far in this session.
    refusals: u32,
}

/// A session whose publishes were refused this often is closed: a client that keeps trying
/// topics it may not use is broken or probing.
const MAX_REFUSED_PUBLISHES: u32 = 10;

#[derive(Clone)]
struct Credentials {
    username: Option<String>,
    password: Option<Vec<u8>>,
    certificate: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One value serves every hook kind (rmqtt takes a handler per kind; clones share their state).
#[derive(Clone)]
pub(crate) struct Hooks {
    authority: Arc<dyn Authority>,
    peers: Arc<Peers>,
    sessions: Arc<Sessions>,
    /// The broker, for presence messages.
    context: ServerContext,
}

impl Hooks {
    pub(crate) fn new(
        authority: Arc<dyn Authority>,
        peers: Arc<Peers>,
        context: ServerContext,
    ) -> Self {
        Self {
            authority,
            peers,
            sessions: Arc::default(),
            context,
        }
    }

    fn client(&self, client_id: &str) -> Option<MqttClient> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
            .map(|session| session.client.clone())
    }

    /// Counts a refused publish of the session of `client_id`; returns its refusals so far.
    fn count_refusal(&self, client_id: &str) -> u32 {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.get_mut(client_id).map_or(u32::MAX, |session| {
            session.refusals += 1;
            session.refusals
        })
    }

    /// Every session let in, by client id.
    pub(crate) fn sessions(&self) -> Vec<(String, Session)> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(client_id, session)| (client_id.clone(), session.clone()))
            .collect()
    }

    /// Whether `session` would be let in again now, as the same client, with every filter in
    /// `filters` granted: false once its certificate, token, ownership or grant was revoked or
    /// has expired.
    pub(crate) async fn still_allowed(
        &self,
        client_id: &str,
        session: &Session,
        filters: &[String],
    ) -> bool {
        let credentials = &session.credentials;
        let hello = Hello {
            client_id,
            username: credentials.username.as_deref(),
            password: credentials.password.as_deref(),
            certificate: credentials.certificate.as_deref(),
        };
        if self.authority.authenticate(hello).await.as_ref() != Some(&session.client) {
            return false;
        }
        for filter in filters {
            if !self.may_subscribe(&session.client, filter).await {
                return false;
            }
        }
        true
    }

    async fn authenticate(&self, info: &rmqtt::types::ConnectInfo) -> AuthResult {
        // Only connections that came through the TLS terminator are known here.
        let Some(peer) = info
            .id()
            .remote_addr
            .and_then(|address| self.peers.get(&address))
        else {
            tracing::warn!("MQTT connection that bypassed TLS refused");
            return AuthResult::NotAuthorized;
        };
        let client_id = info.client_id().to_string();
        let hello = Hello {
            client_id: &client_id,
            username: info.username().map(|name| name.as_ref()),
            password: info.password().map(|password| password.as_ref()),
            certificate: peer.certificate.as_deref(),
        };
        match self.authority.authenticate(hello).await {
            Some(client) => {
                tracing::info!(%client_id, peer = %peer.address, ?client, "MQTT client connected");
                let credentials = Credentials {
                    username: info.username().map(|name| name.to_string()),
                    password: info.password().map(|password| password.to_vec()),
                    certificate: peer.certificate,
                };
                self.sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        client_id,
                        Session {
                            client,
                            credentials,
                            refusals: 0,
                        },
                    );
                AuthResult::Allow(false, None)
            }
            None => {
                tracing::info!(%client_id, peer = %peer.address, "MQTT connect refused");
                AuthResult::BadUsernameOrPassword
            }
        }
    }

    /// A new subscription: decided, and when it reads one device's topics for someone who is not
    /// its owner, recorded (a subscription that cannot be recorded is refused).
    async fn subscribe_allowed(&self, client_id: &str, filter: &str) -> bool {
        let Some(client) = self.client(client_id) else {
            return false;
        };
        if !self.may_subscribe(&client, filter).await {
            return false;
        }
        match (TopicFilter::parse(filter).map(|f| f.reach()), &client) {
            (Ok(FilterReach::Device(device_id)), MqttClient::Subject(_)) => {
                match self.authority.relation(&device_id).await {
                    Some(relation) => {
                        self.authority
                            .subscribed(&client, Some(&relation), filter)
                            .await
                    }
                    None => false,
                }
            }
            (Ok(FilterReach::AllDevices), MqttClient::Subject(_)) => {
                self.authority.subscribed(&client, None, filter).await
            }
            _ => true,
        }
    }

    async fn may_subscribe(&self, client: &MqttClient, filter: &str) -> bool {
        let Ok(filter) = TopicFilter::parse(filter) else {
            return false;
        };
        let relation = match filter.reach() {
            FilterReach::Device(device_id) if client.needs_relation() => {
                self.authority.relation(&device_id).await
            }
            _ => None,
        };
        may_subscribe(client, &filter, relation.as_ref(), self.authority.now())
    }

    /// Whether the publish is allowed, and, for one that is, whether it was stored (`Err`: it
    /// was not, and must not be acknowledged).
    async fn publish_allowed(&self, client_id: &str, publish: &Publish) -> Result<bool, NotStored> {
        let (Some(client), Ok(topic)) =
            (self.client(client_id), DeviceTopic::parse(&publish.topic))
        else {
            return Ok(false);
        };
        if matches!(client, MqttClient::Subject(_)) && written_through_http(topic.kind) {
            return Ok(false);
        }
        let relation = if client.needs_relation() {
            self.authority.relation(&topic.device_id).await
        } else {
            None
        };
        if !may_publish(&client, &topic, relation.as_ref(), self.authority.now()) {
            return Ok(false);
        }
        let properties = publish.properties.as_ref();
        let message = Message {
            payload: &publish.payload,
            acknowledged: publish.qos != QoS::AtMostOnce,
            content_type: properties.and_then(|p| p.content_type.as_deref()),
            message_id: properties.and_then(|p| {
                Message::message_id_in(
                    p.user_properties
                        .iter()
                        .map(|(name, value)| (name.as_ref(), value.as_ref())),
                )
            }),
        };
        if self.authority.accepted(&client, &topic, message).await {
            Ok(true)
        } else {
            Err(NotStored)
        }
    }

    /// Records a device's session coming or going, and tells the device's readers on its
    /// presence topic (retained, so a reader that subscribes later learns the last word).
    async fn presence(&self, client_id: &str, online: bool) {
        let Some(MqttClient::Device(device_id)) = self.client(client_id) else {
            return;
        };
        self.authority.presence(&device_id, online).await;
        let at = self.authority.now().to_rfc3339();
        let topic = DeviceTopic {
            device_id,
            kind: TopicKind::Presence,
            command: None,
        };
        let payload = format!(r#"{{"online":{online},"at":"{at}"}}"#);
        // Presence changes are stored like the device's own messages.
        let message = Message {
            payload: payload.as_bytes(),
            acknowledged: true,
            content_type: None,
            message_id: None,
        };
        let client = MqttClient::Device(topic.device_id.clone());
        self.authority.accepted(&client, &topic, message).await;
        if let Err(error) = publish(
            &self.context,
            &topic.to_string(),
            payload.into_bytes(),
            true,
        )
        .await
        {
            tracing::warn!(%error, %topic, "cannot publish presence");
        }
    }
}

/// Desired settings and commands are versioned and stored: people write them over the HTTP API,
/// which publishes them to the device. A person's raw publish there would reach the device without
/// being recorded, so the built-in broker refuses it (docs/mqtt.md).
fn written_through_http(kind: TopicKind) -> bool {
    matches!(kind, TopicKind::StateDesired | TopicKind::Command)
}

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, parameter: &Parameter, accumulated: Option<HookResult>) -> ReturnType {
        match parameter {
            Parameter::ClientAuthenticate(info) => {
                let result = self.authenticate(info).await;
                (false, Some(HookResult::AuthResult(result)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let allowed = self
                    .subscribe_allowed(&session.id.client_id, &subscribe.topic_filter)
                    .await;
                let result = if allowed {
                    SubscribeAclResult::new_success(subscribe.opts.qos(), None)
                } else {
                    tracing::info!(client_id = %session.id.client_id, filter = %subscribe.topic_filter, "MQTT subscription refused");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(result)))
            }
            Parameter::MessagePublishCheckAcl(session, message) => {
                let result = match self.publish_allowed(&session.id.client_id, message).await {
                    Ok(true) => PublishAclResult::allow(),
                    // Closing without an acknowledgement makes the client send it again.
                    Err(NotStored) => PublishAclResult::rejected(
                        true,
                        Some("the message could not be stored; send it again".into()),
                    ),
                    Ok(false) => {
                        let refusals = self.count_refusal(&session.id.client_id);
                        let disconnect = refusals >= MAX_REFUSED_PUBLISHES;
                        tracing::info!(client_id = %session.id.client_id, topic = %message.topic, refusals, disconnect, "MQTT publish refused");
                        PublishAclResult::rejected(
                            disconnect,
                            Some("not allowed on this topic".into()),
                        )
                    }
                };
                (false, Some(HookResult::PublishAclResult(result)))
            }
            Parameter::ClientConnected(session) => {
                self.presence(&session.id.client_id, true).await;
                (true, accumulated)
            }
            Parameter::ClientDisconnected(session, _reason) => {
                self.presence(&session.id.client_id, false).await;
                (true, accumulated)
            }
            Parameter::SessionTerminated(session, _reason) => {
                self.sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove::<str>(&session.id.client_id);
                (true, accumulated)
            }
            _ => (true, accumulated),
        }
    }
}
