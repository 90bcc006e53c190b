"""USB barcode scanners in keyboard-wedge (HID) mode: docs/readers.md "USB keyboard-wedge
scanners (HID)".

The link (InputLink) delivers the kernel's input_event records; KeyDecoder turns key presses
into text in the scanner's keyboard layout and frames it with the serial scanner's framer, and
the scans go out through the serial driver's ``scan_reads``: a GS1 code read by a HID scanner
and by a serial one becomes the same read, and so the same EPCIS event.

Like the serial scanner it answers no command and is quiet between scans, so silence never
resets the connection; an unplug (ENODEV/EIO) does, and the supervisor resolves the port
again (``usb:VID:PID``) on each connect.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from agent.clock import SyncState, utcnow
from agent.config import HidReaderConfig
from agent.readers.codecs.barcode import Scan
from agent.readers.codecs.hid import KeyDecoder
from agent.readers.drivers.barcode import ScannerBase
from agent.readers.link import Link
from agent.readers.session import FrameSession
from agent.readers.status import ReaderStatus

# Without an inter-key timeout, a scan whose terminator was lost is dropped (counted in
# partial_timeouts) after the keys have stopped this long.
_LOST_TERMINATOR_S = 1.0


class HidReader(ScannerBase[HidReaderConfig]):
    """One connection to one keyboard-wedge scanner."""

    def __init__(
        self,
        cfg: HidReaderConfig,
        link: Link,
        status: ReaderStatus,
        *,
        now: Callable[[], datetime] = utcnow,
        sync: SyncState | None = None,
    ) -> None:
        super().__init__(cfg, status, now=now, sync=sync)
        idle_s = cfg.inter_key_timeout_ms / 1000 if cfg.inter_key_timeout_ms else None
        self.link = link
        self.decoder = KeyDecoder(
            cfg.keymap, record_size=cfg.record_bytes, terminator=cfg.terminator,
            idle_s=idle_s, gs_substitute=cfg.gs_substitute, max_len=cfg.max_length,
            aim=cfg.aim,
        )
        self.session: FrameSession[Scan] = FrameSession(
            link, self.decoder, idle_resync_s=idle_s or _LOST_TERMINATOR_S
        )

    async def identify(self) -> str:
        cfg = self.cfg
        name = getattr(self.link, "device_name", None)
        self.status.model = f"keyboard-wedge scanner{f' ({name})' if name else ''}"
        grabbed = ", grabbed" if getattr(self.link, "grabbed", False) else ""
        timeout = (f", inter-key timeout {cfg.inter_key_timeout_ms:g} ms"
                   if cfg.inter_key_timeout_ms else "")
        return (f"{self.status.model}: keymap {cfg.keymap}, terminator {cfg.terminator}"
                f"{timeout}, GS as {cfg.gs_substitute}, {self.decoder.record_size}-byte "
                f"records{grabbed}")
