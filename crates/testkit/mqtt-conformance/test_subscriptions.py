"""Subscriptions: overlap, No Local, unsubscribe, refused and malformed filters, `$` topics, sharing."""

import pytest

import raw_mqtt
from harness import V5, V311, WAIT, gather, new_client_id, subscribe_options


def test_overlapping_subscriptions_deliver_at_the_highest_granted_qos(clients, version, topic):
    """3.1.1 [MQTT-3.3.5-1] / 5.0 [MQTT-3.3.4-2]: a message matching several subscriptions of one
    client is delivered respecting the maximum QoS of them; further copies, one per extra
    matching subscription, are allowed. [MQTT-3.8.4-6] / 5.0 [MQTT-3.8.4-8]: a copy never exceeds
    the published QoS nor its subscription's granted QoS."""
    subscriber = clients(version)
    assert subscriber.subscribe((f"{topic}/#", 0), (f"{topic}/+", 2)) == [0, 2]

    publisher = clients(version)
    publisher.publish(f"{topic}/both", b"qos2", qos=2)  # matches both filters
    publisher.publish(f"{topic}/deep/only", b"qos1", qos=1)  # matches only the QoS 0 filter

    # Copies at different QoS are not ordered with respect to each other (§4.6), so wait for
    # the copy at QoS 2 and then a little longer for any extra copy.
    received = gather(
        [subscriber],
        lambda got: any(m.payload == b"qos2" and m.qos == 2 for m in got) and any(m.payload == b"qos1" for m in got),
    )[subscriber.client_id]
    both = [m for m in received if m.payload == b"qos2"]
    only = [m for m in received if m.payload == b"qos1"]
    assert 1 <= len(both) <= 2, f"one copy, or one per matching subscription: {both}"
    assert [m.qos for m in only] == [0]


def test_no_local_keeps_a_client_s_own_messages_from_it(clients, topic):
    """MQTT 5 [MQTT-3.8.3-3]: with No Local 1 the server does not forward a message to a
    connection with the ClientID of its publisher; others still get it."""
    talker = clients(V5)
    talker.subscribe((f"{topic}/room", subscribe_options(1, no_local=True)))
    listener = clients(V5)
    listener.subscribe((f"{topic}/room", 1))

    talker.publish(f"{topic}/room", b"own words", qos=1)
    assert listener.receive().payload == b"own words"

    clients(V5).publish(f"{topic}/room", b"someone else", qos=1)
    assert [m.payload for m in talker.receive_many(1)] == [b"someone else"]
    assert talker.pending() == []


def test_unsubscribe_removes_exactly_the_named_filters(clients, version, topic):
    """[MQTT-3.10.4-1]: UNSUBSCRIBE filters are compared character by character with the
    client's filters and only an identical one is deleted; [MQTT-3.10.4-2]: no new messages
    for a deleted one; [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK with the same Packet
    Identifier, even when nothing was deleted; [MQTT-3.10.4-6]: several filters in one
    UNSUBSCRIBE are handled one by one. 5.0 [MQTT-3.11.3-1], [MQTT-3.11.3-2]: one reason code
    per filter, in order: 0x00 Success, 0x11 No subscription existed."""
    subscriber = clients(version)
    subscriber.subscribe((f"{topic}/exact", 1), (f"{topic}/wild/+", 1))

    codes = subscriber.unsubscribe(f"{topic}/exact", f"{topic}/wild/x", f"{topic}/never")
    if version == V5:
        assert codes == [0x00, 0x11, 0x11]

    publisher = clients(version)
    publisher.publish(f"{topic}/exact", b"unsubscribed", qos=1)
    publisher.publish(f"{topic}/wild/x", b"still subscribed", qos=1)
    assert [m.payload for m in subscriber.receive_many(1)] == [b"still subscribed"]

    subscriber.unsubscribe(f"{topic}/wild/+")
    publisher.publish(f"{topic}/wild/x", b"after the last unsubscribe", qos=1)
    subscriber.subscribe((f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/sentinel", b"", qos=1)
    assert subscriber.receive_until(f"{topic}/sentinel") == []


def test_a_refused_filter_fails_alone_in_its_subscribe(clients, broker, version, topic):
    """[MQTT-3.8.4-4] / 5.0 [MQTT-3.8.4-5]: several filters in one SUBSCRIBE are handled as
    separate SUBSCRIBEs with one combined SUBACK; [MQTT-3.8.4-5] / 5.0 [MQTT-3.8.4-6],
    [MQTT-3.8.4-7]: one code per filter, granted QoS or failure, in order ([MQTT-3.9.3-1]).
    3.1.1: failure is 0x80 ([MQTT-3.9.3-2]); 5.0: a reason code of 0x80 or above (§3.9.3).
    The filter refused here is MQTT_DENIED_FILTER, refused by the broker's policy."""
    subscriber = clients(version)
    codes = subscriber.subscribe((f"{topic}/a", 1), (broker.denied_filter, 1), (f"{topic}/b", 0))

    assert codes[0] == 1 and codes[2] == 0, codes
    if version == V311:
        assert codes[1] == 0x80
    else:
        assert codes[1] >= 0x80
    assert subscriber.is_connected

    publisher = clients(version)
    publisher.publish(f"{topic}/a", b"a", qos=1)
    publisher.publish(f"{topic}/b", b"b", qos=1)
    assert sorted((m.payload, m.qos) for m in subscriber.receive_many(2)) == [(b"a", 1), (b"b", 0)]


MALFORMED_FILTERS = {
    "hash-not-last": "{topic}/#/b",
    "hash-inside-level": "{topic}/a#",
    "plus-inside-level": "{topic}/a+",
    "plus-leading-a-level": "{topic}/+a/b",
    "empty": "",
}


@pytest.mark.parametrize("case", MALFORMED_FILTERS, ids=list(MALFORMED_FILTERS))
def test_a_malformed_filter_is_never_granted(broker, version, topic, case):
    """[MQTT-4.7.1-2] / 5.0 [MQTT-4.7.1-1]: `#` is alone or after `/`, and last;
    [MQTT-4.7.1-3] / 5.0 [MQTT-4.7.1-2]: `+` occupies a whole level; [MQTT-4.7.3-1]: a filter has
    at least one character. A filter breaking these is a protocol violation: 3.1.1 closes the
    connection ([MQTT-4.8.0-1]); 5.0 closes it ([MQTT-4.13.1-1], DISCONNECT with a reason code
    of 0x80 or above when one is sent) or answers with a SUBACK failure code (0x8F Topic Filter
    invalid, §3.9.3). Either way the filter must not be granted."""
    bad_filter = MALFORMED_FILTERS[case].format(topic=topic)
    connection = broker.raw()
    try:
        connection.send(raw_mqtt.connect_packet(version, new_client_id()))
        assert raw_mqtt.parse_connack(version, connection.read(WAIT)).code == 0
        connection.send(raw_mqtt.subscribe_packet(version, 7, [(bad_filter, 1)]))
        answer = connection.read(WAIT)
        if answer is None:
            return  # closed without a word: allowed by both versions
        if answer.type == raw_mqtt.DISCONNECT and version == V5:
            assert raw_mqtt.reason_code(answer) >= 0x80
            assert connection.read_until_closed(WAIT) == []
            return
        assert version == V5, f"3.1.1 must close the connection; the broker answered packet type {answer.type}"
        assert answer.type == raw_mqtt.SUBACK and answer.packet_id == 7
        assert raw_mqtt.parse_suback(version, answer)[0] >= 0x80
    finally:
        connection.close()


def test_wildcard_filters_do_not_match_topics_beginning_with_dollar(clients, version, topic):
    """[MQTT-4.7.2-1]: filters starting with `#` or `+` do not match topic names starting with
    `$`. A subscriber to the `$conformance/...` topic itself proves the message was routed; one
    to `#` and `+/...` must get neither it nor any other `$` topic, such as `$SYS` (§4.7.2)."""
    dollar_topic = "$" + topic + "/t"
    control = clients(version)
    assert control.subscribe((dollar_topic, 1)) == [1]
    wildcard = clients(version)
    filters = ["#", "+/" + topic.split("/", 1)[1] + "/#"]
    codes = wildcard.subscribe(*[(f, 1) for f in filters])
    if all(code >= 0x80 for code in codes):
        pytest.skip(f"the broker refuses both filters starting with a wildcard: {codes}")

    publisher = clients(version)
    publisher.publish(dollar_topic, b"dollar", qos=1)
    try:
        routed = control.receive(timeout=2.0)
    except AssertionError:
        pytest.skip(f"the broker does not route a client's PUBLISH to {dollar_topic}; nothing to match against")
    assert routed.payload == b"dollar"

    publisher.publish(f"{topic}/sentinel", b"", qos=1)
    received = wildcard.receive_until(f"{topic}/sentinel")
    assert [m.topic for m in received if m.topic.startswith("$")] == []


def test_shared_subscription_delivers_each_message_to_one_member_per_group(clients, version, topic):
    """MQTT 5 §4.8.2: a message matching a shared subscription goes to one session of each
    share group ([MQTT-4.8.2-1], [MQTT-4.8.2-2]: `$share/{ShareName}/{filter}`), at the granted
    QoS ([MQTT-4.8.2-3]); ordinary subscriptions still get every message. Over 3.1.1 this is the
    same `$share` extension, which the broker under test offers to both versions."""
    groups = {"alpha": [clients(version) for _ in range(3)], "beta": [clients(version) for _ in range(2)]}
    for name, members in groups.items():
        for member in members:
            assert member.subscribe((f"$share/{name}/{topic}/jobs", 1)) == [1]
    plain = clients(version)
    plain.subscribe((f"{topic}/jobs", 1))

    publisher = clients(version)
    payloads = [f"job {n:02}".encode() for n in range(20)]
    for payload in payloads:
        publisher.publish(f"{topic}/jobs", payload, qos=1, wait=False)

    assert [m.payload for m in plain.receive_many(len(payloads))] == payloads
    for name, members in groups.items():
        received = gather(members, lambda got: len(got) >= len(payloads))
        delivered = [m for messages in received.values() for m in messages]
        assert sorted(m.payload for m in delivered) == payloads, f"group {name}: each message to exactly one member"
        assert all(m.qos == 1 for m in delivered)
