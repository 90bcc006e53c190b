"""Shared pieces of the pure frame decoders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class DecoderStats:
    """What a decoder saw on the line. Mutable on purpose: decoders count as they go."""

    frames: int = 0
    bytes_in: int = 0
    bytes_discarded: int = 0  # line noise skipped while hunting for a frame start
    bad_checksums: int = 0
    oversize: int = 0  # frames whose length field could not be right (or buffer over its cap)
    wrong_address: int = 0
    # partial frames abandoned because the line went quiet mid-frame (resync after an idle gap;
    # Chafon's 15 ms inter-byte rule, reader-protocols.md §2.2)
    partial_timeouts: int = 0
    # frames with a valid checksum that cannot be what the reader sent (wrong length for the
    # command, impossible field values, a command never sent): noise that passed the check
    implausible: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "bytes_discarded": self.bytes_discarded,
            "bad_checksums": self.bad_checksums,
            "oversize": self.oversize,
            "wrong_address": self.wrong_address,
            "partial_timeouts": self.partial_timeouts,
            "implausible": self.implausible,
        }


def to_header(buf: bytearray, pos: int, header: int, stats: DecoderStats) -> int:
    """The position of the next ``header`` byte at or after ``pos`` (``len(buf)`` if none);
    the bytes skipped are line noise, counted in ``stats.bytes_discarded``. The resync step
    of the decoders whose frames start with a fixed byte (A0 0xA0, Mercury 0xFF)."""
    nxt = buf.find(header, pos)
    if nxt < 0:
        nxt = len(buf)
    stats.bytes_discarded += nxt - pos
    return nxt
