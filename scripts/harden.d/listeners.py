"""Every TCP socket the Warden process listens on, and what each one lets in without TLS.

The TLS scan covers the listeners Warden announces in DATA_DIR/addresses.json. This check makes
sure that is all of them: it reads the process's listening sockets from /proc (no `ss` or `lsof`
needed) and probes each one that addresses.json does not name.

Warden's MQTT broker (rmqtt) sits behind a TLS terminator and listens on a loopback port of its
own, in plain MQTT; the terminator forwards each verified connection there. Any local process
can reach that port, so it must refuse every connection that did not come through the
terminator (crates/mqtt/src/hooks.rs says it does). The probe proves it with valid credentials:
an MQTT 3.1.1 CONNECT whose password is a service's access token is first sent over TLS to the
announced MQTT listener, where it must be accepted (so the credentials are good), then in plain
text to the unannounced port, where it must be refused.

Verdict: FAIL when an unannounced port completes a TLS handshake (a TLS listener the scan
missed), accepts the CONNECT, or answers something that is not MQTT; PASS otherwise.
"""

import argparse
import base64
import json
import os
import shlex
import socket
import ssl
import struct
import subprocess
import time
import sys
from pathlib import Path

# The conformance suite's byte-level MQTT encoder (standard library only).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "crates/testkit/mqtt-conformance"))
import raw_mqtt  # noqa: E402


def listening_sockets(pid: int) -> list[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address_hex, port_hex = local.split(":")
            port = int(port_hex, 16)
            if family == 4:
                address = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(address_hex, 16)))
                found.append(f"{address}:{port}")
            else:
                raw = bytes.fromhex(address_hex)
                # /proc prints IPv6 as four host-order 32-bit words.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.append(f"[{socket.inet_ntop(socket.AF_INET6, words)}]:{port}")
    return sorted(set(found))


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with user name, password and a clean session."""
    return raw_mqtt.connect_packet("3.1.1", client_id, username=username, password=password)


def read_connack(stream) -> str:
    """'accepted', 'refused (code N)', 'closed without an answer' or 'not MQTT (…)'."""
    try:
        head = stream.recv(4)
    except (ConnectionResetError, ssl.SSLError, socket.timeout) as error:
        return f"closed without an answer ({type(error).__name__})"
    if not head:
        return "closed without an answer"
    if len(head) >= 4 and head[0] == 0x20 and head[1] == 2:
        return "accepted" if head[3] == 0 else f"refused (CONNACK code {head[3]})"
    return f"not MQTT (first bytes {head.hex()})"


def plain_connect(stream, packet: bytes) -> str:
    stream.sendall(packet)
    return read_connack(stream)


def websocket_connect(stream, packet: bytes) -> str:
    """MQTT over WebSocket: the upgrade (subprotocol `mqtt`), then CONNECT in one masked frame."""
    key = base64.b64encode(os.urandom(16)).decode()
    stream.sendall(
        (f"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
         ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = stream.recv(4096)
        if not chunk:
            return f"closed during the WebSocket upgrade ({head[:60]!r})"
        head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 101 " not in status_line + " ":
        return f"no WebSocket upgrade ({status_line})"
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(packet))
    length = len(packet)
    if length < 126:
        frame = bytes([0x82, 0x80 | length])
    elif length < 65536:
        frame = bytes([0x82, 0x80 | 126]) + struct.pack("!H", length)
    else:
        frame = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", length)
    stream.sendall(frame + mask + masked)
    rest = head.split(b"\r\n\r\n", 1)[1]
    try:
        while len(rest) < 2:
            chunk = stream.recv(4096)
            if not chunk:
                return "closed without an answer"
            rest += chunk
        if rest[0] & 0x0F == 0x8:
            return "closed without an answer (WebSocket close frame)"
        offset = 2 + {126: 2, 127: 8}.get(rest[1] & 0x7F, 0)
        while len(rest) < offset + 4:
            chunk = stream.recv(4096)
            if not chunk:
                break
            rest += chunk
    except (ConnectionResetError, ssl.SSLError, socket.timeout) as error:
        return f"closed without an answer ({type(error).__name__})"
    return read_connack(FixedStream(rest[offset:]))


class FixedStream:
    """Bytes already read, offered through recv() to read_connack."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        taken, self.data = self.data[:size], self.data[size:]
        return taken


def completes_tls(address: tuple[str, int]) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(address, timeout=5) as raw:
            with context.wrap_socket(raw) as _:
                return True
    except (ssl.SSLError, OSError):
        return False


def split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--addresses", required=True, help="DATA_DIR/addresses.json")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token-command", required=True, help="prints a service access token")
    parser.add_argument("--out", required=True, help="result JSON")
    args = parser.parse_args()
    started = time.monotonic()

    announced = json.loads(Path(args.addresses).read_text())
    listening = listening_sockets(args.pid)
    unannounced = [address for address in listening if address not in announced.values()]
    lines = [f"| {address} | {name} (announced in addresses.json; TLS scan) |"
             for name, address in sorted(announced.items())]
    failures = []
    missing = [f"{name} {address}" for name, address in announced.items() if address not in listening]
    if missing:
        failures.append(f"announced but not listening: {', '.join(missing)}")

    controls = {}
    token = ""

    def packet() -> bytes:
        # A client id of its own for every connection, so that no probe takes over (or waits for)
        # the session of the one before.
        return connect_packet(f"harden-probe-{os.urandom(4).hex()}", "harden-probe", token)

    if unannounced:
        token = subprocess.run(
            shlex.split(args.token_command), capture_output=True, text=True, check=True
        ).stdout.strip()
        context = ssl.create_default_context(cafile=args.ca)
        for name, speak in (("mqtt", plain_connect), ("mqtt_websocket", websocket_connect)):
            if name not in announced:
                continue
            with socket.create_connection(split(announced[name]), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    controls[name] = speak(tls, packet())
            if controls[name] != "accepted":
                failures.append(
                    f"the probe's CONNECT over TLS to {name} was not accepted ({controls[name]}), "
                    "so the plain-text refusals below prove nothing"
                )
    for address in unannounced:
        if completes_tls(split(address)):
            verdict = "completes a TLS handshake: a TLS listener the scan did not cover"
            failures.append(f"{address} {verdict}")
        else:
            answers = {}
            for how, speak in (("plain MQTT", plain_connect), ("MQTT over plain WebSocket", websocket_connect)):
                try:
                    with socket.create_connection(split(address), timeout=10) as raw:
                        answers[how] = speak(raw, packet())
                except OSError as error:
                    answers[how] = f"closed without an answer ({type(error).__name__})"
                if answers[how].startswith("refused"):
                    break
            verdict = "CONNECT with a valid service token: " + "; ".join(
                f"{how}: {answer}" for how, answer in answers.items()
            )
            refused = [a for a in answers.values() if a.startswith(("refused", "closed without an answer (WebSocket"))]
            if any(answer == "accepted" for answer in answers.values()):
                failures.append(f"{address} lets MQTT in without TLS: {verdict}")
            elif not refused:
                failures.append(f"{address} is a plain-text listener that answers as neither MQTT "
                                f"broker back end: {verdict}")
        lines.append(f"| {address} | not announced: {verdict} |")

    details = [
        f"Warden (PID {args.pid}) listens on {len(listening)} TCP sockets.",
        "",
        "| address | what it is |",
        "|---|---|",
        *lines,
    ]
    for name, answer in controls.items():
        details += ["", f"Positive control: the same CONNECT over TLS to the announced {name} listener "
                        f"({announced[name]}) was {answer}."]
    if failures:
        details += ["", "Failures:", *[f"- {failure}" for failure in failures]]
    result = {
        "name": "Listener inventory",
        "status": "FAIL" if failures else "PASS",
        "figures": f"{len(listening)} listening, {len(announced)} announced and scanned, "
                   f"{len(unannounced)} unannounced"
                   + (" (each refuses MQTT without TLS, with valid credentials)"
                      if unannounced and not failures else ""),
        "details": "\n".join(details),
        "seconds": time.monotonic() - started,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{result['status']}: {result['figures']}")


if __name__ == "__main__":
    main()
