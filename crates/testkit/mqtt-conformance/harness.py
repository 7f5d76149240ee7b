"""The paho-mqtt client as the tests drive it: every call waits for the broker's answer.

paho is asynchronous: calls queue packets and callbacks report answers on a
network thread. Tests read better as "subscribe, then publish, then expect", so
this wrapper turns each exchange into a blocking call with a timeout, collects
received messages in a queue, and records what the broker said (CONNACK,
SUBACK, UNSUBACK, DISCONNECT). Automatic reconnection is off: a test must see a
closed connection, not a new one.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

import raw_mqtt

V311 = "3.1.1"
V5 = "5.0"
VERSIONS = (V311, V5)
_PAHO_PROTOCOL = {V311: paho.MQTTv311, V5: paho.MQTTv5}

# How long any single answer from the broker may take before a test fails.
WAIT = 5.0


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    denied_filter: str

    def raw(self) -> raw_mqtt.RawConnection:
        return raw_mqtt.RawConnection(self.host, self.port, WAIT)

    def raw_connect_again(self, version: str, client_id: str) -> tuple[raw_mqtt.RawConnection, raw_mqtt.ConnAck]:
        """A new raw connection for a client id whose previous connection was just closed. While
        a broker is still ending that connection it may refuse the new one with 0x88 (Server
        unavailable), which the specification makes a passing condition, not an answer about the
        session; such a refusal is tried again for up to WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while True:
            connection = self.raw()
            connection.send(raw_mqtt.connect_packet(version, client_id))
            connack = raw_mqtt.parse_connack(version, connection.read(WAIT))
            if connack.code != 0x88 or time.monotonic() > deadline:
                return connection, connack
            connection.close()
            time.sleep(0.1)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    delay: int | None = None  # MQTT 5 Will Delay Interval, seconds


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    properties: dict
    received_at: float


@dataclass(frozen=True)
class ConnAck:
    session_present: bool
    reason_code: int
    properties: dict


def new_client_id() -> str:
    # 22 characters from [0-9a-z]: a client id every 3.1.1 broker must accept [MQTT-3.1.3-5].
    return "cf" + uuid.uuid4().hex[:20]


def properties_of(props: Properties | None) -> dict:
    return {} if props is None else props.json()


def subscribe_options(
    qos: int, *, no_local: bool = False, retain_as_published: bool = False, retain_handling: int = 0
) -> SubscribeOptions:
    return SubscribeOptions(
        qos=qos,
        noLocal=no_local,
        retainAsPublished=retain_as_published,
        retainHandling=retain_handling,
    )


class Client:
    """One paho client session; create it through the `clients` fixture so it is cleaned up."""

    def __init__(
        self,
        broker: Broker,
        version: str,
        client_id: str | None = None,
        *,
        clean: bool = True,
        session_expiry: int | None = None,
        keepalive: int = 30,
        will: Will | None = None,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        topic_alias_maximum: int | None = None,
        retained_registry: set[str] | None = None,
    ):
        self.broker = broker
        self.version = version
        self.client_id = new_client_id() if client_id is None else client_id
        self.clean = clean
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.receive_maximum = receive_maximum
        self.topic_alias_maximum = topic_alias_maximum
        self.messages: queue.Queue[Message] = queue.Queue()
        self.connack: ConnAck | None = None
        self.disconnect_reason: int | None = None
        self.disconnect_properties: dict = {}
        self._retained_registry = retained_registry if retained_registry is not None else set()
        self._lock = threading.Condition()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._subacks: dict[int, list[int]] = {}
        self._unsubacks: dict[int, list[int]] = {}
        self._puback_reasons: dict[int, int] = {}
        self._loop_running = False

        options = dict(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=_PAHO_PROTOCOL[version],
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if version == V311:
            options["clean_session"] = clean
        self._paho = paho.Client(**options)
        self._paho.on_connect = self._on_connect
        self._paho.on_disconnect = self._on_disconnect
        self._paho.on_message = self._on_message
        self._paho.on_subscribe = self._on_subscribe
        self._paho.on_unsubscribe = self._on_unsubscribe
        self._paho.on_publish = self._on_publish
        if will is not None:
            if will.retain:
                self._retained_registry.add(will.topic)
            will_properties = None
            if version == V5 and will.delay is not None:
                will_properties = Properties(PacketTypes.WILLMESSAGE)
                will_properties.WillDelayInterval = will.delay
            self._paho.will_set(will.topic, will.payload, will.qos, will.retain, will_properties)

    # -- connection ------------------------------------------------------------------------

    def connect(self, timeout: float = WAIT) -> ConnAck:
        """Connects and waits for CONNACK; returns it whatever its code."""
        connect_options = {}
        if self.version == V5:
            connect_options["clean_start"] = self.clean
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            if self.receive_maximum is not None:
                props.ReceiveMaximum = self.receive_maximum
            if self.topic_alias_maximum is not None:
                props.TopicAliasMaximum = self.topic_alias_maximum
            connect_options["properties"] = props
        self._paho.connect(self.broker.host, self.broker.port, self.keepalive, **connect_options)
        self._paho.loop_start()
        self._loop_running = True
        if not self._connected.wait(timeout):
            raise AssertionError(f"{self.client_id}: no CONNACK within {timeout} s")
        assert self.connack is not None
        return self.connack

    @property
    def is_connected(self) -> bool:
        return self._paho.is_connected()

    def disconnect(self, reason_code: int | None = None, session_expiry: int | None = None) -> None:
        """Sends DISCONNECT (MQTT 5: with the given reason code and Session Expiry Interval)."""
        options = {}
        if self.version == V5:
            if reason_code is not None:
                options["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
            if session_expiry is not None:
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = session_expiry
                options["properties"] = props
        self._paho.disconnect(**options)
        self.wait_disconnected()
        self._stop_loop()

    def drop(self) -> None:
        """Ends the network connection without DISCONNECT, as a network failure would."""
        sock = self._paho.socket()
        assert sock is not None, f"{self.client_id}: not connected"
        sock.shutdown(socket.SHUT_RDWR)
        self.wait_disconnected()
        self._stop_loop()

    def wait_disconnected(self, timeout: float = WAIT) -> bool:
        return self._disconnected.wait(timeout)

    def close(self) -> None:
        """Fixture teardown: leave no connection or thread behind."""
        if self._paho.is_connected():
            try:
                self._paho.disconnect()
                self._disconnected.wait(WAIT)
            except Exception:  # noqa: BLE001 - best effort during teardown
                pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop_running:
            self._paho.loop_stop()
            self._loop_running = False

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, *subscriptions: tuple[str, int | SubscribeOptions], timeout: float = WAIT) -> list[int]:
        """Subscribes and returns the SUBACK codes, one per filter."""
        result, mid = self._paho.subscribe(list(subscriptions))
        assert result == paho.MQTT_ERR_SUCCESS, f"SUBSCRIBE not sent: {paho.error_string(result)}"
        return self._wait_for(self._subacks, mid, "SUBACK", timeout)

    def unsubscribe(self, *filters: str, timeout: float = WAIT) -> list[int]:
        """Unsubscribes and returns the UNSUBACK reason codes (MQTT 5) or [] (3.1.1)."""
        result, mid = self._paho.unsubscribe(list(filters))
        assert result == paho.MQTT_ERR_SUCCESS, f"UNSUBSCRIBE not sent: {paho.error_string(result)}"
        return self._wait_for(self._unsubacks, mid, "UNSUBACK", timeout)

    def _wait_for(self, answers: dict[int, list[int]], mid: int, what: str, timeout: float) -> list[int]:
        with self._lock:
            if not self._lock.wait_for(lambda: mid in answers, timeout):
                raise AssertionError(f"{self.client_id}: no {what} for packet id {mid} within {timeout} s")
            return answers.pop(mid)

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        wait: bool = True,
    ) -> paho.MQTTMessageInfo:
        """Publishes; with wait, returns once the broker acknowledged (QoS > 0) or it was sent."""
        if retain:
            self._retained_registry.add(topic)
        info = self._paho.publish(topic, payload, qos, retain, properties)
        if wait:
            self.wait_published(info)
        return info

    def wait_published(self, info: paho.MQTTMessageInfo, timeout: float = WAIT) -> None:
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{self.client_id}: publish {info.mid} not acknowledged within {timeout} s"

    def puback_reason(self, info: paho.MQTTMessageInfo) -> int | None:
        with self._lock:
            return self._puback_reasons.get(info.mid)

    # -- receiving -------------------------------------------------------------------------

    def receive(self, timeout: float = WAIT) -> Message:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout} s") from None

    def receive_many(self, count: int, timeout: float = WAIT) -> list[Message]:
        deadline = time.monotonic() + timeout
        received = []
        while len(received) < count:
            remaining = deadline - time.monotonic()
            try:
                received.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: {len(received)} of {count} messages within {timeout} s: {received}"
                ) from None
        return received

    def receive_until(self, sentinel_topic: str, timeout: float = WAIT) -> list[Message]:
        """Everything that arrives before the first message on `sentinel_topic`, which is consumed.

        Tests publish a sentinel after the messages in question, so "nothing else
        arrived" is decided by the broker's own ordering, not by a sleep.
        """
        deadline = time.monotonic() + timeout
        before = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self.messages.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: sentinel on {sentinel_topic} not received within {timeout} s; "
                    f"received before it: {before}"
                ) from None
            if message.topic == sentinel_topic:
                return before
            before.append(message)

    def pending(self) -> list[Message]:
        """Messages received and not yet taken, without waiting."""
        taken = []
        while True:
            try:
                taken.append(self.messages.get_nowait())
            except queue.Empty:
                return taken

    def ack(self, message: Message) -> None:
        """Acknowledges a message when the client was made with manual_ack."""
        result = self._paho.ack(message.mid, message.qos)
        assert result == paho.MQTT_ERR_SUCCESS, f"acknowledgement not sent: {paho.error_string(result)}"

    # -- paho callbacks (network thread) ---------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = ConnAck(bool(flags.session_present), reason_code.value, properties_of(properties))
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code.value if reason_code is not None else None
        self.disconnect_properties = properties_of(properties)
        self._disconnected.set()
        # A refused CONNECT ends in a disconnect without a successful on_connect.
        self._connected.set()

    def _on_message(self, client, userdata, message):
        self.messages.put(
            Message(
                topic=message.topic,
                payload=message.payload,
                qos=message.qos,
                retain=bool(message.retain),
                dup=bool(message.dup),
                mid=message.mid,
                properties=properties_of(getattr(message, "properties", None)),
                received_at=time.monotonic(),
            )
        )

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._lock:
            self._subacks[mid] = [code.value for code in reason_codes]
            self._lock.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self._lock:
            self._unsubacks[mid] = [code.value for code in reason_codes]
            self._lock.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._lock:
            self._puback_reasons[mid] = reason_code.value
            self._lock.notify_all()


def message_expiry(seconds: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = seconds
    return props


def topic_alias(alias: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.TopicAlias = alias
    return props


def gather(clients: list[Client], done, timeout: float = WAIT, settle: float = 0.3) -> dict[str, list[Message]]:
    """Messages received by several clients: waits until done(all messages) holds, then a
    little longer (settle) so that a copy too many is caught as well.

    For checks where the broker's ordering cannot decide "nothing else": deliveries at
    different QoS, or to different clients, are not ordered with respect to each other.
    """
    received: dict[str, list[Message]] = {client.client_id: [] for client in clients}

    def take() -> None:
        for client in clients:
            received[client.client_id].extend(client.pending())

    deadline = time.monotonic() + timeout
    while True:
        take()
        everything = [m for messages in received.values() for m in messages]
        if done(everything):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"expected messages not received within {timeout} s: {received}")
        time.sleep(0.02)
    time.sleep(settle)
    take()
    return received
