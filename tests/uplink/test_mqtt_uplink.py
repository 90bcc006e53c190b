"""MqttUplink against a real Mosquitto (tests/support/mosquitto.py): PUBACK reason codes, limits,
reconnects, will, clean close. What Mosquitto 2.0.11 does is asserted, not assumed."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig
from agent.uplink.mqtt import (
    InboundMessage,
    MqttUplink,
    PacketTooLargeError,
    PublishResult,
    PublishTimeout,
    UplinkClosedError,
    UplinkNotConnected,
    Will,
    publish_packet_size,
)
from tests.support.mosquitto import Mosquitto, collect

REPO = Path(__file__).resolve().parents[2]
LOGGER = "agent.uplink.mqtt"

ACL_USERS = {"edge": "edge-pw", "watcher": "watcher-pw"}
ACL_LINES = [
    "user edge",
    "topic write trace/allowed/#",
    "topic read cmd/#",
    "",
    "user watcher",
    "topic read #",
]


def make_cfg(broker: Mosquitto, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "publish_timeout_s": 10.0,
        "keepalive_s": 10,
    }
    base.update(kw)
    return MqttConfig(**base)


_ids = iter(range(1_000_000))


def new_client_id() -> str:
    return f"edge-test-{os.getpid()}-{next(_ids)}"


@asynccontextmanager
async def running(
    broker: Mosquitto, *, connect: bool = True, client_id: str | None = None, **kw: Any
) -> AsyncIterator[MqttUplink]:
    will = kw.pop("will", None)
    birth = kw.pop("birth", None)
    up = MqttUplink(make_cfg(broker, **kw), client_id=client_id or new_client_id(),
                    will=will, birth=birth)
    await up.start()
    try:
        if connect:
            assert await up.wait_connected(10), broker.log_text()
        yield up
    finally:
        await up.aclose()
        assert_no_paho_thread(up)


def assert_no_paho_thread(up: MqttUplink) -> None:
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.endswith(up.client_id)], names


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def until(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll a condition that paho's thread makes true (there is no event to wait on)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: {what}")
        await asyncio.sleep(0.01)


def log_lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


# ----------------------------------------------------------------------------- PUBACK results


async def test_publish_returns_success_puback_and_delivers(shared_mosquitto: Mosquitto) -> None:
    with collect(shared_mosquitto, "trace/ok/#") as seen:
        async with running(shared_mosquitto) as up:
            result = await up.publish("trace/ok/1", b'{"n":1}', content_type="application/json")
            assert result == PublishResult(0x00, "Success")
            assert result.ok
            got = await in_thread(seen.wait_for, lambda m: m.topic == "trace/ok/1")
            assert got[0].payload == b'{"n":1}'
            assert got[0].properties is not None
            assert got[0].properties.ContentType == "application/json"
            assert up.pending_count == 0
            assert up.in_flight == 0
            assert up.stats().published_ok == 1


async def test_no_matching_subscribers_is_a_success(shared_mosquitto: Mosquitto) -> None:
    async with running(shared_mosquitto) as up:
        result = await up.publish("nobody/listens/here", b"x")
    assert result.reason_code == 0x10
    assert result.reason == "No matching subscribers"
    assert result.ok


async def test_acl_denial_is_puback_0x87_not_ok(
    mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    """The core proof: a refused message is reported as refused, per message."""
    broker = mosquitto_factory(users=ACL_USERS, acl=ACL_LINES, verbose=True)
    caplog.set_level(logging.INFO, logger=LOGGER)
    with collect(broker, "#", username="watcher", password="watcher-pw") as seen:
        async with running(broker, username="edge", password="edge-pw") as up:
            ok = await up.publish("trace/allowed/1", b"fine")
            denied = await up.publish("trace/denied/1", b"secret")
            assert ok == PublishResult(0x00, "Success")
            assert denied.reason_code == 0x87
            assert denied.reason == "Not authorized"
            assert not denied.ok

            # Many in flight at once, interleaved: each result belongs to its own message.
            topics = [f"trace/{'allowed' if i % 3 else 'denied'}/{i}" for i in range(60)]
            results = await asyncio.gather(*(up.publish(t, b"%d" % i)
                                             for i, t in enumerate(topics)))
            for topic, res in zip(topics, results, strict=True):
                assert res.reason_code == (0x00 if "/allowed/" in topic else 0x87), topic

            await in_thread(seen.wait_count, 1 + 40, lambda m: m.topic.startswith("trace/"))
            assert up.connected
            stats = up.stats()
            assert stats.connection_losses == 0
            assert stats.published_refused == 1 + 20
            assert stats.published_ok == 1 + 40
        await asyncio.sleep(0.2)
        delivered = {m.topic for m in seen.messages}
    assert not [t for t in delivered if "/denied/" in t]
    assert "trace/allowed/1" in delivered
    assert "Denied PUBLISH from edge-test-" in broker.log_text()
    assert len(log_lines(caplog, "broker refused message to 'trace/denied/1'")) == 1


async def test_unknown_user_is_refused_and_logged_once(
    mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(users=ACL_USERS, acl=ACL_LINES)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with running(broker, connect=False, username="edge", password="wrong") as up:
        await until(lambda: up.stats().connect_failures >= 3, what="retries")
        assert not up.connected
        with pytest.raises(UplinkNotConnected):
            await up.publish("trace/allowed/1", b"x")
    failed = log_lines(caplog, "uplink: connect failed:")
    assert len(failed) == 1, failed
    assert "Bad user name or password" in failed[0] or "Not authorized" in failed[0]


# ----------------------------------------------------------------------------- sizes


async def test_maximum_packet_size_is_exposed_and_enforced(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(max_packet_size=1024)
    with collect(broker, "big/#") as seen:
        async with running(broker) as up:
            assert up.maximum_packet_size == 1024
            n = next(n for n in range(1024) if publish_packet_size("big/one", n) == 1024)
            assert publish_packet_size("big/two", n + 1) == 1025
            fits = await up.publish("big/one", b"a" * n)
            assert fits.ok
            with pytest.raises(PacketTooLargeError) as exc:
                await up.publish("big/two", b"b" * (n + 1))
            assert exc.value.size == 1025
            assert exc.value.limit == 1024
            assert up.connected
            assert up.in_flight == 0
            assert up.stats().connects == 1
            await in_thread(seen.wait_for, lambda m: m.topic == "big/one")
        delivered = [m.topic for m in seen.messages]
    assert delivered == ["big/one"]


async def test_mosquitto_disconnects_a_client_that_sends_an_oversize_packet(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    """What Mosquitto 2.0.11 does if a client ignores Maximum Packet Size: no PUBACK at all,
    it sends DISCONNECT 0x95 (Packet too large). Hence the uplink refuses such packets itself."""
    broker = mosquitto_factory(max_packet_size=1024)
    events: list[tuple[str, int]] = []
    done = threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=new_client_id(),
                    protocol=paho.MQTTv5, reconnect_on_failure=False)

    def on_publish(_c: paho.Client, _u: Any, _mid: int, rc: ReasonCode, _p: Any) -> None:
        events.append(("puback", int(rc.value)))

    def on_disconnect(_c: paho.Client, _u: Any, flags: paho.DisconnectFlags, rc: ReasonCode,
                      _p: Any) -> None:
        events.append(("disconnect-from-broker" if flags.is_disconnect_packet_from_server
                       else "disconnect", int(rc.value)))
        done.set()

    c.on_publish = on_publish
    c.on_disconnect = on_disconnect
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish("big/x", b"x" * 2000, qos=1)
        assert await in_thread(done.wait, 5)
    finally:
        c.loop_stop()
    assert events == [("disconnect-from-broker", 0x95)]
    broker.wait_for_log("disconnected due to oversize packet")  # the log is flushed lazily


async def test_message_size_limit_refusal_is_reported_not_looped(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    """Mosquitto's message_size_limit is not announced in CONNACK; 2.0.11 answers PUBACK 0x95
    (outside the MQTT 5 PUBACK codes). The uplink reports it as a refusal and stays connected."""
    broker = mosquitto_factory(message_size_limit=500, verbose=True)
    async with running(broker) as up:
        assert up.maximum_packet_size is None
        refused = await up.publish("limit/big", b"x" * 1000)
        assert refused.reason_code == 0x95
        assert not refused.ok
        small = await up.publish("limit/small", b"x" * 100)
        assert small.ok
        assert up.stats().connects == 1
        assert up.stats().connection_losses == 0
    assert "Dropped too large PUBLISH" in broker.log_text()


# ----------------------------------------------------------------------------- window


async def test_receive_maximum_caps_the_window(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(max_inflight_messages=5)
    async with running(broker, inflight_window=20) as up:
        assert up.receive_maximum == 5
        assert up.window == 5
        assert up._client.max_queued_messages == 20  # paho's static backstop
        seen_in_flight: list[int] = []
        real_publish = up._client.publish

        def spy(*a: Any, **kw: Any) -> paho.MQTTMessageInfo:
            seen_in_flight.append(up.in_flight)
            return real_publish(*a, **kw)

        up._client.publish = spy  # type: ignore[method-assign]
        results = await asyncio.gather(*(up.publish(f"w/{i}", b"x" * 300) for i in range(50)))
        assert all(r.ok for r in results)
        assert len(seen_in_flight) == 50
        assert max(seen_in_flight) <= 4  # at most 4 held when the 5th is handed over
        assert up.in_flight == 0


async def test_default_receive_maximum_from_mosquitto(shared_mosquitto: Mosquitto) -> None:
    async with running(shared_mosquitto, inflight_window=100) as up:
        assert up.receive_maximum == 20  # mosquitto's default max_inflight_messages
        assert up.window == 20
        assert up.maximum_packet_size is None


# ----------------------------------------------------------------------------- connection


async def test_publish_while_not_connected_raises_quickly(
    mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory()
    broker.stop()  # nothing listens on its port now
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    async with running(broker, connect=False) as up:
        assert not await up.wait_connected(0.3)
        t0 = time.monotonic()
        with pytest.raises(UplinkNotConnected):
            await up.publish("t/x", b"x")
        assert time.monotonic() - t0 < 0.1
        assert up.in_flight == 0
        assert up._client.max_queued_messages == up.window == 20
        await until(lambda: up.stats().connect_failures >= 3)
    failed = log_lines(caplog, "uplink: connect failed:")
    assert len(failed) == 1, failed
    assert "refused" in failed[0].lower()


async def test_inflight_publish_completes_after_broker_restart(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with running(mosquitto) as up:
        changed = up.connection_changed
        mosquitto.pause()  # it reads nothing and acks nothing
        task = asyncio.create_task(up.publish("r/1", b"survives", timeout_s=30), name="pub")
        await until(lambda: up.pending_count == 1)
        mosquitto.kill()
        await asyncio.wait_for(changed.wait(), 10)
        assert not up.connected
        assert not task.done()  # a disconnect does not fail the in-flight publish
        with pytest.raises(UplinkNotConnected):
            await up.publish("r/2", b"x")
        mosquitto.start()  # same port
        assert await up.wait_connected(10)
        result = await asyncio.wait_for(task, 10)
        assert result.ok
        stats = up.stats()
        assert stats.reconnects == 1
        assert stats.connection_losses == 1
        assert up.pending_count == 0
        assert up.in_flight == 0
        assert (await up.publish("r/3", b"after")).ok
    assert len(log_lines(caplog, "uplink: connection lost:")) == 1
    assert len(log_lines(caplog, "uplink: connected to")) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_timeout_leaves_no_pending_and_late_puback_is_ignored(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with running(mosquitto) as up:
        mosquitto.pause()
        try:
            with pytest.raises(PublishTimeout):
                await up.publish("late/1", b"x", timeout_s=0.3)
            assert up.pending_count == 0
            assert up.in_flight == 1  # paho still holds it: it keeps its window slot
        finally:
            mosquitto.resume()
        await until(lambda: up.in_flight == 0)
        stats = up.stats()
        assert stats.late_acks == 1
        assert stats.publish_timeouts == 1
        assert (await up.publish("late/2", b"y")).ok
        assert up.connected
    assert len(log_lines(caplog, "late PUBACK for abandoned message to 'late/1'")) == 1


async def test_cancelled_publish_leaves_no_pending(mosquitto: Mosquitto) -> None:
    async with running(mosquitto) as up:
        mosquitto.pause()
        try:
            task = asyncio.create_task(up.publish("cancel/1", b"x"), name="pub")
            await until(lambda: up.pending_count == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert up.pending_count == 0
        finally:
            mosquitto.resume()
        await until(lambda: up.in_flight == 0)
        assert up.stats().late_acks == 1


async def test_full_window_waits_for_a_slot_then_times_out(mosquitto: Mosquitto) -> None:
    async with running(mosquitto, inflight_window=2) as up:
        mosquitto.pause()
        try:
            first = [asyncio.create_task(up.publish(f"full/{i}", b"x", timeout_s=5), name=f"p{i}")
                     for i in range(2)]
            await until(lambda: up.pending_count == 2)
            with pytest.raises(PublishTimeout):
                await up.publish("full/3", b"x", timeout_s=0.2)  # no slot: never handed to paho
            assert up.in_flight == 2
        finally:
            mosquitto.resume()
        assert all(r.ok for r in await asyncio.gather(*first))
        assert up.stats().late_acks == 0


async def test_puback_before_publish_returns_is_not_lost(shared_mosquitto: Mosquitto) -> None:
    """paho may run on_publish before publish() has returned the mid to us."""
    async with running(shared_mosquitto) as up:
        real_publish = up._client.publish
        acked_before_return: list[bool] = []

        def slow_return(*a: Any, **kw: Any) -> paho.MQTTMessageInfo:
            info = real_publish(*a, **kw)
            deadline = time.monotonic() + 2
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.005)  # blocks the loop on purpose: the PUBACK arrives meanwhile
            acked_before_return.append(info.is_published())
            return info

        up._client.publish = slow_return  # type: ignore[method-assign]
        result = await up.publish("race/1", b"x", timeout_s=5)
        assert acked_before_return == [True]
        assert result.ok
        assert up.in_flight == 0


async def test_callback_errors_are_contained(
    shared_mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with running(shared_mosquitto) as up:
        got: asyncio.Queue[InboundMessage] = asyncio.Queue()

        def broken(_m: InboundMessage) -> None:
            raise RuntimeError("handler bug")

        await up.subscribe("cb/#", broken)
        await up.subscribe("cb/#", got.put_nowait)
        real_post = up._post

        def post(fn: Callable[..., None], *args: Any) -> None:
            if args and isinstance(args[0], InboundMessage) and args[0].topic == "cb/boom":
                raise RuntimeError("bug inside the paho callback")
            real_post(fn, *args)

        up._post = post  # type: ignore[method-assign]
        await asyncio.sleep(0.2)  # SUBACK
        assert (await up.publish("cb/boom", b"1")).ok
        assert (await up.publish("cb/fine", b"2")).ok  # the network thread survived
        msg = await asyncio.wait_for(got.get(), 5)
        assert msg.topic == "cb/fine"
        assert msg.payload == b"2"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("error in paho callback on_message" in r.getMessage() for r in errors)
    assert any("handler for 'cb/#' failed" in r.getMessage() for r in errors)


async def test_subscription_survives_broker_restart(mosquitto: Mosquitto) -> None:
    async with running(mosquitto) as up:
        got: asyncio.Queue[InboundMessage] = asyncio.Queue()
        await up.subscribe("cmd/#", got.put_nowait)
        mosquitto.restart()
        await until(lambda: up.stats().reconnects == 1 and up.connected)
        await asyncio.sleep(0.2)
        assert (await up.publish("cmd/reboot", b"now")).reason_code == 0x00
        msg = await asyncio.wait_for(got.get(), 5)
        assert (msg.topic, msg.payload) == ("cmd/reboot", b"now")


async def test_a_subscription_made_while_the_connect_is_reported_is_sent(
        mosquitto: Mosquitto) -> None:
    # paho's thread subscribes what was asked for before its CONNACK; the loop hears of the
    # connect a moment later. A subscription made in between was sent by neither: the agent's
    # command topic, subscribed at start-up, stayed deaf until the next reconnect (seen once
    # in the suite: "agent never answered a ping").
    async with running(mosquitto, connect=False) as up:
        deadline = time.monotonic() + 10
        while not up._client.up:  # block the loop: its connect callback cannot run meanwhile
            assert time.monotonic() < deadline, mosquitto.log_text()
            time.sleep(0.005)  # noqa: ASYNC251 - blocking the loop is the point
        assert not up.connected  # the loop has not heard of the connect yet
        got: asyncio.Queue[InboundMessage] = asyncio.Queue()
        await up.subscribe("cmd/#", got.put_nowait)
        assert await up.wait_connected(10)
        await asyncio.sleep(0.2)
        assert (await up.publish("cmd/ping", b"1")).reason_code == 0x00
        msg = await asyncio.wait_for(got.get(), 5)
        assert (msg.topic, msg.payload) == ("cmd/ping", b"1")


# ----------------------------------------------------------------------------- will / close


WILL_SCRIPT = """
import asyncio, sys
from agent.config import MqttConfig
from agent.uplink.mqtt import MqttUplink, Will

async def main():
    cfg = MqttConfig(host=sys.argv[1], port=int(sys.argv[2]), reconnect_min_s=0.05)
    up = MqttUplink(cfg, client_id=sys.argv[3], will=Will("status/gw", b"offline"))
    await up.start()
    if not await up.wait_connected(10):
        sys.exit(3)
    print("connected", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_will_is_published_retained_when_the_agent_dies(mosquitto: Mosquitto) -> None:
    client_id = new_client_id()
    with collect(mosquitto, "status/#") as seen:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WILL_SCRIPT, mosquitto.host, str(mosquitto.port), client_id,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line == b"connected\n", mosquitto.log_text()
            assert seen.messages == []
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.communicate()
        got = await in_thread(seen.wait_for, lambda m: m.topic == "status/gw")
        assert got[0].payload == b"offline"
    with collect(mosquitto, "status/#") as later:  # a new subscriber gets the retained will
        got = await in_thread(later.wait_for, lambda m: m.topic == "status/gw")
        assert got[0].retain
    assert f"Client {client_id} closed its connection." in mosquitto.log_text()


async def test_clean_close_does_not_send_the_will(mosquitto: Mosquitto) -> None:
    with collect(mosquitto, "status/#") as seen:
        async with running(mosquitto, will=Will("status/gw", b"offline")) as up:
            assert (await up.publish("status/other", b"x")).ok
        await up.aclose()  # idempotent
        assert not up.connected
        with pytest.raises(UplinkClosedError):
            await up.publish("status/late", b"x")
        await in_thread(seen.wait_for, lambda m: m.topic == "status/other")
        await asyncio.sleep(0.3)
        assert [m.topic for m in seen.messages] == ["status/other"]
    log_text = mosquitto.log_text()
    assert f"Client {up.client_id} disconnected." in log_text  # DISCONNECT, not a dropped socket
    assert f"Client {up.client_id} closed its connection." not in log_text


async def test_birth_message_on_every_connect(mosquitto: Mosquitto) -> None:
    with collect(mosquitto, "status/#") as seen:
        async with running(mosquitto, birth=Will("status/gw", b"online"),
                           will=Will("status/gw", b"offline")) as up:
            await in_thread(seen.wait_for, lambda m: m.payload == b"online")
            mosquitto.restart()
            await until(lambda: up.stats().reconnects == 1)
            await until(lambda: up.in_flight == 0)
    with collect(mosquitto, "status/#") as later:
        got = await in_thread(later.wait_for, lambda m: m.topic == "status/gw")
        assert got[0].payload == b"online"  # retained birth, clean close kept it
        assert got[0].retain


async def test_aclose_fails_waiting_publishes(mosquitto: Mosquitto) -> None:
    up = MqttUplink(make_cfg(mosquitto), client_id=new_client_id())
    await up.start()
    assert await up.wait_connected(10)
    mosquitto.pause()
    try:
        task = asyncio.create_task(up.publish("close/1", b"x"), name="pub")
        await until(lambda: up.pending_count == 1)
        close = asyncio.create_task(up.aclose(), name="close")
        with pytest.raises(UplinkClosedError):
            await task
    finally:
        mosquitto.resume()
    await close
    assert up.pending_count == 0
    assert up.in_flight == 0
    assert_no_paho_thread(up)


async def test_aclose_before_start_and_twice(shared_mosquitto: Mosquitto) -> None:
    up = MqttUplink(make_cfg(shared_mosquitto), client_id=new_client_id())
    await up.aclose()
    await up.aclose()
    assert not await up.wait_connected(0.1)
    with pytest.raises(UplinkClosedError):
        await up.start()


async def test_qos_other_than_1_is_refused() -> None:
    up = MqttUplink(MqttConfig(host="127.0.0.1"), client_id="x")
    for qos in (0, 2):
        with pytest.raises(ValueError, match="QoS 1 only"):
            await up.publish("t", b"x", qos=qos)


def test_packet_size_formula() -> None:
    # [30][rl][00 03 'a/b'][id:2][props:00][payload:5] -> remaining 2+3+2+1+5 = 13
    assert publish_packet_size("a/b", 5) == 1 + 1 + 13
    assert publish_packet_size("a/b", 200) == 1 + 2 + 208
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    assert publish_packet_size("a/b", 5, properties=props) == 1 + 1 + 13 + 2 + 16 + 1


async def test_held_message_over_a_lowered_limit_is_dropped_not_looped(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker comes back with a smaller max_packet_size while paho holds a bigger message:
    re-sending it would get us disconnected (0x95) after every reconnect, forever."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with running(mosquitto) as up:
        assert up.maximum_packet_size is None
        mosquitto.pause()
        task = asyncio.create_task(up.publish("big/held", b"x" * 2000, timeout_s=30), name="pub")
        await until(lambda: up.pending_count == 1)
        mosquitto.kill()
        await until(lambda: not up.connected)
        mosquitto.max_packet_size = 1024
        mosquitto.start()
        with pytest.raises(PacketTooLargeError) as exc:
            await asyncio.wait_for(task, 10)
        assert exc.value.limit == 1024
        assert up.maximum_packet_size == 1024
        await asyncio.sleep(0.5)
        stats = up.stats()
        assert up.connected
        assert (stats.connects, stats.connection_losses, stats.dropped_too_large) == (2, 1, 1)
        assert up.in_flight == 0
        assert (await up.publish("big/small", b"y" * 100)).ok
    assert "oversize" not in mosquitto.log_text()
    assert len(log_lines(caplog, "exceeds the new maximum packet size 1024")) == 1


async def test_connection_changed_and_wait_connected(mosquitto: Mosquitto) -> None:
    up = MqttUplink(make_cfg(mosquitto), client_id=new_client_id())
    ev = up.connection_changed
    assert not up.connected
    await up.start()
    await up.start()  # idempotent
    try:
        await asyncio.wait_for(ev.wait(), 10)
        assert up.connected
        assert await up.wait_connected(0)
        lost = up.connection_changed
        assert not lost.is_set()
        mosquitto.stop()
        await asyncio.wait_for(lost.wait(), 10)
        assert not up.connected
        assert not await up.wait_connected(0.2)
        mosquitto.start()
        assert await up.wait_connected(10)
        assert up.stats().reconnects == 1
    finally:
        await up.aclose()


@pytest.mark.slow
async def test_a_hung_broker_is_logged_and_left(mosquitto: Mosquitto,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13 item 6: a broker that keeps its socket open but answers nothing (SIGSTOP) is
    noticed by the keepalive (no PINGRESP): one WARNING naming it, then a reconnect once it
    answers again."""
    caplog.set_level(logging.INFO, LOGGER)
    cfg = make_cfg(mosquitto, keepalive_s=5)
    up = MqttUplink(cfg, client_id=new_client_id())
    await up.start()
    assert await up.wait_connected(10)
    mosquitto.pause()
    try:
        await until(lambda: not up.connected, timeout_s=30)
    finally:
        mosquitto.resume()
    lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
    assert lost, [r.getMessage() for r in caplog.records]
    assert lost[0].levelno == logging.WARNING
    assert "keep alive" in lost[0].getMessage().lower(), lost[0].getMessage()
    assert await up.wait_connected(30)
    await up.aclose()
