//! A fleet of simulated devices (`warden device simulate`) against a `warden serve` process, and
//! the proof that nothing they saw acknowledged is missing from its SQLite database: what the
//! crash and fault tests share.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::warden_command;

/// A free TCP port on 127.0.0.1, to pin a listener that must come back on the same port after a
/// restart (devices reconnect to the address they know).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Makes `count` devices of `model` in the Warden whose data directory is `data`, their factory
/// bundles in `out`, with `warden admin device create` as an operator does.
pub fn make_devices(data: &Path, model: &str, count: usize, out: &Path) {
    let made = warden_command(&[
        "admin",
        "device",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--model",
        model,
        "--count",
        &count.to_string(),
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// `warden device simulate` running in the background, writing every acknowledged event to its
/// ledger.
#[derive(Debug)]
pub struct Simulation {
    child: Child,
    pub ledger: PathBuf,
}

impl Simulation {
    /// Every bundle in `bundles` connects to the broker on `localhost:port` and publishes `rate`
    /// QoS 1 events per second for `seconds`.
    pub fn start(bundles: &Path, port: u16, rate: u32, seconds: u32, ledger: PathBuf) -> Self {
        let child = warden_command(&[
            "device",
            "simulate",
            "--bundle",
            bundles.to_str().unwrap(),
            "--broker",
            &format!("localhost:{port}"),
            "--rate",
            &rate.to_string(),
            "--duration",
            &seconds.to_string(),
            "--ledger",
            ledger.to_str().unwrap(),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        Self { child, ledger }
    }

    /// Waits for the end of the run: its summary (`sent`, `acknowledged`, `reconnects`, …) and
    /// the acknowledged events, as `(device id, message id)`.
    pub fn finish(self) -> (serde_json::Value, Vec<(String, String)>) {
        let output = self.child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = serde_json::from_slice(&output.stdout).unwrap();
        let acknowledged = std::fs::read_to_string(&self.ledger)
            .unwrap()
            .lines()
            .map(|line| {
                let (device, message) = line.split_once(' ').unwrap();
                (device.to_owned(), message.to_owned())
            })
            .collect();
        (summary, acknowledged)
    }
}

/// The events (`devices/{id}/events`) stored in the SQLite database of data directory `data`, as
/// `(device id, message id)`.
pub async fn stored_events(data: &Path) -> HashSet<(String, String)> {
    let mut database = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        data.join("warden.db").display()
    ))
    .await
    .unwrap();
    sqlx::query_as(
        "SELECT device_id, message_id FROM device_events WHERE topic LIKE 'devices/%/events'",
    )
    .fetch_all(&mut database)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Asserts that every acknowledged event is stored.
pub fn assert_all_stored(acknowledged: &[(String, String)], stored: &HashSet<(String, String)>) {
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|event| !stored.contains(*event))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events are not stored, for example {:?}",
        missing.len(),
        acknowledged.len(),
        missing.first()
    );
}
