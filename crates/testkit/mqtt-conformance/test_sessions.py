"""Sessions: queueing while offline, Session Present, redelivery, expiry, and client ids."""

import time

import raw_mqtt
from harness import V5, V311, WAIT, new_client_id


def persistent(version: str) -> dict:
    """Options of a client whose session outlives its connection."""
    return {"clean": False, "session_expiry": 300} if version == V5 else {"clean": False}


def test_qos1_messages_published_while_offline_arrive_on_reconnect(clients, version, topic):
    """3.1.1 [MQTT-3.1.2-4], [MQTT-3.1.2-5]: a CleanSession 0 session is kept after disconnection
    and stores further QoS 1 messages for its subscriptions; 5.0 [MQTT-3.1.2-23], [MQTT-3.1.2-5]:
    the same for a Session Expiry Interval above 0.
    Session Present: 0 for a new session ([MQTT-3.2.2-3]), 1 for a resumed one ([MQTT-3.2.2-2] /
    5.0 [MQTT-3.2.2-3]), and 0 again after a clean start ([MQTT-3.2.2-1] / 5.0 [MQTT-3.2.2-2]),
    which discards the session ([MQTT-3.1.2-6] / 5.0 [MQTT-3.1.2-4])."""
    client_id = new_client_id()
    first = clients(version, client_id, **persistent(version))
    assert first.connack.session_present is False
    first.subscribe((f"{topic}/queued", 1))
    first.disconnect()

    publisher = clients(version)
    for number in range(3):
        publisher.publish(f"{topic}/queued", f"offline {number}", qos=1)

    resumed = clients(version, client_id, **persistent(version))
    assert resumed.connack.session_present is True
    assert [m.payload for m in resumed.receive_many(3)] == [b"offline 0", b"offline 1", b"offline 2"]
    # The subscription is part of the session: it goes on delivering without a new SUBSCRIBE.
    publisher.publish(f"{topic}/queued", b"online", qos=1)
    assert resumed.receive().payload == b"online"
    resumed.disconnect()

    publisher.publish(f"{topic}/queued", b"for the discarded session", qos=1)
    fresh = clients(version, client_id, clean=True)
    assert fresh.connack.session_present is False
    fresh.subscribe((f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/queued", b"after the clean start", qos=1)
    publisher.publish(f"{topic}/sentinel", b"", qos=1)
    assert fresh.receive_until(f"{topic}/sentinel") == []


def test_unacknowledged_qos1_message_is_resent_with_dup_on_reconnect(clients, version, topic):
    """[MQTT-4.4.0-1]: on reconnecting to a kept session the server resends unacknowledged
    QoS 1 PUBLISH packets with their original Packet Identifiers; [MQTT-3.3.1-1]: a
    re-delivery has DUP 1 (and the first delivery DUP 0, [MQTT-3.3.1-3])."""
    client_id = new_client_id()
    holder = clients(version, client_id, manual_ack=True, **persistent(version))
    holder.subscribe((f"{topic}/work", 1))

    publisher = clients(version)
    publisher.publish(f"{topic}/work", b"job", qos=1)
    first = holder.receive()
    assert (first.payload, first.qos, first.dup) == (b"job", 1, False)
    holder.drop()  # never acknowledged

    resumed = clients(version, client_id, **persistent(version))
    assert resumed.connack.session_present is True
    again = resumed.receive()
    assert (again.payload, again.qos, again.dup, again.mid) == (b"job", 1, True, first.mid)

    # Acknowledged now, it is not sent a third time.
    resumed.subscribe((f"{topic}/sentinel", 1))
    publisher.publish(f"{topic}/sentinel", b"", qos=1)
    assert resumed.receive_until(f"{topic}/sentinel") == []


def test_session_is_discarded_after_its_expiry_interval(clients, topic):
    """MQTT 5 [MQTT-4.1.0-2]: the server discards the session once the connection is closed
    and the Session Expiry Interval has passed, so a reconnection gets Session Present 0
    ([MQTT-3.2.2-3]) and none of the queued messages. A session with a longer interval,
    closed at the same moment, is the control: it is resumed with its message
    ([MQTT-3.1.2-23])."""
    short_id, long_id = new_client_id(), new_client_id()
    for client_id, expiry in ((short_id, 2), (long_id, 30)):
        client = clients(V5, client_id, clean=False, session_expiry=expiry)
        client.subscribe((f"{topic}/queued", 1))
        client.disconnect()

    publisher = clients(V5)
    publisher.publish(f"{topic}/queued", b"queued", qos=1)
    time.sleep(3)

    expired = clients(V5, short_id, clean=False, session_expiry=0)
    assert expired.connack.session_present is False
    expired.subscribe((f"{topic}/queued", 1))
    publisher.publish(f"{topic}/queued", b"sentinel", qos=1)
    assert [m.payload for m in expired.receive_many(1)] == [b"sentinel"]

    kept = clients(V5, long_id, clean=False, session_expiry=0)
    assert kept.connack.session_present is True
    assert [m.payload for m in kept.receive_many(2)] == [b"queued", b"sentinel"]


def test_zero_length_client_id_with_clean_session_gets_a_unique_id(clients, version, topic):
    """[MQTT-3.1.3-6]: a server accepting a zero-byte ClientId assigns a unique one; 5.0
    [MQTT-3.1.3-7], [MQTT-3.2.2-16]: and returns it as Assigned Client Identifier, unused by any
    other session. Two such clients are connected at once: if they shared an id, the second
    would take over the first ([MQTT-3.1.4-2] / 5.0 [MQTT-3.1.4-3])."""
    first = clients(version, "", clean=True)
    second = clients(version, "", clean=True)
    if version == V5:
        assigned = [c.connack.properties.get("AssignedClientIdentifier") for c in (first, second)]
        assert all(assigned), f"CONNACK without Assigned Client Identifier: {assigned}"
        assert assigned[0] != assigned[1]

    for client in (first, second):
        client.subscribe((f"{topic}/both", 1))
    clients(version).publish(f"{topic}/both", b"hello", qos=1)
    for client in (first, second):
        assert client.receive().payload == b"hello"
        assert client.is_connected


def test_zero_length_client_id_without_clean_session_is_rejected(broker):
    """MQTT 3.1.1 [MQTT-3.1.3-8]: a zero-byte ClientId with CleanSession 0 gets CONNACK 0x02
    (Identifier rejected) and the connection is closed; [MQTT-3.2.2-4]: Session Present 0
    with a non-zero return code, [MQTT-3.2.2-5]: then the connection is closed."""
    connection = broker.raw()
    try:
        connection.send(raw_mqtt.connect_packet(V311, "", clean=False))
        connack = raw_mqtt.parse_connack(V311, connection.read(WAIT))
        assert (connack.code, connack.session_present) == (0x02, False)
        assert connection.read_until_closed(WAIT) == []
    finally:
        connection.close()
