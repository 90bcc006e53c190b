"""The test broker harness itself: persistence across restarts, failures that explain."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.mosquitto import BrokerError, Mosquitto, collect, find_mosquitto


def _persistent_client(broker: Mosquitto, client_id: str) -> tuple[paho.Client, list[bytes]]:
    """A subscriber with a persistent session (clean_start=False, Session Expiry 1h)."""
    got: list[bytes] = []
    ready = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)

    def on_connect(cl: paho.Client, _u: Any, flags: paho.ConnectFlags, rc: ReasonCode,
                   _p: Any) -> None:
        if not flags.session_present:
            cl.subscribe("q/#", qos=1)
        ready.set()

    def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        got.append(bytes(m.payload))

    c.on_connect = on_connect
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    assert ready.wait(5)
    return c, got


def test_queued_session_messages_survive_a_restart(mosquitto: Mosquitto) -> None:
    cid = f"harness-persist-{os.getpid()}"
    c, _ = _persistent_client(mosquitto, cid)
    c.disconnect()
    c.loop_stop()
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{cid}-pub", protocol=paho.MQTTv5)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    infos = [pub.publish(f"q/{i}", b"m%d" % i, qos=1) for i in range(3)]
    for info in infos:
        info.wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    port = mosquitto.port
    mosquitto.restart()  # SIGTERM: Mosquitto saves its database
    assert mosquitto.port == port
    assert (mosquitto.data_dir / "mosquitto.db").exists(), mosquitto.log_text()
    assert "Error saving" not in mosquitto.log_text()

    c, got = _persistent_client(mosquitto, cid)
    try:
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(got) == [b"m0", b"m1", b"m2"], mosquitto.log_text()
    finally:
        c.disconnect()
        c.loop_stop()


def test_start_failure_carries_the_broker_log(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    with pytest.raises(BrokerError, match="no_such_option"):
        mosquitto_factory(extra=["no_such_option 1"])


def test_config_has_what_the_tests_rely_on() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto broker binary not found")
    broker = Mosquitto(users={"u": "p"}, acl=["user u", "topic write a/#"], max_packet_size=99,
                       max_inflight_messages=3)
    try:
        text = broker.config_text()
    finally:
        broker.close()
    assert "listener 0 127.0.0.1" in text  # the port is chosen at start()
    assert "allow_anonymous false" in text
    assert "persistence true" in text
    assert f"persistence_location {broker.data_dir}/" in text
    assert ("user root" in text) == (os.geteuid() == 0)
    assert "max_packet_size 99" in text
    assert "max_inflight_messages 3" in text
    assert "acl_file" in text
    assert "password_file" in text


def test_kill_and_start_again_on_the_same_port(mosquitto: Mosquitto) -> None:
    port = mosquitto.port
    mosquitto.kill()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.running
    assert mosquitto.port == port
    with collect(mosquitto, "x/#"):
        pass
