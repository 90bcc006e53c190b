"""Barcode scanners in serial line mode: framing by terminator and by inter-character timeout.

Source: docs reader-protocols.md §4.1 (framing) and §4.2 (AIM symbology identifiers, ISO/IEC
15424). Pure: bytes in, frozen dataclasses out; never raises on line noise.

    # [Prefix:configured][AIM id: "]" Code Modifier][Data: GS 0x1D kept][Terminator:configured]
    #                                                                        (§4.1, §4.2)

A scan ends at the configured terminator (CR, LF, CRLF or any byte string), or when the line has
been quiet for ``idle_s`` (scanners configured without a suffix). Nothing but the terminator is
stripped: GS1 data carries GS (0x1D) between variable-length fields (§4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.readers.codecs.base import DecoderStats

CR = b"\r"
LF = b"\n"
CRLF = b"\r\n"
GS = b"\x1d"
DEFAULT_IDLE_S = 0.1  # §4.1: flush on an inter-character timeout of 50-100 ms
DEFAULT_MAX_LEN = 4096  # a GS1 DataMatrix holds at most 3,116 characters

@dataclass(frozen=True, slots=True)
class Scan:
    """One decode as the scanner sent it: the AIM identifier split off, GS kept, no terminator."""

    data: bytes
    symbology: str | None  # AIM symbology identifier such as "]d2", when the scanner sent one


def _is_alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def split_aim(raw: bytes) -> tuple[str | None, bytes]:
    """``]`` + code character (a letter) + modifier (§4.2) -> ("]d2", rest).

    The system-expansion code ``Y`` has a digit n then n more modifier characters (ISO/IEC 15424).
    Anything else is left untouched: (None, raw).
    """
    if len(raw) < 3 or raw[0] != 0x5D or not (chr(raw[1]).isascii() and chr(raw[1]).isalpha()):
        return None, raw
    size = 1
    if raw[1] == 0x59 and 0x30 <= raw[2] <= 0x39:  # "Y"
        size = raw[2] - 0x30 + 1
    end = 2 + size
    if len(raw) < end or not all(_is_alnum(b) for b in raw[2:end]):
        return None, raw
    return raw[:end].decode("ascii"), raw[end:]


class BarcodeFramer:
    """Line-mode framer: ``feed(data, now_s)`` -> scans; ``flush_idle(now_s)`` ends a scan after
    ``idle_s`` of silence. Works inside FrameSession too (``resync()`` = the line went idle).

    ``max_len`` caps a scan: a longer one is dropped whole and counted in ``stats.oversize``;
    at most ``max_len + len(terminator) - 1`` bytes are ever pending.
    """

    __slots__ = (
        "_buf",
        "_last_rx_s",
        "_skipping",
        "aim",
        "idle_s",
        "max_len",
        "prefix",
        "stats",
        "terminator",
    )

    def __init__(
        self,
        terminator: bytes | None = CR,
        *,
        idle_s: float | None = DEFAULT_IDLE_S,
        max_len: int = DEFAULT_MAX_LEN,
        aim: bool = True,
        prefix: bytes = b"",
    ) -> None:
        if terminator is not None and not terminator:
            raise ValueError("terminator is empty; pass None for timeout framing only")
        if terminator is None and idle_s is None:
            raise ValueError("a scan needs a terminator or an idle timeout to end")
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        self.terminator = terminator
        self.idle_s = idle_s
        self.max_len = max_len
        self.aim = aim
        self.prefix = prefix
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._last_rx_s: float | None = None
        self._skipping = False  # inside an oversize scan: drop bytes until it ends

    def feed(self, data: bytes, now_s: float | None = None) -> list[Scan]:
        out: list[Scan] = []
        if now_s is not None:
            out += self.flush_idle(now_s)  # what was pending ended before these bytes came
            if data:
                self._last_rx_s = now_s
        elif data:
            self._last_rx_s = None  # bytes of unknown age: no idle judgement until timed bytes
        if not data:
            return out
        self.stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        term = self.terminator
        if term is not None:
            start = 0
            while (i := buf.find(term, start)) >= 0:
                piece = bytes(buf[start:i])
                start = i + len(term)
                if self._skipping:
                    self._skipping = False
                    self.stats.bytes_discarded += len(piece)
                    continue
                scan = self._emit(piece)
                if scan is not None:
                    out.append(scan)
            del buf[:start]
        keep = len(term) - 1 if term is not None else 0  # a terminator split across reads
        if len(buf) > self.max_len + keep or (self._skipping and len(buf) > keep):
            if not self._skipping:
                self._skipping = True
                self.stats.oversize += 1
            drop = len(buf) - keep
            self.stats.bytes_discarded += drop
            del buf[:drop]
        return out

    def flush_idle(self, now_s: float) -> list[Scan]:
        """End the pending scan if the line has been quiet for ``idle_s`` (a no-op without it)."""
        last = self._last_rx_s
        if self.idle_s is None or last is None or now_s - last < self.idle_s:
            return []
        return self.resync()

    def resync(self) -> list[Scan]:
        """The line went idle: whatever is pending is a whole scan (scanner without a suffix).

        With timeout framing off (``idle_s=None``) a pending fragment without its terminator is
        dropped instead, and counted in ``stats.partial_timeouts``.
        """
        piece = bytes(self._buf)
        self._buf.clear()
        if self._skipping:
            self._skipping = False
            self.stats.bytes_discarded += len(piece)
            return []
        if self.idle_s is None:
            if piece:
                self.stats.partial_timeouts += 1
                self.stats.bytes_discarded += len(piece)
            return []
        scan = self._emit(piece)
        return [] if scan is None else [scan]

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _emit(self, piece: bytes) -> Scan | None:
        if self.prefix and piece.startswith(self.prefix):
            piece = piece[len(self.prefix) :]
        if not piece:
            return None  # e.g. CR CR: nothing was scanned
        if len(piece) > self.max_len:
            self.stats.oversize += 1
            self.stats.bytes_discarded += len(piece)
            return None
        symbology, data = split_aim(piece) if self.aim else (None, piece)
        if not data:
            # An AIM identifier and nothing after it ("]A0"): no scan, line noise or a
            # scanner sending its prefix alone; counted, as every byte not turned into a scan
            self.stats.bytes_discarded += len(piece)
            return None
        self.stats.frames += 1
        return Scan(data, symbology)
