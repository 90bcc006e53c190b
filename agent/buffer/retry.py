"""The pipeline's and the forwarder's view of the buffer: on a full disk, wait and retry.

A full disk must not end the agent: it is an expected condition, reported once by the buffer
(DISK FULL, disk_full in status and health). Reads stop being accepted (the ingest holds them
and the readers pause), while the pipeline and the forwarder keep draining what is stored:
their writes (turning reads into events, acks that delete delivered rows) are retried with
the *same* arguments until they fit, helped by the space reserve the buffer gives up.
Retrying the identical call keeps the pipeline's in-memory presence state consistent with
what it commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from agent.buffer.api import Buffer, BufferFullError, BufferStats, Claimed, OutEvent, StoredRead
from agent.buffer.chain import Build, ChainHead, FrozenDocument, Sign

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryWhenFull:
    def __init__(
        self,
        inner: Buffer,
        *,
        who: str,
        min_s: float = 0.2,
        max_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self._who = who
        self._min_s = min_s
        self._max_s = max_s
        self._sleep = sleep
        self.retries = 0

    @property
    def generation(self) -> str:
        return self._inner.generation

    @property
    def disk_full(self) -> bool:
        return self._inner.disk_full

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = self._min_s
        waited = False
        while True:
            try:
                result = await call()
            except BufferFullError as exc:
                if not waited:
                    log.warning("%s: %s waits for disk space (%s)", self._who, what, exc)
                    waited = True
                self.retries += 1
                await self._sleep(delay)
                delay = min(self._max_s, delay * 2)
                continue
            if waited:
                log.info("%s: %s went through again", self._who, what)
            return result

    async def put_reads(self, reads: Sequence[object]) -> None:  # pragma: no cover - unused
        raise TypeError("readers go through the ingest, which handles a full buffer itself")

    @property
    def next_read_id(self) -> int:  # pragma: no cover - unused
        raise TypeError("readers go through the ingest")

    async def put_batch(self, first_id: int, count: int, reads: Sequence[tuple[int, Any]],
                        events: Sequence[OutEvent]) -> None:  # pragma: no cover - unused
        raise TypeError("readers go through the ingest, which handles a full buffer itself")

    async def take_reads(self, limit: int) -> list[StoredRead]:
        return await self._inner.take_reads(limit)

    async def commit_events(
        self,
        read_ids: Sequence[int],
        events: Sequence[OutEvent],
        state: Mapping[str, str | None] | None = None,
    ) -> None:
        await self._retry("committing events",
                          lambda: self._inner.commit_events(read_ids, events, state))

    async def load_state(self, prefix: str = "") -> dict[str, str]:
        return await self._inner.load_state(prefix)

    async def claim(self, limit: int, *, lease_s: float) -> list[Claimed]:
        return await self._retry("claiming events",
                                 lambda: self._inner.claim(limit, lease_s=lease_s))

    async def ack(self, ids: Sequence[int], *, document: int | None = None) -> None:
        await self._retry("deleting delivered events",
                          lambda: self._inner.ack(ids, document=document))

    async def release(self, ids: Sequence[int], *, error: str | None = None) -> None:
        await self._retry("releasing events", lambda: self._inner.release(ids, error=error))

    async def dead_letter(self, ids: Sequence[int], reason: str) -> int:
        return await self._retry("moving events to dead letters",
                          lambda: self._inner.dead_letter(ids, reason))

    async def stats(self) -> BufferStats:
        return await self._inner.stats()

    async def claim_frozen(
        self, *, lease_s: float, exclude: Sequence[int] = ()
    ) -> tuple[FrozenDocument, list[Claimed]] | None:
        return await self._retry("claiming a frozen document",
                                 lambda: self._inner.claim_frozen(lease_s=lease_s,
                                                                  exclude=exclude))

    async def claim_next(
        self, limit: int, *, lease_s: float, exclude: Sequence[int] = ()
    ) -> tuple[FrozenDocument | None, list[Claimed]]:
        return await self._retry("claiming events", lambda: self._inner.claim_next(
            limit, lease_s=lease_s, exclude=exclude))

    async def freeze(self, ids: Sequence[int], build: Build,
                     sign: Sign | None = None) -> FrozenDocument:
        return await self._retry("freezing a document",
                                 lambda: self._inner.freeze(ids, build, sign))

    async def unfreeze(self, ids: Sequence[int], why: str) -> None:
        await self._retry("unfreezing a document", lambda: self._inner.unfreeze(ids, why))

    async def chain_head(self) -> ChainHead | None:
        return await self._inner.chain_head()

    async def aclose(self) -> None:
        await self._inner.aclose()
