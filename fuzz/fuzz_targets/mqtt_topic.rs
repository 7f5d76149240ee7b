//! MQTT topics and topic filters as the broker hands them to Warden's policy: a device's topic
//! (`policy::topic::DeviceTopic::parse`), a subscription's filter (`TopicFilter::parse`), and the
//! decisions on them (`may_publish`, `may_subscribe`); and the topic selector of the events API
//! (`events::TopicSelector::parse`).
//!
//! Input: lines; the first is a topic name, the second a topic filter, the rest more topic names
//! to hold the filter against.
//!
//! Properties: nothing panics; a device topic is written back exactly as it was given; the topic
//! read as a filter reaches its own device and kind; a device may publish only on its own topics;
//! and what a subscription lets through stays within what the subscriber may read, judged with
//! an MQTT matcher written from the specification: a device receives only its own
//! `state/desired`, `commands/…`, `ota` and `certificate` topics, and a customer only the topics
//! of the device they own.

#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{DeviceId, Role, UserId};
use policy::topic::{
    DeviceTopic, FilterReach, MqttClient, TopicFilter, TopicKind, may_publish, may_subscribe,
};
use policy::{ActionSet, DeviceRelation, Subject};
use warden_fuzz::{NOW, check};

/// What a device itself subscribes to (docs/mqtt.md).
const DEVICE_RECEIVES: [TopicKind; 4] = [
    TopicKind::StateDesired,
    TopicKind::Command,
    TopicKind::Ota,
    TopicKind::Certificate,
];

fuzz_target!(|data: &[u8]| {
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let topic = lines.next().unwrap_or_default();
    let filter_text = lines.next().unwrap_or_default();
    let mut topics: Vec<&str> = lines.collect();
    topics.push(topic);
    let _ = events::TopicSelector::parse(topic);
    let _ = events::TopicSelector::parse(filter_text);

    let Ok(owner) = "00000000-0000-7000-8000-000000000001".parse::<UserId>() else {
        return;
    };
    let Ok(washer) = DeviceId::parse("washer-1") else {
        return;
    };
    let relation_of = |device_id: &DeviceId| DeviceRelation {
        device_id: device_id.clone(),
        owner: (*device_id == washer).then_some(owner),
        grants: Vec::new(),
    };
    let customer = MqttClient::Subject(Subject::Person {
        user_id: owner,
        role: Role::Customer,
        token_allows: ActionSet::all(),
    });

    if let Ok(parsed) = DeviceTopic::parse(topic) {
        check!(
            "topic-roundtrip",
            parsed.to_string() == topic,
            "{topic:?} is written back as {:?}",
            parsed.to_string()
        );
        match TopicFilter::parse(topic) {
            Ok(filter) => {
                check!(
                    "topic-as-filter",
                    filter.reach() == FilterReach::Device(parsed.device_id.clone())
                        && filter.kinds().contains(&parsed.kind),
                    "{topic:?} as a filter reaches {:?}, kinds {:?}",
                    filter.reach(),
                    filter.kinds()
                );
            }
            Err(error) => {
                check!("topic-as-filter", false, "{topic:?} is no filter: {error}");
            }
        }
        for device_id in [&parsed.device_id, &washer] {
            let relation = relation_of(&parsed.device_id);
            let device = MqttClient::Device(device_id.clone());
            if may_publish(&device, &parsed, Some(&relation), NOW) {
                check!(
                    "publish-own-topics",
                    *device_id == parsed.device_id,
                    "device {device_id} may publish on {topic:?}"
                );
            }
        }
        if may_publish(
            &customer,
            &parsed,
            Some(&relation_of(&parsed.device_id)),
            NOW,
        ) {
            check!(
                "publish-own-topics",
                parsed.device_id == washer,
                "washer-1's owner may publish on {topic:?}"
            );
        }
    }

    let Ok(filter) = TopicFilter::parse(filter_text) else {
        return;
    };
    let reached = match filter.reach() {
        FilterReach::Device(device_id) => Some(relation_of(&device_id)),
        _ => None,
    };
    let mut subscribers = vec![(MqttClient::Device(washer.clone()), "device washer-1")];
    if let FilterReach::Device(device_id) = filter.reach() {
        subscribers.push((
            MqttClient::Device(device_id),
            "the device the filter reaches",
        ));
    }
    subscribers.push((customer, "washer-1's owner"));
    for (client, who) in &subscribers {
        if !may_subscribe(client, &filter, reached.as_ref(), NOW) {
            continue;
        }
        for topic in &topics {
            if !warden_fuzz::mqtt_matches(filter_text, topic) {
                continue;
            }
            let Ok(received) = DeviceTopic::parse(topic) else {
                continue;
            };
            let allowed = match client {
                MqttClient::Device(device_id) => {
                    received.device_id == *device_id && DEVICE_RECEIVES.contains(&received.kind)
                }
                MqttClient::Subject(_) => received.device_id == washer,
            };
            check!(
                "subscribe-confined",
                allowed,
                "{who} may subscribe to {filter_text:?}, which carries {topic:?}"
            );
        }
    }
});
