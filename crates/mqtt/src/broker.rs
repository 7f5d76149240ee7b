//! Starting, using and stopping the embedded broker.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use rmqtt::codec::types::QoS;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::retain::DefaultRetainStorage;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{ClientId, CodecPublish, From, Id};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::hooks::Hooks;
use crate::retain::MemoryRetain;
use crate::terminate::{self, Peers};
use crate::{Authority, TOPIC_ALIASES};
use policy::topic::MqttClient;

/// The ids of rmqtt's loopback listeners behind the TLS terminators.
const BACKEND_LISTENER: u16 = 1;
const WEBSOCKET_BACKEND_LISTENER: u16 = 2;

/// Where the broker listens: MQTT over TLS, and optionally MQTT over WebSocket over TLS (for
/// browsers), each terminated by Warden's rustls.
#[derive(Debug)]
pub struct Listeners {
    pub tls: TcpListener,
    pub websocket: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the MQTT broker cannot listen on loopback: {0}")]
    Listen(String),
    #[error("the MQTT broker cannot publish: {0}")]
    Publish(String),
}

/// A running broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    context: ServerContext,
    hooks: Hooks,
}

/// Which sessions [`Broker::recheck`] proves again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recheck {
    /// Every session: after a revocation of any kind.
    All,
    /// Sessions of people and services, whose tokens and grants end with time.
    Subjects,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// Serves MQTT on `listeners` until `shutdown`; the returned future is the server and must be
    /// polled (spawn it). Clients authenticate in the TLS handshake (devices) and in CONNECT
    /// (everyone), as `authority` decides.
    pub async fn start(
        listeners: Listeners,
        tls: Arc<rustls::ServerConfig>,
        authority: Arc<dyn Authority>,
        shutdown: CancellationToken,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), BrokerError> {
        // The busy check would refuse CONNECTs whenever the machine's CPU is loaded.
        let context = ServerContext::new().busy_check_enable(false).build().await;
        *context.extends.retain_mut().await = Box::new(MemoryRetain(DefaultRetainStorage::new()));
        crate::shared::enable(&context).await;
        let peers = Arc::new(Peers::default());
        let registration = context.extends.hook_mgr().register();
        let hooks = Hooks::new(authority, peers.clone(), context.clone());
        for kind in [
            Type::ClientAuthenticate,
            Type::ClientConnected,
            Type::ClientDisconnected,
            Type::SessionTerminated,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
        ] {
            registration.add(kind, Box::new(hooks.clone())).await;
        }
        registration.start().await;
        let (listener, backend_address) = backend("warden/mqtt-backend", Transport::Tcp)?;
        let mut server =
            MqttServer::new(context.clone()).listener_by_id(listener, BACKEND_LISTENER);
        let mut fronts = vec![terminate::run(
            listeners.tls,
            TlsAcceptor::from(tls.clone()),
            backend_address,
            peers.clone(),
            shutdown.clone(),
        )];
        if let Some(websocket) = listeners.websocket {
            let (listener, backend_address) =
                backend("warden/mqtt-websocket-backend", Transport::WebSocket)?;
            server = server.listener_by_id(listener, WEBSOCKET_BACKEND_LISTENER);
            fronts.push(terminate::run(
                websocket,
                TlsAcceptor::from(tls),
                backend_address,
                peers,
                shutdown.clone(),
            ));
        }
        let server = server.build();
        let broker = Self {
            context: context.clone(),
            hooks,
        };
        let stopping = broker.clone();
        let serve = async move {
            let mut rmqtt = tokio::spawn(async move {
                if let Err(error) = server.run().await {
                    tracing::error!(%error, "the MQTT broker stopped");
                }
            });
            tokio::select! {
                _ = futures_util::future::join_all(fronts) => {}
                _ = &mut rmqtt => {}
            }
            // rmqtt has no shutdown of its own: its accept loop is stopped, and every session
            // closed, so no connection task outlives Warden's shutdown.
            rmqtt.abort();
            let _ = rmqtt.await;
            stopping.disconnect_all().await;
        };
        Ok((broker, serve))
    }

    /// Publishes from Warden itself (no client, so no authorization hook runs), at QoS 1.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), BrokerError> {
        publish(&self.context, topic, payload, retain).await
    }

    /// Proves the chosen sessions again (credentials, and every subscription they hold) and
    /// closes those that would no longer be let in; returns how many were closed. A closed client
    /// that reconnects is decided afresh, so it keeps only what it is still allowed.
    pub async fn recheck(&self, which: Recheck) -> usize {
        let mut closed = 0;
        for (client_id, session) in self.hooks.sessions() {
            if which == Recheck::Subjects && matches!(session.client, MqttClient::Device(_)) {
                continue;
            }
            let filters = self.filters(&client_id).await;
            if !self
                .hooks
                .still_allowed(&client_id, &session, &filters)
                .await
            {
                tracing::info!(%client_id, client = ?session.client, "MQTT session closed: its rights were revoked or ended");
                if self.disconnect(&client_id).await {
                    closed += 1;
                }
            }
        }
        closed
    }

    /// The topic filters the session of `client_id` holds.
    async fn filters(&self, client_id: &str) -> Vec<String> {
        let Some(session) = self.entry(client_id).await.session() else {
            return Vec::new();
        };
        match session.subscriptions().await {
            Ok(subscriptions) => subscriptions
                .read()
                .await
                .keys()
                .map(|filter| filter.to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn entry(&self, client_id: &str) -> Box<dyn rmqtt::shared::Entry> {
        self.context
            .extends
            .shared()
            .await
            .entry(Id::from(self.context.node.id(), ClientId::from(client_id)))
    }

    /// Closes the session of `client_id`, if there is one (for revocations).
    pub async fn disconnect(&self, client_id: &str) -> bool {
        let mut entry = self.entry(client_id).await;
        if entry.session().is_none() {
            return false;
        }
        entry.kick(true, true, true).await.is_ok()
    }

    async fn disconnect_all(&self) {
        let client_ids: Vec<String> = self
            .context
            .extends
            .shared()
            .await
            .iter()
            .filter_map(|entry| {
                entry
                    .session()
                    .map(|session| session.id.client_id.to_string())
            })
            .collect();
        for client_id in client_ids {
            self.disconnect(&client_id).await;
        }
    }
}

enum Transport {
    Tcp,
    WebSocket,
}

/// An rmqtt listener on a free loopback port, and its address, for a TLS terminator to forward to.
fn backend(
    name: &str,
    transport: Transport,
) -> Result<(rmqtt::net::Listener, SocketAddr), BrokerError> {
    let listen = |error: anyhow::Error| BrokerError::Listen(error.to_string());
    let listener = Builder::new()
        .name(name)
        .laddr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .nodelay(true)
        .max_topic_aliases(TOPIC_ALIASES)
        // Without this, a CONNECT without a user name would skip the authentication hook.
        .allow_anonymous(false)
        .bind()
        .map_err(listen)?;
    let listener = match transport {
        Transport::Tcp => listener.tcp(),
        Transport::WebSocket => listener.ws(),
    }
    .map_err(listen)?;
    let address = listener.local_addr().map_err(listen)?;
    Ok((listener, address))
}

/// Publishes a message of Warden's own to the subscribers of `topic`, at QoS 1.
pub(crate) async fn publish(
    context: &ServerContext,
    topic: &str,
    payload: Vec<u8>,
    retain: bool,
) -> Result<(), BrokerError> {
    let message = CodecPublish {
        dup: false,
        retain,
        qos: QoS::AtLeastOnce,
        topic: topic.into(),
        packet_id: None,
        payload: payload.into(),
        properties: None,
    };
    let message = rmqtt::types::Publish::new(
        Box::new(message),
        None,
        None,
        Some(rmqtt::utils::timestamp_millis()),
    );
    let from = From::from_system(Id::from(context.node.id(), ClientId::from_static("warden")));
    SessionState::forwards(context, from, message, false, None)
        .await
        .map_err(|error| BrokerError::Publish(error.to_string()))
}
