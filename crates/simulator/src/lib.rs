//! Simulated devices that behave like real ones, for tests and benchmarks: each connects to the
//! MQTT broker over TLS with its factory bundle (certificate, key and password), publishes events
//! at a set rate and size, applies the desired settings it is sent by reporting them, answers
//! commands, and reconnects with exponential backoff and jitter when its connection fails.
//! [`Counters`] tell how the fleet is doing while it runs.

mod bundle;
mod device;
mod ota;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use bundle::{Bundle, BundleError, parse_address};

/// What every simulated device does.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Events each device publishes per second; 0: none.
    pub events_per_second: f64,
    /// The size of each event's JSON payload in bytes (at least what its fields need).
    pub payload_bytes: usize,
    /// The share of firmware installs that fail on purpose, 0 to 1.
    pub install_failure_share: f64,
}

/// Where the fleet stands; every device adds to the same counters.
#[derive(Debug, Default)]
pub struct Counters {
    connected: AtomicU64,
    sent: AtomicU64,
    acknowledged: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    settings_applied: AtomicU64,
    commands_answered: AtomicU64,
    resent: AtomicU64,
    ota_offered: AtomicU64,
    ota_succeeded: AtomicU64,
    ota_failed: AtomicU64,
    ota_refused: AtomicU64,
    ota_resumed: AtomicU64,
    /// Where each acknowledged event is written, when asked.
    ledger: Option<Ledger>,
    /// Microseconds from a publish leaving the client to its acknowledgement, every one.
    latencies: std::sync::Mutex<Vec<u32>>,
    /// When the fleet started, and when every device had connected once.
    started: std::sync::OnceLock<Instant>,
    all_connected: std::sync::OnceLock<Duration>,
    first_connects: AtomicU64,
    devices: AtomicU64,
    /// Messages sent when every device had connected, and when the fleet was told to stop.
    sent_when_connected: AtomicU64,
    stopped: std::sync::OnceLock<(Instant, u64)>,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Devices connected now.
    pub connected: u64,
    /// Messages handed to the connection, all QoS 1: events, reported state, command answers.
    pub sent: u64,
    /// Messages the broker acknowledged.
    pub acknowledged: u64,
    /// Connection failures and refusals.
    pub errors: u64,
    pub reconnects: u64,
    pub settings_applied: u64,
    pub commands_answered: u64,
    /// Events sent again on a new connection because their acknowledgement never came.
    pub resent: u64,
    /// Firmware offers taken (once per release and device), updates installed, updates failed
    /// (of those, files refused for their hash), and downloads resumed after a cut.
    pub ota_offered: u64,
    pub ota_succeeded: u64,
    pub ota_failed: u64,
    pub ota_refused: u64,
    pub ota_resumed: u64,
    /// Publish-to-acknowledgement latency in milliseconds (median, 99th percentile, largest),
    /// from when every device had connected.
    pub latency_ms: Latency,
    /// Seconds from the start until every device had connected once.
    pub all_connected_seconds: Option<f64>,
    /// Messages sent per second from when every device had connected until the stop: the rate
    /// the fleet held, without the connecting.
    pub steady_rate: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Acknowledged events, one line each: `DEVICE_ID MESSAGE_ID`.
struct Ledger(std::sync::Mutex<Box<dyn std::io::Write + Send>>);

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

impl Counters {
    /// Counters that also write every acknowledged event's device and message id to `ledger`,
    /// so that a test can check each of them is stored.
    pub fn with_ledger(ledger: Box<dyn std::io::Write + Send>) -> Self {
        Self {
            ledger: Some(Ledger(std::sync::Mutex::new(ledger))),
            ..Self::default()
        }
    }

    /// Writes out what the ledger holds.
    pub fn flush_ledger(&self) -> std::io::Result<()> {
        match &self.ledger {
            Some(Ledger(writer)) => writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .flush(),
            None => Ok(()),
        }
    }

    pub(crate) fn log_acknowledged(&self, device_id: &str, message_id: &str) {
        if let Some(Ledger(writer)) = &self.ledger {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            if writeln!(writer, "{device_id} {message_id}").is_err() {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn summary(&self) -> Summary {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Summary {
            connected: get(&self.connected),
            sent: get(&self.sent),
            acknowledged: get(&self.acknowledged),
            errors: get(&self.errors),
            reconnects: get(&self.reconnects),
            settings_applied: get(&self.settings_applied),
            commands_answered: get(&self.commands_answered),
            resent: get(&self.resent),
            ota_offered: get(&self.ota_offered),
            ota_succeeded: get(&self.ota_succeeded),
            ota_failed: get(&self.ota_failed),
            ota_refused: get(&self.ota_refused),
            ota_resumed: get(&self.ota_resumed),
            latency_ms: self.latency(),
            all_connected_seconds: self.all_connected.get().map(Duration::as_secs_f64),
            steady_rate: self.steady_rate(),
        }
    }

    fn steady_rate(&self) -> Option<f64> {
        let connected_at = *self.started.get()? + *self.all_connected.get()?;
        let (stopped_at, sent) = *self.stopped.get()?;
        let seconds = stopped_at
            .checked_duration_since(connected_at)?
            .as_secs_f64();
        let sent = sent.saturating_sub(self.sent_when_connected.load(Ordering::Relaxed));
        (seconds > 0.0).then(|| sent as f64 / seconds)
    }

    /// The fleet was told to stop: what it sent until now counts for the steady rate.
    pub(crate) fn stop(&self) {
        let _ = self
            .stopped
            .set((Instant::now(), self.sent.load(Ordering::Relaxed)));
    }

    fn latency(&self) -> Latency {
        let mut latencies = self
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        latencies.sort_unstable();
        let at = |quantile: f64| {
            // The nearest-rank quantile.
            let rank = (quantile * latencies.len() as f64).ceil() as usize;
            latencies
                .get(rank.saturating_sub(1))
                .map_or(0.0, |micros| f64::from(*micros) / 1000.0)
        };
        Latency {
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    /// Records the latency of a publish sent at `sent` and acknowledged at `acknowledged`, if it was sent
    /// after every device had connected: while the fleet is still connecting, TLS handshakes
    /// compete with publishes on both sides, and a publish sent then and acknowledged later
    /// measures the connect storm, not the broker's steady latency.
    pub(crate) fn record_latency(&self, sent: Instant, acknowledged: Instant) {
        let (Some(started), Some(all_connected)) = (self.started.get(), self.all_connected.get())
        else {
            return;
        };
        if sent < *started + *all_connected {
            return;
        }
        let latency = acknowledged.saturating_duration_since(sent);
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(micros);
    }

    /// A device connected for the first time.
    pub(crate) fn first_connect(&self) {
        let connected = self.first_connects.fetch_add(1, Ordering::Relaxed) + 1;
        if connected == self.devices.load(Ordering::Relaxed)
            && let Some(started) = self.started.get()
        {
            self.sent_when_connected
                .store(self.sent.load(Ordering::Relaxed), Ordering::Relaxed);
            let _ = self.all_connected.set(started.elapsed());
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connected {}, sent {}, acknowledged {} (p50 {:.1} ms, p99 {:.1} ms), errors {}, reconnects {}, resent {}, settings applied {}, commands answered {}, updates offered {} / installed {} / failed {}",
            self.connected,
            self.sent,
            self.acknowledged,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.errors,
            self.reconnects,
            self.resent,
            self.settings_applied,
            self.commands_answered,
            self.ota_offered,
            self.ota_succeeded,
            self.ota_failed
        )
    }
}

/// Runs one simulated device per bundle against `broker` (`HOST:PORT`; the host is also the
/// name the server's certificate must carry) until `shutdown`, then disconnects them cleanly.
pub async fn run(
    bundles: Vec<Bundle>,
    broker: (String, u16),
    device_listener: Option<(String, u16)>,
    load: Load,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let mut devices = JoinSet::new();
    counters
        .devices
        .store(bundles.len() as u64, Ordering::Relaxed);
    let _ = counters.started.set(Instant::now());
    for bundle in bundles {
        // Without a device listener to fetch firmware from, offers are not taken.
        let updater = device_listener
            .as_ref()
            .or(bundle.device_listener.as_ref())
            .and_then(|(host, port)| {
                let http = ota::Updater::client(&bundle)
                    .map_err(|error| tracing::error!(device_id = %bundle.device_id, %error, "no HTTPS client for updates"))
                    .ok()?;
                Some(ota::Updater {
                    bundle: bundle.clone(),
                    base: format!("https://{host}:{port}"),
                    http,
                    failure_share: load.install_failure_share,
                    counters: counters.clone(),
                    state: Arc::default(),
                })
            });
        let device = device::Device {
            updater,
            bundle,
            broker: broker.clone(),
            load,
            counters: counters.clone(),
            in_flight: AtomicU64::new(0),
        };
        // All at once, as after a broker restart: the connect rate is part of what is measured.
        devices.spawn(device.run(shutdown.clone()));
    }
    let stopping = async {
        shutdown.cancelled().await;
        counters.stop();
    };
    let finished = async { while devices.join_next().await.is_some() {} };
    tokio::join!(stopping, finished);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_are_nearest_rank() {
        let counters = Counters::default();
        let start = Instant::now();
        let _ = counters.started.set(start);
        let connected = start + Duration::from_secs(1);
        // Before the fleet is connected nothing counts, nor what was sent before and
        // acknowledged after.
        counters.record_latency(start, connected - Duration::from_millis(1));
        assert_eq!(counters.summary().latency_ms, Latency::default());
        let _ = counters.all_connected.set(Duration::from_secs(1));
        counters.record_latency(start, connected + Duration::from_secs(5));
        assert_eq!(counters.summary().latency_ms, Latency::default());
        for millis in (1..=100).rev() {
            counters.record_latency(connected, connected + Duration::from_millis(millis));
        }
        let latency = counters.summary().latency_ms;
        assert_eq!((latency.p50, latency.p99, latency.max), (50.0, 99.0, 100.0));
    }

    #[test]
    fn the_fleet_is_connected_when_every_device_connected_once() {
        let counters = Counters::default();
        counters.devices.store(2, Ordering::Relaxed);
        let _ = counters.started.set(Instant::now());
        counters.first_connect();
        assert_eq!(counters.summary().all_connected_seconds, None);
        counters.first_connect();
        assert!(counters.summary().all_connected_seconds.is_some());
    }
}
