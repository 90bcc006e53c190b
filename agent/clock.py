"""Wall clock and whether it is NTP-synchronised (a Raspberry Pi has no RTC)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
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
