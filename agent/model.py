"""Values that flow between the layers. Frozen slots dataclasses: cheap, hashable, immutable."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TagRead:
    """One UHF tag observation as the reader reported it."""

    reader: str
    epc: str  # upper-case hex as read (PC-word length), no separators
    read_at: datetime  # tz-aware UTC, stamped by the agent when the frame was decoded
    antenna: int | None  # 1-based port number
    rssi_dbm: float | None
    pc: int | None = None  # Gen2 protocol-control word, when the reader reports it
    phase: int | None = None
    frequency_khz: int | None = None
    clock_synced: bool = True  # was the system clock NTP-synchronised at read_at
    # Driver-specific fields, carried into the event's read detail as they are: ("tea:..",
    # value) pairs, e.g. ("tea:readerClockOffsetS", -3600.2). Usually empty.
    extra: tuple[tuple[str, float | int | str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BarcodeRead:
    """One barcode scan: the raw bytes between framing, with the AIM identifier split off."""

    reader: str
    data: bytes  # exactly as received, without prefix/terminator; GS (0x1D) kept
    symbology: str | None  # AIM symbology identifier such as "]d2", when the scanner sent one
    read_at: datetime
    clock_synced: bool = True


Read = TagRead | BarcodeRead
