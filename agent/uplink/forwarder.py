"""Claim -> publish (QoS 1) -> ack after PUBACK. A row leaves the buffer only when the broker
confirmed it with a success reason code (< 0x80, MQTT 5 §3.4.2.1)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from agent.buffer.api import Buffer, Claimed
from agent.clock import utcnow
from agent.config import MqttConfig
from agent.pipeline.epcis import CONTENT_TYPE, CONTEXT, iso_ms
from agent.uplink.mqtt import PublishResult, PublishTimeout, UplinkNotConnected

log = logging.getLogger(__name__)

# MQTT 5 reason codes that will never succeed on retry: dead-letter (kept, counted, visible).
PERMANENT_REFUSALS = frozenset({0x87, 0x90, 0x99})
PACKET_TOO_LARGE = 0x95


class Publisher(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def receive_maximum(self) -> int: ...

    @property
    def maximum_packet_size(self) -> int | None: ...

    async def wait_connected(self, timeout_s: float | None = None) -> bool: ...

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> PublishResult: ...


def topics(cfg: MqttConfig, site: str, gateway_id: str) -> dict[str, str]:
    base = f"{cfg.topic_prefix}/{site}/{gateway_id}"
    return {
        "base": base,
        "event": f"{base}/events",
        "status": f"{base}/status",
        "alarm": f"{base}/alarms",
        "health": f"{base}/health",
    }


def build_document(payloads: Sequence[str], created: datetime) -> bytes:
    """EPCISDocument around stored event JSON, without re-parsing the events."""
    head = json.dumps(
        {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": iso_ms(created),
        },
        separators=(",", ":"),
    )
    return (head[:-1] + ',"epcisBody":{"eventList":[' + ",".join(payloads) + "]}}").encode()


class Forwarder:
    def __init__(
        self,
        buffer: Buffer,
        uplink: Publisher,
        cfg: MqttConfig,
        topic_map: dict[str, str],
        *,
        wake: asyncio.Event,
        now: Callable[[], datetime] = utcnow,
        idle_poll_s: float = 0.5,
    ) -> None:
        self._buffer = buffer
        self._uplink = uplink
        self._cfg = cfg
        self._topics = topic_map
        self._wake = wake
        self._now = now
        self._idle_poll_s = idle_poll_s
        self._inflight = 0
        self._slot_free = asyncio.Condition()
        self._paused_until = 0.0
        self.delivered_events = 0
        self.delivered_messages = 0
        self.refused_messages = 0
        self.dead_lettered = 0
        self.last_refusal: str | None = None

    @property
    def window(self) -> int:
        # paho ignores the broker's Receive Maximum: we apply it ourselves (MQTT 5 §3.2.2.3.3).
        return max(1, min(self._cfg.inflight_window, self._uplink.receive_maximum))

    @property
    def max_payload(self) -> int:
        limit = self._cfg.batch_max_bytes
        broker = self._uplink.maximum_packet_size
        if broker:
            limit = min(limit, broker - 512)  # room for the topic and properties
        return max(1024, limit)

    async def _acquire_slot(self) -> None:
        async with self._slot_free:
            await self._slot_free.wait_for(lambda: self._inflight < self.window)
            self._inflight += 1

    async def _release_slot(self) -> None:
        async with self._slot_free:
            self._inflight -= 1
            self._slot_free.notify_all()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            while True:
                if not self._uplink.connected:
                    await self._uplink.wait_connected()
                pause = self._paused_until - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                await self._acquire_slot()
                self._wake.clear()
                claimed = await self._buffer.claim(self._cfg.batch_max_events,
                                                   lease_s=self._cfg.publish_timeout_s * 2 + 5)
                if not claimed:
                    await self._release_slot()
                    try:
                        async with asyncio.timeout(self._idle_poll_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue
                tg.create_task(self._deliver(claimed), name=f"deliver-{claimed[0].id}")

    async def _deliver(self, claimed: list[Claimed]) -> None:
        try:
            events = [c for c in claimed if c.kind == "event"]
            others = [c for c in claimed if c.kind != "event"]
            for c in others:
                await self._send([c], self._topics.get(c.kind, self._topics["alarm"]),
                                 c.payload.encode(), "application/json")
            if events:
                await self._send_events(events)
        finally:
            await self._release_slot()

    async def _send_events(self, events: list[Claimed]) -> None:
        payload = build_document([c.payload for c in events], self._now())
        if len(payload) > self.max_payload and len(events) > 1:
            half = len(events) // 2  # an oversized batch is split, not rejected
            await self._send_events(events[:half])
            await self._send_events(events[half:])
            return
        if len(payload) > self.max_payload:
            await self._dead_letter(events, f"a single event of {len(payload)} bytes exceeds the "
                                    f"maximum payload of {self.max_payload} bytes")
            return
        await self._send(events, self._topics["event"], payload, CONTENT_TYPE)

    async def _send(self, rows: list[Claimed], topic: str, payload: bytes, ctype: str) -> None:
        ids = [c.id for c in rows]
        try:
            result = await self._uplink.publish(
                topic, payload, qos=1, content_type=ctype, timeout_s=self._cfg.publish_timeout_s
            )
        except (PublishTimeout, UplinkNotConnected) as exc:
            # Not confirmed: the rows stay and go again; a duplicate carries the same eventIDs.
            await self._buffer.release(ids, error=str(exc) or type(exc).__name__)
            return
        if result.ok:
            await self._buffer.ack(ids)
            self.delivered_messages += 1
            self.delivered_events += len(rows)
            return
        self.refused_messages += 1
        what = f"reason code 0x{result.reason_code:02X} {result.reason}"
        self.last_refusal = what
        span = f"rows {ids[0]}..{ids[-1]}" if len(ids) > 1 else f"row {ids[0]}"
        if result.reason_code == PACKET_TOO_LARGE and len(rows) > 1:
            log.warning("broker refused %s on %s as too large; splitting", span, topic)
            half = len(rows) // 2
            await self._send_events(rows[:half])
            await self._send_events(rows[half:])
            return
        if result.reason_code in PERMANENT_REFUSALS or result.reason_code == PACKET_TOO_LARGE:
            log.error("broker refused %s on %s: %s; moved to dead letters", span, topic, what)
            await self._dead_letter(rows, what)
            return
        log.warning("broker refused %s on %s: %s; kept, retrying after a pause", span, topic, what)
        await self._buffer.release(ids, error=what)
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + 2.0)

    async def _dead_letter(self, rows: list[Claimed], reason: str) -> None:
        await self._buffer.dead_letter([c.id for c in rows], reason)
        self.dead_lettered += len(rows)
