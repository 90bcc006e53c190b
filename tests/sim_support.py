"""Helpers for the simulator tests: a hand-driven clock and small frame decoders."""

from __future__ import annotations

from dataclasses import dataclass


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def h(text: str) -> bytes:
    """``h("a0 03 01 72 ea")`` -> bytes."""
    return bytes.fromhex(text)


def a0_frames(stream: bytes) -> list[bytes]:
    """Split a well-formed A0 byte stream into frames, checking every checksum."""
    frames = []
    i = 0
    while i < len(stream):
        assert stream[i] == 0xA0, f"no head at {i}: {stream[i:].hex(' ')}"
        frame = stream[i : i + stream[i + 1] + 2]
        assert sum(frame) & 0xFF == 0, f"bad checksum: {frame.hex(' ')}"
        frames.append(frame)
        i += len(frame)
    return frames


@dataclass(frozen=True, slots=True)
class A0Tag:
    cmd: int
    freq_index: int
    antenna: int  # 1-based, 8-port encoding applied
    pc: int
    epc: bytes
    rssi_raw: int
    phase: int | None


def decode_a0_tag(frame: bytes) -> A0Tag:
    """Decode a real-time tag frame (§1.6), independent of the simulator's encoder."""
    assert sum(frame) & 0xFF == 0
    data = frame[4:-1]
    assert len(data) % 2 == 0, "tag frames have an even data length"
    pc = int.from_bytes(data[1:3], "big")
    n = 2 * (pc >> 11)
    epc = data[3 : 3 + n]
    rssi = data[3 + n]
    rest = data[4 + n :]
    return A0Tag(
        cmd=frame[3],
        freq_index=data[0] >> 2,
        antenna=(data[0] & 0x03) + (rssi >> 7) * 4 + 1,
        pc=pc,
        epc=epc,
        rssi_raw=rssi & 0x7F,
        phase=int.from_bytes(rest, "big") if rest else None,
    )


def mcrf4xx(data: bytes) -> int:
    """CRC-16/MCRF4XX written from the catalogue definition (poly 0x1021 reflected = 0x8408)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc
