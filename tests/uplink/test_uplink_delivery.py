"""Robust delivery, in-process: a real SqliteBuffer + Forwarder + MqttUplink against real
Mosquitto brokers (restart mid-stream, long outage, ACL refusal, failover and back), and the
reason-code policy, batching, compression and drain rate against a scripted publisher."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.buffer.api import OutEvent
from agent.buffer.sqlite import SqliteBuffer
from agent.config import BufferConfig, MqttConfig
from agent.uplink.forwarder import (
    REFUSALS_STATE,
    REFUSED_PREFIX,
    Forwarder,
    TokenBucket,
    topics,
)
from agent.uplink.mqtt import (
    MqttUplink,
    PacketTooLargeError,
    PublishResult,
    PublishTimeout,
    connect_packet,
)
from agent.uplink.mqtt.compat import held_count
from agent.uplink.provenance import CHAIN_FIELDS_BYTES
from tests.support.harness import durable_collector
from tests.support.mosquitto import Mosquitto, Received

SITE, GW = "lab", "gw1"
EVENTS = f"trace/{SITE}/{GW}/events"


def mqtt_cfg(*brokers: Mosquitto, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = {
        "host": brokers[0].host, "port": brokers[0].port,
        "failover": [{"host": b.host, "port": b.port} for b in brokers[1:]],
        "reconnect_min_s": 0.05, "reconnect_max_s": 0.3, "publish_timeout_s": 5.0,
        "keepalive_s": 10, "batch_max_events": 50, "batch_max_delay_ms": 0,
    }
    base.update(kw)
    return MqttConfig.model_validate(base)


def ev(n: int) -> OutEvent:
    body = {"type": "ObjectEvent", "eventID": f"ev-{n}", "action": "OBSERVE", "n": n}
    return OutEvent(kind="event", payload=json.dumps(body), created_at_s=time.time())


async def fill(buffer: SqliteBuffer, numbers: range, kind: str = "event") -> None:
    events = [ev(n) if kind == "event" else
              OutEvent(kind=kind, payload=json.dumps({"alarm": n}), created_at_s=time.time())
              for n in numbers]
    for i in range(0, len(events), 500):
        await buffer.commit_events([], events[i:i + 500])


def event_ids(messages: Sequence[Received]) -> list[str]:
    out: list[str] = []
    for m in messages:
        doc = json.loads(m.payload)
        out += [e["eventID"] for e in doc["epcisBody"]["eventList"]]
    return out


@dataclass
class Rig:
    buffer: SqliteBuffer
    uplink: MqttUplink
    forwarder: Forwarder
    wake: asyncio.Event


@asynccontextmanager
async def rig(tmp_path: Path, cfg: MqttConfig) -> AsyncIterator[Rig]:
    buffer = await SqliteBuffer.open(BufferConfig(path=tmp_path / "buffer.db"))
    uplink = MqttUplink(cfg, client_id=f"edge-deliv-{os.getpid()}-{id(cfg):x}")
    wake = asyncio.Event()
    fwd = Forwarder(buffer, uplink, cfg, topics(cfg, SITE, GW), wake=wake, idle_poll_s=0.05)
    await uplink.start()
    task = asyncio.create_task(fwd.run(), name="forwarder")
    try:
        yield Rig(buffer, uplink, fwd, wake)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await uplink.aclose()
        await buffer.aclose()


async def until(cond: Callable[[], Any], timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: {what}")
        await asyncio.sleep(0.02)


async def drained(buffer: SqliteBuffer) -> bool:
    s = await buffer.stats()
    return s.events_pending + s.events_leased == 0


# ----------------------------------------------------------------------------- real brokers


async def test_broker_restart_mid_stream_loses_nothing(mosquitto: Mosquitto,
                                                       tmp_path: Path) -> None:
    n = 3000
    with durable_collector(mosquitto, EVENTS, f"collector-{os.getpid()}") as seen:
        async with rig(tmp_path, mqtt_cfg(mosquitto)) as r:
            await fill(r.buffer, range(n))
            await until(lambda: r.forwarder.delivered_events > 300, what="first deliveries")
            await asyncio.to_thread(mosquitto.restart)  # graceful: sessions persist
            await until(lambda: drained(r.buffer), 60, "backlog drained after restart")
            assert r.uplink.stats().reconnects >= 1
            await asyncio.to_thread(seen.wait_count, 1, None, 1.0)
            await until(lambda: len(set(event_ids(seen.messages))) == n, 30,
                        "every event at the subscriber")
    ids = event_ids(seen.messages)
    assert set(ids) == {f"ev-{i}" for i in range(n)}  # nothing lost
    payload_by_id: dict[str, str] = {}
    for m in seen.messages:  # duplicates (at least once) only with identical events
        for e in json.loads(m.payload)["epcisBody"]["eventList"]:
            text = json.dumps(e, sort_keys=True)
            assert payload_by_id.setdefault(e["eventID"], text) == text


async def test_long_outage_grows_the_buffer_not_memory(mosquitto: Mosquitto,
                                                       tmp_path: Path) -> None:
    cfg = mqtt_cfg(mosquitto, inflight_window=8, publish_timeout_s=1.0)
    async with rig(tmp_path, cfg) as r:
        assert await r.uplink.wait_connected(10)
        await asyncio.to_thread(mosquitto.stop)
        await fill(r.buffer, range(5000))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # paho's queue and our window stay bounded
            assert r.uplink.in_flight <= 8
            assert held_count(r.uplink._client) <= 8  # what paho holds for re-sending
            await asyncio.sleep(0.05)
        stats = await r.buffer.stats()
        assert stats.events_pending + stats.events_leased >= 4900  # still in the buffer
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: drained(r.buffer), 60, "backlog drained after the outage")
        assert r.forwarder.delivered_events >= 5000


async def test_acl_refusal_goes_to_dead_letters_and_the_stream_continues(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto_factory(users={"edge": "pw"}, acl=["user edge", f"topic write {EVENTS}"])
    cfg = mqtt_cfg(broker, username="edge", password="pw")
    async with rig(tmp_path, cfg) as r:
        await fill(r.buffer, range(1), kind="alarm")  # alarms topic: denied by the ACL
        await fill(r.buffer, range(200))
        await until(lambda: drained(r.buffer), 20, "buffer drained")
        stats = await r.buffer.stats()
        assert stats.dead_letters == 1
        assert r.forwarder.dead_lettered == 1
        assert r.forwarder.delivered_events == 200
        assert r.forwarder.last_refusal is not None
        assert "0x87" in r.forwarder.last_refusal


async def test_failover_to_the_second_broker_and_back(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    first, second = mosquitto_factory(), mosquitto_factory()
    cfg = mqtt_cfg(first, second)
    async with rig(tmp_path, cfg) as r:
        probe = asyncio.create_task(r.uplink.failback_probe(interval_s=0.2))
        try:
            assert await r.uplink.wait_connected(10)
            assert r.uplink.on_primary
            await asyncio.to_thread(first.stop)
            await until(lambda: r.uplink.connected and not r.uplink.on_primary, 20,
                        "connected to the second broker")
            assert r.uplink.broker == (second.host, second.port)
            await fill(r.buffer, range(100))
            await until(lambda: drained(r.buffer), 20, "delivered via the second broker")
            await asyncio.to_thread(first.start)
            await until(lambda: r.uplink.connected and r.uplink.on_primary, 20, "failed back")
            await fill(r.buffer, range(100, 200))
            await until(lambda: drained(r.buffer), 20, "delivered via the first broker again")
            assert r.forwarder.delivered_events == 200
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)


async def test_no_failback_to_a_primary_that_refuses_our_credentials(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first broker takes TCP but its password file lacks our user: the MQTT probe gets
    a refusing CONNACK, so the uplink stays on the second broker (no flapping) and says so once.
    Once the user exists there, the next probe passes and the uplink fails back."""
    first = mosquitto_factory(users={"someone-else": "x"})
    second = mosquitto_factory(users={"edge": "pw-1"})
    pw = tmp_path / "pw"
    pw.write_text("pw-1\n")
    pw.chmod(0o600)
    cfg = mqtt_cfg(first, second, username="edge", password_file=str(pw))
    caplog.set_level(logging.DEBUG, "agent.uplink.mqtt")
    async with rig(tmp_path, cfg) as r:
        probe = asyncio.create_task(r.uplink.failback_probe(interval_s=0.2))
        try:
            await until(lambda: r.uplink.connected, 20, "connected somewhere")
            assert not r.uplink.on_primary
            assert r.uplink.broker == (second.host, second.port)
            await until(lambda: r.uplink.probe_failures >= 8, 10, "eight probes")
            assert r.uplink.connected
            assert not r.uplink.on_primary
            assert r.uplink.stats().connects == 1  # never left the second broker
            await fill(r.buffer, range(50))
            await until(lambda: drained(r.buffer), 20, "delivered via the second broker")
            warnings = [rec.getMessage() for rec in caplog.records
                        if rec.levelno == logging.WARNING and "fail-back" in rec.getMessage()]
            assert len(warnings) == 1, warnings
            # Mosquitto 2 says 0x87 Not authorized for a user missing from the password file
            assert "CONNACK 0x86" in warnings[0] or "CONNACK 0x87" in warnings[0], warnings
            first.users["edge"] = "pw-1"
            await asyncio.to_thread(first.restart)
            await until(lambda: r.uplink.connected and r.uplink.on_primary, 20, "failed back")
            await fill(r.buffer, range(50, 100))
            await until(lambda: drained(r.buffer), 20, "delivered via the first broker")
            assert r.forwarder.delivered_events == 100
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)


@pytest.mark.parametrize("behaviour", ["close", "silent", "garbage"])
async def test_probe_needs_a_connack_not_just_tcp(behaviour: str) -> None:
    """A port that accepts TCP but does not speak MQTT is not a broker to fail back to."""
    got: list[bytes] = []
    release = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            got.append(await reader.read(1024))
            if behaviour == "silent":
                await release.wait()
            elif behaviour == "garbage":
                writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = MqttConfig.model_validate({"host": "127.0.0.1", "port": port})
    up = MqttUplink(cfg, client_id="edge-x")
    try:
        ok, reason = await up.probe_first_broker(timeout_s=0.5)
    finally:
        release.set()
        await asyncio.gather(*handlers, return_exceptions=True)
        server.close()
        await server.wait_closed()
    assert not ok
    assert got
    assert got[0].startswith(b"\x10")  # an MQTT CONNECT went out
    assert b"edge-x-probe" in got[0]
    expected = {"close": "without a CONNACK", "silent": "no CONNACK within",
                "garbage": "instead of a CONNACK"}[behaviour]
    assert expected in reason, reason


async def test_probe_passes_against_a_real_broker_and_leaves_no_session(
    mosquitto: Mosquitto
) -> None:
    up = MqttUplink(mqtt_cfg(mosquitto), client_id="edge-y")
    assert await up.probe_first_broker() == (True, "CONNACK success")
    log = mosquitto.wait_for_log("edge-y-probe", 5)
    assert "edge-y-probe" in log


def test_connect_packet_bytes() -> None:
    assert connect_packet("c", v5=True, keepalive_s=30) == (
        b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x1e\x00\x00\x01c")
    p = connect_packet("c", v5=False, keepalive_s=30, username="u", password="p")
    assert p == b"\x10\x13\x00\x04MQTT\x04\xc2\x00\x1e\x00\x01c\x00\x01u\x00\x01p"


# ----------------------------------------------------------------------------- policy


@dataclass
class ScriptedPublisher:
    """Answers PUBACKs from a script of reason codes (then success, or with ``block_after``
    no answer ever); TIMEOUT in the script raises PublishTimeout (no PUBACK in time)."""

    codes: list[int] = field(default_factory=list)
    sent: list[tuple[str, bytes, str | None, tuple[tuple[str, str], ...]]] = field(
        default_factory=list)
    connected: bool = True
    receive_maximum: int = 65535
    maximum_packet_size: int | None = None
    block_after: bool = False

    async def wait_connected(self, timeout_s: float | None = None) -> bool:
        return True

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      content_type: str | None = None, timeout_s: float | None = None,
                      user_properties: Sequence[tuple[str, str]] = (),
                      correlation_data: bytes | None = None) -> PublishResult:
        self.sent.append((topic, payload, content_type, tuple(user_properties)))
        if not self.codes and self.block_after:
            await asyncio.Event().wait()  # like a broker that never answers; until cancelled
        code = self.codes.pop(0) if self.codes else 0
        if code == TIMEOUT:
            raise PublishTimeout("no PUBACK within 0.0 s")
        if code == TOO_LARGE:
            raise PacketTooLargeError(len(payload) + 40, 100, topic)
        return PublishResult(code, f"code {code:#x}")


TIMEOUT = -1
TOO_LARGE = -2  # PacketTooLargeError: the broker's limit shrank after the payload was built


@asynccontextmanager
async def scripted(tmp_path: Path, pub: ScriptedPublisher, **kw: Any) -> AsyncIterator[Rig]:
    cfg = MqttConfig.model_validate({"host": "127.0.0.1", "batch_max_delay_ms": 0,
                                     "retry_min_s": 0.01, "retry_max_s": 0.02,
                                     "publish_timeout_s": 0.5, **kw})
    buffer = await SqliteBuffer.open(BufferConfig(path=tmp_path / "buffer.db"))
    wake = asyncio.Event()
    fwd = Forwarder(buffer, pub, cfg, topics(cfg, SITE, GW), wake=wake, idle_poll_s=0.01)
    task = asyncio.create_task(fwd.run())
    try:
        yield Rig(buffer, None, fwd, wake)  # type: ignore[arg-type]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await buffer.aclose()


async def test_transient_refusals_retry_then_dead_letter_after_max_attempts(
    tmp_path: Path
) -> None:
    pub = ScriptedPublisher(codes=[0x80, 0x83, 0x80])
    async with scripted(tmp_path, pub, max_attempts=3) as r:
        await fill(r.buffer, range(1))
        await until(lambda: drained(r.buffer), 10)
        assert len(pub.sent) == 3
        assert r.forwarder.dead_lettered == 1
        assert (await r.buffer.stats()).dead_letters == 1
    pub = ScriptedPublisher(codes=[0x80, 0x83])  # recovers before max_attempts
    (tmp_path / "b").mkdir()
    async with scripted(tmp_path / "b", pub, max_attempts=3) as r:
        await fill(r.buffer, range(1))
        await until(lambda: drained(r.buffer), 10)
        assert r.forwarder.dead_lettered == 0
        assert r.forwarder.delivered_events == 1


async def no_refusals(buffer: SqliteBuffer) -> bool:
    return await buffer.load_state(REFUSALS_STATE) == {}


def outbox_row(db: Path) -> tuple[int, str | None] | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT attempts, last_error FROM outbox").fetchone()
        return None if row is None else (int(row[0]), row[1])
    finally:
        con.close()


async def test_refusal_count_survives_a_restart(tmp_path: Path) -> None:
    """max_attempts 4: three 0x80 refusals in the first run, then the forwarder and the
    buffer are closed and reopened; the fourth refusal dead-letters the row. Timeouts in
    between are attempts for the buffer but not refusals."""
    pub = ScriptedPublisher(codes=[0x80, TIMEOUT, 0x83, TIMEOUT, 0x80], block_after=True)
    async with scripted(tmp_path, pub, max_attempts=4) as r:
        await fill(r.buffer, range(1))
        await until(lambda: len(pub.sent) == 6, 10, "five attempts and a sixth in flight")
        assert r.forwarder.dead_lettered == 0
        assert await r.buffer.load_state(REFUSALS_STATE) == {"uplink.refusals:1": "3"}
        attempts, error = outbox_row(tmp_path / "buffer.db") or (0, None)
        assert attempts == 5  # the buffer counts every attempt, timeouts included
        assert error is not None
        assert error.startswith(REFUSED_PREFIX)
        assert "0x80" in error
    # the process "dies" with the sixth publish unanswered (the lease is released at open)

    pub2 = ScriptedPublisher(codes=[0x80])  # a new process: new forwarder, reopened buffer
    async with scripted(tmp_path, pub2, max_attempts=4) as r:
        await until(lambda: drained(r.buffer), 10)
        assert len(pub2.sent) == 1
        assert r.forwarder.dead_lettered == 1
        assert (await r.buffer.stats()).dead_letters == 1
        await until(lambda: no_refusals(r.buffer), 5, "counter forgotten with the row")


async def test_timeouts_alone_never_dead_letter_and_success_forgets_the_count(
    tmp_path: Path
) -> None:
    pub = ScriptedPublisher(codes=[TIMEOUT] * 4 + [0x80], block_after=True)
    async with scripted(tmp_path, pub, max_attempts=2) as r:
        await fill(r.buffer, range(1))
        await until(lambda: len(pub.sent) == 6, 10, "five attempts")
        assert r.forwarder.dead_lettered == 0
        assert await r.buffer.load_state(REFUSALS_STATE) == {"uplink.refusals:1": "1"}
    pub2 = ScriptedPublisher()  # next run: delivered; the stored count goes with the row
    async with scripted(tmp_path, pub2, max_attempts=2) as r:
        await until(lambda: drained(r.buffer), 10)
        assert r.forwarder.delivered_events == 1
        await until(lambda: no_refusals(r.buffer), 5, "counter forgotten after delivery")


@pytest.mark.parametrize("code", [0x87, 0x90, 0x99])
async def test_permanent_refusals_dead_letter_at_once(tmp_path: Path, code: int) -> None:
    pub = ScriptedPublisher(codes=[code])
    async with scripted(tmp_path, pub) as r:
        await fill(r.buffer, range(3))
        await until(lambda: drained(r.buffer), 10)
        assert len(pub.sent) == 1
        assert r.forwarder.dead_lettered == 3


async def test_a_batch_larger_than_a_document_is_packed_to_size_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A busy line's full batch (500 events of ~470 bytes) is larger than one document: it is
    # packed into documents that fit, in order, each frozen once; halving it logged a warning
    # per batch and built a document only to measure it.
    caplog.set_level(logging.INFO, logger="agent.uplink.forwarder")
    pub = ScriptedPublisher()
    async with scripted(tmp_path, pub, batch_max_events=300, batch_max_bytes=8192) as r:
        await fill(r.buffer, range(300))
        await until(lambda: drained(r.buffer), 10)
        assert r.forwarder.delivered_events == 300
    docs = [json.loads(payload) for _topic, payload, _ct, _props in pub.sent]
    assert all(len(payload) <= 8192 for _t, payload, _c, _p in pub.sent)
    assert [d["tea:seq"] for d in docs] == list(range(1, len(docs) + 1))
    ids = [e["eventID"] for d in docs for e in d["epcisBody"]["eventList"]]
    assert ids == [f"ev-{n}" for n in range(300)]  # each once, in order
    # Packed, not halved: no document but the last could have taken the next event (with
    # the room kept for the chain fields, CHAIN_FIELDS_BYTES, which the real ones undercut).
    for (_t, payload, _c, _p), nxt in zip(pub.sent, docs[1:], strict=False):
        first = json.dumps(nxt["epcisBody"]["eventList"][0])
        assert len(payload) + 1 + len(first) + CHAIN_FIELDS_BYTES > 8192
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_packet_too_large_splits_then_dead_letters_a_single_event(tmp_path: Path) -> None:
    pub = ScriptedPublisher(codes=[0x95, 0x00, 0x95])  # batch of 2 -> [1] ok, [1] refused
    async with scripted(tmp_path, pub) as r:
        await fill(r.buffer, range(2))
        await until(lambda: drained(r.buffer), 10)
        assert r.forwarder.delivered_events == 1
        assert r.forwarder.dead_lettered == 1


async def test_packet_too_large_error_at_publish_splits_then_dead_letters_not_a_crash(
    tmp_path: Path,
) -> None:
    # batch of 3 refused by the uplink itself -> [1] ok, [2] refused -> [1] ok, [1] refused
    pub = ScriptedPublisher(codes=[TOO_LARGE, 0x00, TOO_LARGE, 0x00, TOO_LARGE])
    async with scripted(tmp_path, pub) as r:
        await fill(r.buffer, range(3))
        await until(lambda: drained(r.buffer), 10)
        assert r.forwarder.delivered_events == 2
        assert r.forwarder.dead_lettered == 1
        assert (await r.buffer.stats()).dead_letters == 1


async def test_quota_exceeded_pauses_and_shrinks_the_rate(tmp_path: Path) -> None:
    pub = ScriptedPublisher(codes=[0x97])
    async with scripted(tmp_path, pub, drain_rate_events_s=1000, quota_pause_s=0.3) as r:
        await fill(r.buffer, range(5))
        t0 = time.monotonic()
        await until(lambda: drained(r.buffer), 10)
        assert time.monotonic() - t0 >= 0.25  # paused
        assert r.forwarder.bucket.rate is not None
        assert r.forwarder.bucket.rate < 1000
        assert r.forwarder.dead_lettered == 0
        assert r.forwarder.delivered_events == 5


async def test_batch_waits_up_to_max_delay_but_not_when_full(tmp_path: Path) -> None:
    pub = ScriptedPublisher()
    async with scripted(tmp_path, pub, batch_max_delay_ms=300, batch_max_events=10) as r:
        await fill(r.buffer, range(1))
        await asyncio.sleep(0.05)
        await fill(r.buffer, range(1, 3))
        r.wake.set()
        await until(lambda: drained(r.buffer), 5)
        assert len(pub.sent) == 1  # three events, one document
        assert len(json.loads(pub.sent[0][1])["epcisBody"]["eventList"]) == 3
        pub.sent.clear()
        await fill(r.buffer, range(10, 20))  # a full batch: no waiting
        t0 = time.monotonic()
        r.wake.set()
        await until(lambda: len(pub.sent) == 1, 5)
        assert time.monotonic() - t0 < 0.25


async def test_gzip_declared_by_content_type_and_user_property(tmp_path: Path) -> None:
    pub = ScriptedPublisher()
    async with scripted(tmp_path, pub, compression="gzip") as r:
        await fill(r.buffer, range(20))
        await until(lambda: drained(r.buffer), 5)
    topic, payload, ctype, props = pub.sent[0]
    assert topic == EVENTS
    assert ctype == "application/ld+json"
    assert ("content-encoding", "gzip") in props
    doc = json.loads(gzip.decompress(payload))
    assert doc["type"] == "EPCISDocument"


async def test_drain_rate_limits_the_backlog(tmp_path: Path) -> None:
    pub = ScriptedPublisher()
    async with scripted(tmp_path, pub, drain_rate_events_s=400, batch_max_events=40) as r:
        await fill(r.buffer, range(1000))
        t0 = time.monotonic()
        await until(lambda: drained(r.buffer), 20)
        elapsed = time.monotonic() - t0
    assert 1.3 <= elapsed <= 6.0, elapsed  # (1000 - 400 burst) / 400 = 1.5 s


async def test_token_bucket_shrink_and_recover() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    b = TokenBucket(100.0, clock=lambda: now[0], sleep=sleep)
    await b.take(100)
    await b.take(50)
    assert slept == [pytest.approx(0.5)]
    assert b.shrink() == 50.0
    for _ in range(100):
        b.recover()
    assert b.rate == 100.0


async def test_a_wall_clock_jump_does_not_resend_rows_still_in_flight(
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    """NTP steps the clock forward by hours while a batch waits for its PUBACK: every lease
    has "expired", but the rows are still in flight here. Claiming them again sent each event
    twice (and then acked or released the same ids from two deliveries)."""
    from tests.support.mosquitto import collect

    offset = [0.0]
    buffer = await SqliteBuffer.open(BufferConfig(path=tmp_path / "buffer.db"),
                                     clock=lambda: time.time() + offset[0])
    cfg = mqtt_cfg(mosquitto, batch_max_events=10, publish_timeout_s=10.0)
    uplink = MqttUplink(cfg, client_id=f"edge-jump-{os.getpid()}")
    fwd = Forwarder(buffer, uplink, cfg, topics(cfg, SITE, GW), wake=asyncio.Event(),
                    idle_poll_s=0.05)
    with collect(mosquitto, EVENTS) as seen:
        await uplink.start()
        assert await uplink.wait_connected(10)
        task = asyncio.create_task(fwd.run(), name="forwarder")
        try:
            await asyncio.to_thread(mosquitto.pause)  # PUBACKs stall: the batch stays in flight
            await fill(buffer, range(10))
            await until(lambda: uplink.in_flight == 1, 10, "the batch is in flight")
            offset[0] = 3 * 3600.0  # the wall clock jumps forward
            await asyncio.sleep(0.5)  # the forwarder polls and claims meanwhile
            await asyncio.to_thread(mosquitto.resume)
            await until(lambda: drained(buffer), 20, "delivered")
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await uplink.aclose()
            await buffer.aclose()
        ids = event_ids(seen.messages)
    assert sorted(ids) == sorted(f"ev-{i}" for i in range(10))  # each once, no duplicates
