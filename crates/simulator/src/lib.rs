//! Simulated devices that behave like real ones, for tests and benchmarks: each connects to the
//! MQTT broker over TLS with its factory bundle (certificate, key and password), publishes events
//! at a set rate and size, applies the desired settings it is sent by reporting them, answers
//! commands, and reconnects with exponential backoff and jitter when its connection fails.
//! [`Counters`] tell how the fleet is doing while it runs.

mod bundle;
mod device;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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
}

impl Counters {
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
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connected {}, sent {}, acknowledged {}, errors {}, reconnects {}, settings applied {}, commands answered {}",
            self.connected,
            self.sent,
            self.acknowledged,
            self.errors,
            self.reconnects,
            self.settings_applied,
            self.commands_answered
        )
    }
}

/// Runs one simulated device per bundle against `broker` (`HOST:PORT`; the host is also the
/// name the server's certificate must carry) until `shutdown`, then disconnects them cleanly.
pub async fn run(
    bundles: Vec<Bundle>,
    broker: (String, u16),
    load: Load,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let mut devices = JoinSet::new();
    for (index, bundle) in bundles.into_iter().enumerate() {
        let device = device::Device {
            bundle,
            broker: broker.clone(),
            load,
            counters: counters.clone(),
            in_flight: AtomicU64::new(0),
        };
        // Spread the fleet's connects and first events over the first second.
        let delay = Duration::from_millis(u64::try_from(index % 1000).unwrap_or(0));
        devices.spawn(device.run(delay, shutdown.clone()));
    }
    while devices.join_next().await.is_some() {}
}
