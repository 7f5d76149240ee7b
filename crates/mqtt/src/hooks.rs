//! The rmqtt hooks: authentication, per-filter subscription and per-message publish decisions,
//! and presence, each answered through the [`Authority`] and `policy::topic`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use policy::topic::{
    DeviceTopic, FilterReach, MqttClient, TopicFilter, may_publish, may_subscribe,
};
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::types::{AuthResult, PublishAclResult, SubscribeAclResult};

use crate::terminate::Peers;
use crate::{Authority, Hello};

/// Who each session is, by client id, from its authentication to its end.
type Sessions = Mutex<HashMap<String, MqttClient>>;

/// One value serves every hook kind (rmqtt takes a handler per kind; clones share their state).
#[derive(Clone)]
pub(crate) struct Hooks {
    authority: Arc<dyn Authority>,
    peers: Arc<Peers>,
    sessions: Arc<Sessions>,
}

impl Hooks {
    pub(crate) fn new(authority: Arc<dyn Authority>, peers: Arc<Peers>) -> Self {
        Self {
            authority,
            peers,
            sessions: Arc::default(),
        }
    }

    fn client(&self, client_id: &str) -> Option<MqttClient> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
            .cloned()
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
                self.sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(client_id, client);
                AuthResult::Allow(false, None)
            }
            None => {
                tracing::info!(%client_id, peer = %peer.address, "MQTT connect refused");
                AuthResult::BadUsernameOrPassword
            }
        }
    }

    async fn subscribe_allowed(&self, client_id: &str, filter: &str) -> bool {
        let (Some(client), Ok(filter)) = (self.client(client_id), TopicFilter::parse(filter))
        else {
            return false;
        };
        let relation = match filter.reach() {
            FilterReach::Device(device_id) => self.authority.relation(&device_id).await,
            FilterReach::AllDevices | FilterReach::NoDevice => None,
        };
        may_subscribe(&client, &filter, relation.as_ref(), self.authority.now())
    }

    async fn publish_allowed(&self, client_id: &str, topic: &str, payload: &[u8]) -> bool {
        let (Some(client), Ok(topic)) = (self.client(client_id), DeviceTopic::parse(topic)) else {
            return false;
        };
        let relation = self.authority.relation(&topic.device_id).await;
        let allowed = may_publish(&client, &topic, relation.as_ref(), self.authority.now());
        if allowed {
            self.authority.accepted(&client, &topic, payload).await;
        }
        allowed
    }

    async fn presence(&self, client_id: &str, online: bool) {
        if let Some(MqttClient::Device(device_id)) = self.client(client_id) {
            self.authority.presence(&device_id, online).await;
        }
    }
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
                let allowed = self
                    .publish_allowed(&session.id.client_id, &message.topic, &message.payload)
                    .await;
                let result = if allowed {
                    PublishAclResult::allow()
                } else {
                    tracing::info!(client_id = %session.id.client_id, topic = %message.topic, "MQTT publish refused");
                    PublishAclResult::rejected(false, Some("not allowed on this topic".into()))
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
