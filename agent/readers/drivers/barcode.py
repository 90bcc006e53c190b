"""Barcode scanner driver: serial line mode (reader-protocols.md §4).

Scans end at the configured terminator and/or after ``idle_flush_ms`` of silence (BarcodeFramer,
driven by FrameSession's idle resync). The AIM symbology identifier is split off, GS (0x1D) and
everything else is kept: the read carries the raw bytes; interpretation (biip) is the pipeline's.

A scanner answers no command, so identify() only reports the line settings, and a quiet scanner
is normal: silence never resets the connection (a vanished port still does: EOF / EIO).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TypeVar

from agent.clock import SyncState, utcnow
from agent.config import BarcodeConfig
from agent.model import BarcodeRead, barcode_read
from agent.readers.codecs.barcode import BarcodeFramer, Scan
from agent.readers.drivers.base import DriverBase, Power, SettingNotSupported
from agent.readers.link import Link
from agent.readers.session import FrameSession, ReaderTimeout
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)
C = TypeVar("C")

# How long the session waits for bytes when no scan is pending, per loop turn.
_POLL_S = 3600.0


class ScannerBase(DriverBase[C]):
    """What every barcode scanner driver shares: nothing to configure, no output power, and
    its scans become reads through ``scan_reads`` (subclasses set ``session``)."""

    session: FrameSession[Scan]

    async def configure(self) -> None:
        return None

    def _check_power(self, power: Power) -> Power:
        raise SettingNotSupported(f"reader {self._name()} is a barcode scanner: no output power")

    def reads(self) -> AsyncIterator[BarcodeRead]:
        # scan_reads itself, not a generator around it: one hop less per scan (issue 12)
        return scan_reads(self.session, self._name(), self.status, self._now, self._sync)


class BarcodeReader(ScannerBase[BarcodeConfig]):
    """One connection to one barcode scanner (serial line mode)."""

    def __init__(
        self,
        cfg: BarcodeConfig,
        link: Link,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        super().__init__(cfg, status, now=now, sync=sync)
        idle_s = cfg.idle_flush_ms / 1000 if cfg.idle_flush_ms is not None else None
        self._framer = BarcodeFramer(
            cfg.terminator_bytes, idle_s=idle_s, max_len=cfg.max_length, aim=cfg.aim
        )
        # Without timeout framing a fragment left pending for this long is dropped (counted):
        # the scanner's terminator got lost on the line.
        self.session: FrameSession[Scan] = FrameSession(
            link, self._framer, idle_resync_s=idle_s if idle_s is not None else 1.0
        )

    async def identify(self) -> str:
        self.status.model = "barcode scanner"
        term = self.cfg.terminator
        flush = f", idle flush {self.cfg.idle_flush_ms:g} ms" if self.cfg.idle_flush_ms else ""
        aim = ", AIM identifiers" if self.cfg.aim else ""
        return f"barcode scanner (line mode, terminator {term}{flush}{aim})"


async def scan_reads(
    session: FrameSession[Scan],
    name: str,
    status: ReaderStatus,
    now: Callable[[], datetime],
    sync: SyncState,
) -> AsyncIterator[BarcodeRead]:
    """Scans -> BarcodeReads, forever: the one path from a scanner's framer to the pipeline
    (serial line mode and USB keyboard wedge alike)."""
    while True:
        scan = session.frame_nowait()
        if scan is None:
            try:
                scan = await session.next_frame(_POLL_S)
            except ReaderTimeout:
                continue
        status.tag_frames += 1
        log.debug("reader %s: scan %s %r", name, scan.symbology or "-", scan.data)
        yield barcode_read(name, scan.data, scan.symbology, now(), sync.synced())
