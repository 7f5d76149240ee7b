//! Warden as a client of an external broker (Mosquitto standing in for a VerneMQ or EMQX cluster;
//! what such a broker asks Warden's hooks is `hooks.rs`): what devices send there is taken in
//! through a shared subscription and stored, also what they sent while Warden was away, and
//! settings written over HTTP reach the devices through it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::{Value, json};
use testkit::mosquitto::Mosquitto;

use crate::devices::Fleet;

/// How long stored events may take to show.
const WAIT: Duration = Duration::from_secs(20);

/// A device on the external broker (which checks nobody here).
async fn device(broker: &Mosquitto, device_id: &str) -> (AsyncClient, EventLoop) {
    let options = MqttOptions::new(device_id, "127.0.0.1", broker.port);
    let (client, mut events) = AsyncClient::new(options, 64);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return (client, events),
            Ok(Ok(_)) => {}
            other => panic!("the device cannot connect to mosquitto: {other:?}"),
        }
    }
}

/// Publishes events `{prefix}-{n}` for n in `range` at QoS 1, each with its message id, and waits
/// for the broker's acknowledgements.
async fn send_events(
    client: &AsyncClient,
    events: &mut EventLoop,
    device_id: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
) {
    let count = range.len();
    for n in range {
        let properties = PublishProperties {
            user_properties: vec![("message-id".into(), format!("{prefix}-{n}"))],
            ..PublishProperties::default()
        };
        client
            .publish_with_properties(
                format!("devices/{device_id}/events"),
                QoS::AtLeastOnce,
                false,
                json!({"n": n, "run": prefix}).to_string(),
                properties,
            )
            .await
            .unwrap();
    }
    let mut acknowledged = 0;
    while acknowledged < count {
        if let Event::Incoming(Packet::PubAck(_)) =
            tokio::time::timeout(Duration::from_secs(10), events.poll())
                .await
                .expect("no PUBACK from mosquitto")
                .unwrap()
        {
            acknowledged += 1;
        }
    }
}

/// The events of `device_id` stored with `run` in their payload, once at least `count` are there
/// or `within` has passed.
async fn stored(
    fleet: &Fleet,
    token: &str,
    device_id: &str,
    run: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, page) = fleet
            .get(
                &format!("/api/v1/devices/{device_id}/events?limit=1000&order=oldest"),
                token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let found: Vec<Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["payload"]["run"] == run)
            .cloned()
            .collect();
        if found.len() >= count || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Until Warden's subscription is in place the broker drops what nobody reads: sends probe
/// events until one is stored, as `reader` (email, role; logged in afresh for each look, since
/// tokens may be short-lived) sees them.
async fn wait_for_the_intake(
    fleet: &Fleet,
    reader: (&str, &str),
    client: &AsyncClient,
    events: &mut EventLoop,
    device_id: &str,
) {
    for probe in 0..50 {
        send_events(client, events, device_id, "probe", probe..probe + 1).await;
        let token = fleet.log_in(reader.0, reader.1).await;
        let seen = stored(
            fleet,
            &token,
            device_id,
            "probe",
            1,
            Duration::from_millis(300),
        )
        .await;
        if !seen.is_empty() {
            return;
        }
    }
    panic!("Warden never subscribed on the external broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_an_external_broker_are_heard_and_reached_through_a_shared_subscription() {
    let broker = Mosquitto::start();
    let fleet = Fleet::with(|config| {
        config.mqtt.listen = String::new();
        config.mqtt.external.url = format!("mqtt://127.0.0.1:{}", broker.port);
        config.mqtt.external.client_id = "warden-test".into();
    })
    .await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap().to_owned();
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    let (client, mut events) = device(&broker, &device_id).await;

    wait_for_the_intake(
        &fleet,
        ("owner@example.com", "customer"),
        &client,
        &mut events,
        &device_id,
    )
    .await;

    // Every event the broker acknowledged is stored once, with its message id.
    send_events(&client, &mut events, &device_id, "live", 0..40).await;
    let live = stored(&fleet, &owner, &device_id, "live", 40, WAIT).await;
    let numbers: Vec<u64> = live
        .iter()
        .map(|event| event["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..40).collect::<Vec<u64>>());
    assert_eq!(live[7]["message_id"], "live-7", "{}", live[7]);

    // Settings written over HTTP reach the device through the broker, retained.
    client
        .subscribe_many([Filter::new(
            format!("devices/{device_id}/state/desired"),
            QoS::AtLeastOnce,
        )])
        .await
        .unwrap();
    let (status, _) = fleet
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{device_id}/state/desired"),
            &owner,
            Some(json!({"temperature": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let desired: Value = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .expect("the desired settings never came")
            .unwrap()
        {
            Event::Incoming(Packet::Publish(message))
                if message.topic.ends_with(b"/state/desired") =>
            {
                break serde_json::from_slice(&message.payload).unwrap();
            }
            _ => {}
        }
    };
    assert_eq!(
        desired,
        json!({"version": 1, "settings": {"temperature": 60}})
    );

    // A report through the broker becomes the device's reported state.
    client
        .publish(
            format!("devices/{device_id}/state/reported"),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 60}).to_string(),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = events.poll() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let (_, state) = fleet
                    .get(&format!("/api/v1/devices/{device_id}/state"), &owner)
                    .await;
                if state["reported"]["state"] == json!({"temperature": 60}) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{state}");
            }
        }
    }

    // While Warden is away the broker keeps its session and what the devices send; after the
    // restart it all arrives.
    let fleet = fleet
        .restart_after(async {
            send_events(&client, &mut events, &device_id, "away", 0..25).await;
        })
        .await;
    let owner = fleet.log_in("owner@example.com", "customer").await;
    let away = stored(&fleet, &owner, &device_id, "away", 25, WAIT).await;
    assert_eq!(away.len(), 25, "{away:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_reconnects_with_a_fresh_token_before_its_token_expires_and_loses_nothing() {
    let broker = Mosquitto::start();
    let fleet = Fleet::with(|config| {
        config.mqtt.listen = String::new();
        config.mqtt.external.url = format!("mqtt://127.0.0.1:{}", broker.port);
        config.mqtt.external.client_id = "warden-short-tokens".into();
        // The intake reconnects every 2.4 s.
        config.oauth.access_token_seconds = 3;
    })
    .await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap().to_owned();
    let (client, mut events) = device(&broker, &device_id).await;
    wait_for_the_intake(
        &fleet,
        ("root@example.com", "admin"),
        &client,
        &mut events,
        &device_id,
    )
    .await;

    // Eight seconds of events, across three reconnections of the intake.
    for n in 0..40 {
        send_events(&client, &mut events, &device_id, "steady", n..n + 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let steady = loop {
        let admin = fleet.log_in("root@example.com", "admin").await;
        let found = stored(&fleet, &admin, &device_id, "steady", 40, Duration::ZERO).await;
        if found.len() >= 40 || tokio::time::Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let numbers: Vec<u64> = steady
        .iter()
        .map(|event| event["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..40).collect::<Vec<u64>>());
}
