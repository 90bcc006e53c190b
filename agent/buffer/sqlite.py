"""SqliteBuffer: the durable buffer (see api.py for the contract and docs/buffer.md).

One sqlite3 connection lives on one dedicated writer thread (writer.py); every method here
turns into a request on its queue and awaits the request's future, which is resolved only after
the batch's transaction committed. With ``synchronous=FULL`` (the default) a returned
``put_reads`` / ``commit_events`` / ``ack`` survives a power cut.

A cancelled call may still be committed (the request was already queued): treat cancellation
as "unknown", never as "not stored". Delivery is at least once; duplicates carry the same ids.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from agent.buffer import chain, ops
from agent.buffer.api import BufferStats, Claimed, OutEvent, ReadIdsOutOfStepError, StoredRead
from agent.buffer.rows import encode_read
from agent.buffer.schema import Conn
from agent.buffer.store import Connect, Store
from agent.buffer.writer import WriterThread
from agent.clock import ClockSteps, steps_for
from agent.config import BufferConfig
from agent.model import Read


def sqlite3_connect(path: str) -> Conn:
    """The default connection: stdlib sqlite3, autocommit (we issue BEGIN/COMMIT ourselves)."""
    return sqlite3.connect(path, isolation_level=None, timeout=5.0)


class SqliteBuffer:
    """The durable buffer. Create with ``await SqliteBuffer.open(cfg)``; close with ``aclose``."""

    def __init__(
        self,
        cfg: BufferConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        connect: Connect = sqlite3_connect,
        check_at_open: bool = True,
        dead_letters_max: int | None = None,
        elapsed: Callable[[], float] | None = None,
        steps: ClockSteps | None = None,
    ) -> None:
        # Steps of ``clock`` are watched against ``elapsed`` / by ``steps``; with neither, only
        # the real time.time is (agent.clock.steps_for): a test's fake clock jumps at will.
        self._cfg = cfg
        self._store = Store(cfg, clock=clock, rng=rng or random.SystemRandom(),
                            connect=connect, check_at_open=check_at_open,
                            dead_letters_max=dead_letters_max,
                            steps=steps_for(clock, elapsed, steps))
        self._writer: WriterThread[Store] = WriterThread(
            self._store, Store.run_batch, commit_interval_s=cfg.commit_interval_ms / 1000.0)
        self._reads_ready = asyncio.Event()
        self._events_ready = asyncio.Event()
        self._next_read_id = 1  # read at open, then advanced by each commit of reads

    @classmethod
    async def open(
        cls,
        cfg: BufferConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        connect: Connect = sqlite3_connect,
        check_at_open: bool = True,
        dead_letters_max: int | None = None,
        elapsed: Callable[[], float] | None = None,
        steps: ClockSteps | None = None,
    ) -> Self:
        """Start the writer thread, check/migrate the file, release stale leases.

        Raises BufferOpenError with a message a technician can act on. A corrupt file is
        quarantined and salvaged (an alarm row is queued), not raised.
        """
        self = cls(cfg, clock=clock, rng=rng, connect=connect, check_at_open=check_at_open,
                   dead_letters_max=dead_letters_max, elapsed=elapsed, steps=steps)
        self._writer.start()
        try:
            await self._writer.submit(Store.open, "open", in_transaction=False)
        except BaseException:
            await self._writer.stop(Store.close)
            raise
        self._next_read_id = await self._call(ops.last_read_id, "last_read_id") + 1
        self._reads_ready.set()
        self._events_ready.set()
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Commit what is queued, checkpoint, close the connection and end the thread."""
        await self._writer.stop(Store.close)

    @property
    def generation(self) -> str:
        return self._store.generation

    @property
    def disk_full(self) -> bool:
        """The last write found the disk full (cheap: no query; see stats() for details)."""
        return self._store.disk_full

    @property
    def transactions(self) -> int:
        """Transactions committed since open (group commit: one per batch of requests)."""
        return self._store.transactions

    async def _call(self, fn: Callable[[Store], Any], name: str, rows: int = 1, *,
                    group_wait: bool = True) -> Any:
        return await self._writer.submit(fn, name, rows=rows, group_wait=group_wait)

    # ------------------------------------------------------------------ reads stage

    async def put_reads(self, reads: Sequence[Read]) -> None:
        """Store reads; returns once they are committed (durable with synchronous=FULL).

        Raises BufferFullError (backpressure policy, buffer full) or BufferDiskFullError (a
        subclass: the disk is full); nothing of the call was stored then.
        """
        rows = [encode_read(r) for r in reads]
        if not rows:
            return
        last: int = await self._call(lambda s: ops.put_reads(s, rows), "put_reads", len(rows))
        self._next_read_id = last + 1
        self._reads_ready.set()

    @property
    def next_read_id(self) -> int:
        """The id the next read stored gets (read ids are dense: 1, 2, 3 ... in arrival order)."""
        return self._next_read_id

    async def put_batch(self, first_id: int, count: int, reads: Sequence[tuple[int, Read]],
                        events: Sequence[OutEvent]) -> None:
        """Store one batch of ``count`` reads numbered from ``first_id`` (``next_read_id``):
        ``reads`` (id, read) wait as reads, the others are committed as their ``events``,
        formed beforehand with their ids; one transaction (issue 12). Raises like put_reads;
        then nothing was stored and the same batch, with the same ids, can be put again."""
        rows = [(i, encode_read(r)) for i, r in reads]
        evs = list(events)
        _check_events(evs)
        try:
            last: int = await self._call(
                lambda s: ops.put_batch(s, first_id, count, rows, evs), "put_batch",
                len(rows) + len(evs), group_wait=False)  # the ingest gathered it (its window)
        except ReadIdsOutOfStepError as exc:
            self._next_read_id = exc.next_read_id
            raise
        self._next_read_id = last + 1
        if rows:
            self._reads_ready.set()
        if evs:
            self._events_ready.set()

    async def take_reads(self, limit: int, *, after_id: int = 0) -> list[StoredRead]:
        """The oldest stored reads (id order), without removing them; ``after_id`` skips ahead."""
        self._reads_ready.clear()
        result: list[StoredRead] = await self._call(
            lambda s: ops.take_reads(s, limit, after_id), "take_reads")
        return result

    async def wait_for_reads(self) -> None:
        """Addition: wait until put_reads committed something since the last take_reads."""
        await self._reads_ready.wait()

    async def commit_events(
        self,
        read_ids: Sequence[int],
        events: Sequence[OutEvent],
        state: Mapping[str, str | None] | None = None,
    ) -> None:
        """Atomically: delete the processed reads, queue the events, update the state."""
        _check_events(events)
        ids = list(read_ids)
        evs = list(events)
        st = dict(state) if state else None
        await self._call(lambda s: ops.commit_events(s, ids, evs, st), "commit_events",
                         len(ids) + len(evs))
        if evs:
            self._events_ready.set()

    async def put_events(self, events: Sequence[OutEvent]) -> list[int]:
        """Addition: queue messages that come from no read (status, alarms); returns their ids."""
        _check_events(events)
        evs = list(events)
        ids: list[int] = await self._call(lambda s: ops.put_events(s, evs), "put_events",
                                          len(evs))
        self._events_ready.set()
        return ids

    async def load_state(self, prefix: str = "") -> dict[str, str]:
        result: dict[str, str] = await self._call(lambda s: ops.load_state(s, prefix),
                                                  "load_state")
        return result

    # ------------------------------------------------------------------ outbox

    async def claim(self, limit: int, *, lease_s: float) -> list[Claimed]:
        """Lease up to ``limit`` rows: priority first, then oldest first."""
        self._events_ready.clear()
        result: list[Claimed] = await self._call(lambda s: ops.claim(s, limit, lease_s), "claim")
        return result

    async def wait_for_events(self) -> None:
        """Addition: wait until events were queued since the last claim (use a timeout too:
        expired leases make rows claimable again without any new event)."""
        await self._events_ready.wait()

    async def ack(self, ids: Sequence[int], *, document: int | None = None) -> None:
        """The broker confirmed these: delete them (one transaction for the whole list).
        ``document``: the frozen document that carried them (deleted with them)."""
        idl = list(ids)
        if idl:
            await self._call(lambda s: ops.ack(s, idl, document), "ack", len(idl))

    async def release(self, ids: Sequence[int], *, error: str | None = None) -> None:
        """Publishing failed: make them available again, count the attempt, keep the error."""
        idl = list(ids)
        if idl:
            await self._call(lambda s: ops.release(s, idl, error), "release", len(idl))
            self._events_ready.set()

    async def dead_letter(self, ids: Sequence[int], reason: str) -> int:
        """Move rows to dead_letters: kept and counted, never retried automatically. Returns
        how many moved: at the cap with ``dead_letter_policy: keep`` the rest stay in the
        outbox, held back for a lease period (see :func:`ops.dead_letter`)."""
        idl = list(ids)
        if not idl:
            return 0
        moved: int = await self._call(lambda s: ops.dead_letter(s, idl, reason), "dead_letter",
                                      len(idl))
        return moved

    async def stats(self) -> BufferStats:
        result: BufferStats = await self._call(ops.stats, "stats")
        return result

    # ------------------------------------------------------------------ frozen documents

    async def claim_frozen(
        self, *, lease_s: float, exclude: Sequence[int] = ()
    ) -> tuple[chain.FrozenDocument, list[Claimed]] | None:
        """Lease the oldest frozen document not on lease and not in ``exclude`` (documents the
        caller has in flight), with its rows (docs/provenance.md)."""
        ex = list(exclude)
        result: tuple[chain.FrozenDocument, list[Claimed]] | None = await self._call(
            lambda s: ops.claim_frozen(s, lease_s, ex), "claim_frozen")
        return result

    async def claim_next(
        self, limit: int, *, lease_s: float, exclude: Sequence[int] = ()
    ) -> tuple[chain.FrozenDocument | None, list[Claimed]]:
        """One request: ``claim_frozen`` if a document is available, else ``claim(limit)``."""
        self._events_ready.clear()
        ex = list(exclude)
        result: tuple[chain.FrozenDocument | None, list[Claimed]] = await self._call(
            lambda s: ops.claim_next(s, limit, lease_s, ex), "claim_next")
        return result

    async def freeze(self, ids: Sequence[int], build: chain.Build,
                     sign: chain.Sign | None = None) -> chain.FrozenDocument:
        """Freeze the next document of the chain carrying these (leased) rows: ``build`` gets
        the chain link and returns the exact bytes; one transaction with the head's advance."""
        idl = list(ids)
        doc: chain.FrozenDocument = await self._call(
            lambda s: ops.freeze(s, idl, build, sign), "freeze", len(idl))
        return doc

    async def unfreeze(self, ids: Sequence[int], why: str) -> None:
        """The documents of these rows can never be sent: a gap; the rows stay on lease."""
        idl = list(ids)
        await self._call(lambda s: ops.unfreeze(s, idl, why), "unfreeze", len(idl))

    async def chain_head(self) -> chain.ChainHead | None:
        result: chain.ChainHead | None = await self._call(ops.chain_head, "chain_head")
        return result


def _check_events(events: Sequence[OutEvent]) -> None:
    for e in events:
        if e.priority < 0:
            raise ValueError(f"event priority must be >= 0, got {e.priority}")
        if not isinstance(e.payload, str) or not isinstance(e.kind, str):
            raise TypeError("event kind and payload must be str")
