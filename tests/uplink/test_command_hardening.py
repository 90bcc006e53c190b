"""Command hardening (issue 13 item 1): every field validated before anything else, replies
never on a topic an unverified sender chose or outside the reply prefix, one error boundary
per message (a reply topic paho refuses used to end the command task)."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from agent.config import MqttConfig
from agent.uplink.cmdserver import CommandServer
from agent.uplink.commands import (
    CommandError,
    CommandVerifier,
    json_depth,
    parse_command,
    reply_topic_problem,
)
from agent.uplink.mqtt import MqttUplink
from tests.support.mosquitto import Mosquitto, collect
from tests.uplink.test_uplink_commands import BASE, SECRET, Target, send, signed


@pytest.mark.parametrize(("topic", "why"), [
    ("", "empty"),
    ("replies/#", "wildcard"),
    ("replies/+/x", "wildcard"),
    ("replies/\x00", "NUL"),
    ("$SYS/broker", "broker-reserved"),
    ("elsewhere/x", "outside the reply prefix"),
    ("replies/" + "x" * 2000, "longer than"),
])
def test_bad_reply_topics_are_named(topic: str, why: str) -> None:
    problem = reply_topic_problem(topic, reply_prefix="replies", own_base=BASE)
    assert problem is not None
    assert why in problem


def test_own_and_other_gateways_topics_are_never_reply_topics() -> None:
    wide = "trace"  # a prefix that would cover every gateway
    assert "agent's own" in str(reply_topic_problem(f"{BASE}/events", reply_prefix=wide,
                                                    own_base=BASE))
    assert "another gateway" in str(reply_topic_problem("trace/lab/gw2/cmd/stop_reader",
                                                        reply_prefix=wide, own_base=BASE))
    assert reply_topic_problem(f"{BASE}/cmd-reply/ops-1", reply_prefix=wide,
                               own_base=BASE) is None
    assert reply_topic_problem("replies/op1", reply_prefix="replies", own_base=BASE) is None


@pytest.mark.parametrize("ts", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_timestamps_are_malformed(ts: str) -> None:
    sig = "0" * 64
    payload = '{"ts": ' + ts + ', "nonce": "nonce-0001", "body": {}, "sig": "' + sig + '"}'
    with pytest.raises(CommandError) as info:
        parse_command("ping", payload.encode())
    assert info.value.code == "malformed"


def test_nesting_is_bounded_before_parsing() -> None:
    deep = b'{"ts": 1, "body": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert json_depth(deep) == 50_001
    assert json_depth(b'{"a": "[[[[[[[[[[[[[[[[\\"[[["}') == 1  # brackets inside strings
    with pytest.raises(CommandError, match="nests more than"):
        parse_command("ping", deep[:60_000])  # under the size bound: the depth bound refuses


async def test_a_reply_topic_paho_refuses_does_not_end_the_server(mosquitto: Mosquitto) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.05,
                     reconnect_max_s=0.2)
    up = MqttUplink(cfg, client_id=f"edge-cmdh-{os.getpid()}")
    server = CommandServer(up, Target(), CommandVerifier(SECRET, max_skew_s=30, clock=time.time),
                           BASE, reply_prefix="ops")
    await up.start()
    assert await up.wait_connected(10)
    task = asyncio.create_task(server.run(), name="cmd-server")
    try:
        with collect(mosquitto, f"{BASE}/cmd-reply/#") as fb, collect(mosquitto, "#") as every:
            await asyncio.sleep(0.2)
            now = time.time()
            for i, topic in enumerate(["ops/#", "ops/+", f"{BASE}/events", "trace/lab/gw2/x"]):
                await asyncio.to_thread(send, mosquitto, f"{BASE}/cmd/ping",
                                        signed("ping", {}, ts=now, nonce=f"nonce-topic-{i}"),
                                        response_topic=topic)
            got = await asyncio.to_thread(fb.wait_count, 4, None, 5)
            assert all(json.loads(m.payload)["ok"] for m in got)  # verified: answered, but
            assert {m.topic for m in got} == {f"{BASE}/cmd-reply/ping"}  # on our own topic
            assert not [m for m in every.messages
                        if m.topic in (f"{BASE}/events", "trace/lab/gw2/x")]
            assert server.bad_reply_topics == 4
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await up.aclose()


async def test_a_flood_of_refusals_does_not_starve_a_signed_command(
        mosquitto: Mosquitto) -> None:
    """500 unsigned/garbled commands and then one signed ping: the ping is answered promptly,
    the refusals are all counted, and only the budget of them is answered."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.uplink import cmdserver

    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=0.05,
                     reconnect_max_s=0.2)
    up = MqttUplink(cfg, client_id=f"edge-flood-{os.getpid()}")
    server = CommandServer(up, Target(), CommandVerifier(SECRET, max_skew_s=30, clock=time.time),
                           BASE)
    await up.start()
    assert await up.wait_connected(10)
    task = asyncio.create_task(server.run(), name="cmd-server")
    flooder = paho.Client(CallbackAPIVersion.VERSION2, client_id="flooder",
                          protocol=paho.MQTTv5)
    flooder.connect(mosquitto.host, mosquitto.port)
    flooder.loop_start()
    try:
        with collect(mosquitto, f"{BASE}/cmd-reply/#") as fb:
            await asyncio.sleep(0.2)
            infos = [flooder.publish(f"{BASE}/cmd/ping", b"{not json" if i % 2 else
                                     json.dumps({"ts": time.time(), "nonce": f"nonce-f{i:05d}",
                                                 "body": {}}).encode(), qos=1)
                     for i in range(500)]
            for info in infos:
                await asyncio.to_thread(info.wait_for_publish, 5)
            t0 = time.monotonic()
            await asyncio.to_thread(send, mosquitto, f"{BASE}/cmd/ping",
                                    signed("ping", {}, ts=time.time(), nonce="nonce-signed-1"))
            got = await asyncio.to_thread(
                fb.wait_for, lambda m: b'"ok":true' in m.payload, 10)
            assert json.loads(got[0].payload)["result"] == {"pong": True}
            assert time.monotonic() - t0 < 5
            await asyncio.sleep(0.5)
            refusals = [m for m in fb.messages if b'"ok":false' in m.payload]
            assert len(refusals) <= cmdserver.REFUSAL_BUDGET
            assert server.refused == 500
            assert server.refused_unanswered == 500 - len(refusals)
            assert server.stats()["refusedUnanswered"] == server.refused_unanswered
        assert not task.done()
    finally:
        flooder.loop_stop()
        flooder.disconnect()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await up.aclose()
