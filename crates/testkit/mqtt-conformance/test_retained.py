"""Retained messages: stored, replaced, cleared, and delivered with the right RETAIN flag."""

import pytest

from harness import V5, subscribe_options


def test_retained_message_is_delivered_to_a_new_subscriber_with_retain_set(clients, version, topic):
    """[MQTT-3.3.1-5] a retained PUBLISH is stored for future subscribers;
    3.1.1: [MQTT-3.3.1-6] a new subscription gets the last retained message,
    [MQTT-3.3.1-8] sent with RETAIN 1;
    5.0: [MQTT-3.3.1-9] Retain Handling 0 (the default) sends it, with RETAIN 1 (§3.3.1.3).
    """
    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"on", qos=1, retain=True)

    subscriber = clients(version)
    assert subscriber.subscribe((f"{topic}/+", 1)) == [1]

    message = subscriber.receive()
    assert (message.topic, message.payload, message.retain) == (f"{topic}/state", b"on", True)
    # The stored QoS is 1 and the subscription grants 1 [MQTT-3.8.4-6] / [MQTT-3.8.4-8].
    assert message.qos == 1


def test_a_new_retained_message_replaces_the_old_one(clients, version, topic):
    """[MQTT-3.3.1-5] storing a retained message replaces the one held for that topic
    (5.0 says so in these words; 3.1.1 keeps "the last retained message" [MQTT-3.3.1-6])."""
    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"first", qos=1, retain=True)
    publisher.publish(f"{topic}/state", b"second", qos=1, retain=True)

    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/state", 1), (f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/sentinel", b"", qos=1)

    retained = subscriber.receive_until(f"{topic}/sentinel")
    assert [(m.payload, m.retain) for m in retained] == [(b"second", True)]


def test_a_qos0_retained_message_discards_the_previous_one(clients, version, topic):
    """3.1.1 [MQTT-3.3.1-7]: a QoS 0 retained PUBLISH discards what was retained before;
    the server may or may not keep the new QoS 0 message itself.
    5.0 [MQTT-3.3.1-5]: any retained message replaces the existing one."""
    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"qos1", qos=1, retain=True)
    publisher.publish(f"{topic}/state", b"qos0", qos=0, retain=True)

    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/state", 1), (f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/sentinel", b"", qos=1)

    payloads = [m.payload for m in subscriber.receive_until(f"{topic}/sentinel")]
    assert b"qos1" not in payloads
    assert payloads in ([], [b"qos0"])


def test_an_empty_retained_message_clears_the_topic_and_is_forwarded(clients, version, topic):
    """3.1.1 [MQTT-3.3.1-10] / 5.0 [MQTT-3.3.1-6]: a zero-byte retained PUBLISH is forwarded as
    normal and removes the retained message; [MQTT-3.3.1-11] / [MQTT-3.3.1-7]: it is not stored."""
    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"on", qos=1, retain=True)

    existing = clients(version)
    existing.subscribe((f"{topic}/state", 1))
    assert existing.receive().payload == b"on"

    publisher.publish(f"{topic}/state", b"", qos=1, retain=True)
    cleared = existing.receive()
    assert (cleared.topic, cleared.payload) == (f"{topic}/state", b"")

    newcomer = clients(version)
    newcomer.subscribe((f"{topic}/state", 1), (f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/sentinel", b"", qos=1)
    assert newcomer.receive_until(f"{topic}/sentinel") == []


def test_a_non_retained_publish_leaves_the_retained_message_alone(clients, version, topic):
    """3.1.1 [MQTT-3.3.1-12] / 5.0 [MQTT-3.3.1-8]: RETAIN 0 neither stores the message nor
    removes or replaces the retained one."""
    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"retained", qos=1, retain=True)
    publisher.publish(f"{topic}/state", b"transient", qos=1, retain=False)

    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/state", 1), (f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/sentinel", b"", qos=1)

    assert [(m.payload, m.retain) for m in subscriber.receive_until(f"{topic}/sentinel")] == [(b"retained", True)]


def test_an_existing_subscriber_gets_a_retained_publish_with_retain_cleared(clients, version, topic):
    """3.1.1 [MQTT-3.3.1-9]: a message sent because it matches an established subscription
    has RETAIN 0, however it was published; 5.0 [MQTT-3.3.1-12]: the same with Retain As
    Published 0, the default."""
    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/state", 1))

    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"live", qos=1, retain=True)

    message = subscriber.receive()
    assert (message.payload, message.retain) == (b"live", False)


def test_subscribing_again_to_the_same_filter_resends_retained_messages(clients, version, topic):
    """3.1.1 [MQTT-3.8.4-3]: a SUBSCRIBE identical to an existing subscription replaces it and
    re-sends the retained messages; 5.0 [MQTT-3.8.4-3], [MQTT-3.8.4-4] with Retain Handling 0."""
    publisher = clients(version)
    publisher.publish(f"{topic}/state", b"on", qos=1, retain=True)

    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/state", 1))
    assert subscriber.receive().payload == b"on"

    subscriber.subscribe((f"{topic}/state", 1))
    again = subscriber.receive()
    assert (again.payload, again.retain) == (b"on", True)


@pytest.mark.parametrize(
    ("retain_handling", "first", "second"),
    [(0, True, True), (1, True, False), (2, False, False)],
    ids=["send-always", "send-if-new", "never-send"],
)
def test_retain_handling(clients, topic, retain_handling, first, second):
    """MQTT 5 Retain Handling on subscribing and on subscribing again to the same filter:
    0 sends retained messages both times [MQTT-3.3.1-9], 1 only when the subscription did not
    exist [MQTT-3.3.1-10], 2 never [MQTT-3.3.1-11]."""
    publisher = clients(V5)
    publisher.publish(f"{topic}/state", b"on", qos=1, retain=True)

    subscriber = clients(V5)
    subscriber.subscribe((f"{topic}/sentinel", 1))
    options = subscribe_options(1, retain_handling=retain_handling)
    got = []
    for _ in range(2):
        assert subscriber.subscribe((f"{topic}/state", options)) == [1]
        publisher.publish(f"{topic}/sentinel", b"", qos=1)
        got.append([m.payload for m in subscriber.receive_until(f"{topic}/sentinel")])

    assert got == [[b"on"] if first else [], [b"on"] if second else []]


def test_retain_as_published(clients, topic):
    """MQTT 5 Retain As Published: 1 forwards the RETAIN flag as received [MQTT-3.3.1-13],
    0 forwards it as 0 [MQTT-3.3.1-12]."""
    as_published = clients(V5)
    as_published.subscribe((f"{topic}/state", subscribe_options(1, retain_as_published=True)))
    cleared = clients(V5)
    cleared.subscribe((f"{topic}/state", subscribe_options(1, retain_as_published=False)))

    publisher = clients(V5)
    publisher.publish(f"{topic}/state", b"retained", qos=1, retain=True)
    publisher.publish(f"{topic}/state", b"plain", qos=1, retain=False)

    assert [(m.payload, m.retain) for m in as_published.receive_many(2)] == [(b"retained", True), (b"plain", False)]
    assert [(m.payload, m.retain) for m in cleared.receive_many(2)] == [(b"retained", False), (b"plain", False)]
