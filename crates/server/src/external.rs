//! Warden as a client of an external MQTT broker (a VerneMQ or EMQX cluster that calls Warden's
//! broker hooks), in place of the built-in broker.
//!
//! - **Intake**: one MQTT 5 session per replica, persistent under a stable client id, subscribed
//!   to what devices send through shared subscriptions (`$share/GROUP/devices/+/events`, …), so
//!   every replica of the group takes a share and each message reaches one of them. Each message
//!   goes through the same [`mqtt::receive`] as the built-in broker's, and is acknowledged only
//!   once it is stored. Acknowledgements go out in the order the messages came, as MQTT requires;
//!   while the database does not answer, a message is tried again and the broker, which may not
//!   send more than the Receive Maximum unacknowledged, keeps the rest.
//! - **Delivery**: desired settings, commands and firmware offers are published to the broker
//!   through the same session ([`ExternalOutlet`]).
//!
//! The broker authenticates Warden like any service, through its hooks: the password is an
//! access token Warden issues to itself (`warden-intake`, with the scopes below), a fresh one at
//! every connection, and a new connection before the token expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use http_api::ApiContext;
use policy::topic::DeviceTopic;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ExternalBroker;
use crate::mqtt::{self, Outlet};

/// The service Warden's own client of the broker speaks as.
const INTAKE_CLIENT_ID: &str = "warden-intake";
/// Reading what devices send (events, reports, answers, presence, update status) and publishing
/// desired settings, commands and firmware offers.
const INTAKE_SCOPES: &str = "devices:read devices:write devices:command firmware:manage";
/// What devices send, after `devices/+/`.
const DEVICE_TOPICS: [&str; 5] = [
    "events",
    "state/reported",
    "commands/+/response",
    "ota/status",
    "presence",
];
/// The longest wait before a new connection attempt, or another try to store a message.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Publishes Warden's own messages to devices through the external broker.
#[derive(Clone, Debug)]
pub(crate) struct ExternalOutlet {
    client: AsyncClient,
}

#[async_trait]
impl Outlet for ExternalOutlet {
    async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), String> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|error| error.to_string())
    }
}

/// Connects to the external broker; the returned future keeps the session (reconnecting with
/// backoff) and takes in what devices send, until `shutdown`. It must be polled (spawn it).
pub(crate) fn connect(
    context: ApiContext,
    settings: &ExternalBroker,
    roots_pem: &[u8],
    shutdown: CancellationToken,
) -> anyhow::Result<(ExternalOutlet, impl Future<Output = ()> + Send + 'static)> {
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(settings.session_expiry))
        .set_receive_maximum(Some(settings.receive_maximum))
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30));
    if settings.tls {
        let roots = match &settings.ca_file {
            Some(path) => std::fs::read(path).map_err(|error| {
                anyhow::anyhow!(
                    "cannot read mqtt.external.ca_file {}: {error}",
                    path.display()
                )
            })?,
            None => roots_pem.to_vec(),
        };
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(
            crate::tls::client_config(&roots)?,
        )));
    }
    let capacity = usize::from(settings.receive_maximum);
    let (client, events) = AsyncClient::new(options, capacity);
    let filters: Vec<Filter> = DEVICE_TOPICS
        .iter()
        .map(|kind| {
            Filter::new(
                format!("$share/{}/devices/+/{kind}", settings.group),
                QoS::AtLeastOnce,
            )
        })
        .collect();
    let outlet = ExternalOutlet {
        client: client.clone(),
    };
    let connection = Arc::new(AtomicU64::new(0));
    let (received, queue) = mpsc::channel(capacity);
    let session = Session {
        context: context.clone(),
        client: client.clone(),
        filters,
        connection: connection.clone(),
    };
    let run = async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = session.run(events, received) => {}
            () = store_in_order(context, client.clone(), connection, queue) => {}
        }
        let _ = client.disconnect().await;
    };
    Ok((outlet, run))
}

/// The connection to the broker, kept up.
struct Session {
    context: ApiContext,
    client: AsyncClient,
    filters: Vec<Filter>,
    /// Counts connections: an acknowledgement belongs to the connection its message came on.
    connection: Arc<AtomicU64>,
}

impl Session {
    async fn run(self, mut events: EventLoop, received: mpsc::Sender<(u64, Publish)>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            // A fresh token at every connection: the hooks see a service that may read and
            // write every device's topics.
            match self.token().await {
                Ok(token) => {
                    events.options.set_credentials(INTAKE_CLIENT_ID, token);
                }
                Err(error) => tracing::warn!(%error, "cannot issue the MQTT intake's token"),
            }
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff = Duration::from_millis(500);
                    let connection = self.connection.fetch_add(1, Ordering::SeqCst) + 1;
                    self.renew_before_expiry(connection);
                    tracing::info!(
                        session_present = ack.session_present,
                        "connected to the external MQTT broker"
                    );
                    // Subscribing again is harmless, and covers a session the broker lost. It
                    // goes out before anything asked for later; only a full request queue
                    // (the event loop is this task) makes it wait its turn.
                    if self
                        .client
                        .try_subscribe_many(self.filters.clone())
                        .is_err()
                    {
                        let (client, filters) = (self.client.clone(), self.filters.clone());
                        tokio::spawn(async move {
                            if let Err(error) = client.subscribe_many(filters).await {
                                tracing::warn!(%error, "cannot subscribe to the devices' topics");
                            }
                        });
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let connection = self.connection.load(Ordering::SeqCst);
                    if received.send((connection, publish)).await.is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|code| {
                            !matches!(
                                code,
                                rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
                            )
                        })
                        .count();
                    if refused > 0 {
                        tracing::error!(refused, codes = ?ack.return_codes, "the external broker refused the intake's subscriptions: check that its hooks point at Warden");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "the external MQTT broker's connection failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The hooks check the token at every question, also on Warden's own publishes: the
    /// connection is made again with a fresh one after four fifths of its lifetime. The session
    /// and what the broker holds for it stay; messages in flight come again and are stored once
    /// by their message id.
    fn renew_before_expiry(&self, connection: u64) {
        let lifetime = self.context.oauth.access_token_lifetime;
        let (client, current) = (self.client.clone(), self.connection.clone());
        tokio::spawn(async move {
            tokio::time::sleep(lifetime.mul_f32(0.8)).await;
            if current.load(Ordering::SeqCst) == connection {
                tracing::info!("reconnecting to the external MQTT broker with a fresh token");
                let _ = client.disconnect().await;
            }
        });
    }

    async fn token(&self) -> Result<String, http_api::ApiError> {
        let scopes = oauth::scope::Scopes::parse(INTAKE_SCOPES)
            .map_err(|error| http_api::ApiError::Internal(Box::new(error)))?;
        http_api::own_service_token(&self.context, INTAKE_CLIENT_ID, &scopes).await
    }
}

/// Stores the messages as they come, several at once, and acknowledges them in their order, each
/// once it is stored.
async fn store_in_order(
    context: ApiContext,
    client: AsyncClient,
    connection: Arc<AtomicU64>,
    mut queue: mpsc::Receiver<(u64, Publish)>,
) {
    let mut storing = FuturesOrdered::new();
    loop {
        tokio::select! {
            next = queue.recv() => match next {
                Some((came_on, publish)) => {
                    let context = context.clone();
                    storing.push_back(async move {
                        store(&context, &publish).await;
                        (came_on, publish)
                    });
                }
                None => return,
            },
            Some((came_on, publish)) = storing.next(), if !storing.is_empty() => {
                // A message of an earlier connection is sent again by the broker on this one
                // (same packet id); acknowledging it here could acknowledge another message.
                if came_on == connection.load(Ordering::SeqCst)
                    && let Err(error) = client.ack(&publish).await
                {
                    tracing::warn!(%error, "cannot acknowledge a device message");
                }
            }
        }
    }
}

/// Stores one message, trying again until it is stored. A topic that is not a device's is
/// logged and acknowledged: the broker would only send it again.
async fn store(context: &ApiContext, publish: &Publish) {
    let topic = String::from_utf8_lossy(&publish.topic);
    let Ok(topic) = DeviceTopic::parse(&topic) else {
        tracing::warn!(%topic, "a message of the external broker that is no device's, dropped");
        return;
    };
    let properties = publish.properties.as_ref();
    let message = ::mqtt::Message {
        payload: &publish.payload,
        acknowledged: publish.qos != QoS::AtMostOnce,
        content_type: properties.and_then(|p| p.content_type.as_deref()),
        message_id: properties.and_then(|p| {
            ::mqtt::Message::message_id_in(
                p.user_properties
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
        }),
    };
    let mut backoff = Duration::from_millis(100);
    while !mqtt::receive(context, &topic.device_id, &topic, message).await {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
