//! The built-in MQTT broker wired to the rest of Warden: who connects (a device by certificate and
//! password, a person or service by access token), the registry's facts for the policy, what the
//! broker lets in (reported state, command answers), presence (a device that connects is sent its
//! retained messages again), and delivery of desired settings and commands from the HTTP API to
//! devices.

use async_trait::async_trait;
use events::{Event, MessageProperties};
use http_api::{ApiContext, DeviceMessages};
use model::{DeviceId, Timestamp};
use mqtt::{Authority, Broker, Hello, Message, Recheck};
use policy::DeviceRelation;
use policy::topic::{DeviceTopic, MqttClient, TopicKind};
use serde_json::{Value, json};
use store::CommandRecord;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often sessions of people and services are proved again without a revocation: the longest
/// an expired token or grant keeps its MQTT session.
const SUBJECT_RECHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers the broker's questions from the API's context (the same store, keys and caches).
#[derive(Debug)]
pub(crate) struct BrokerAuthority {
    pub context: ApiContext,
}

#[async_trait]
impl Authority for BrokerAuthority {
    async fn authenticate(&self, hello: Hello<'_>) -> Option<MqttClient> {
        let password = std::str::from_utf8(hello.password?).ok()?;
        if let Some(certificate) = hello.certificate {
            // A certificate makes it a device: the id in it must be the user name and client id.
            let user = hello.username?;
            if user != hello.client_id {
                return None;
            }
            return http_api::authenticate_device(&self.context, Some(certificate), user, password)
                .await
                .map_err(|error| tracing::info!(%error, "MQTT device refused"))
                .ok()
                .map(MqttClient::Device);
        }
        match http_api::token_subject(&self.context, password).await {
            Ok(subject) => subject.map(MqttClient::Subject),
            Err(error) => {
                tracing::warn!(%error, "cannot check an MQTT client's token");
                None
            }
        }
    }

    async fn relation(&self, device_id: &DeviceId) -> Option<DeviceRelation> {
        match self
            .context
            .store
            .devices()
            .relation(device_id, self.now())
            .await
        {
            Ok(found) => found.map(|(_, relation)| relation),
            Err(error) => {
                tracing::warn!(%error, "cannot read a device for an MQTT decision; denied");
                None
            }
        }
    }

    fn now(&self) -> Timestamp {
        self.context.identity.clock.now()
    }

    async fn subscribed(
        &self,
        client: &MqttClient,
        relation: Option<&DeviceRelation>,
        filter: &str,
    ) -> bool {
        let MqttClient::Subject(subject) = client else {
            return true;
        };
        // The owner's own reads are not what the access log is for.
        if let Some(relation) = relation
            && subject.user_id().is_some()
            && subject.user_id() == relation.owner
        {
            return true;
        }
        // A wildcard across devices names every device: `*`, and no one owner's log.
        let device = relation.map(|relation| relation.device_id.as_str());
        let mut record = audit::Record::new(
            self.now(),
            http_api::journal::actor_of(subject),
            audit::Action::DeviceRead,
            audit::Target::new("device", device.unwrap_or("*")),
        )
        .detail(json!({ "via": "mqtt", "filter": filter }));
        record.device = device.map(str::to_owned);
        match self.context.audit.append(record).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "an MQTT subscription could not be recorded; refused");
                false
            }
        }
    }

    async fn accepted(
        &self,
        client: &MqttClient,
        topic: &DeviceTopic,
        message: Message<'_>,
    ) -> bool {
        match client {
            MqttClient::Device(device_id) => {
                receive(&self.context, device_id, topic, message).await
            }
            MqttClient::Subject(_) => true,
        }
    }

    async fn presence(&self, device_id: &DeviceId, online: bool) {
        let now = self.now();
        if let Err(error) = self
            .context
            .store
            .devices()
            .set_online(device_id, online, now)
            .await
        {
            tracing::warn!(%error, %device_id, "cannot record presence");
        }
        if online && let Err(error) = http_api::redeliver(&self.context, device_id).await {
            tracing::warn!(%error, %device_id, "cannot send a device its retained messages again");
        }
    }
}

/// A message a device sent, which the broker let in: stored (a QoS 1 message is committed before
/// this returns), then applied (a reported state, a command's answer, an update's status, a
/// certificate request). `false` when it could not be stored, so that it must not be
/// acknowledged. The built-in broker and the intake from an external broker both end here.
pub(crate) async fn receive(
    context: &ApiContext,
    device_id: &DeviceId,
    topic: &DeviceTopic,
    message: Message<'_>,
) -> bool {
    // Stored first: a message is acknowledged only once it is committed.
    let event = Event::received(
        device_id.clone(),
        topic.to_string(),
        message.payload.to_vec(),
        MessageProperties {
            content_type: message.content_type.map(str::to_owned),
            message_id: message.message_id.map(str::to_owned),
        },
        context.identity.clock.now(),
    );
    let recorder = &context.devices.events;
    if message.acknowledged {
        if let Err(error) = recorder.record(event).await {
            tracing::warn!(%error, %device_id, %topic, "device message not acknowledged");
            return false;
        }
    } else {
        recorder.offer(event);
    }
    let recorded = match topic.kind {
        TopicKind::StateReported => match serde_json::from_slice::<Value>(message.payload) {
            Ok(reported) => http_api::record_report(context, device_id, &reported)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(format!("reported state is not JSON: {error}")),
        },
        TopicKind::CommandResponse => match serde_json::from_slice::<Value>(message.payload) {
            Ok(answer) => match answer["command_id"].as_str() {
                Some(command_id) => {
                    http_api::record_answer(context, device_id, command_id, &answer["response"])
                        .await
                        .map(drop)
                        .map_err(|error| error.to_string())
                }
                None => Err("a command response needs its command_id".to_owned()),
            },
            Err(error) => Err(format!("a command response is not JSON: {error}")),
        },
        TopicKind::OtaStatus => http_api::record_ota_status(context, device_id, message.payload)
            .await
            .map(drop),
        TopicKind::CertificateRequest => {
            renew(context, device_id, message.payload).await;
            Ok(())
        }
        // Events and presence are stored above and need nothing more.
        _ => Ok(()),
    };
    if let Err(why) = recorded {
        tracing::info!(%device_id, %topic, why, "device message stored but not applied");
    }
    true
}

/// Answers a certificate request on `devices/{id}/certificate`: `{"request_id", "chain"}` with
/// the new certificate and the intermediate's (PEM), or `{"request_id", "error"}`. The request
/// is `{"request_id": …, "csr": PEM}` or the CSR alone (PEM or DER).
async fn renew(context: &ApiContext, device_id: &DeviceId, payload: &[u8]) {
    let (request_id, csr) = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(request)) => (
            request.get("request_id").cloned().unwrap_or(Value::Null),
            request
                .get("csr")
                .and_then(Value::as_str)
                .map(|pem| pem.as_bytes().to_vec()),
        ),
        _ => (Value::Null, Some(payload.to_vec())),
    };
    let answer = match csr {
        None => json!({"request_id": request_id, "error": "the request has no csr"}),
        Some(csr) => match http_api::renew_for_device(context, device_id, &csr).await {
            Ok(chain) => json!({"request_id": request_id, "chain": chain}),
            Err(error) => json!({"request_id": request_id, "error": error.to_string()}),
        },
    };
    if let Some(messages) = context.devices.messages.get() {
        messages.certificate(device_id, &answer).await;
    }
}

/// Where Warden's own messages to devices go: the built-in broker, or an external one through
/// Warden's client of it (`external`).
#[async_trait]
pub(crate) trait Outlet: std::fmt::Debug + Send + Sync + 'static {
    async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), String>;
}

#[async_trait]
impl Outlet for Broker {
    async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), String> {
        Broker::publish(self, topic, payload, retain)
            .await
            .map_err(|error| error.to_string())
    }
}

/// Delivers desired settings (retained, so a device that connects later gets the latest),
/// commands, firmware offers and certificates to devices through a broker.
#[derive(Debug)]
pub(crate) struct BrokerMessages<O> {
    pub outlet: O,
}

impl<O: Outlet> BrokerMessages<O> {
    async fn publish(&self, topic: String, payload: Value, retain: bool) {
        if let Err(error) = self
            .outlet
            .publish(&topic, payload.to_string().into_bytes(), retain)
            .await
        {
            tracing::warn!(%error, %topic, "cannot publish to devices");
        }
    }
}

#[async_trait]
impl<O: Outlet> DeviceMessages for BrokerMessages<O> {
    async fn desired(&self, device_id: &DeviceId, version: i64, settings: &Value) {
        let topic = format!("devices/{device_id}/state/desired");
        let payload = json!({"version": version, "settings": settings});
        self.publish(topic, payload, true).await;
    }

    async fn command(&self, command: &CommandRecord) {
        let topic = format!("devices/{}/commands/{}", command.device_id, command.name);
        let payload = json!({
            "command_id": command.command_id,
            "payload": command.payload,
            "expires_at": command.expires_at.to_rfc3339(),
        });
        self.publish(topic, payload, false).await;
    }

    async fn ota(&self, device_id: &DeviceId, offer: &Value) {
        // Retained: a device that is offline now gets the offer when it subscribes.
        self.publish(format!("devices/{device_id}/ota"), offer.clone(), true)
            .await;
    }

    async fn certificate(&self, device_id: &DeviceId, answer: &Value) {
        self.publish(
            format!("devices/{device_id}/certificate"),
            answer.clone(),
            false,
        )
        .await;
    }

    async fn withdraw_ota(&self, device_id: &DeviceId) {
        // An empty retained message removes the retained one (MQTT 3.1.1 section 3.3.1.3).
        let topic = format!("devices/{device_id}/ota");
        if let Err(error) = self.outlet.publish(&topic, Vec::new(), true).await {
            tracing::warn!(%error, %topic, "cannot withdraw a firmware offer");
        }
    }
}

/// Proves live MQTT sessions again: every session at each new revocation epoch (a revoked
/// certificate, token, ownership or grant anywhere closes its sessions within the epoch watch's
/// interval), and sessions of people and services every [`SUBJECT_RECHECK_INTERVAL`], for tokens
/// and grants that end with time.
pub(crate) async fn recheck_sessions(
    broker: Broker,
    mut epochs: watch::Receiver<i64>,
    shutdown: CancellationToken,
) {
    let mut timer = tokio::time::interval(SUBJECT_RECHECK_INTERVAL);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let which = tokio::select! {
            () = shutdown.cancelled() => break,
            changed = epochs.changed() => match changed {
                Ok(()) => Recheck::All,
                Err(_) => break,
            },
            _ = timer.tick() => Recheck::Subjects,
        };
        let closed = broker.recheck(which).await;
        if closed > 0 {
            tracing::info!(closed, ?which, "MQTT sessions closed after a recheck");
        }
    }
}
