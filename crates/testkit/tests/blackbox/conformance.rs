//! The MQTT protocol conformance suite (`crates/testkit/mqtt-conformance`, pytest and the
//! paho-mqtt client) against rmqtt as Warden runs it, through the development listener, which is
//! the same rmqtt with the same settings as the device broker, minus TLS and authentication.

use std::process::Command;

use testkit::TestApp;

/// Where rmqtt 0.24 breaks a statement the suite checks. They are run as strict expected
/// failures: each must still fail, so a fixed rmqtt fails this test until its line goes. The
/// measured behaviour of each is in the suite's README.
const RMQTT_DEVIATIONS: [&str; 10] = [
    // A silent client is closed after about 5 s at keep-alive 2 s, not 3 s.
    "test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives[mqtt3.1.1]",
    "test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives[mqtt5.0]",
    // A QoS 2 PUBLISH sent again before PUBREL is answered PUBREC 0x91 (packet id in use).
    "test_a_repeated_qos2_publish_before_pubrel_is_not_delivered_twice[mqtt5.0]",
    // A Topic Alias above the Topic Alias Maximum does not close the connection.
    "test_an_invalid_topic_alias_closes_the_connection[above-maximum]",
    // MQTT 5: overlapping subscriptions deliver one copy, not at the highest QoS.
    "test_overlapping_subscriptions_deliver_at_the_highest_granted_qos[mqtt5.0]",
    // MQTT 5: UNSUBACK says 0x00 also for a filter that had no subscription (0x11).
    "test_unsubscribe_removes_exactly_the_named_filters[mqtt5.0]",
    // MQTT 3.1.1: a malformed filter gets SUBACK 0x80 instead of a closed connection.
    "test_a_malformed_filter_is_never_granted[mqtt3.1.1-hash-not-last]",
    "test_a_malformed_filter_is_never_granted[mqtt3.1.1-hash-inside-level]",
    "test_a_malformed_filter_is_never_granted[mqtt3.1.1-plus-inside-level]",
    "test_a_malformed_filter_is_never_granted[mqtt3.1.1-plus-leading-a-level]",
];

/// MQTT 5: DISCONNECT with reason 0x04 does not publish the Will Message.
const RMQTT_WILL_DEVIATION: &str = "test_disconnect_with_reason_0x04_publishes_the_will";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_passes_the_conformance_suite_but_for_rmqtt_s_known_deviations() {
    let app = TestApp::spawn_with(|config| {
        config.mqtt.development_listen = "127.0.0.1:0".into();
        config.mqtt.development_denied_topics = vec!["forbidden/#".into()];
    })
    .await;
    let port = app.warden.addresses.mqtt_development.unwrap().port();
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/mqtt-conformance");
    let mut deviations = RMQTT_DEVIATIONS.to_vec();
    deviations.push(RMQTT_WILL_DEVIATION);
    let run = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                "-m",
                "pytest",
                suite,
                "-q",
                "-rxXs",
                "-p",
                "no:cacheprovider",
            ])
            .env("MQTT_HOST", "127.0.0.1")
            .env("MQTT_PORT", port.to_string())
            .env("MQTT_DENIED_FILTER", "forbidden/#")
            .env("MQTT_KNOWN_DEVIATIONS", deviations.join(","))
            .output()
            .expect("python3 with pytest and paho-mqtt (scripts/test installs them)")
    })
    .await
    .unwrap();
    let output = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the conformance suite failed:\n{output}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Nothing was skipped: every feature the suite knows is on.
    assert!(!output.contains(" skipped"), "{output}");
    app.warden.shutdown().await;
}
