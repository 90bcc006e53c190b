"""From reader tasks to the durable buffer, in group-committed batches.

Readers never wait for an fsync per read: reads queue here for a few milliseconds and are
committed together. A read is *accepted* once ``put_reads`` returned. If the buffer applies
backpressure the queue fills and the readers' ``put`` waits: readers pause, nothing is dropped
silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agent.buffer.api import Buffer, BufferFullError
from agent.model import Read

log = logging.getLogger(__name__)


class Ingest:
    def __init__(self, buffer: Buffer, *, max_batch: int = 2000, queue_max: int = 20000) -> None:
        self._buffer = buffer
        self._queue: asyncio.Queue[Read] = asyncio.Queue(queue_max)
        self._max_batch = max_batch
        self.accepted = asyncio.Event()  # set after each commit: wakes the pipeline
        self.accepted_total = 0
        self.retry_s = 0.5
        self.on_read: Callable[[Read], None] | None = None  # live view hook (never blocks)

    async def put(self, read: Read) -> None:
        if self.on_read is not None:
            self.on_read(read)
        await self._queue.put(read)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[Read]) -> None:
        warned = False
        while True:
            try:
                await self._buffer.put_reads(batch)
            except BufferFullError as exc:
                # Backpressure policy: hold these reads (the queue behind them fills and the
                # readers pause) until the uplink frees space.
                if not warned:
                    log.warning("buffer full, pausing readers: %s", exc)
                    warned = True
                await asyncio.sleep(self.retry_s)
                continue
            break
        if warned:
            log.info("buffer has room again; readers resume")
        self.accepted_total += len(batch)
        self.accepted.set()

    async def drain(self) -> None:
        """Commit whatever is queued (used at shutdown, after the readers stopped)."""
        batch: list[Read] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self._commit(batch)
