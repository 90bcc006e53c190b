"""What the supervisor needs from a driver: one object per connection attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from agent.model import Read
from agent.readers.session import FrameSession


class ReaderDriver(Protocol):
    session: FrameSession[Any]  # its decoder's stats go into the reader status

    async def identify(self) -> str:
        """Ask the device who it is; a one-line description for the log (firmware, model)."""
        ...

    async def configure(self) -> None:
        """Apply the configuration (power, address checks, ...) after identify()."""
        ...

    def reads(self) -> AsyncIterator[Read]:
        """Run forever, yielding reads; ends only by raising (LinkError, ReaderError)."""
        ...
