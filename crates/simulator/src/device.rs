//! One simulated device: its connection, what it publishes and how it answers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ota::{Request, Updater};
use crate::{Bundle, Counters, Load};

/// Backoff after a failed connection: doubles from the first to the last, with up to half of it
/// added at random so that a fleet does not reconnect in step.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const LAST_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping device waits for the acknowledgements of what it sent.
const DRAIN: Duration = Duration::from_secs(5);
/// Requests the client may queue before publishing waits (events are skipped instead).
const REQUEST_QUEUE: usize = 256;

pub(crate) struct Device {
    /// Takes firmware offers, when the device can reach the device listener.
    pub updater: Option<Updater>,
    pub bundle: Bundle,
    pub broker: (String, u16),
    pub load: Load,
    pub counters: Arc<Counters>,
    /// This device's QoS 1 publishes not yet acknowledged.
    pub in_flight: std::sync::atomic::AtomicU64,
}

impl Device {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let options = match self.options() {
            Ok(options) => options,
            Err(error) => {
                tracing::error!(device_id = %self.bundle.device_id, %error, "cannot use the bundle");
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        // Updates outlive a session: one may still report after the device restarted.
        let (updates, mut requests) = tokio::sync::mpsc::channel::<Request>(16);
        loop {
            let (client, mut events) = AsyncClient::new(options.clone(), REQUEST_QUEUE);
            // Small messages go out at once, as a device's would, instead of waiting for an ACK.
            let mut network = rumqttc::NetworkOptions::new();
            network.set_tcp_nodelay(true);
            events.set_network_options(network);
            if !self
                .drive(&client, events, &shutdown, (&updates, &mut requests))
                .await
            {
                break;
            }
            // Restarted into new firmware: a new session from scratch.
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn options(&self) -> Result<MqttOptions, rustls::Error> {
        let bundle = &self.bundle;
        let mut options = MqttOptions::new(&bundle.device_id, &self.broker.0, self.broker.1);
        options.set_credentials(&bundle.device_id, &bundle.password);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        options.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls(
            bundle,
        )?))));
        Ok(options)
    }

    /// Runs one session until `shutdown` (false) or until an update asks for a restart (true).
    async fn drive(
        &self,
        client: &AsyncClient,
        mut events: EventLoop,
        shutdown: &CancellationToken,
        (updates, requests): (&mpsc::Sender<Request>, &mut mpsc::Receiver<Request>),
    ) -> bool {
        let mut restart = false;
        let period = (self.load.events_per_second > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.load.events_per_second));
        // Each device starts at a random point of its period, so the fleet publishes evenly
        // rather than all at once.
        let period_or_idle = period.unwrap_or(Duration::from_secs(3600));
        let phase = period_or_idle.mul_f64(rand::rng().random_range(0.0..1.0));
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + phase, period_or_idle);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected = false;
        let mut backoff = FIRST_BACKOFF;
        let mut sequence = 0_u64;
        let run: u32 = rand::random();
        let mut ever_connected = false;
        let mut outbox = Outbox::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(request) = requests.recv() => match request {
                    Request::Status(status) => {
                        let topic = self.topic("ota/status");
                        if self.publish(client, topic, status.to_string().into_bytes()) {
                            outbox.queued(None);
                        }
                    }
                    Request::Restart => {
                        restart = true;
                        break;
                    }
                },
                _ = ticker.tick(), if connected && period.is_some() => {
                    sequence += 1;
                    let payload = event_payload(run, sequence, self.load.payload_bytes);
                    // A full queue means the broker is not keeping up: the event is skipped,
                    // not queued.
                    if self.publish(client, self.topic("events"), payload.clone()) {
                        outbox.queued(Some((sequence, payload)));
                    }
                }
                event = events.poll() => match event {
                    Ok(Event::Incoming(packet)) => {
                        match packet {
                            Packet::ConnAck(_) => {
                                connected = true;
                                backoff = FIRST_BACKOFF;
                                self.counters.connected.fetch_add(1, Ordering::Relaxed);
                                if !std::mem::replace(&mut ever_connected, true) {
                                    self.counters.first_connect();
                                }
                                self.subscribe(client);
                                // Events never acknowledged go again, as a device with an
                                // outbox would send them; their ids make the resend harmless.
                                for (sequence, payload) in outbox.unacknowledged() {
                                    if self.publish(client, self.topic("events"), payload) {
                                        self.counters.resent.fetch_add(1, Ordering::Relaxed);
                                        outbox.queued_again(sequence);
                                    }
                                }
                            }
                            Packet::PubAck(ack) => self.acknowledged(&mut outbox, ack.pkid, run),
                            Packet::Publish(message) if message.topic == self.topic("ota") => {
                                if let (Some(updater), Ok(offer)) = (
                                    &self.updater,
                                    serde_json::from_slice::<Value>(&message.payload),
                                ) {
                                    tokio::spawn(updater.clone().offered(updates.clone(), offer));
                                }
                            }
                            Packet::Publish(message) if self.answer(client, &message) => {
                                outbox.queued(None);
                            }
                            _ => {}
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => outbox.left(pkid),
                    Ok(Event::Outgoing(_)) => {}
                    Err(error) => {
                        // rumqttc drops what it had not sent or had not seen acknowledged
                        // when the next session is a new one.
                        outbox.connection_lost();
                        self.in_flight.store(0, Ordering::Relaxed);
                        if connected {
                            connected = false;
                            self.counters.connected.fetch_sub(1, Ordering::Relaxed);
                        }
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(device_id = %self.bundle.device_id, error = %describe(&error), "connection failed; reconnecting");
                        let wait = jittered(backoff);
                        backoff = (backoff * 2).min(LAST_BACKOFF);
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
        if connected {
            // Wait for the broker to acknowledge what was sent (a while at most), then send the
            // DISCONNECT and close.
            let _ = tokio::time::timeout(DRAIN, async {
                while self.in_flight() > 0 {
                    match events.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(ack))) => {
                            self.acknowledged(&mut outbox, ack.pkid, run);
                        }
                        Ok(Event::Outgoing(Outgoing::Publish(pkid))) => outbox.left(pkid),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
            .await;
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while !matches!(
                    events.poll().await,
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)
                ) {}
            })
            .await;
            self.counters.connected.fetch_sub(1, Ordering::Relaxed);
        }
        restart
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn acknowledged(&self, outbox: &mut Outbox, pkid: u16, run: u32) {
        let (sent, event) = outbox.acknowledged(pkid);
        if let Some(sent) = sent {
            self.counters.record_latency(sent, Instant::now());
        }
        if let Some(sequence) = event {
            self.counters
                .log_acknowledged(&self.bundle.device_id, &event_id(run, sequence));
        }
        self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    fn sent(&self) {
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn topic(&self, rest: &str) -> String {
        format!("devices/{}/{rest}", self.bundle.device_id)
    }

    fn subscribe(&self, client: &AsyncClient) {
        let filters: &[&str] = if self.updater.is_some() {
            &["state/desired", "commands/+", "ota"]
        } else {
            &["state/desired", "commands/+"]
        };
        for filter in filters {
            if client
                .try_subscribe(self.topic(filter), QoS::AtLeastOnce)
                .is_err()
            {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands a QoS 1 message to the client; `false` when its queue is full.
    fn publish(&self, client: &AsyncClient, topic: String, payload: Vec<u8>) -> bool {
        let queued = client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_ok();
        if queued {
            self.sent();
        }
        queued
    }

    /// Applies desired settings by reporting them, and answers commands; `true` when it
    /// published a reply.
    fn answer(&self, client: &AsyncClient, message: &Publish) -> bool {
        let Ok(body) = serde_json::from_slice::<Value>(&message.payload) else {
            return false;
        };
        let (topic, reply, counter) = if message.topic == self.topic("state/desired") {
            let reported = body.get("settings").cloned().unwrap_or(Value::Null);
            (
                self.topic("state/reported"),
                reported,
                &self.counters.settings_applied,
            )
        } else if let Some(name) = message
            .topic
            .strip_prefix(&self.topic("commands/"))
            .filter(|name| !name.contains('/'))
        {
            let answer = json!({
                "command_id": body["command_id"],
                "response": {"ok": true, "command": name},
            });
            (
                format!("{}/response", message.topic),
                answer,
                &self.counters.commands_answered,
            )
        } else {
            return false;
        };
        let replied = self.publish(client, topic, reply.to_string().into_bytes());
        if replied {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        replied
    }
}

/// A device's QoS 1 publishes until their acknowledgement. Events stay until acknowledged, to be
/// sent again on the next connection; each publish is matched to its packet id in the order the
/// client sends them.
#[derive(Default)]
struct Outbox {
    /// Unacknowledged events by sequence number.
    events: BTreeMap<u64, Vec<u8>>,
    /// Publishes handed to the client and not yet sent: an event's sequence, `None` for a reply.
    requests: VecDeque<Option<u64>>,
    /// Publishes sent and not yet acknowledged, by packet id: when they left, and which event.
    leaving: HashMap<u16, (Instant, Option<u64>)>,
}

impl Outbox {
    fn queued(&mut self, event: Option<(u64, Vec<u8>)>) {
        let sequence = event.map(|(sequence, payload)| {
            self.events.insert(sequence, payload);
            sequence
        });
        self.requests.push_back(sequence);
    }

    fn queued_again(&mut self, sequence: u64) {
        self.requests.push_back(Some(sequence));
    }

    fn unacknowledged(&self) -> Vec<(u64, Vec<u8>)> {
        self.events
            .iter()
            .map(|(sequence, payload)| (*sequence, payload.clone()))
            .collect()
    }

    fn left(&mut self, pkid: u16) {
        let sequence = self.requests.pop_front().flatten();
        self.leaving.insert(pkid, (Instant::now(), sequence));
    }

    /// When the acknowledged publish left, and the event it was, if it was one.
    fn acknowledged(&mut self, pkid: u16) -> (Option<Instant>, Option<u64>) {
        match self.leaving.remove(&pkid) {
            Some((left, sequence)) => {
                if let Some(sequence) = sequence {
                    self.events.remove(&sequence);
                }
                (Some(left), sequence)
            }
            None => (None, None),
        }
    }

    fn connection_lost(&mut self) {
        self.requests.clear();
        self.leaving.clear();
    }
}

/// The id an event carries: unique for the device across runs.
fn event_id(run: u32, sequence: u64) -> String {
    format!("{run:08x}-{sequence}")
}

/// TLS for a device: trusts the bundle's root, presents the bundle's certificate and key.
fn tls(bundle: &Bundle) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(bundle.ca_pem.as_bytes()).flatten() {
        roots.add(certificate)?;
    }
    let chain = CertificateDer::pem_slice_iter(bundle.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| rustls::Error::General(format!("device.crt: {error}")))?;
    let key = PrivateKeyDer::from_pem_slice(bundle.key_pem.as_bytes())
        .map_err(|error| rustls::Error::General(format!("device.key: {error}")))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
}

/// An event of about `size` bytes: `{"id":"RUN-N","seq":N,"at":MILLIS,"pad":"…"}`. The id is
/// unique for the device across runs (`run` is random per run), so that Warden stores a resend
/// once and a later run's events as new ones.
fn event_payload(run: u32, sequence: u64, size: usize) -> Vec<u8> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let id = event_id(run, sequence);
    let head = format!(r#"{{"id":"{id}","seq":{sequence},"at":{at},"pad":""#);
    let padding = size.saturating_sub(head.len() + 2);
    let mut payload = head.into_bytes();
    payload.resize(payload.len() + padding, b'x');
    payload.extend_from_slice(b"\"}");
    payload
}

fn jittered(backoff: Duration) -> Duration {
    backoff + backoff.mul_f64(rand::rng().random_range(0.0..0.5))
}

fn describe(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => format!("refused: {code:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_asked_size_and_are_json() {
        // Smaller sizes than the fields need give the fields alone.
        let fields_alone = event_payload(0xabc, 7, 0).len();
        for size in [0, 10, 64, 1000] {
            let payload = event_payload(0xabc, 7, size);
            let event: Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!(event["seq"], 7);
            assert_eq!(event["id"], "00000abc-7");
            assert_eq!(payload.len(), size.max(fields_alone));
        }
    }

    #[test]
    fn backoff_grows_with_up_to_half_of_jitter() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(2));
            assert!(wait >= Duration::from_secs(2) && wait < Duration::from_secs(3));
        }
    }
}
