"""Barcode scanner in serial line mode (protocol doc §4): ``[AIM ID]data`` + terminator.

Each decode goes out as ``]Xm`` (AIM symbology identifier, ISO/IEC 15424) + data + terminator
(CR, CR LF, or nothing: then the host frames scans by an inter-character timeout, so the
scanner keeps a quiet gap after each one). GS1 element strings keep GS (0x1D) after
variable-length AIs; the leading FNC1 is not sent, the identifier (``]C1``, ``]d2`` ...) says it.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

from readersim.device import Clock, Emission, Job, ScheduledDevice
from readersim.faults import DeviceFaults

GS = b"\x1d"
TERMINATORS: dict[str, bytes] = {"cr": b"\r", "crlf": b"\r\n", "none": b""}


@dataclass(frozen=True, slots=True)
class Scan:
    """One barcode: its AIM identifier (``]d2``; empty if none) and the data bytes."""

    aim: str
    data: bytes


DEFAULT_SCANS: tuple[Scan, ...] = (
    # GS1 DataMatrix: (01) GTIN (17) expiry (10) batch <GS> (21) serial
    Scan("]d2", b"010950600013435217201231" + b"10ABC123" + GS + b"21SN0001"),
    # GS1-128 SSCC: (00) 106141411234567897
    Scan("]C1", b"00106141411234567897"),
    # EAN-13 (Bookland)
    Scan("]E0", b"9781492053743"),
    # plain Code 128
    Scan("]C0", b"ABC-12345"),
    # GS1-128 with a variable-length AI before a fixed one: (01)(10)<GS>(15)
    Scan("]C1", b"0107032069804988" + b"100329" + GS + b"15210526"),
)


def parse_code(text: str) -> Scan:
    """``"]d2010950...<GS>21SN0001"`` -> Scan. ``<GS>``, ``\\x1d`` and ``\\u001d`` mean GS."""
    for escape in ("<GS>", "\\x1d", "\\x1D", "\\u001d", "\\u001D"):
        text = text.replace(escape, "\x1d")
    if text.startswith("]"):
        if len(text) < 4:
            raise ValueError(f"AIM identifier needs ]Xm and data: {text!r}")
        return Scan(text[:3], text[3:].encode("latin-1"))
    if not text:
        raise ValueError("empty barcode")
    return Scan("", text.encode("latin-1"))


@dataclass(frozen=True, slots=True, kw_only=True)
class BarcodeConfig:
    scans: tuple[Scan, ...] = DEFAULT_SCANS
    terminator: Literal["cr", "crlf", "none"] = "crlf"
    send_aim: bool = True
    interval_s: float = 1.0  # from one scan to the next
    first_scan_s: float = 0.5  # after the epoch
    quiet_gap_s: float = 0.15  # terminator "none": silence after a scan (timeout framing)
    order: Literal["cycle", "random"] = "cycle"
    baud: int = 9600
    saturate: bool = False  # scans back to back (still with the quiet gap if unterminated)

    def __post_init__(self) -> None:
        if not self.scans:
            raise ValueError("a scanner needs at least one code to scan")
        if self.terminator not in TERMINATORS:
            raise ValueError("terminator must be cr, crlf or none")
        if self.interval_s < 0 or self.quiet_gap_s < 0:
            raise ValueError("times must be >= 0")


class BarcodeDevice(ScheduledDevice):
    """A scanner that scans the configured codes at a steady rate; host input is ignored."""

    def __init__(
        self,
        config: BarcodeConfig,
        *,
        clock: Clock,
        rng: random.Random,
        faults: DeviceFaults | None = None,
        epoch_s: float | None = None,
    ) -> None:
        super().__init__(clock=clock, rng=rng, baud=config.baud, faults=faults, epoch_s=epoch_s)
        self.config = config
        self._next = 0
        self._busy_until_s = self.epoch_s + config.first_scan_s

    def frame(self, scan: Scan) -> bytes:
        """The bytes of one scan on the wire."""
        aim = scan.aim.encode("ascii") if self.config.send_aim else b""
        return aim + scan.data + TERMINATORS[self.config.terminator]

    def _parse(self, data: bytes, now_s: float) -> list[bytes]:
        self.stats.bytes_discarded += len(data)
        return []

    def _start(self, command: bytes, t0_s: float) -> Job:  # pragma: no cover - no commands
        return iter(())

    def _auto_job(self, t0_s: float) -> Job | None:
        return self._scan(t0_s)

    def _scan(self, t0: float) -> Generator[Emission, None, None]:
        cfg = self.config
        if cfg.order == "random":
            scan = self._rng.choice(cfg.scans)
        else:
            scan = cfg.scans[self._next % len(cfg.scans)]
            self._next += 1
        frame = self.frame(scan)
        yield Emission(t0, frame)
        interval_s = 0.0 if cfg.saturate else cfg.interval_s
        quiet_s = 0.0
        if cfg.terminator == "none":
            # Timeout framing: the line must stay quiet after the scan has gone out.
            quiet_s = 10 * len(frame) / self._baud + cfg.quiet_gap_s
        self._busy_until_s = t0 + max(interval_s, quiet_s)
