"""Will messages: published when a connection fails, not after DISCONNECT, and MQTT 5 Will Delay."""

import time

from harness import V5, Will, new_client_id


def test_will_is_published_when_the_connection_fails(clients, version, topic):
    """3.1.1 [MQTT-3.1.2-8] / 5.0 [MQTT-3.1.2-7], [MQTT-3.1.2-8]: the Will Message is stored
    and published when the network connection closes without DISCONNECT; Will Retain 0 makes
    it a non-retained message ([MQTT-3.1.2-16] / 5.0 [MQTT-3.1.2-14])."""
    watcher = clients(version)
    watcher.subscribe((f"{topic}/will", 1))

    dying = clients(version, will=Will(f"{topic}/will", b"gone", qos=1))
    dying.drop()

    will = watcher.receive()
    assert (will.topic, will.payload, will.qos, will.retain) == (f"{topic}/will", b"gone", 1, False)


def test_will_is_not_published_after_disconnect(clients, version, topic):
    """3.1.1 [MQTT-3.1.2-10], [MQTT-3.14.4-3]: on DISCONNECT the server discards the Will
    Message without publishing it; 5.0 the same for DISCONNECT with reason code 0x00
    ([MQTT-3.1.2-8], [MQTT-3.1.2-10], [MQTT-3.14.4-3])."""
    watcher = clients(version)
    watcher.subscribe((f"{topic}/will", 1))

    leaving = clients(version, will=Will(f"{topic}/will", b"gone", qos=1))
    leaving.disconnect()

    # The will, had it been published, was queued to the watcher when the connection closed;
    # a message sent on the same topic afterwards arrives after it ([MQTT-4.6.0-6]).
    time.sleep(0.3)
    clients(version).publish(f"{topic}/will", b"sentinel", qos=1)
    assert [m.payload for m in watcher.receive_many(1)] == [b"sentinel"]
    assert watcher.pending() == []


def test_will_delay_interval(clients, topic):
    """MQTT 5 §3.1.3.2.2: the will waits for the Will Delay Interval ([MQTT-3.1.2-8]), and is not
    sent at all if a new connection to the session is made before the interval has passed
    ([MQTT-3.1.3-9]). Two clients with a 2 s delay fail together; one comes back at once."""
    watcher = clients(V5)
    watcher.subscribe((f"{topic}/will/+", 1))

    returning_id = new_client_id()
    returning = clients(V5, returning_id, clean=False, session_expiry=60, will=Will(f"{topic}/will/returning", b"r", delay=2))
    absent = clients(V5, clean=False, session_expiry=60, will=Will(f"{topic}/will/absent", b"a", delay=2))
    returning.drop()
    absent.drop()
    dropped_at = time.monotonic()
    back = clients(V5, returning_id, clean=False, session_expiry=60)
    assert back.connack.session_present is True

    absent_will = watcher.receive(timeout=5)
    waited = absent_will.received_at - dropped_at
    assert absent_will.topic == f"{topic}/will/absent"
    # A broker may count the delay in whole seconds; at least half of it must have passed.
    assert waited >= 1.0, f"the will came {waited:.2f} s after the connection failed, before its delay of 2 s"

    time.sleep(max(0.0, dropped_at + 3.0 - time.monotonic()))
    clients(V5).publish(f"{topic}/will/sentinel", b"", qos=1)
    late = [m.topic for m in watcher.receive_until(f"{topic}/will/sentinel")]
    assert late == [], "the will of the client that came back within its delay was published"


def test_disconnect_with_reason_0x04_publishes_the_will(clients, topic):
    """MQTT 5 §3.14.2.1: DISCONNECT with reason code 0x04 (Disconnect with Will Message) ends
    the connection normally but asks the server to publish the Will Message."""
    watcher = clients(V5)
    watcher.subscribe((f"{topic}/will", 1))

    leaving = clients(V5, will=Will(f"{topic}/will", b"on purpose", qos=1))
    leaving.disconnect(reason_code=0x04)

    will = watcher.receive()
    assert (will.topic, will.payload) == (f"{topic}/will", b"on purpose")


def test_will_retain_publishes_a_retained_will(clients, version, topic):
    """3.1.1 [MQTT-3.1.2-17] / 5.0 [MQTT-3.1.2-15]: with Will Retain 1 the will is published as
    a retained message, which a later subscriber receives with RETAIN 1; sent with Will QoS 2,
    it reaches a QoS 2 subscriber at QoS 2."""
    watcher = clients(version)
    watcher.subscribe((f"{topic}/will", 2))
    dying = clients(version, will=Will(f"{topic}/will", b"retained will", qos=2, retain=True))
    dying.drop()
    live = watcher.receive()
    assert (live.payload, live.qos) == (b"retained will", 2)

    later = clients(version)
    later.subscribe((f"{topic}/will", 2))
    stored = later.receive()
    assert (stored.payload, stored.retain, stored.qos) == (b"retained will", True, 2)
