"""What every simulated device shares: a pure, clock-driven output schedule.

A device is fed the host's bytes and hands back the frames that are due. Work that takes time
(an inventory round, a scan every second) is a *job*: a generator of :class:`Emission` values,
each with the clock time at which the frame leaves the device. Jobs run one after another, like
the single command loop of a reader's firmware; commands that arrive while a job runs wait in a
short queue. Nothing here reads the real clock or sleeps: the clock is injected, so tests drive
time by hand and the server drives it with ``time.monotonic``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from readersim.faults import DeviceFaults

Clock = Callable[[], float]  # monotonic seconds


@dataclass(frozen=True, slots=True)
class Emission:
    """One frame and the clock time (seconds) at which the device sends it."""

    due_s: float
    frame: bytes


Job = Iterator[Emission]

IDLE_POLL_S = 0.01  # how soon an auto job that found nothing to do is tried again


@dataclass(slots=True)
class DeviceStats:
    """Counters of what the device saw on its input."""

    commands: int = 0
    bytes_discarded: int = 0
    bad_checksums: int = 0
    other_address: int = 0
    commands_dropped_busy: int = 0
    input_dropped_silent: int = 0


class Device(Protocol):
    """What the server needs from a simulated device."""

    @property
    def baud(self) -> int: ...

    @property
    def bad_vectors(self) -> tuple[bytes, ...]: ...

    def feed(self, data: bytes) -> list[bytes]: ...

    def poll(self, limit: int = 64) -> list[bytes]: ...

    def next_due_s(self) -> float | None: ...


@runtime_checkable
class HangsUp(Protocol):
    """A device that can end the connection itself (an LLRP reader's CLOSE_CONNECTION)."""

    def hangup_due_s(self) -> float | None:
        """Clock time at which the server closes the connection; None = never."""
        ...


class ScheduledDevice(ABC):
    """Base class: input parsing is the subclass's, the job schedule and fault windows are here.

    Subclasses implement :meth:`_parse` (bytes -> complete command frames addressed to us) and
    :meth:`_start` (command -> job). :meth:`_auto_job` lets a device act on its own (scan mode,
    saturation, a barcode scanner's stream of scans).
    """

    #: Frames with a deliberately wrong checksum, as published (protocol doc, [BAD]).
    BAD_VECTORS: tuple[bytes, ...] = ()

    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random,
        baud: int,
        faults: DeviceFaults | None = None,
        epoch_s: float | None = None,
        max_queued_commands: int = 8,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._baud = baud
        self._faults = faults if faults is not None else DeviceFaults()
        self.epoch_s = clock() if epoch_s is None else epoch_s
        self._max_queued = max_queued_commands
        self._queue: deque[bytes] = deque()
        self._current: Job | None = None
        self._peek: Emission | None = None
        self._busy_until_s = self.epoch_s
        self._mute_until_s = float("-inf")
        self._wake_s: float | None = None
        self.stats = DeviceStats()

    # -- the public face ------------------------------------------------------------------------

    @property
    def baud(self) -> int:
        """Line rate in baud (8N1): the server paces writes with it."""
        return self._baud

    @property
    def bad_vectors(self) -> tuple[bytes, ...]:
        return self.BAD_VECTORS

    def world_s(self, t_s: float) -> float:
        """Scenario time: seconds since the epoch (server start)."""
        return t_s - self.epoch_s

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the host; return the frames that are due now."""
        now = self._clock()
        if self._silent(now):
            self.stats.input_dropped_silent += len(data)
            self._abort()
            return []
        for command in self._parse(data, now):
            self.stats.commands += 1
            if len(self._queue) >= self._max_queued:
                self.stats.commands_dropped_busy += 1
                continue
            self._queue.append(command)
        return self.poll()

    def poll(self, limit: int = 64) -> list[bytes]:
        """Return up to ``limit`` frames whose time has come."""
        now = self._clock()
        if self._silent(now):
            self._abort()
            return []
        out: list[bytes] = []
        while len(out) < limit:
            if self._peek is None:
                self._peek = self._advance(now)
                if self._peek is None:
                    break
            if self._peek.due_s > now:
                break
            out.append(self._peek.frame)
            self._busy_until_s = max(self._busy_until_s, self._peek.due_s)
            self._peek = None
        return out

    def next_due_s(self) -> float | None:
        """Clock time of the next frame (or of the end of a silence), None when idle."""
        now = self._clock()
        if self._silent(now):
            return self._silence_end(now)
        if self._peek is None:
            self._peek = self._advance(now)
        return self._wake_s if self._peek is None else self._peek.due_s

    # -- for subclasses -------------------------------------------------------------------------

    @abstractmethod
    def _parse(self, data: bytes, now_s: float) -> list[bytes]:
        """Bytes from the host -> complete, valid command frames addressed to this device."""

    @abstractmethod
    def _start(self, command: bytes, t0_s: float) -> Job:
        """A job that answers ``command``, starting no earlier than ``t0_s``."""

    def _auto_job(self, t0_s: float) -> Job | None:
        """Work the device does on its own when idle (scan mode, saturation). None = idle.

        A job may set ``self._busy_until_s`` to hold the next job back (a round's minimum time).
        """
        return None

    def _on_abort(self) -> None:  # noqa: B027 - optional hook
        """Forget partial input (called when the device goes silent)."""

    def _mute_for(self, seconds: float, now_s: float) -> None:
        """Stop answering for a while (a reboot after a reset command)."""
        self._mute_until_s = max(self._mute_until_s, now_s + seconds)

    def _error_code(self, t_s: float) -> int | None:
        """An injected error reply for a command started at ``t_s``, if one is due."""
        return self._faults.error_code(self.world_s(t_s), self._rng)

    # -- internals ------------------------------------------------------------------------------

    def _silent(self, now_s: float) -> bool:
        return now_s < self._mute_until_s or self._faults.silent_at(self.world_s(now_s))

    def _silence_end(self, now_s: float) -> float:
        end = self._mute_until_s if now_s < self._mute_until_s else now_s
        window_end = self._faults.silence_end(self.world_s(end))
        return end if window_end is None else window_end + self.epoch_s

    def _abort(self) -> None:
        self._queue.clear()
        self._current = None
        self._peek = None
        self._wake_s = None
        self._on_abort()

    def _advance(self, now_s: float) -> Emission | None:
        self._wake_s = None
        idle_jobs = 0
        while True:
            if self._current is None:
                t0 = max(now_s, self._busy_until_s)
                if self._queue:
                    self._current = self._start(self._queue.popleft(), t0)
                else:
                    if t0 > now_s:  # the last job keeps the device busy: look again then
                        self._wake_s = t0
                        return None
                    if idle_jobs >= 2:  # auto jobs that emit nothing and take no time
                        self._wake_s = now_s + IDLE_POLL_S
                        return None
                    self._current = self._auto_job(t0)
                    if self._current is None:
                        return None
                    idle_jobs += 1
            emission = next(self._current, None)
            if emission is not None:
                return emission
            self._current = None
