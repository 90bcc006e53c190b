"""Request/response over a link for framed binary protocols, with idle resync."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from agent.readers.codecs.base import DecoderStats
from agent.readers.link import Link, LinkError

log = logging.getLogger(__name__)

F = TypeVar("F")


class ReaderError(Exception):
    """An expected reader failure: the supervisor reopens the reader with backoff."""


class ReaderTimeout(ReaderError):
    pass


class ReaderSilent(ReaderError):
    """No byte for the configured silence time during inventory."""


class ReaderCommandError(ReaderError):
    pass


class FrameDecoder(Protocol[F]):
    stats: DecoderStats

    def feed(self, data: bytes) -> list[F]: ...  # never raises on line noise

    def resync(self) -> list[F]: ...

    @property
    def pending(self) -> int: ...


class FrameSession(Generic[F]):
    """One request in flight; frames that are not the awaited reply go to ``on_unsolicited``.

    ``idle_resync_s``: if bytes of a partial frame sit in the decoder and the line stays quiet
    this long, the partial frame can never complete (its length byte was noise): resync.
    """

    def __init__(
        self,
        link: Link,
        decoder: FrameDecoder[F],
        *,
        idle_resync_s: float = 0.05,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.link = link
        self.decoder = decoder
        self._frames: deque[F] = deque()
        self._idle_resync_s = idle_resync_s
        self._clock = clock or asyncio.get_running_loop().time
        self.last_rx_s = self._clock()

    def frame_nowait(self) -> F | None:
        """A frame already decoded, if there is one (no wait, no coroutine: a busy line's
        frames come in bunches, issue 12)."""
        return self._frames.popleft() if self._frames else None

    async def next_frame(self, timeout_s: float) -> F:
        """The next decoded frame; ReaderTimeout if none within ``timeout_s``."""
        deadline = self._clock() + timeout_s
        while not self._frames:
            data = self.link.read_nowait()  # what it holds: no coroutine (issue 12)
            if data is None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise ReaderTimeout(f"no frame within {timeout_s:.2f} s")
                wait_s = (min(remaining, self._idle_resync_s) if self.decoder.pending
                          else remaining)
                data = await self.link.read_within(wait_s)
                if data is None:
                    if self.decoder.pending:
                        self._frames.extend(self.decoder.resync())
                    continue
            if not data:
                raise LinkError("port closed (EOF)")
            self.last_rx_s = self._clock()
            self._frames.extend(self.decoder.feed(data))
        return self._frames.popleft()

    async def send(self, data: bytes) -> None:
        await self.link.write(data)

    async def request(
        self,
        data: bytes,
        is_reply: Callable[[F], bool],
        *,
        timeout_s: float,
        on_other: Callable[[F], None] | None = None,
    ) -> F:
        await self.link.write(data)
        deadline = self._clock() + timeout_s
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ReaderTimeout(f"no reply within {timeout_s:.2f} s")
            frame = await self.next_frame(remaining)
            if is_reply(frame):
                return frame
            if on_other is not None:
                on_other(frame)
