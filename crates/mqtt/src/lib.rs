//! Warden's built-in MQTT broker: the rmqtt broker embedded as a library, behind TLS that Warden
//! terminates itself, with every CONNECT, SUBSCRIBE and PUBLISH decided through the `policy` crate
//! by way of an [`Authority`] the composition root provides.
//!
//! Why terminate TLS here: rmqtt's own TLS listener reads keys from files, hard-wires its crypto
//! backend and protocol versions, and shows its hooks only the certificate's common name. Warden's
//! rustls configuration (same cipher policy as HTTPS, client certificates from Warden's CA) accepts
//! the connection, and the plain bytes go to an rmqtt listener on a loopback port; the connection's
//! local address on that port names the verified certificate for the authentication hook. A
//! process that connects to the loopback port directly has no such entry and is refused.
//!
//! The broker is written by others (rmqtt); this crate is the adapter: [`Authority`] is broker-neutral,
//! so another broker could sit behind the same interface.

mod broker;
mod development;
mod hooks;
mod retain;
mod shared;
mod terminate;

use async_trait::async_trait;
use model::{DeviceId, Timestamp};
use policy::DeviceRelation;
use policy::topic::{DeviceTopic, MqttClient};

pub use broker::{Broker, BrokerError, Listeners, Recheck};
pub use development::{DeniedTopics, start_development};

/// The most topic aliases a client may set per connection (MQTT 5 Topic Alias Maximum): a
/// device that sends the same long topic again and again saves its bytes on the wire.
const TOPIC_ALIASES: u16 = 32;

/// What a client presented in its CONNECT and its TLS handshake.
#[derive(Debug)]
pub struct Hello<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The DER of the client certificate the handshake verified against Warden's CA.
    pub certificate: Option<&'a [u8]>,
}

/// The MQTT 5 user property a device names its message by, for de-duplication (docs/events.md).
const MESSAGE_ID_PROPERTY: &str = "message-id";

/// A PUBLISH as the authority sees it.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub payload: &'a [u8],
    /// QoS 1 or 2: the client waits for an acknowledgement, which must mean "stored".
    pub acknowledged: bool,
    /// MQTT 5's Content Type property.
    pub content_type: Option<&'a str>,
    /// MQTT 5's User Property `message-id`.
    pub message_id: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// The message id among a PUBLISH's MQTT 5 user properties (name, value).
    pub fn message_id_in(
        user_properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<&'a str> {
        user_properties
            .into_iter()
            .find(|(name, _)| *name == MESSAGE_ID_PROPERTY)
            .map(|(_, value)| value)
    }
}

/// What the broker asks Warden. Errors inside (a database that does not answer) must come back as
/// refusals: the broker denies whatever it cannot decide.
#[async_trait]
pub trait Authority: Send + Sync + 'static {
    /// Who is connecting, or `None` to refuse.
    async fn authenticate(&self, hello: Hello<'_>) -> Option<MqttClient>;
    /// The owner and grants of a device, `None` when it is not in the registry.
    async fn relation(&self, device_id: &DeviceId) -> Option<DeviceRelation>;
    fn now(&self) -> Timestamp;
    /// A message the policy let in, before it is acknowledged and passed on to subscribers.
    /// `false` when it could not be stored: the broker then closes the connection without an
    /// acknowledgement, so that the client sends it again.
    async fn accepted(
        &self,
        client: &MqttClient,
        topic: &DeviceTopic,
        message: Message<'_>,
    ) -> bool;
    /// A device's session came up or went away.
    async fn presence(&self, device_id: &DeviceId, online: bool);
    /// A person or service was let subscribe to the topics of the device `relation` describes
    /// (a read its owner's access log shows), or, without one, to every device's (a service's
    /// wildcard). `false` when it could not be recorded; the subscription is then refused.
    async fn subscribed(
        &self,
        client: &MqttClient,
        relation: Option<&DeviceRelation>,
        filter: &str,
    ) -> bool;
}
