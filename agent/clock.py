"""Wall clock and whether it is NTP-synchronised (a Raspberry Pi has no RTC)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"
STA_UNSYNC = 0x0040  # <linux/timex.h>: clock not synchronised
TIME_ERROR = 5  # adjtimex() return value: clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (glibc, 64-bit and 32-bit longs alike): we only read
    # `status` and the return code; the tail is padding the kernel may write into.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def _load_adjtimex() -> Callable[[ctypes.Array[ctypes.c_char] | _Timex], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_Timex)]
    fn.restype = ctypes.c_int

    def call(tx: ctypes.Array[ctypes.c_char] | _Timex) -> int:
        return int(fn(ctypes.byref(tx)))

    return call


_adjtimex = _load_adjtimex()


def kernel_clock_synchronised() -> bool | None:
    """True/False from the kernel's adjtimex status; None when it cannot be asked."""
    if _adjtimex is None:
        return None
    tx = _Timex()  # modes = 0: read only
    rc = _adjtimex(tx)
    if rc < 0:
        return None
    return rc != TIME_ERROR and not (tx.status & STA_UNSYNC)


class SyncState:
    """Caches the synchronisation state; re-asks the kernel at most every ``ttl_s``.

    ``override`` lets config or tests force the answer (e.g. a gateway with a GPS clock).
    """

    def __init__(self, *, ttl_s: float = 5.0, override: bool | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._override = override
        self._monotonic = monotonic
        self._checked_at = -1e18
        self._value = True
        self._last_logged: bool | None = None

    def synced(self) -> bool:
        if self._override is not None:
            return self._override
        now = self._monotonic()
        if now - self._checked_at >= self._ttl_s:
            self._checked_at = now
            kernel = kernel_clock_synchronised()
            if kernel is None:
                # The kernel could not be asked (a seccomp filter, a non-Linux host). Fall back
                # to systemd-timesyncd's flag file; if that is absent too, we cannot vouch for
                # the clock, so events are marked unsynchronised rather than falsely trusted.
                kernel = os.path.exists(TIMESYNCD_FLAG)
            self._value = kernel
            if self._value != self._last_logged:
                if self._value:
                    log.info("system clock is NTP-synchronised")
                else:
                    log.warning("system clock is NOT synchronised: events are marked "
                                "clockSynced=false until NTP syncs")
                self._last_logged = self._value
        return self._value


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------- clock steps


def elapsed_clock() -> float:
    """Seconds on a clock that never steps: CLOCK_BOOTTIME (counts suspend too) or monotonic."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


def format_step(delta_s: float) -> str:
    """``+3h12m``, ``-45s``, ``+2.5s``: a step for a log line."""
    sign = "-" if delta_s < 0 else "+"
    a = abs(delta_s)
    if a < 60:
        return f"{sign}{a:.3g}s"
    total = round(a)
    d, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else "",
             f"{s}s" if s and not d and not h else ""]
    return sign + "".join(parts)


@dataclass(frozen=True, slots=True)
class ClockStep:
    """One detected step of the wall clock: ``delta_s`` = new wall time - old wall time."""

    seq: int  # 1, 2, ...: the step's place in the detector's history
    delta_s: float
    elapsed_s: float  # the elapsed clock when it was detected


@dataclass(slots=True)
class _Epoch:
    start: float  # elapsed clock; -inf for the first epoch
    end: float | None  # None: the current epoch
    offset: float  # wall - elapsed during the epoch


class ClockSteps:
    """Detects steps of the wall clock (NTP sync on a machine without RTC) and maps wall times
    stamped before a step onto the current clock.

    A step is a change of ``wall() - elapsed()`` by more than ``tolerance_s`` between two
    :meth:`poll` calls (slewing never gets near that between polls a few seconds apart). The
    detector is shared (pipeline and buffer poll it from different threads): each step is
    logged once, and every consumer applies the steps it has not seen yet
    (:meth:`steps_since`).

    :meth:`correction` tells, for a wall time stamped by someone else (a reader driver), how
    much to add to express it on the current clock: the latest *epoch* (stretch of time
    between steps) in which the stamp is plausible wins. See docs/pipeline.md for the limits.
    """

    def __init__(self, *, wall: Callable[[], float] = time.time,
                 elapsed: Callable[[], float] = elapsed_clock, tolerance_s: float = 2.0,
                 keep: int = 16, what: str = "presence timing and buffer ages corrected") -> None:
        self._wall = wall
        self._elapsed = elapsed
        self.tolerance_s = tolerance_s
        self._keep = keep
        self._what = what
        self._lock = threading.Lock()
        self._epochs: list[_Epoch] = []
        self._last_elapsed = -math.inf
        self._steps: list[ClockStep] = []
        self.seq = 0  # steps detected so far

    def poll(self) -> float:
        """Read the wall clock, detect a step since the previous poll; returns the wall time."""
        with self._lock:
            w = self._wall()
            e = self._elapsed()
            off = w - e
            if not self._epochs:
                self._epochs.append(_Epoch(-math.inf, None, off))
            else:
                cur = self._epochs[-1]
                delta = off - cur.offset
                if abs(delta) > self.tolerance_s:
                    # It happened somewhere between the previous poll and this one: the old
                    # epoch may have lasted until now, the new one may have begun at that poll.
                    cur.end = e
                    self._epochs.append(_Epoch(self._last_elapsed, None, off))
                    if len(self._epochs) > self._keep:
                        del self._epochs[0]
                        self._epochs[0].start = -math.inf
                    self.seq += 1
                    self._steps.append(ClockStep(self.seq, delta, e))
                    del self._steps[:-self._keep]
                    log.warning("system clock stepped by %s (NTP sync?); %s",
                                format_step(delta), self._what)
                else:
                    cur.offset = off  # follow slewing, so it never adds up to a false step
            self._last_elapsed = e
            return w

    def steps_since(self, seq: int) -> list[ClockStep]:
        """Steps detected after step number ``seq`` (0: all that are remembered)."""
        with self._lock:
            return [s for s in self._steps if s.seq > seq]

    def correction(self, wall_t: float) -> float:
        """What to add to ``wall_t`` (stamped by this machine's wall clock at some past moment)
        to express it on the clock as of the latest :meth:`poll`; 0.0 when no step happened."""
        with self._lock:
            if len(self._epochs) < 2:
                return 0.0
            slack = self.tolerance_s
            current = self._epochs[-1].offset
            for ep in reversed(self._epochs):
                at = wall_t - ep.offset  # the elapsed clock at the stamp, were it of this epoch
                end = self._last_elapsed if ep.end is None else ep.end
                if ep.start - slack <= at <= end + slack:
                    return current - ep.offset
            return 0.0  # after "now" on every epoch: cannot tell, leave it


_system_steps: ClockSteps | None = None
_system_lock = threading.Lock()


def system_clock_steps() -> ClockSteps:
    """The process-wide detector on the real clocks (time.time against CLOCK_BOOTTIME)."""
    global _system_steps
    with _system_lock:
        if _system_steps is None:
            _system_steps = ClockSteps()
        return _system_steps


def steps_for(clock: Callable[[], float], elapsed: Callable[[], float] | None,
              steps: ClockSteps | None) -> ClockSteps | None:
    """The detector a component with wall clock ``clock`` should use: the one given; one on
    ``clock`` against ``elapsed``; the shared one when ``clock`` is the real ``time.time``;
    else none (an injected fake clock that jumps at will: tests that do not model steps)."""
    if steps is not None:
        return steps
    if elapsed is not None:
        return ClockSteps(wall=clock, elapsed=elapsed)
    if clock is time.time:
        return system_clock_steps()
    return None
