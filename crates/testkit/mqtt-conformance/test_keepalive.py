"""Keep-alive: a silent client is cut off after 1.5 keep-alive periods, and never with keep-alive 0.

paho always sends PINGREQ on time, so these tests use a byte-level connection that
says nothing after CONNECT.
"""

import time

import pytest

import raw_mqtt
from harness import V5, WAIT, new_client_id

KEEP_ALIVE = 2  # seconds: short, so that the suite stays fast
# The broker checks keep-alive on its own clock; allow it this much past 1.5 periods.
LATENESS = 1.0


def connect_silently(broker, version: str, keepalive: int) -> tuple[raw_mqtt.RawConnection, int]:
    """Connects, and returns the connection and the keep-alive the broker will apply."""
    connection = broker.raw()
    connection.send(raw_mqtt.connect_packet(version, new_client_id(), keepalive=keepalive))
    connack = raw_mqtt.parse_connack(version, connection.read(WAIT))
    assert connack.code == 0
    # 5.0 [MQTT-3.2.2-21], [MQTT-3.2.2-22]: a Server Keep Alive in CONNACK replaces the client's value.
    applied = connack.properties.get(raw_mqtt.SERVER_KEEP_ALIVE, keepalive) if version == V5 else keepalive
    return connection, applied


def test_a_silent_client_is_disconnected_after_one_and_a_half_keep_alives(broker, version):
    """3.1.1 [MQTT-3.1.2-24] / 5.0 [MQTT-3.1.2-22]: with a non-zero Keep Alive, a server that
    receives nothing for 1.5 times that period closes the connection. It does not close it
    sooner than one period, within which the client is allowed to be silent ([MQTT-3.1.2-23] /
    5.0 [MQTT-3.1.2-20]). 5.0: a DISCONNECT before closing carries 0x8D Keep Alive timeout."""
    connection, keepalive = connect_silently(broker, version, KEEP_ALIVE)
    connected_at = time.monotonic()
    try:
        if not 0 < keepalive <= 5:
            pytest.skip(f"the broker imposes a Server Keep Alive of {keepalive} s")
        try:
            packets = connection.read_until_closed(1.5 * keepalive + LATENESS)
        except TimeoutError:
            pytest.fail(f"still connected {1.5 * keepalive + LATENESS} s after CONNECT with keep-alive {keepalive} s")
        silent_for = time.monotonic() - connected_at
    finally:
        connection.close()

    assert silent_for >= keepalive, f"closed after {silent_for:.2f} s, within the keep-alive of {keepalive} s"
    if version == V5:
        assert [(p.type, raw_mqtt.reason_code(p)) for p in packets] in ([], [(raw_mqtt.DISCONNECT, 0x8D)])
    else:
        assert packets == []


def test_keep_alive_zero_turns_the_timeout_off(broker, version):
    """§3.1.2.10: a Keep Alive of 0 turns the mechanism off, so a client that stays silent
    for longer than 1.5 times the keep-alive used above is still connected, and its PINGREQ is
    answered with PINGRESP ([MQTT-3.12.4-1]). 5.0: the server may impose its own Server Keep
    Alive instead ([MQTT-3.2.2-21]); the silence must then still be allowed if it is shorter
    than 1.5 times that value."""
    silence = 1.5 * KEEP_ALIVE + 0.5
    connection, keepalive = connect_silently(broker, version, 0)
    try:
        if keepalive != 0 and 1.5 * keepalive <= silence:
            pytest.skip(f"the broker imposes a Server Keep Alive of {keepalive} s")
        try:
            answer = connection.read(silence)
        except TimeoutError:
            answer = "nothing"
        assert answer == "nothing", f"the broker ended the silence with {answer or 'closing the connection'}"

        connection.send(raw_mqtt.pingreq_packet())
        pong = connection.read(WAIT)
        assert pong is not None and pong.type == raw_mqtt.PINGRESP
        connection.send(raw_mqtt.disconnect_packet())
    finally:
        connection.close()
