"""Delivery: QoS 2 exactly once, ordering, MQTT 5 message expiry, topic aliases and flow control."""

import time

import pytest

import raw_mqtt
from harness import V5, WAIT, message_expiry, new_client_id, topic_alias


def test_qos2_messages_arrive_exactly_once(clients, version, topic):
    """3.1.1 [MQTT-4.3.3-1], [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-8], [MQTT-4.3.3-10],
    [MQTT-4.3.3-11]: QoS 2 from publisher to server and from server to subscriber, each
    message delivered once."""
    subscriber = clients(version)
    assert subscriber.subscribe((f"{topic}/exact", 2)) == [2]

    publisher = clients(version)
    payloads = [f"once {n:02}".encode() for n in range(20)]
    for payload in payloads:
        publisher.publish(f"{topic}/exact", payload, qos=2)
    publisher.publish(f"{topic}/exact", b"sentinel", qos=2)

    received = subscriber.receive_many(len(payloads) + 1)
    time.sleep(0.2)  # room for a duplicate to show up
    received += subscriber.pending()
    assert [(m.payload, m.qos) for m in received] == [(p, 2) for p in payloads + [b"sentinel"]]


def test_a_repeated_qos2_publish_before_pubrel_is_not_delivered_twice(clients, broker, version, topic):
    """3.1.1 [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-10]: until PUBREL, the receiver answers a repeated
    PUBLISH with the same Packet Identifier with PUBREC again, and does not deliver it twice
    onwards; [MQTT-4.3.3-2] / 5.0 [MQTT-4.3.3-11]: PUBREL is answered with PUBCOMP."""
    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/exact", 2))

    connection = broker.raw()
    try:
        connection.send(raw_mqtt.connect_packet(version, new_client_id()))
        assert raw_mqtt.parse_connack(version, connection.read(WAIT)).code == 0
        for dup in (False, True):
            connection.send(
                raw_mqtt.publish_packet(version, f"{topic}/exact", b"twice sent", qos=2, packet_id=42, dup=dup)
            )
            pubrec = connection.read(WAIT)
            assert pubrec is not None and (pubrec.type, pubrec.packet_id) == (raw_mqtt.PUBREC, 42)
            if version == V5:
                assert raw_mqtt.reason_code(pubrec) < 0x80
        connection.send(raw_mqtt.pubrel_packet(42))
        pubcomp = connection.read(WAIT)
        assert pubcomp is not None and (pubcomp.type, pubcomp.packet_id) == (raw_mqtt.PUBCOMP, 42)
        connection.send(raw_mqtt.publish_packet(version, f"{topic}/exact", b"sentinel", qos=2, packet_id=43))
        assert connection.read(WAIT).type == raw_mqtt.PUBREC
        connection.send(raw_mqtt.pubrel_packet(43))
        assert connection.read(WAIT).type == raw_mqtt.PUBCOMP
        connection.send(raw_mqtt.disconnect_packet())
    finally:
        connection.close()

    received = subscriber.receive_many(2)
    time.sleep(0.2)  # room for a duplicate to show up
    received += subscriber.pending()
    assert [m.payload for m in received] == [b"twice sent", b"sentinel"]


def test_qos1_messages_on_one_topic_keep_their_order(clients, version, topic):
    """3.1.1 [MQTT-4.6.0-5], [MQTT-4.6.0-6] / 5.0 [MQTT-4.6.0-5], [MQTT-4.6.0-6]: each topic is
    ordered by default, and the server sends a client's messages on it (same QoS) to each
    subscriber in the order it received them. The publisher keeps many in flight at once."""
    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/ordered", 1))

    publisher = clients(version)
    payloads = [f"{n:03}".encode() for n in range(100)]
    sent = [publisher.publish(f"{topic}/ordered", payload, qos=1, wait=False) for payload in payloads]
    for info in sent:
        publisher.wait_published(info)

    assert [m.payload for m in subscriber.receive_many(len(payloads))] == payloads


def test_an_expired_queued_message_is_dropped_and_a_live_one_counts_down(clients, topic):
    """MQTT 5 [MQTT-3.3.2-5]: a message whose Message Expiry Interval passed before onward
    delivery started is deleted for that subscriber; [MQTT-3.3.2-6]: one that is delivered
    carries the interval received minus the time it waited in the server."""
    client_id = new_client_id()
    offline = clients(V5, client_id, clean=False, session_expiry=60)
    offline.subscribe((f"{topic}/expiring", 1))
    offline.disconnect()

    publisher = clients(V5)
    publisher.publish(f"{topic}/expiring", b"short-lived", qos=1, properties=message_expiry(1))
    publisher.publish(f"{topic}/expiring", b"long-lived", qos=1, properties=message_expiry(30))
    published_at = time.monotonic()
    time.sleep(2.5)

    back = clients(V5, client_id, clean=False, session_expiry=0)
    assert back.connack.session_present is True
    publisher.publish(f"{topic}/expiring", b"sentinel", qos=1)
    received = back.receive_many(2)
    assert [m.payload for m in received] == [b"long-lived", b"sentinel"]

    waited = int(received[0].received_at - published_at)
    remaining = received[0].properties.get("MessageExpiryInterval")
    assert remaining is not None, "a message published with an expiry interval must carry one"
    assert 0 < remaining <= 30 - waited, f"{remaining} s left after waiting {waited} s of 30 s"


def test_topic_alias_set_by_the_client_is_honoured(clients, topic):
    """MQTT 5: a PUBLISH may set a Topic Alias with its topic name and later use the alias with
    a zero-length topic name (§3.3.2.3.4); the server accepts every alias from 1 to the Topic
    Alias Maximum it sent in CONNACK ([MQTT-3.3.2-12]). The subscriber sent no Topic Alias
    Maximum, so it gets full topic names and no alias ([MQTT-3.1.2-27])."""
    publisher = clients(V5)
    maximum = publisher.connack.properties.get("TopicAliasMaximum", 0)
    if maximum == 0:
        pytest.skip("the broker accepts no topic aliases (Topic Alias Maximum absent or 0)")
    subscriber = clients(V5)
    subscriber.subscribe((f"{topic}/alias/+", 1))

    first, last = f"{topic}/alias/first", f"{topic}/alias/last"
    publisher.publish(first, b"1 named", qos=1, properties=topic_alias(1))
    publisher.publish(last, b"2 named", qos=1, properties=topic_alias(maximum))
    publisher.publish("", b"3 by alias", qos=1, properties=topic_alias(1))
    publisher.publish("", b"4 by alias", qos=1, properties=topic_alias(maximum))

    received = subscriber.receive_many(4)
    # With a maximum of 1 both names share alias 1, and the second PUBLISH remapped it.
    third = last if maximum == 1 else first
    assert [(m.topic, m.payload) for m in received] == [
        (first, b"1 named"),
        (last, b"2 named"),
        (third, b"3 by alias"),
        (last, b"4 by alias"),
    ]
    assert all("TopicAlias" not in m.properties for m in received)


@pytest.mark.parametrize("case", ["zero", "above-maximum", "never-set"])
def test_an_invalid_topic_alias_closes_the_connection(broker, topic, case):
    """MQTT 5: a Topic Alias of 0 ([MQTT-3.3.2-8]) or above the server's Topic Alias Maximum
    ([MQTT-3.2.2-17], [MQTT-3.3.2-9]), or an empty topic name with an alias that has no
    mapping, is a Protocol Error (§3.3.2.3.4); the server closes the connection
    ([MQTT-4.13.1-1]); a DISCONNECT sent first carries a reason code of 0x80 or above
    ([MQTT-4.13.2-1]), such as 0x94 Topic Alias invalid or 0x82 Protocol Error."""
    connection = broker.raw()
    try:
        connection.send(raw_mqtt.connect_packet(V5, new_client_id()))
        connack = raw_mqtt.parse_connack(V5, connection.read(WAIT))
        assert connack.code == 0
        maximum = int(connack.properties.get(raw_mqtt.TOPIC_ALIAS_MAXIMUM, 0))
        alias_topic, alias = {
            "zero": (f"{topic}/alias", 0),
            "above-maximum": (f"{topic}/alias", maximum + 1),
            "never-set": ("", 1),
        }[case]
        connection.send(
            raw_mqtt.publish_packet(
                V5, alias_topic, b"bad alias", qos=1, packet_id=1, properties={raw_mqtt.TOPIC_ALIAS: alias}
            )
        )
        try:
            answered = connection.read_until_closed(WAIT)
        except TimeoutError:
            pytest.fail("the connection stayed open after an invalid Topic Alias")
    finally:
        connection.close()
    assert [p.type for p in answered] in ([], [raw_mqtt.DISCONNECT]), answered
    if answered:
        assert raw_mqtt.reason_code(answered[0]) >= 0x80


def test_a_topic_alias_does_not_outlive_its_connection(broker, topic):
    """MQTT 5 [MQTT-3.3.2-7]: Topic Alias mappings are not carried from one network connection
    to the next, so using an alias set on a previous connection is a Protocol Error."""
    client_id = new_client_id()
    first = broker.raw()
    try:
        first.send(raw_mqtt.connect_packet(V5, client_id))
        connack = raw_mqtt.parse_connack(V5, first.read(WAIT))
        if not connack.properties.get(raw_mqtt.TOPIC_ALIAS_MAXIMUM):
            pytest.skip("the broker accepts no topic aliases (Topic Alias Maximum absent or 0)")
        first.send(
            raw_mqtt.publish_packet(V5, f"{topic}/alias", b"sets", qos=1, packet_id=1, properties={raw_mqtt.TOPIC_ALIAS: 1})
        )
        assert first.read(WAIT).type == raw_mqtt.PUBACK
        first.send(raw_mqtt.disconnect_packet())
    finally:
        first.close()

    second, connack = broker.raw_connect_again(V5, client_id)
    try:
        assert connack.code == 0
        second.send(raw_mqtt.publish_packet(V5, "", b"uses", qos=1, packet_id=2, properties={raw_mqtt.TOPIC_ALIAS: 1}))
        try:
            answered = second.read_until_closed(WAIT)
        except TimeoutError:
            pytest.fail("an alias from the previous connection was accepted")
    finally:
        second.close()
    assert [p.type for p in answered] in ([], [raw_mqtt.DISCONNECT]), answered
    if answered:
        assert raw_mqtt.reason_code(answered[0]) >= 0x80


def test_receive_maximum_limits_unacknowledged_messages_in_flight(clients, topic):
    """MQTT 5 [MQTT-3.3.4-9]: the server never has more unacknowledged QoS 1 PUBLISH packets
    in flight to a client than the client's Receive Maximum; [MQTT-4.9.0-2]: once its send quota
    is used up it sends no more until an acknowledgement comes back."""
    receive_maximum = 2
    slow = clients(V5, manual_ack=True, receive_maximum=receive_maximum)
    slow.subscribe((f"{topic}/flow", 1))

    publisher = clients(V5)
    payloads = [f"{n}".encode() for n in range(6)]
    for payload in payloads:
        publisher.publish(f"{topic}/flow", payload, qos=1)

    received = slow.receive_many(receive_maximum)
    time.sleep(0.5)  # the broker has had ample time to send more, if it were going to
    received += slow.pending()
    assert len(received) == receive_maximum, f"{len(received)} unacknowledged messages in flight"

    # Acknowledge one message at a time: each acknowledgement frees one slot, no more.
    for acknowledged in range(1, len(payloads) + 1):
        slow.ack(received[acknowledged - 1])
        if len(received) < len(payloads):
            received.append(slow.receive())
        time.sleep(0.3)  # room for a message too many to arrive
        received += slow.pending()
        in_flight = len(received) - acknowledged
        assert in_flight <= receive_maximum, f"{in_flight} unacknowledged messages in flight after {acknowledged} acks"

    assert [m.payload for m in received] == payloads
