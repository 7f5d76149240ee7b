//! The built-in MQTT broker through `rumqttc`, a client library written by others: devices with
//! their certificate and password, people with an access token, every connect, subscription and
//! publish decided by the policy, and settings and commands between the HTTP API and devices.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rumqttc::v5::mqttbytes::v5::Packet as V5Packet;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport, v5,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use crate::devices::Fleet;

/// TLS for a client: trusts Warden's CA, and presents `identity` (certificate chain and key PEM)
/// when given. rustls with its ring provider, chosen explicitly.
fn tls(fleet: &Fleet, identity: Option<(&str, &str)>) -> TlsConfiguration {
    let ca = std::fs::read(&fleet.app.warden.tls_files.ca_cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&ca) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConfiguration::Rustls(Arc::new(config))
}

/// A client of the broker; `None` and the refusal when the CONNECT is not accepted.
pub(crate) async fn connect(
    fleet: &Fleet,
    client_id: &str,
    credentials: (&str, &str),
    identity: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), String> {
    let address = fleet.app.warden.addresses.mqtt.unwrap();
    let mut options = MqttOptions::new(client_id, "localhost", address.port());
    options.set_transport(Transport::Tls(tls(fleet, identity)));
    connect_with(options, Some(credentials)).await
}

/// A client of the broker's WebSocket listener (`wss://…/mqtt`), without a client certificate.
async fn connect_websocket(
    fleet: &Fleet,
    client_id: &str,
    credentials: (&str, &str),
) -> Result<(AsyncClient, EventLoop), String> {
    let address = fleet.app.warden.addresses.mqtt_websocket.unwrap();
    let url = format!("wss://localhost:{}/mqtt", address.port());
    let mut options = MqttOptions::new(client_id, url, address.port());
    options.set_transport(Transport::wss_with_config(tls(fleet, None)));
    connect_with(options, Some(credentials)).await
}

/// Connects with `options` (and `credentials`, when given), waiting for the CONNACK.
async fn connect_with(
    mut options: MqttOptions,
    credentials: Option<(&str, &str)>,
) -> Result<(AsyncClient, EventLoop), String> {
    if let Some((username, password)) = credentials {
        options.set_credentials(username, password);
    }
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return if ack.code == ConnectReturnCode::Success {
                    Ok((client, events))
                } else {
                    Err(format!("{:?}", ack.code))
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err("no CONNACK".into()),
        }
    }
}

/// A device connected with its own certificate, id and password.
pub(crate) async fn connect_device(fleet: &Fleet, device: &Value) -> (AsyncClient, EventLoop) {
    connect(
        fleet,
        id(device),
        (id(device), password(device)),
        Some(identity(device)),
    )
    .await
    .unwrap()
}

/// The next packet the client receives that `pick` wants.
pub(crate) async fn next<T>(
    events: &mut EventLoop,
    mut pick: impl FnMut(Packet) -> Option<T>,
) -> T {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .expect("nothing arrived in 10 s")
            .expect("the connection failed");
        if let Event::Incoming(packet) = event
            && let Some(found) = pick(packet)
        {
            return found;
        }
    }
}

pub(crate) async fn subscribe(
    client: &AsyncClient,
    events: &mut EventLoop,
    filters: &[&str],
) -> Vec<bool> {
    client
        .subscribe_many(
            filters.iter().map(|filter| {
                rumqttc::SubscribeFilter::new((*filter).to_owned(), QoS::AtLeastOnce)
            }),
        )
        .await
        .unwrap();
    next(events, |packet| match packet {
        Packet::SubAck(ack) => Some(
            ack.return_codes
                .iter()
                .map(|code| matches!(code, SubscribeReasonCode::Success(_)))
                .collect(),
        ),
        _ => None,
    })
    .await
}

/// A device's certificate chain and key from the maker's API answer.
pub(crate) fn identity(device: &Value) -> (&str, &str) {
    (
        device["certificate_pem"].as_str().unwrap(),
        device["private_key_pem"].as_str().unwrap(),
    )
}

pub(crate) fn id(device: &Value) -> &str {
    device["device_id"].as_str().unwrap()
}

pub(crate) fn password(device: &Value) -> &str {
    device["mqtt_password"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_talks_mqtt_with_its_certificate_and_password() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let (washer, other) = (&devices[0], &devices[1]);
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, washer).await.0, StatusCode::OK);

    // Refusals: wrong password, another device's id, no certificate.
    let wrong = connect(
        &fleet,
        id(washer),
        (id(washer), "wrong"),
        Some(identity(washer)),
    )
    .await;
    assert!(wrong.is_err(), "a wrong password was accepted");
    let borrowed = connect(
        &fleet,
        id(other),
        (id(other), password(other)),
        Some(identity(washer)),
    )
    .await;
    assert!(
        borrowed.is_err(),
        "another device's id was accepted with this certificate"
    );
    let bare = connect(&fleet, id(washer), (id(washer), password(washer)), None).await;
    assert!(
        bare.is_err(),
        "a device without its certificate was accepted"
    );

    let (device, mut events) = connect_device(&fleet, washer).await;
    let (_, detail) = fleet
        .get(&format!("/api/v1/devices/{}", id(washer)), &owner)
        .await;
    assert_eq!(detail["online"], true, "{detail}");

    // Its own topics only; a refusal is per filter, the others are granted.
    let own = format!("devices/{}/state/desired", id(washer));
    let commands = format!("devices/{}/commands/+", id(washer));
    let foreign = format!("devices/{}/state/desired", id(other));
    let granted = subscribe(
        &device,
        &mut events,
        &[&own, &foreign, &commands, "devices/+/events"],
    )
    .await;
    assert_eq!(granted, [true, false, true, false]);

    // The owner's app may not write settings by publishing them raw: they would reach the device
    // without being recorded. The broker drops the message (MQTT 3.1.1 has no refusal code).
    let (app, mut app_events) = connect(&fleet, "owner-app", ("owner", &owner), None)
        .await
        .unwrap();
    app.publish(&own, QoS::AtLeastOnce, false, r#"{"temperature": 99}"#)
        .await
        .unwrap();
    next(&mut app_events, |packet| {
        matches!(packet, Packet::PubAck(_)).then_some(())
    })
    .await;

    // Settings written over HTTP arrive, retained, with their version.
    let (status, _) = fleet
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{}/state/desired", id(washer)),
            &owner,
            Some(json!({"temperature": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let desired: Value = next(&mut events, |packet| match packet {
        Packet::Publish(message) if message.topic == own => {
            serde_json::from_slice(&message.payload).ok()
        }
        _ => None,
    })
    .await;
    assert_eq!(
        desired,
        json!({"version": 1, "settings": {"temperature": 40}})
    );

    // The device reports; the owner sees the report and an empty delta.
    device
        .publish(
            format!("devices/{}/state/reported", id(washer)),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 40}).to_string(),
        )
        .await
        .unwrap();
    next(&mut events, |packet| {
        matches!(packet, Packet::PubAck(_)).then_some(())
    })
    .await;
    let (_, state) = fleet
        .get(&format!("/api/v1/devices/{}/state", id(washer)), &owner)
        .await;
    assert_eq!(
        state["reported"]["state"],
        json!({"temperature": 40}),
        "{state}"
    );
    assert_eq!(state["delta"], json!({}));

    // A command over HTTP reaches the device, whose answer over MQTT ends the sender's wait.
    let path = format!("/api/v1/devices/{}/commands", id(washer));
    let sender = {
        let client = fleet.app.client.clone();
        let url = fleet.app.url(&path);
        let owner = owner.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(owner)
                .json(&json!({"name": "start", "payload": {"program": "eco"}, "wait_seconds": 20}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let command: Value = next(&mut events, |packet| match packet {
        Packet::Publish(message) if message.topic.ends_with("/commands/start") => {
            serde_json::from_slice(&message.payload).ok()
        }
        _ => None,
    })
    .await;
    assert_eq!(command["payload"], json!({"program": "eco"}));
    device
        .publish(
            format!("devices/{}/commands/start/response", id(washer)),
            QoS::AtLeastOnce,
            false,
            json!({"command_id": command["command_id"], "response": {"started": true}}).to_string(),
        )
        .await
        .unwrap();
    let answered = tokio::spawn(async move {
        loop {
            let _ = events.poll().await;
        }
    });
    let result = sender.await.unwrap();
    assert_eq!(result["status"], "answered", "{result}");
    assert_eq!(result["response"], json!({"started": true}));
    answered.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_use_only_the_topics_of_their_devices_with_their_token() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let washer = &devices[0];
    let owner = fleet.person("owner@example.com", "customer").await;
    let stranger = fleet.person("stranger@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, washer).await.0, StatusCode::OK);

    let refused = connect(
        &fleet,
        "app-bad",
        ("owner@example.com", "not a token"),
        None,
    )
    .await;
    assert!(refused.is_err());

    let reported = format!("devices/{}/state/reported", id(washer));
    let events_topic = format!("devices/{}/events", id(washer));
    let desired = format!("devices/{}/state/desired", id(washer));
    let presence = format!("devices/{}/presence", id(washer));
    let (app, mut app_events) = connect(&fleet, "app-owner", ("owner@example.com", &owner), None)
        .await
        .unwrap();
    let granted = subscribe(
        &app,
        &mut app_events,
        &[
            &reported,
            &events_topic,
            &presence,
            &desired,
            "devices/+/events",
            "#",
        ],
    )
    .await;
    assert_eq!(granted, [true, true, true, false, false, false]);
    let (other, mut other_events) = connect(
        &fleet,
        "app-stranger",
        ("stranger@example.com", &stranger),
        None,
    )
    .await
    .unwrap();
    let granted = subscribe(&other, &mut other_events, &[&reported, &events_topic]).await;
    assert_eq!(granted, [false, false]);

    // The device's events reach its owner.
    let (device, mut device_events) = connect_device(&fleet, washer).await;
    // Its owner learns that it came online.
    let online: Value = next(&mut app_events, |packet| match packet {
        Packet::Publish(message) if message.topic == presence => {
            serde_json::from_slice(&message.payload).ok()
        }
        _ => None,
    })
    .await;
    assert_eq!(online["online"], true, "{online}");
    device
        .publish(&events_topic, QoS::AtLeastOnce, false, r#"{"door":"open"}"#)
        .await
        .unwrap();
    // The device's connection runs until it has sent its DISCONNECT, then closes.
    let pump = tokio::spawn(async move {
        while !matches!(
            device_events.poll().await,
            Ok(Event::Outgoing(Outgoing::Disconnect))
        ) {}
    });
    let received = next(&mut app_events, |packet| match packet {
        Packet::Publish(message) if message.topic == events_topic => Some(message.payload),
        _ => None,
    })
    .await;
    assert_eq!(&received[..], br#"{"door":"open"}"#);

    // The device goes: its owner learns that too, and so does a reader who subscribes later.
    device.disconnect().await.unwrap();
    let offline = |packet| match packet {
        Packet::Publish(message) if message.topic == presence => {
            serde_json::from_slice::<Value>(&message.payload)
                .ok()
                .filter(|presence| presence["online"] == false)
        }
        _ => None,
    };
    pump.await.unwrap();
    next(&mut app_events, offline).await;
    let (late, mut late_events) = connect(&fleet, "app-late", ("owner@example.com", &owner), None)
        .await
        .unwrap();
    assert_eq!(
        subscribe(&late, &mut late_events, &[&presence]).await,
        [true]
    );
    next(&mut late_events, offline).await;
}

/// Whether the broker closes the connection within `seconds` (the client's next read fails).
async fn closed_within(events: &mut EventLoop, seconds: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_close_the_sessions_they_end() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let washer = &devices[0];
    let owner = fleet.person("owner@example.com", "customer").await;
    let technician = fleet.person("tech@example.com", "technician").await;
    assert_eq!(fleet.claim(&owner, washer).await.0, StatusCode::OK);
    let (status, grant) = fleet
        .grant(
            &owner,
            id(washer),
            "tech@example.com",
            &["read_status"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let reported = format!("devices/{}/state/reported", id(washer));

    let (tech, mut tech_events) = connect(&fleet, "tech-app", ("tech", &technician), None)
        .await
        .unwrap();
    assert_eq!(
        subscribe(&tech, &mut tech_events, &[&reported]).await,
        [true]
    );
    let (app, mut owner_events) = connect(&fleet, "owner-app", ("owner", &owner), None)
        .await
        .unwrap();
    assert_eq!(
        subscribe(&app, &mut owner_events, &[&reported]).await,
        [true]
    );
    let (_device, mut device_events) = connect_device(&fleet, washer).await;

    // The technician's subscription is a read the owner's access log shows; the owner's is not.
    let (status, log) = fleet
        .get(
            &format!("/api/v1/devices/{}/access-log?order=oldest", id(washer)),
            &owner,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let reads: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "device.read")
        .collect();
    assert_eq!(reads.len(), 1, "{log}");
    assert_eq!(reads[0]["actor"]["email"], "tech@example.com");
    assert_eq!(reads[0]["detail"]["via"], "mqtt");
    assert_eq!(reads[0]["detail"]["filter"], reported.as_str());

    // The owner revokes the grant: the technician's session ends, the others stay.
    let (status, _) = fleet
        .call(
            Method::DELETE,
            &format!(
                "/api/v1/devices/{}/grants/{}",
                id(washer),
                grant["grant_id"].as_str().unwrap()
            ),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        closed_within(&mut tech_events, 3).await,
        "the technician kept the session"
    );
    // Reconnecting, the technician is let in but no longer gets the device's topics.
    let (tech, mut tech_events) = connect(&fleet, "tech-app", ("tech", &technician), None)
        .await
        .unwrap();
    assert_eq!(
        subscribe(&tech, &mut tech_events, &[&reported]).await,
        [false]
    );

    // The maker revokes the device's certificate with the command line (another process).
    fleet.admin(&["certs", "revoke", "--device", id(washer)]);
    assert!(
        closed_within(&mut device_events, 3).await,
        "the device kept its session with a revoked certificate"
    );

    // The owner releases the device: their subscription to it ends with the session.
    let (status, _) = fleet
        .post(
            &format!("/api/v1/devices/{}/release", id(washer)),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        closed_within(&mut owner_events, 3).await,
        "the former owner kept the device's topics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_at_connect() {
    let fleet = Fleet::new().await;
    let app = &fleet.app;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let washer = &devices[0];
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, washer).await.0, StatusCode::OK);
    let login = (id(washer), password(washer));

    // A certificate of this device from Warden's CA that has expired.
    let key = server::ca::encryption_key(&app.settings.pki, app.data_dir.path()).unwrap();
    let authority = server::ca::load(&app.warden.store, &key)
        .await
        .unwrap()
        .unwrap();
    let now = model::Timestamp::from_system_time(std::time::SystemTime::now());
    let expired = authority
        .issue_device_bundle(
            &model::DeviceId::parse(id(washer)).unwrap(),
            Duration::from_secs(86_400),
            model::Timestamp::from_unix_millis(now.unix_millis() - 3 * 86_400_000),
        )
        .unwrap();
    let expired_chain = format!(
        "{}{}",
        expired.certificate.certificate_pem,
        authority.intermediate_pem()
    );
    let refused = connect(
        &fleet,
        id(washer),
        login,
        Some((&expired_chain, &expired.private_key_pem)),
    )
    .await;
    assert!(refused.is_err(), "an expired certificate was accepted");

    // A certificate naming this device from another CA.
    let dir = tempfile::tempdir().unwrap();
    let (foreign_cert, foreign_key) = crate::pki::self_signed(dir.path(), id(washer));
    let foreign = (
        std::fs::read_to_string(&foreign_cert).unwrap(),
        std::fs::read_to_string(&foreign_key).unwrap(),
    );
    let refused = connect(&fleet, id(washer), login, Some((&foreign.0, &foreign.1))).await;
    assert!(refused.is_err(), "a certificate of another CA was accepted");

    // The device's own certificate, while it is valid, and after it was revoked.
    let (device, _events) = connect(&fleet, id(washer), login, Some(identity(washer)))
        .await
        .unwrap();
    device.disconnect().await.unwrap();
    fleet.admin(&["certs", "revoke", "--device", id(washer)]);
    let refused = connect(&fleet, id(washer), login, Some(identity(washer))).await;
    let refusal = refused.err().unwrap_or_default();
    assert!(
        refusal.contains("BadUserNamePassword"),
        "a revoked certificate: {refusal}"
    );

    // An access token, while it is valid, and after it expired.
    let (app_client, _events) = connect(&fleet, "owner-app", ("owner", &owner), None)
        .await
        .unwrap();
    app_client.disconnect().await.unwrap();
    app.clock.advance(Duration::from_secs(86_400));
    let refused = connect(&fleet, "owner-app", ("owner", &owner), None).await;
    let refusal = refused.err().unwrap_or_default();
    assert!(refusal.contains("BadUserNamePassword"), "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_publishing_where_it_may_not_is_disconnected() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let (device, mut events) = connect_device(&fleet, &devices[0]).await;
    let foreign = format!("devices/{}/events", id(&devices[1]));
    // Nine refusals are answered and the session stays.
    for _ in 0..9 {
        device
            .publish(&foreign, QoS::AtLeastOnce, false, "{}")
            .await
            .unwrap();
        next(&mut events, |packet| {
            matches!(packet, Packet::PubAck(_)).then_some(())
        })
        .await;
    }
    // The tenth ends it.
    device
        .publish(&foreign, QoS::AtLeastOnce, false, "{}")
        .await
        .unwrap();
    assert!(
        closed_within(&mut events, 3).await,
        "the session survived ten refused publishes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_reach_the_same_broker_over_websocket_with_the_same_rules() {
    let fleet = Fleet::with(|config| config.mqtt.websocket_listen = "127.0.0.1:0".into()).await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let (washer, other) = (&devices[0], &devices[1]);
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, washer).await.0, StatusCode::OK);

    assert!(
        connect_websocket(&fleet, "web-bad", ("owner@example.com", "not a token"))
            .await
            .is_err()
    );
    let (app, mut app_events) =
        connect_websocket(&fleet, "web-owner", ("owner@example.com", &owner))
            .await
            .unwrap();
    let events_topic = format!("devices/{}/events", id(washer));
    let others = format!("devices/{}/events", id(other));
    let granted = subscribe(&app, &mut app_events, &[&events_topic, &others, "#"]).await;
    assert_eq!(granted, [true, false, false]);

    // A device on the TLS listener reaches its owner in the browser: one broker, two doors.
    let (device, mut device_events) = connect_device(&fleet, washer).await;
    device
        .publish(&events_topic, QoS::AtLeastOnce, false, r#"{"rinse":1}"#)
        .await
        .unwrap();
    tokio::spawn(async move { while device_events.poll().await.is_ok() {} });
    let received = next(&mut app_events, |packet| match packet {
        Packet::Publish(message) if message.topic == events_topic => Some(message.payload),
        _ => None,
    })
    .await;
    assert_eq!(&received[..], br#"{"rinse":1}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_listener_is_anonymous_and_a_broker_of_its_own() {
    let fleet = Fleet::with(|config| {
        config.mqtt.development_listen = "127.0.0.1:0".into();
        config.mqtt.development_denied_topics = vec!["secret/#".into()];
    })
    .await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let washer = &devices[0];
    let address = fleet.app.warden.addresses.mqtt_development.unwrap();
    assert!(address.ip().is_loopback());
    let anonymous = |client_id: &str| MqttOptions::new(client_id, "127.0.0.1", address.port());

    // Generic tools need no credentials; a user name is not checked either.
    let (tool, mut tool_events) = connect_with(anonymous("tool"), None).await.unwrap();
    let (named, mut named_events) = connect_with(anonymous("named"), Some(("anyone", "x")))
        .await
        .unwrap();
    let granted = subscribe(
        &tool,
        &mut tool_events,
        &["lab/#", "#", "devices/+/events", "devices/#", "secret/a"],
    )
    .await;
    assert_eq!(granted, [true, true, false, false, false]);
    named
        .publish("lab/oven", QoS::AtLeastOnce, false, "hot")
        .await
        .unwrap();
    tokio::spawn(async move { while named_events.poll().await.is_ok() {} });
    let received = next(&mut tool_events, |packet| match packet {
        Packet::Publish(message) => Some((message.topic, message.payload)),
        _ => None,
    })
    .await;
    assert_eq!(
        (received.0.as_str(), &received.1[..]),
        ("lab/oven", &b"hot"[..])
    );

    // A client id naming a device here is another client in another broker: the device's own
    // session on the TLS listener is untouched, and nothing of it is seen here.
    let (impostor, mut impostor_events) = connect_with(anonymous(id(washer)), None).await.unwrap();
    for topic in [
        format!("devices/{}/events", id(washer)),
        "secret/x".to_owned(),
    ] {
        impostor
            .publish(&topic, QoS::AtLeastOnce, false, "forged")
            .await
            .unwrap();
    }
    impostor
        .publish("lab/after", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    tokio::spawn(async move { while impostor_events.poll().await.is_ok() {} });
    let (device, mut device_events) = connect_device(&fleet, washer).await;
    let events_topic = format!("devices/{}/events", id(washer));
    device
        .publish(&events_topic, QoS::AtLeastOnce, false, "real")
        .await
        .unwrap();
    next(&mut device_events, |packet| {
        matches!(packet, Packet::PubAck(_)).then_some(())
    })
    .await;
    // The `#` subscriber sees the allowed message after the refused ones, and none of them.
    // (It may have had `lab/oven` twice: once per matching subscription is allowed.)
    let seen = next(&mut tool_events, |packet| match packet {
        Packet::Publish(message) if message.topic != "lab/oven" => Some(message.topic),
        _ => None,
    })
    .await;
    assert_eq!(seen, "lab/after");
    let (status, page) = fleet
        .get(&format!("/api/v1/devices/{}/events", id(washer)), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let payloads: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["topic"] == events_topic.as_str())
        .collect();
    assert_eq!(payloads.len(), 1, "{page}");
}

/// A client of the broker over MQTT 5, which answers a refused publish with a reason code.
async fn connect_v5(
    fleet: &Fleet,
    client_id: &str,
    credentials: (&str, &str),
    identity: Option<(&str, &str)>,
) -> (v5::AsyncClient, v5::EventLoop) {
    let address = fleet.app.warden.addresses.mqtt.unwrap();
    let mut options = v5::MqttOptions::new(client_id, "localhost", address.port());
    options.set_credentials(credentials.0, credentials.1);
    options.set_transport(Transport::Tls(tls(fleet, identity)));
    let (client, mut events) = v5::AsyncClient::new(options, 32);
    let ack = next_v5(&mut events, |packet| match packet {
        V5Packet::ConnAck(ack) => Some(ack),
        _ => None,
    })
    .await;
    assert_eq!(ack.code, v5::mqttbytes::v5::ConnectReturnCode::Success);
    (client, events)
}

async fn next_v5<T>(events: &mut v5::EventLoop, mut pick: impl FnMut(V5Packet) -> Option<T>) -> T {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .expect("nothing arrived in 10 s")
            .expect("the connection failed");
        if let v5::Event::Incoming(packet) = event
            && let Some(found) = pick(packet)
        {
            return found;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_topic_table_holds_for_mqtt_5_clients_of_the_built_in_broker() {
    use crate::hooks::{FILTERS, PUBLISH_TOPICS, TABLE};
    use v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode as Reason};

    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let (washer, other) = (&devices[0], &devices[1]);
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, washer).await.0, StatusCode::OK);
    let technician = fleet.person("tech@example.com", "technician").await;
    let (status, grant) = fleet
        .grant(
            &owner,
            id(washer),
            "tech@example.com",
            &["read_status", "write_settings"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let stranger = fleet.person("stranger@example.com", "customer").await;

    let clients = [
        (
            "device",
            connect_v5(
                &fleet,
                id(washer),
                (id(washer), password(washer)),
                Some(identity(washer)),
            )
            .await,
        ),
        (
            "owner",
            connect_v5(&fleet, "owner-phone", ("owner@example.com", &owner), None).await,
        ),
        (
            "technician",
            connect_v5(
                &fleet,
                "tech-laptop",
                ("tech@example.com", &technician),
                None,
            )
            .await,
        ),
        (
            "stranger",
            connect_v5(
                &fleet,
                "stranger-app",
                ("stranger@example.com", &stranger),
                None,
            )
            .await,
        ),
    ];
    let filters: Vec<String> = FILTERS
        .iter()
        .map(|filter| {
            filter
                .replace("{id}", id(washer))
                .replace("{other}", id(other))
        })
        .collect();
    for ((who, (client, mut events)), (publish, subscribe)) in clients.into_iter().zip(TABLE) {
        client
            .subscribe_many(filters.iter().map(|filter| {
                v5::mqttbytes::v5::Filter::new(filter, v5::mqttbytes::QoS::AtLeastOnce)
            }))
            .await
            .unwrap();
        let granted: String = next_v5(&mut events, |packet| match packet {
            V5Packet::SubAck(ack) => Some(ack.return_codes),
            _ => None,
        })
        .await
        .iter()
        .map(|code| match code {
            Reason::Success(_) => 'y',
            Reason::NotAuthorized => 'n',
            other => panic!("{who}: {other:?}"),
        })
        .collect();
        assert_eq!(granted, subscribe, "{who} subscribing {filters:?}");

        // People write desired settings and commands over the HTTP API, which versions and
        // records them; the built-in broker refuses their raw publishes there (docs/mqtt.md).
        let expected: String = publish
            .chars()
            .zip(PUBLISH_TOPICS)
            .map(|(cell, topic)| {
                let written_over_http = topic == "state/desired"
                    || topic.starts_with("commands/") && !topic.ends_with("/response");
                if who != "device" && written_over_http {
                    'n'
                } else {
                    cell
                }
            })
            .collect();
        let mut published = String::new();
        for topic in PUBLISH_TOPICS {
            let topic = format!("devices/{}/{topic}", id(washer));
            client
                .publish(
                    &topic,
                    v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    r#"{"temp":40}"#,
                )
                .await
                .unwrap();
            published.push(
                next_v5(&mut events, |packet| match packet {
                    V5Packet::PubAck(ack) => Some(match ack.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => 'y',
                        PubAckReason::NotAuthorized => 'n',
                        other => panic!("{who} publishing to {topic}: {other:?}"),
                    }),
                    _ => None,
                })
                .await,
            );
        }
        assert_eq!(published, expected, "{who} publishing {PUBLISH_TOPICS:?}");
    }
}
