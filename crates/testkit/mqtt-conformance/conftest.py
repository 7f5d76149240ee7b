"""Fixtures of the MQTT conformance suite: the broker under test, unique names, and clean-up.

The broker is named by the environment (MQTT_HOST, MQTT_PORT, MQTT_DENIED_FILTER).
Every test works under its own random topic prefix with random client ids, and
leaves nothing behind: connections are closed, persistent sessions discarded and
retained messages it set are cleared.
"""

from __future__ import annotations

import os
import uuid

import pytest

from harness import V5, VERSIONS, Broker, Client, new_client_id

RUN_ID = uuid.uuid4().hex[:12]


def pytest_configure(config):
    if not os.environ.get("MQTT_PORT"):
        raise pytest.UsageError(
            "MQTT_PORT must name the TCP port of the broker under test, "
            "e.g. MQTT_PORT=1883 python3 -m pytest crates/testkit/mqtt-conformance -q"
        )


def pytest_collection_modifyitems(config, items):
    """Marks the tests named in MQTT_KNOWN_DEVIATIONS as expected failures.

    Only for running the suite against a reference broker with a documented deviation
    (see README.md). The mark is strict: once the broker conforms, the test passes, the
    run fails, and the entry has to go. The broker under development sets nothing here.
    """
    known = {name.strip() for name in os.environ.get("MQTT_KNOWN_DEVIATIONS", "").split(",") if name.strip()}
    matched = set()
    for item in items:
        for name in (item.name, item.originalname):
            if name in known:
                matched.add(name)
                item.add_marker(
                    pytest.mark.xfail(strict=True, reason="named in MQTT_KNOWN_DEVIATIONS: a known deviation of the broker")
                )
    if known - matched:
        raise pytest.UsageError(f"MQTT_KNOWN_DEVIATIONS names no test: {sorted(known - matched)}")


@pytest.fixture(scope="session")
def broker() -> Broker:
    return Broker(
        host=os.environ.get("MQTT_HOST", "127.0.0.1"),
        port=int(os.environ["MQTT_PORT"]),
        denied_filter=os.environ.get("MQTT_DENIED_FILTER", "devices/#"),
    )


@pytest.fixture(params=VERSIONS, ids=lambda version: f"mqtt{version}")
def version(request) -> str:
    """Runs a test once over MQTT 3.1.1 and once over MQTT 5.0."""
    return request.param


@pytest.fixture
def topic() -> str:
    """A topic prefix no other test or run uses."""
    return f"conformance/{RUN_ID}/{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clients(broker):
    """Makes connected clients, and undoes everything they left on the broker.

    make(version, client_id=None, connect=True, **options) -> Client; options are
    those of harness.Client. A client made with clean=False, or with a Session
    Expiry Interval, has its session discarded at the end of the test.
    """
    made: list[Client] = []
    persistent: set[tuple[str, str]] = set()
    retained: set[str] = set()

    def make(version: str, client_id: str | None = None, *, connect: bool = True, **options) -> Client:
        client = Client(broker, version, client_id, retained_registry=retained, **options)
        made.append(client)
        if not options.get("clean", True) or options.get("session_expiry"):
            persistent.add((version, client.client_id))
        if connect:
            connack = client.connect()
            assert connack.reason_code == 0, f"CONNECT refused with code 0x{connack.reason_code:02x}"
        return client

    yield make

    for client in made:
        client.close()
    for version, client_id in persistent:
        discard_session(broker, version, client_id)
    if retained:
        cleaner = Client(broker, "3.1.1", new_client_id())
        cleaner.connect()
        for retained_topic in retained:
            # A zero-length retained message removes the retained message [MQTT-3.3.1-10].
            cleaner.publish(retained_topic, b"", qos=1, retain=True)
        cleaner.close()


def discard_session(broker: Broker, version: str, client_id: str) -> None:
    """Connects with a clean session and no expiry, which ends any stored session."""
    client = Client(broker, version, client_id, clean=True, session_expiry=0 if version == V5 else None)
    try:
        client.connect()
    finally:
        client.close()
