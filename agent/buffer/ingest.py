"""From reader tasks to the durable buffer, in group-committed batches.

Readers never wait for an fsync per read: reads queue here for a few milliseconds and are
committed together. A read is *accepted* (``accepted_total``) only once ``put_reads`` returned,
that is once it is committed. Until then it is *waiting* (``waiting``: this queue plus the batch
being committed, in RAM). If the buffer applies backpressure (full) the batch is held and every
reader's ``put`` waits at once (``paused``), so what waits in RAM stops growing: it is the held
batch (at most ``max_batch``) plus what was queued when the buffer filled. Nothing is dropped
silently; a reader's ``readsTotal`` counts what the reader reported, accepted or not yet.

Each batch is one ``put_batch``: numbered from the buffer's next read id (dense, in arrival
order), reads of presence readers stored as reads, and the reads of every-read readers and
barcode scans stored as the events the pipeline formed from them (``direct``) in the same
transaction (issue 12; docs/buffer.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.buffer.api import Buffer, BufferFullError, OutEvent, ReadIdsOutOfStepError
from agent.model import Read

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Prepared:
    first_id: int  # the batch's reads are first_id, first_id + 1, ... in arrival order
    count: int
    rows: list[tuple[int, Read]]  # (id, read): stored as reads
    events: list[OutEvent]  # the events of the others, formed with their ids
    built: bool = False  # the pipeline formed events for this batch (direct.build ran)


class DirectEvents(Protocol):
    """Forms the events of reads that never wait as reads (the pipeline: every-read readers,
    barcode scans), so that a read and its event are committed in one transaction."""

    def direct(self, read: Read) -> bool: ...

    async def build(self, reads: Sequence[Read], ids: Sequence[int]) -> list[OutEvent]: ...

    def unbuild(self) -> None: ...  # the last build's events will not be stored

    def committed(self, events: Sequence[OutEvent]) -> None: ...

    def stored(self, rows: Sequence[tuple[int, Read]]) -> None: ...  # reads now in the file


class Ingest:
    def __init__(self, buffer: Buffer, *, max_batch: int = 2000, queue_max: int = 20000,
                 window_s: float = 0.0) -> None:
        self._buffer = buffer
        self._queue: asyncio.Queue[Read] = asyncio.Queue(queue_max)
        self._max_batch = max_batch
        # The group-commit window (buffer.commit_interval_ms), counted from the arrival of the
        # oldest read waiting: what arrives meanwhile joins its commit, and the buffer's writer
        # commits the batch without waiting a window of its own. A read is then at most about
        # one window and one commit from durable, which is what a SIGKILL can lose (issue 12).
        self._window_s = window_s
        self._first_at_s = 0.0  # time.monotonic() (the loop's clock) of the oldest queued read
        self.accepted = asyncio.Event()  # set after each commit: wakes the pipeline
        self.accepted_total = 0
        self.lost_at_shutdown = 0  # reads handed over that could not be stored before exit
        self.retry_s = 0.5
        self.on_read: Callable[[Read], None] | None = None  # live view hook (never blocks)
        # The batch taken from the queue and not yet committed (while the buffer is full, or
        # a put is in flight), so that drain() neither forgets it nor stores it twice.
        self._holding: list[Read] = []
        self._put: asyncio.Future[None] | None = None
        self._put_events: list[OutEvent] = []  # the events of the put in flight
        self._room = asyncio.Event()  # clear while the buffer refuses reads (backpressure)
        self._room.set()
        # Set by the app: the pipeline, which forms events of "direct" reads before they are
        # stored (issue 12: one transaction instead of put, take and commit). None: every read
        # is stored as a read and the pipeline takes it from there.
        self.direct: DirectEvents | None = None

    async def put(self, read: Read) -> None:
        if self.on_read is not None:
            self.on_read(read)
        if not self._room.is_set():
            await self._room.wait()  # the reader pauses here: no read piles up in RAM
        self._arriving()
        await self._queue.put(read)

    def put_nowait(self, read: Read) -> bool:
        """:meth:`put` if it would not wait; False (nothing done) when the reader must wait
        for room (the buffer refuses reads, or the queue is full)."""
        if not self._room.is_set() or self._queue.full():
            return False
        if self.on_read is not None:
            self.on_read(read)
        self._arriving()
        self._queue.put_nowait(read)
        return True

    def _arriving(self) -> None:
        """A read is about to be queued: into an empty queue, it is the oldest waiting, and
        the group-commit window counts from now."""
        if self._queue.empty():
            self._first_at_s = time.monotonic()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def waiting(self) -> int:
        """Reads handed over and not yet committed (in RAM: the queue and the held batch)."""
        return self._queue.qsize() + len(self._holding)

    @property
    def paused(self) -> bool:
        """True while the buffer refuses reads and the readers wait."""
        return not self._room.is_set()

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._holding = batch  # from here on drain() commits it, if we are cancelled
            if self._window_s > 0 and self._queue.qsize() + 1 < self._max_batch:
                # Read before any await: the next read into an empty queue sets it anew.
                wait_s = self._first_at_s + self._window_s - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)  # reads arriving meanwhile join this batch
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._holding = batch
            await self._commit(batch)

    async def _prepare(self, batch: list[Read]) -> _Prepared:
        """Number the batch (read ids are dense, in arrival order) and have the pipeline form
        the events of its direct reads; the rest are stored as reads, all in one put."""
        first = self._buffer.next_read_id
        direct = self.direct
        rows: list[tuple[int, Read]] = []
        now: list[Read] = []
        now_ids: list[int] = []
        for read_id, read in enumerate(batch, first):
            if direct is not None and direct.direct(read):
                now.append(read)
                now_ids.append(read_id)
            else:
                rows.append((read_id, read))
        if direct is None or not now:
            return _Prepared(first, len(batch), rows, [])
        return _Prepared(first, len(batch), rows, await direct.build(now, now_ids), built=True)

    async def _put_once(self, batch: _Prepared) -> None:
        # A put already handed to the buffer's writer runs to its end even if we are
        # cancelled: shield it and let drain() learn its outcome, rather than guess.
        self._put = asyncio.get_running_loop().create_task(
            self._buffer.put_batch(batch.first_id, batch.count, batch.rows, batch.events),
            name="ingest-put")  # owned: awaited here or in drain
        self._put_events = batch.events
        try:
            await asyncio.shield(self._put)
        finally:
            if self._put.done():
                self._put = None

    async def _commit(self, batch: list[Read]) -> None:
        warned = False
        prepared = await self._prepare(batch)
        while True:
            try:
                await self._put_once(prepared)
            except ReadIdsOutOfStepError as exc:
                # The file was recovered under us: number the batch (and form its events)
                # again from the id the buffer expects now; nothing of it was stored.
                log.warning("buffer: %s; numbering the batch again", exc)
                if self.direct is not None and prepared.built:
                    self.direct.unbuild()
                prepared = await self._prepare(batch)
                continue
            except BufferFullError as exc:
                # Backpressure policy: hold these reads (the queue behind them fills and the
                # readers pause) until the uplink frees space.
                if not warned:
                    log.warning("buffer full, pausing readers (%d reads wait in memory, not yet "
                                "accepted): %s", self.waiting, exc)
                    warned = True
                    self._room.clear()
                await asyncio.sleep(self.retry_s)
                continue
            break
        if warned:
            log.info("buffer has room again; readers resume")
            self._room.set()
        if prepared.rows and self.direct is not None:
            self.direct.stored(prepared.rows)  # before the wake-up below
        self._accepted(batch, stored_reads=bool(prepared.rows), events=prepared.events)

    def _accepted(self, batch: list[Read], *, stored_reads: bool = True,
                  events: Sequence[OutEvent] = ()) -> None:
        self._holding = []
        self.accepted_total += len(batch)
        if events and self.direct is not None:
            self.direct.committed(events)
        if stored_reads:
            self.accepted.set()  # reads for the pipeline to take

    async def drain(self, *, timeout_s: float = 10.0) -> None:
        """Commit whatever was handed over (used at shutdown, after the readers stopped).

        The batch ``run`` held when it was cancelled comes first (its put, if one was in
        flight, is awaited, not repeated), then the queue. While the buffer refuses (full,
        disk full) this retries until ``timeout_s`` (systemd stops us at TimeoutStopSec);
        what is still not stored then is counted in ``lost_at_shutdown`` and logged.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        batch = self._holding
        self._holding = []
        if self._put is not None:
            put, self._put = self._put, None
            try:
                await put
            except BufferFullError:
                pass  # not stored: goes again below, as reads (with the same ids)
            else:
                self._accepted(batch, events=self._put_events)
                batch = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if not batch:
            return
        while True:
            try:
                await self._buffer.put_reads(batch)
            except BufferFullError as exc:
                if loop.time() + self.retry_s >= deadline:
                    self.lost_at_shutdown += len(batch)
                    log.error("shutdown: %d reads handed over by the readers were not stored: "  # noqa: TRY400
                              "%s; gave up after %.1f s (they are lost; %d in all this run)",
                              len(batch), exc, timeout_s, self.lost_at_shutdown)
                    return
                await asyncio.sleep(self.retry_s)
                continue
            self._accepted(batch)
            return
