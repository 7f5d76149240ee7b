//! Device events end to end: a device publishes over MQTT through `rumqttc`, every acknowledged
//! message is stored once, and people read them over HTTP by page, filter and export, within
//! what the policy lets them see.

use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{Packet, QoS};
use serde_json::{Value, json};

use testkit::postgres::Cluster;

use crate::devices::Fleet;
use crate::mqtt::{connect_device, id, next};

/// Follows `next_cursor` from `path` (which has a query string) to the end; every event.
async fn every_page(fleet: &Fleet, path: &str, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut url = path.to_owned();
    loop {
        let (status, page) = fleet.get(&url, token).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        all.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{path}&cursor={cursor}"),
            None => return all,
        }
    }
}

async fn export(fleet: &Fleet, path: &str, token: &str) -> (StatusCode, String, String) {
    let response = fleet
        .app
        .client
        .get(fleet.app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_is_stored_once_and_readable_by_its_readers() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let oven = &devices[0];
    let device_id = id(oven);
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, oven).await.0, StatusCode::OK);
    let technician = fleet.person("tech@example.com", "technician").await;
    let (status, _) = fleet
        .grant(
            &owner,
            device_id,
            "tech@example.com",
            &["read_status"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let stranger = fleet.person("stranger@example.com", "customer").await;

    // Five events with their own ids (the third sent twice, as after a lost PUBACK), one binary
    // event, and a state report, all QoS 1; each PUBACK means "stored".
    let (device, mut connection) = connect_device(&fleet, oven).await;
    let events_topic = format!("devices/{device_id}/events");
    let mut sent = 0;
    for (number, kind) in [
        (1, "door"),
        (2, "heat"),
        (3, "door"),
        (3, "door"),
        (4, "heat"),
        (5, "door"),
    ] {
        let payload =
            json!({"id": format!("e{number}"), "kind": kind, "at": "2026-12-03T08:00:00Z"});
        device
            .publish(&events_topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
        sent += 1;
    }
    device
        .publish(
            &events_topic,
            QoS::AtLeastOnce,
            false,
            vec![0xde, 0xad, 0x00],
        )
        .await
        .unwrap();
    device
        .publish(
            format!("devices/{device_id}/state/reported"),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 180}).to_string(),
        )
        .await
        .unwrap();
    sent += 2;
    let mut acknowledged = 0;
    while acknowledged < sent {
        next(&mut connection, |packet| {
            matches!(packet, Packet::PubAck(_)).then_some(())
        })
        .await;
        acknowledged += 1;
    }

    // The owner pages through everything, newest first: the presence change, five distinct
    // events, the binary one and the report; the resend is not there twice.
    let base = format!("/api/v1/devices/{device_id}/events");
    let all = every_page(&fleet, &format!("{base}?limit=3"), &owner).await;
    let topics: Vec<&str> = all
        .iter()
        .map(|event| event["topic"].as_str().unwrap())
        .collect();
    assert_eq!(all.len(), 8, "{all:#?}");
    assert_eq!(topics[0], format!("devices/{device_id}/state/reported"));
    assert_eq!(topics[7], format!("devices/{device_id}/presence"));
    assert_eq!(all[7]["payload"]["online"], true);
    let ids: Vec<&str> = all[2..7]
        .iter()
        .map(|event| event["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e5", "e4", "e3", "e2", "e1"]);
    assert_eq!(all[1]["payload"], Value::Null);
    assert_eq!(all[1]["payload_base64"], "3q0A");
    assert_eq!(all[1]["content_type"], "application/octet-stream");
    assert_eq!(all[2]["payload"]["kind"], "door");
    assert_eq!(all[2]["device_time"], "2026-12-03T08:00:00.000Z");

    // The metrics count what was stored and what was a resend.
    let metrics = fleet.app.get("/metrics").await.text().await.unwrap();
    for line in [
        "warden_events_stored_total 8",
        "warden_events_duplicates_total 1",
        "warden_events_queue_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    for counter in [
        "warden_events_commit_seconds_total ",
        "warden_events_lag_seconds_total ",
    ] {
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(counter))
            .unwrap_or_else(|| panic!("{counter} in:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{counter}{value}");
    }

    // Filters: topic and a JSON member, oldest first.
    let (status, doors) = fleet
        .get(
            &format!("{base}?topic=events&field.kind=door&order=oldest"),
            &owner,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{doors}");
    let door_ids: Vec<&str> = doors["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(door_ids, ["e1", "e3", "e5"]);
    assert_eq!(doors["next_cursor"], Value::Null);

    // Exports stream every event as NDJSON or CSV.
    let (status, content_type, ndjson) = export(&fleet, &format!("{base}/export"), &owner).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, all);
    let (status, content_type, csv) = export(
        &fleet,
        &format!("{base}/export?format=csv&topic=events"),
        &owner,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let rows: Vec<&str> = csv.split("\r\n").filter(|row| !row.is_empty()).collect();
    assert_eq!(rows.len(), 1 + 6, "{csv}");
    assert!(rows[0].starts_with("received_at,device_time,topic,message_id"));
    assert!(
        rows[1].ends_with(",application/octet-stream,base64,3q0A"),
        "{}",
        rows[1]
    );
    assert!(rows[2].contains(r#""id"":""e5"""#), "{}", rows[2]);

    // Bad questions get a clear answer.
    for (query, expected) in [
        ("?limit=0", "limit"),
        ("?cursor=garbage", "cursor"),
        ("?from=yesterday", "from"),
        ("?topic=events/%2B", "topic"),
        ("?field.a.b=1", "field"),
        ("?colour=red", "unknown parameter"),
        (
            "?from=2026-12-03T09:00:00Z&to=2026-12-03T08:00:00Z",
            "before",
        ),
    ] {
        let (status, body) = fleet.get(&format!("{base}{query}"), &owner).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.to_string().contains(expected), "{query}: {body}");
    }
    let (status, _, _) = export(&fleet, &format!("{base}/export?format=xml"), &owner).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A technician granted read_status only, and a stranger, read nothing.
    assert_eq!(fleet.get(&base, &technician).await.0, StatusCode::FORBIDDEN);
    assert_eq!(fleet.get(&base, &stranger).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        export(&fleet, &format!("{base}/export"), &stranger).await.0,
        StatusCode::NOT_FOUND
    );

    // After a release, the next owner reads only what arrived since their claim.
    drop(device);
    fleet.app.clock.advance(Duration::from_secs(60));
    let (status, _) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/release"),
            &owner,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, code) = fleet
        .post(
            &format!("/api/v1/admin/devices/{device_id}/claim-code"),
            &admin,
            json!({}),
        )
        .await;
    let buyer = fleet.person("buyer@example.com", "customer").await;
    let (status, _) = fleet
        .claim(
            &buyer,
            &json!({"device_id": device_id, "claim_code": code["claim_code"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = fleet.get(&format!("{base}?topic=events"), &buyer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["events"],
        json!([]),
        "the previous owner's events stay hidden"
    );
    let (_, everything) = fleet.get(&format!("{base}?topic=events"), &admin).await;
    assert_eq!(
        everything["events"].as_array().unwrap().len(),
        6,
        "admins read all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_devices_wait_and_nothing_is_lost() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let cluster = Cluster::start();
    let fleet = Fleet::on_database(cluster.create_database().await).await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = id(&devices[0]).to_owned();
    let (device, mut connection) = connect_device(&fleet, &devices[0]).await;
    let topic = format!("devices/{device_id}/events");
    let send = async |number: u32| {
        device
            .publish(
                &topic,
                QoS::AtLeastOnce,
                false,
                json!({"id": format!("e{number}")}).to_string(),
            )
            .await
            .unwrap();
    };
    send(0).await;
    next(&mut connection, |packet| {
        matches!(packet, Packet::PubAck(_)).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| cluster.stop());
    // Fewer than the client's request queue holds, since nothing polls it while they go.
    for number in 1..=10 {
        send(number).await;
    }
    // Nothing can be stored, so nothing is acknowledged: the device holds on to its messages.
    let stalled = tokio::time::timeout(Duration::from_secs(3), async {
        next(&mut connection, |packet| {
            matches!(packet, Packet::PubAck(_)).then_some(())
        })
        .await;
    })
    .await;
    assert!(
        stalled.is_err(),
        "a message was acknowledged while the database was down"
    );

    tokio::task::block_in_place(|| cluster.resume());
    for _ in 1..=10 {
        tokio::time::timeout(
            Duration::from_secs(30),
            next(&mut connection, |packet| {
                matches!(packet, Packet::PubAck(_)).then_some(())
            }),
        )
        .await
        .expect("the acknowledgements came once the database was back");
    }
    let (status, page) = fleet
        .get(
            &format!("/api/v1/devices/{device_id}/events?topic=events&order=oldest"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["message_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..=10).map(|number| format!("e{number}")).collect();
    assert_eq!(ids, expected);
}

/// Reads Server-Sent Events from `response` until `count` events came: (event id, data).
async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("no event in 10 s")
            .unwrap()
            .expect("the stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|value| value.trim_start().to_owned())
            };
            if field("event:").as_deref() == Some("device-event") {
                let data = serde_json::from_str(&field("data:").unwrap()).unwrap();
                events.push((field("id:").unwrap(), data));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_tail_streams_new_events_and_resumes_from_the_last_id() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = id(&devices[0]).to_owned();
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    let stranger = fleet.person("stranger@example.com", "customer").await;
    let (device, mut connection) = connect_device(&fleet, &devices[0]).await;
    let topic = format!("devices/{device_id}/events");
    let mut send = async |number: u32| {
        let payload = json!({"id": format!("e{number}")}).to_string();
        device
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        next(&mut connection, |packet| {
            matches!(packet, Packet::PubAck(_)).then_some(())
        })
        .await;
    };
    // Sent before the stream opens: not part of it.
    send(0).await;

    let live = fleet.app.url(&format!(
        "/api/v1/devices/{device_id}/events/live?topic=events"
    ));
    let open = |last_id: Option<&str>, token: &str| {
        let mut request = fleet.app.client.get(&live).bearer_auth(token);
        if let Some(last_id) = last_id {
            request = request.header("Last-Event-ID", last_id);
        }
        request.send()
    };
    let mut stream = open(None, &owner).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    send(1).await;
    let first = read_events(&mut stream, 1).await;
    assert_eq!(first[0].1["message_id"], "e1");
    drop(stream);

    // Missed while disconnected, then read on reconnect from the last id.
    send(2).await;
    send(3).await;
    let mut resumed = open(Some(&first[0].0), &owner).await.unwrap();
    let missed = read_events(&mut resumed, 2).await;
    let ids: Vec<&Value> = missed
        .iter()
        .map(|(_, event)| &event["message_id"])
        .collect();
    assert_eq!(ids, ["e2", "e3"]);

    assert_eq!(
        open(Some("not-a-cursor"), &owner).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        open(None, &stranger).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}
