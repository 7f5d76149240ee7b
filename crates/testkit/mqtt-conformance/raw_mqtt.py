"""A byte-level MQTT connection for the few cases the paho client refuses to send.

paho-mqtt checks what it sends: it will not connect with an empty client id and
clean session 0, subscribe to a malformed filter, stay silent past its keep-alive,
or repeat a QoS 2 PUBLISH before PUBREL. A conformance suite has to send exactly
those, so this module encodes the handful of packets needed, and reads whatever
the broker answers. It is deliberately small: no session state, no retries.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

PROTOCOL_LEVEL = {"3.1.1": 4, "5.0": 5}

# MQTT 5 property identifiers used here (section 2.2.2.2 of the specification).
SERVER_KEEP_ALIVE = 0x13
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23

# Property id -> wire type, so that any property the broker sends can be skipped.
_PROPERTY_TYPES = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte",
    0x18: "u32", 0x19: "byte", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16",
    0x22: "u16", 0x23: "u16", 0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32",
    0x28: "byte", 0x29: "byte", 0x2A: "byte",
}


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(data: bytes, offset: int) -> tuple[int, int]:
    """Returns the value and the offset just past it."""
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def encode_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def encode_properties(properties: dict[int, int] | None) -> bytes:
    """Encodes integer-valued properties (all this suite sends)."""
    body = b""
    for identifier, value in (properties or {}).items():
        kind = _PROPERTY_TYPES[identifier]
        if kind == "u16":
            body += bytes([identifier]) + struct.pack("!H", value)
        elif kind == "u32":
            body += bytes([identifier]) + struct.pack("!I", value)
        else:
            raise ValueError(f"property 0x{identifier:02x} is not an integer property")
    return encode_varint(len(body)) + body


def decode_properties(data: bytes, offset: int) -> tuple[dict[int, object], int]:
    """Returns {property id: value} (last value wins) and the offset past the properties."""
    length, offset = decode_varint(data, offset)
    end = offset + length
    properties: dict[int, object] = {}
    while offset < end:
        identifier, offset = decode_varint(data, offset)
        kind = _PROPERTY_TYPES[identifier]
        if kind == "byte":
            value, offset = data[offset], offset + 1
        elif kind == "u16":
            (value,), offset = struct.unpack_from("!H", data, offset), offset + 2
        elif kind == "u32":
            (value,), offset = struct.unpack_from("!I", data, offset), offset + 4
        elif kind == "varint":
            value, offset = decode_varint(data, offset)
        elif kind in ("str", "bin"):
            (size,) = struct.unpack_from("!H", data, offset)
            value, offset = data[offset + 2 : offset + 2 + size], offset + 2 + size
        else:  # a user property: two strings
            (size,) = struct.unpack_from("!H", data, offset)
            offset += 2 + size
            (size,) = struct.unpack_from("!H", data, offset)
            value, offset = None, offset + 2 + size
        properties[identifier] = value
    return properties, end


def packet(packet_type: int, flags: int, body: bytes) -> bytes:
    return bytes([(packet_type << 4) | flags]) + encode_varint(len(body)) + body


def connect_packet(
    version: str,
    client_id: str,
    *,
    clean: bool = True,
    keepalive: int = 30,
    properties: dict[int, int] | None = None,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    flags = (0x02 if clean else 0x00) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = encode_string("MQTT") + bytes([PROTOCOL_LEVEL[version], flags]) + struct.pack("!H", keepalive)
    if version == "5.0":
        body += encode_properties(properties)
    body += encode_string(client_id)
    for field in (username, password):
        if field is not None:
            body += encode_string(field)
    return packet(CONNECT, 0, body)


def subscribe_packet(version: str, packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """filters: (topic filter, subscription options byte; for 3.1.1 just the QoS)."""
    body = struct.pack("!H", packet_id)
    if version == "5.0":
        body += encode_properties(None)
    for topic_filter, options in filters:
        body += encode_string(topic_filter) + bytes([options])
    return packet(SUBSCRIBE, 0x02, body)


def publish_packet(
    version: str,
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int | None = None,
    dup: bool = False,
    retain: bool = False,
    properties: dict[int, int] | None = None,
) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = encode_string(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == "5.0":
        body += encode_properties(properties)
    return packet(PUBLISH, flags, body + payload)


def pubrel_packet(packet_id: int) -> bytes:
    return packet(PUBREL, 0x02, struct.pack("!H", packet_id))


def pingreq_packet() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect_packet() -> bytes:
    return packet(DISCONNECT, 0, b"")


@dataclass(frozen=True)
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        return struct.unpack_from("!H", self.body, 0)[0]


@dataclass(frozen=True)
class ConnAck:
    session_present: bool
    code: int
    properties: dict[int, object]


def parse_connack(version: str, pkt: Packet) -> ConnAck:
    assert pkt.type == CONNACK, f"expected CONNACK, got packet type {pkt.type}"
    properties: dict[int, object] = {}
    if version == "5.0" and len(pkt.body) > 2:
        properties, _ = decode_properties(pkt.body, 2)
    return ConnAck(bool(pkt.body[0] & 0x01), pkt.body[1], properties)


def parse_suback(version: str, pkt: Packet) -> list[int]:
    assert pkt.type == SUBACK, f"expected SUBACK, got packet type {pkt.type}"
    offset = 2
    if version == "5.0":
        _, offset = decode_properties(pkt.body, offset)
    return list(pkt.body[offset:])


def reason_code(pkt: Packet) -> int:
    """The reason code of an MQTT 5 acknowledgement or DISCONNECT; absent means 0x00."""
    offset = 2 if pkt.type in (PUBACK, PUBREC, PUBREL, PUBCOMP) else 0
    return pkt.body[offset] if len(pkt.body) > offset else 0x00


class RawConnection:
    """One TCP connection to the broker, speaking packets as bytes."""

    def __init__(self, host: str, port: int, timeout: float):
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""
        self.closed_by_broker = False

    def send(self, data: bytes) -> None:
        self._socket.sendall(data)

    def read(self, timeout: float) -> Packet | None:
        """The next packet, or None once the broker has closed the connection.

        Raises TimeoutError when neither happens within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._take_packet()
            if parsed is not None:
                return parsed
            if self.closed_by_broker:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no packet from the broker within {timeout} s")
            self._socket.settimeout(remaining)
            try:
                chunk = self._socket.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed_by_broker = True
            self._buffer += chunk

    def read_until_closed(self, timeout: float) -> list[Packet]:
        """Every packet the broker sends before it closes the connection.

        Raises TimeoutError if the connection is still open after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        packets = []
        while True:
            pkt = self.read(max(deadline - time.monotonic(), 0.001))
            if pkt is None:
                return packets
            packets.append(pkt)

    def _take_packet(self) -> Packet | None:
        if len(self._buffer) < 2:
            return None
        try:
            length, offset = decode_varint(self._buffer, 1)
        except IndexError:
            return None
        if len(self._buffer) < offset + length:
            return None
        first = self._buffer[0]
        body = self._buffer[offset : offset + length]
        self._buffer = self._buffer[offset + length :]
        return Packet(first >> 4, first & 0x0F, body)

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass
