"""Remote commands: pure parsing/verification, and the server against a real Mosquitto with
MQTT 5 response topic + correlation data (and the cmd-reply fallback)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig
from agent.uplink.cmdserver import CommandServer
from agent.uplink.commands import (
    CommandError,
    CommandVerifier,
    canonical,
    command_name,
    parse_command,
    sign,
)
from agent.uplink.mqtt import MqttUplink
from tests.support.mosquitto import Mosquitto, collect

SECRET = b"per-gateway-secret"
BASE = "trace/lab/gw1"
NOW = 1_718_000_000.0


def signed(name: str, body: dict[str, Any], *, ts: float = NOW, nonce: str = "nonce-0001",
           secret: bytes = SECRET) -> bytes:
    return json.dumps({"ts": ts, "nonce": nonce, "body": body,
                       "sig": sign(secret, name, body, ts, nonce)}).encode()


def verify(payload: bytes, name: str = "ping", v: CommandVerifier | None = None) -> None:
    v = v or CommandVerifier(SECRET, max_skew_s=30, clock=lambda: NOW)
    cmd, sig = parse_command(name, payload)
    v.verify(cmd, sig)


def test_canonical_form_is_stable() -> None:
    assert canonical("set_reader_power", {"reader": "r1", "dbm": 27}, 1718000000, "abcdefgh") \
        == b'set_reader_power\n{"dbm":27,"reader":"r1"}\n1718000000\nabcdefgh'


def test_valid_command_verifies_and_replay_is_refused() -> None:
    v = CommandVerifier(SECRET, max_skew_s=30, clock=lambda: NOW)
    verify(signed("ping", {}), v=v)
    with pytest.raises(CommandError) as info:
        verify(signed("ping", {}), v=v)
    assert info.value.code == "replayed"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (signed("ping", {}, secret=b"wrong"), "unauthorised"),
        (signed("ping", {}, ts=NOW - 31), "stale"),
        (signed("ping", {}, ts=NOW + 31), "stale"),
        (b"{not json", "malformed"),
        (b"[]", "malformed"),
        (json.dumps({"ts": NOW, "nonce": "x", "sig": "0" * 64}).encode(), "malformed"),
        (json.dumps({"ts": "now", "nonce": "nonce-0001", "sig": "0" * 64}).encode(), "malformed"),
    ],
)
def test_refusals(payload: bytes, code: str) -> None:
    with pytest.raises(CommandError) as info:
        verify(payload)
    assert info.value.code == code


def test_body_is_covered_by_the_signature() -> None:
    good = json.loads(signed("stop_reader", {"reader": "r1"}))
    good["body"] = {"reader": "r2"}
    with pytest.raises(CommandError, match="bad signature"):
        verify(json.dumps(good).encode(), "stop_reader")


def test_command_names() -> None:
    assert command_name(f"{BASE}/cmd", f"{BASE}/cmd/ping") == "ping"
    with pytest.raises(CommandError):
        command_name(f"{BASE}/cmd", f"{BASE}/cmd/format_disk")


# ----------------------------------------------------------------------------- live


class Target:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def status(self) -> Mapping[str, Any]:
        return {"readers": {}}

    async def reload(self) -> Mapping[str, Any]:
        return {"restartRequired": True}

    async def set_reader_power(self, reader: str, dbm: float) -> Mapping[str, Any]:
        self.calls.append(("power", (reader, dbm)))
        return {"applied": False}

    async def set_reader_settings(self, reader: str, settings: Mapping[str, Any]
                                  ) -> Mapping[str, Any]:
        self.calls.append(("settings", (reader, dict(settings))))
        return {"confirmed": False}

    async def start_reader(self, reader: str) -> Mapping[str, Any]:
        self.calls.append(("start", reader))
        return {"state": "started"}

    async def stop_reader(self, reader: str) -> Mapping[str, Any]:
        self.calls.append(("stop", reader))
        return {"state": "stopped"}


def send(broker: Mosquitto, topic: str, payload: bytes, *, response_topic: str | None = None,
         correlation: bytes | None = None) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cmd-sender-{os.getpid()}",
                    protocol=paho.MQTTv5)
    done = threading.Event()
    c.on_publish = lambda *_a: done.set()
    c.connect(broker.host, broker.port)
    c.loop_start()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic:
        props.ResponseTopic = response_topic
    if correlation:
        props.CorrelationData = correlation
    c.publish(topic, payload, qos=1, properties=props)
    assert done.wait(5)
    c.disconnect()
    c.loop_stop()


async def test_commands_over_mosquitto(mosquitto: Mosquitto) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.05,
                     reconnect_max_s=0.2)
    up = MqttUplink(cfg, client_id=f"edge-cmd-{os.getpid()}")
    target = Target()
    server = CommandServer(up, target, CommandVerifier(SECRET, max_skew_s=30, clock=time.time),
                           BASE, reply_prefix="replies")
    await up.start()
    assert await up.wait_connected(10)
    task = asyncio.create_task(server.run())
    try:
        with collect(mosquitto, "replies/#") as r, collect(mosquitto, f"{BASE}/cmd-reply/#") as fb:
            await asyncio.sleep(0.2)  # SUBSCRIBE of the server
            now = time.time()
            ok = signed("set_reader_power", {"reader": "r1", "dbm": 27.5}, ts=now,
                        nonce="nonce-ok-1")
            await asyncio.to_thread(send, mosquitto, f"{BASE}/cmd/set_reader_power", ok,
                                    response_topic="replies/op1", correlation=b"corr-1")
            got = await asyncio.to_thread(r.wait_for, lambda m: m.topic == "replies/op1", 5)
            reply = json.loads(got[0].payload)
            assert reply["ok"] is True
            assert got[0].properties is not None
            assert getattr(got[0].properties, "CorrelationData", None) == b"corr-1"
            assert target.calls == [("power", ("r1", 27.5))]
            # the replay of the same message: refused, nothing executed, and answered on the
            # agent's own fallback topic, never on the one an unverified sender chose
            await asyncio.to_thread(send, mosquitto, f"{BASE}/cmd/set_reader_power", ok,
                                    response_topic="replies/op2")
            got = await asyncio.to_thread(
                fb.wait_for, lambda m: m.topic.endswith("/set_reader_power"), 5)
            assert json.loads(got[0].payload)["error"]["code"] == "replayed"
            assert not [m for m in r.messages if m.topic == "replies/op2"]
            # no response topic: fallback reply topic; bad HMAC, old timestamp, malformed JSON
            cases = [
                ("ping", signed("ping", {}, ts=now, nonce="nonce-bad-1", secret=b"x"),
                 "unauthorised"),
                ("status", signed("status", {}, ts=now - 3600, nonce="nonce-old-1"), "stale"),
                ("reload", b"{oops", "malformed"),
                ("stop_reader", signed("stop_reader", {}, ts=now, nonce="nonce-arg-1"),
                 "bad_argument"),
            ]
            for name, payload, _code in cases:
                await asyncio.to_thread(send, mosquitto, f"{BASE}/cmd/{name}", payload)
            # + 1: the replayed set_reader_power above was answered on the fallback too
            replies = await asyncio.to_thread(fb.wait_count, len(cases) + 1, None, 5)
            by_topic = {m.topic.rsplit("/", 1)[1]: json.loads(m.payload) for m in replies}
            for name, _payload, code in cases:
                assert by_topic[name]["ok"] is False
                assert by_topic[name]["error"]["code"] == code
            assert target.calls == [("power", ("r1", 27.5))]  # nothing else executed
            await asyncio.to_thread(send, mosquitto, f"{BASE}/cmd/ping",
                                    signed("ping", {}, ts=now, nonce="nonce-ping-2"))
            got = await asyncio.to_thread(
                fb.wait_for, lambda m: m.topic.endswith("/ping") and b'"ok":true' in m.payload, 5)
            assert json.loads(got[0].payload)["result"] == {"pong": True}
        assert not task.done()  # nothing above ended the server
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await up.aclose()
