//! `warden device simulate`, the real program, against the built-in broker: devices from factory
//! bundles connect, publish, take the desired settings they are sent and answer commands.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::warden_command;

use crate::devices::Fleet;

/// Asks `probe` every 100 ms until it answers, for at most `seconds`.
pub(crate) async fn eventually<T>(
    seconds: u64,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if let Some(found) = probe().await {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// `warden device simulate --json` for the bundles in `dir` against the fleet's broker, with
/// `load` (rate, duration, failures…) added; its output is piped for [`finished`].
pub(crate) fn simulate(fleet: &Fleet, dir: &str, load: &[&str]) -> std::process::Child {
    let broker = format!(
        "localhost:{}",
        fleet.app.warden.addresses.mqtt.unwrap().port()
    );
    let mut args = vec![
        "device", "simulate", "--bundle", dir, "--broker", &broker, "--json",
    ];
    args.extend_from_slice(load);
    warden_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `warden device simulate --json` to end well and returns its summary.
pub(crate) async fn finished(simulation: std::process::Child) -> Value {
    let output = tokio::task::spawn_blocking(move || simulation.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}: {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_publish_apply_settings_and_answer_commands() {
    let fleet = Fleet::new().await;
    let bundles = fleet.factory("washer-w500", "3");
    let out = bundles.path().to_str().unwrap();
    let mut ids: Vec<String> = std::fs::read_dir(bundles.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    ids.sort();
    let description: Value = serde_json::from_str(
        &std::fs::read_to_string(bundles.path().join(&ids[0]).join("device.json")).unwrap(),
    )
    .unwrap();
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &description).await.0, StatusCode::OK);
    let device_id = &ids[0];

    let simulation = simulate(&fleet, out, &["--rate", "5", "--duration", "8"]);

    let detail = format!("/api/v1/devices/{device_id}");
    let online = eventually(10, async || {
        let (_, body) = fleet.get(&detail, &owner).await;
        (body["online"] == true).then_some(())
    })
    .await;
    assert!(online.is_some(), "the simulated device never came online");

    // Settings written over HTTP reach it, and it reports them.
    let (status, _) = fleet
        .call(
            Method::PUT,
            &format!("{detail}/state/desired"),
            &owner,
            Some(json!({"program": "eco", "temperature": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let state = eventually(5, async || {
        let (_, state) = fleet.get(&format!("{detail}/state"), &owner).await;
        (state["delta"] == json!({})).then_some(state)
    })
    .await
    .expect("the simulated device did not report its settings");
    assert_eq!(
        state["reported"]["state"],
        json!({"program": "eco", "temperature": 40})
    );

    // A command over HTTP is answered.
    let (status, answer) = fleet
        .post(
            &format!("{detail}/commands"),
            &owner,
            json!({"name": "start", "payload": {}, "wait_seconds": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "answered");
    assert_eq!(answer["response"]["ok"], true);

    let summary = finished(simulation).await;
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["connected"], 0, "all disconnected at the end");
    assert_eq!(summary["settings_applied"], 1, "{summary}");
    assert_eq!(summary["commands_answered"], 1, "{summary}");
    // Three devices at 5 events a second for several seconds, every message acknowledged.
    let sent = summary["sent"].as_u64().unwrap();
    assert!(sent >= 3 * 5 * 4, "{summary}");
    assert_eq!(summary["acknowledged"], sent, "{summary}");
    // Latency and connect time are measured, for the benchmark.
    assert!(
        summary["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert!(
        summary["all_connected_seconds"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}
