"""Turns accepted reads into EPCIS events, atomically (reads out, events in, one transaction)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence

from agent.buffer.api import Buffer, OutEvent, StoredRead
from agent.model import TagRead
from agent.pipeline.epcis import observe_event

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        buffer: Buffer,
        *,
        timezone: str,
        wake: asyncio.Event,
        clock: Callable[[], float],
        batch: int = 2000,
        idle_poll_s: float = 0.5,
    ) -> None:
        self._buffer = buffer
        self._timezone = timezone
        self._wake = wake
        self._clock = clock
        self._batch = batch
        self._idle_poll_s = idle_poll_s
        self.produced = asyncio.Event()  # set after events are committed: wakes the forwarder
        self.events_total = 0
        self.on_events: Callable[[Sequence[OutEvent]], None] | None = None  # live view hook

    def events_for(self, stored: list[StoredRead]) -> list[OutEvent]:
        out: list[OutEvent] = []
        now = self._clock()
        gen = self._buffer.generation
        for s in stored:
            if isinstance(s.read, TagRead):
                event = observe_event(s.read, timezone=self._timezone, source_id=f"{gen}:{s.id}")
                out.append(
                    OutEvent(kind="event", payload=json.dumps(event, separators=(",", ":")),
                             created_at_s=now)
                )
        return out

    async def step(self) -> int:
        stored = await self._buffer.take_reads(self._batch)
        if not stored:
            return 0
        events = self.events_for(stored)
        await self._buffer.commit_events([s.id for s in stored], events)
        self.events_total += len(events)
        if self.on_events is not None:
            self.on_events(events)
        self.produced.set()
        return len(stored)

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before step(): a wake-up during step() is not lost
            if await self.step():
                continue
            try:
                async with asyncio.timeout(self._idle_poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
