"""A tiny in-process pub/sub for live views (``edge-agent tail``): the agent never waits for it.

Ingest calls :meth:`EventTap.on_read` for each read and the pipeline :meth:`EventTap.on_events`
for each committed batch of events. With no viewer attached both return at once. Each viewer
has a bounded queue; when a slow viewer's queue is full the item is dropped *for that viewer*
and counted (shown to it as a ``dropped`` notice), so a viewer can never slow the agent down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.buffer.api import OutEvent
from agent.model import BarcodeRead, Read, TagRead
from agent.pipeline.epc import decode_epc

DEFAULT_QUEUE = 1000


class Subscription:
    def __init__(self, tap: EventTap, reader: str | None, maxsize: int) -> None:
        self._tap = tap
        self.reader = reader
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, item: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            self._tap.dropped_total += 1

    async def get(self) -> dict[str, Any]:
        return await self.queue.get()

    def close(self) -> None:
        self._tap.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_item(read: Read) -> dict[str, Any]:
    """A read as the live view shows it (EPC decoded for tags)."""
    if isinstance(read, TagRead):
        ident = decode_epc(read.epc, read.pc)
        item: dict[str, Any] = {
            "type": "read", "reader": read.reader, "time": _iso(read.read_at), "epc": read.epc,
            "uri": ident.uri, "antenna": read.antenna, "rssiDbm": read.rssi_dbm,
        }
        if ident.element_string:
            item["hri"] = ident.element_string
        if ident.scheme:
            item["scheme"] = ident.scheme
        return item
    assert isinstance(read, BarcodeRead)
    return {
        "type": "scan", "reader": read.reader, "time": _iso(read.read_at),
        "data": read.data.decode("latin-1"), "symbology": read.symbology,
    }


def event_items(payloads: Sequence[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for text in payloads:
        try:
            ev = json.loads(text)
        except ValueError:
            continue
        readers = sorted({r.get("tea:reader", "") for r in ev.get("tea:reads", [])})
        out.append({
            "type": "event", "eventType": ev.get("type"), "time": ev.get("eventTime"),
            "action": ev.get("action"), "epcList": ev.get("epcList", []), "readers": readers,
            "eventID": ev.get("eventID"),
        })
    return out


class EventTap:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self.dropped_total = 0  # items not delivered to slow viewers (all viewers together)

    @property
    def viewers(self) -> int:
        return len(self._subs)

    def subscribe(self, reader: str | None = None, maxsize: int = DEFAULT_QUEUE) -> Subscription:
        sub = Subscription(self, reader, maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def on_read(self, read: Read) -> None:
        if not self._subs:
            return
        wanted = [s for s in self._subs if s.reader is None or s.reader == read.reader]
        if not wanted:
            return
        item = read_item(read)
        for s in wanted:
            s.offer(item)

    def on_events(self, events: Sequence[OutEvent]) -> None:
        if not self._subs:
            return
        items = event_items([e.payload for e in events if e.kind == "event"])
        for s in self._subs:
            for item in items:
                if s.reader is None or s.reader in item["readers"]:
                    s.offer(item)
