"""What the supervisor needs from a driver: one object per connection attempt.

Settings changed while a reader runs (output power today) are *requested*, not sent: the
caller gets a future, the driver applies the change between two inventory rounds (a reader
handles one command at a time; a command sent during an inventory is lost or answered out of
order), and the future ends with what the reader reports afterwards, or with the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from agent.clock import SyncState, utcnow
from agent.model import Read
from agent.readers.session import FrameSession, ReaderCommandError, ReaderError
from agent.readers.status import ReaderStatus

C = TypeVar("C")

log = logging.getLogger(__name__)

# Output power: one dBm for every port, or {port (1-based): dBm} (R2000 only, ports 1-8).
Power = int | dict[int, int]


class SettingNotSupported(ReaderError):
    """This reader (or its mode) cannot take the setting at all."""


class ReaderGone(ReaderError):
    """The connection ended before a requested setting was applied."""


@dataclass(frozen=True, slots=True)
class PowerResult:
    """What the reader reports after a power request (per port, 1-based order)."""

    reported: tuple[float, ...]  # whole dBm but for an LLRP table entry such as 30.25
    written: bool  # False: the reader already had it (nothing written to its flash/EEPROM)


def power_text(power: Power | Sequence[float]) -> str:
    if isinstance(power, int):
        return f"{power} dBm"
    if isinstance(power, dict):
        return "{" + ", ".join(f"{p}: {d}" for p, d in sorted(power.items())) + "} dBm"
    return f"{list(power)} dBm"


class SettingsQueue:
    """Power requests from other tasks; the driver takes them between rounds."""

    def __init__(self) -> None:
        self._items: deque[tuple[Power, asyncio.Future[PowerResult]]] = deque()

    def put(self, power: Power) -> asyncio.Future[PowerResult]:
        fut: asyncio.Future[PowerResult] = asyncio.get_running_loop().create_future()
        self._items.append((power, fut))
        return fut

    def __bool__(self) -> bool:
        return bool(self._items)

    def take(self) -> tuple[Power, asyncio.Future[PowerResult]] | None:
        """The oldest request whose caller still waits (a cancelled one is skipped)."""
        while self._items:
            power, fut = self._items.popleft()
            if not fut.done():
                return power, fut
        return None

    def fail_all(self, exc: BaseException) -> None:
        while self._items:
            _, fut = self._items.popleft()
            if not fut.done():
                fut.set_exception(exc)


def rejected(exc: BaseException) -> asyncio.Future[PowerResult]:
    fut: asyncio.Future[PowerResult] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


class DriverBase(Generic[C]):
    """What every driver keeps: its reader's config and status, the clock that stamps reads,
    and whether that clock is NTP-synchronised (one instance per connection attempt)."""

    def __init__(
        self,
        cfg: C,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        self.cfg = cfg
        self.status = status
        self._now = now
        self._sync = sync or SyncState()
        self._requests = SettingsQueue()
        # What the reader reported of its settings after configure() (LLRP: GET_ROSPECS of
        # our ROSpec), for the confirmation of a settings change; None: it cannot tell.
        self.read_back: dict[str, Any] | None = None
        self.read_back_wanted = False  # set by the supervisor while a change waits for it

    # -- settings requested by other tasks, applied by the driver between two rounds ----------

    def _check_power(self, power: Power) -> Power:
        """The power in the form this reader takes; ValueError / SettingNotSupported."""
        raise SettingNotSupported(f"reader {self._name()}: output power cannot be set")

    async def _apply_power(self, power: Power) -> PowerResult:
        """Write ``power`` if the reader reports another value, then verify (driver's job)."""
        raise SettingNotSupported(f"reader {self._name()}: output power cannot be set")

    def _name(self) -> str:
        return str(getattr(self.cfg, "name", "?"))

    def request_power(self, power: Power) -> asyncio.Future[PowerResult]:
        try:
            power = self._check_power(power)
        except (ValueError, SettingNotSupported) as exc:
            return rejected(exc)
        fut = self._requests.put(power)
        self._requested()
        return fut

    def _requested(self) -> None:
        """A request was queued: a driver that waits for the reader between rounds without a
        timer (LLRP: its reports and keepalives) stops waiting here to take it."""
        return None

    def fail_requests(self, exc: BaseException) -> None:
        self._requests.fail_all(exc)

    async def goodbye(self) -> None:
        """Nothing to tidy on most readers (LLRP overrides it)."""
        return None

    async def _apply_requested(self) -> None:
        """Apply every queued request (call it only between two inventory rounds).

        A refusal ends that request's future with the reader's error and reading goes on; a
        failed link ends it with ReaderGone and re-raises, so the supervisor reconnects."""
        while (item := self._requests.take()) is not None:
            power, fut = item
            try:
                result = await self._apply_power(power)
            except ReaderCommandError as exc:
                self.status.power_error = str(exc)
                log.error("reader %s: %s", self._name(), exc)  # noqa: TRY400
                fut.set_exception(exc)
            except Exception as exc:
                # The link failed: the caller hears it, then the supervisor (same exception).
                fut.set_exception(ReaderGone(f"connection lost while setting power: {exc}"))
                raise
            except BaseException:
                fut.cancel()
                raise
            else:
                fut.set_result(result)


class ReaderDriver(Protocol):
    session: FrameSession[Any]  # its decoder's stats go into the reader status
    read_back_wanted: bool  # a settings change waits for the reader's read-back

    async def goodbye(self) -> None:
        """Leave the reader tidy before the link closes (the agent stops, or new settings
        reconnect it): LLRP stops its ROSpec and closes the connection; bounded, never raises
        for a reader that is already gone. Most drivers have nothing to do."""
        ...

    async def identify(self) -> str:
        """Ask the device who it is; a one-line description for the log (firmware, model)."""
        ...

    async def configure(self) -> None:
        """Apply the configuration (power, address checks, ...) after identify()."""
        ...

    def reads(self) -> AsyncIterator[Read]:
        """Run forever, yielding reads; ends only by raising (LinkError, ReaderError)."""
        ...

    def request_power(self, power: Power) -> asyncio.Future[PowerResult]:
        """Queue an output-power change; applied between inventory rounds and verified.

        The future ends with PowerResult, or ReaderCommandError (refused, named),
        SettingNotSupported, ValueError (out of range) or ReaderGone (connection closed)."""
        ...

    def fail_requests(self, exc: BaseException) -> None:
        """The connection is closing: end every request still queued with ``exc``."""
        ...
