"""Forwarder against real parts: a SqliteBuffer file, MqttUplink, and a Mosquitto with an ACL.

Proves the core rule of the uplink: a row leaves the buffer only after a PUBACK with a success
code; a refused message is logged with its reason code and kept (dead-letter table), never
deleted as if delivered, and the stream behind it continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.buffer.api import OutEvent
from agent.buffer.sqlite import SqliteBuffer
from agent.config import BufferConfig, MqttConfig
from agent.uplink.forwarder import Forwarder, build_document, topics
from agent.uplink.mqtt import MqttUplink
from tests.support.mosquitto import Mosquitto, collect


def _event(n: int) -> OutEvent:
    payload = json.dumps({"type": "ObjectEvent", "eventID": f"ni:///sha-256;{n:064x}?ver=CBV2.0",
                          "eventTime": "2026-01-01T00:00:00.000Z", "eventTimeZoneOffset": "+00:00",
                          "epcList": [f"urn:epc:raw:96.x{n:024X}"], "action": "OBSERVE"})
    return OutEvent(kind="event", payload=payload, created_at_s=time.time())


@contextlib.asynccontextmanager
async def running(
    db: Path, broker: Mosquitto, *, prefix: str = "trace", user: str | None = None,
    password: str | None = None,
) -> AsyncIterator[tuple[SqliteBuffer, Forwarder]]:
    buffer = await SqliteBuffer.open(BufferConfig(path=db))
    mcfg = MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix,
                      username=user, password=password, publish_timeout_s=5,
                      batch_max_events=10)
    uplink = MqttUplink(mcfg, client_id=f"fwd-test-{db.stem}")
    wake = asyncio.Event()
    fwd = Forwarder(buffer, uplink, mcfg, topics(mcfg, "lab", "gw-test"), wake=wake,
                    idle_poll_s=0.05)
    await uplink.start()
    assert await uplink.wait_connected(10)
    task = asyncio.create_task(fwd.run(), name="forwarder-under-test")
    try:
        yield buffer, fwd
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await uplink.aclose()
        await buffer.aclose()


async def _wait(pred: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


async def test_rows_are_deleted_only_after_puback(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    db = tmp_path / "b.db"
    with collect(mosquitto, "trace/lab/gw-test/events") as seen:
        async with running(db, mosquitto) as (buffer, fwd):
            await buffer.commit_events([], [_event(i) for i in range(25)])
            await _wait(lambda: fwd.delivered_events == 25)
            assert (await buffer.stats()).events_pending == 0
        msgs = seen.wait_count(3, timeout_s=5)
    ids = [e["eventID"] for m in msgs for e in json.loads(m.payload)["epcisBody"]["eventList"]]
    assert sorted(ids) == sorted(json.loads(_event(i).payload)["eventID"] for i in range(25))
    assert all(getattr(m.properties, "ContentType", None) == "application/ld+json" for m in msgs)


async def test_refused_message_is_kept_logged_and_the_stream_continues(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The gateway may write only below trace/lab/gw-test/#; a second gateway id shares the
    # buffer file format but its topic is denied: MQTT 5 PUBACK 0x87 (Not authorized).
    broker = mosquitto_factory(users={"edge": "pw"}, acl=["user edge", "topic readwrite allowed/#"])
    db = tmp_path / "denied.db"
    caplog.set_level(logging.WARNING)
    async with running(db, broker, prefix="trace", user="edge", password="pw") as (buffer, fwd):
        await buffer.commit_events([], [_event(i) for i in range(5)])
        await _wait(lambda: fwd.dead_lettered == 5)
        stats = await buffer.stats()
        assert stats.events_pending == 0
        assert stats.dead_letters == 5
    assert _count(db, "dead_letters") == 5  # kept on disk, not deleted as if delivered
    assert "0x87" in caplog.text
    assert "dead letters" in caplog.text

    # Same buffer, allowed topic: what comes next is delivered normally.
    with collect(broker, "allowed/#", username="edge", password="pw") as seen:
        async with running(db, broker, prefix="allowed", user="edge", password="pw") as (
            buffer, fwd,
        ):
            await buffer.commit_events([], [_event(100 + i) for i in range(3)])
            await _wait(lambda: fwd.delivered_events == 3)
        seen.wait_count(1, timeout_s=5)
    assert _count(db, "dead_letters") == 5


async def test_broker_outage_keeps_rows_until_confirmed(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    db = tmp_path / "outage.db"
    async with running(db, mosquitto) as (buffer, fwd):
        mosquitto.stop()
        await buffer.commit_events([], [_event(i) for i in range(40)])
        await asyncio.sleep(1.0)
        assert fwd.delivered_events == 0
        assert (await buffer.stats()).events_pending == 40  # nothing deleted while offline
        mosquitto.start()
        await _wait(lambda: fwd.delivered_events >= 40, timeout_s=30)
        assert (await buffer.stats()).events_pending == 0


def test_document_wrapper_is_valid_json() -> None:
    from datetime import UTC, datetime

    doc = json.loads(build_document([_event(1).payload, _event(2).payload],
                                    datetime(2026, 1, 1, tzinfo=UTC)))
    assert doc["type"] == "EPCISDocument"
    assert doc["schemaVersion"] == "2.0"
    assert doc["creationDate"] == "2026-01-01T00:00:00.000Z"
    assert len(doc["epcisBody"]["eventList"]) == 2


async def test_an_alarm_larger_than_the_brokers_maximum_packet_is_dead_lettered_not_a_crash(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Events are split to fit the broker's Maximum Packet Size; status/alarm rows were sent as
    # they are, and PacketTooLargeError ended the forwarder's TaskGroup (and so the agent,
    # again at every restart: a poison row).
    broker = mosquitto_factory(max_packet_size=2048)
    db = tmp_path / "big.db"
    caplog.set_level(logging.WARNING)
    alarm = json.dumps({"type": "buffer_corrupt", "detail": "x" * 4000})
    async with running(db, broker) as (buffer, fwd):
        await buffer.put_events([OutEvent(kind="alarm", payload=alarm, priority=20,
                                          created_at_s=time.time())])
        await buffer.commit_events([], [_event(i) for i in range(5)])
        await _wait(lambda: fwd.delivered_events == 5 and fwd.dead_lettered == 1)
        stats = await buffer.stats()
        assert stats.events_pending == 0
        assert stats.dead_letters == 1
    assert "exceeds the maximum payload" in caplog.text
