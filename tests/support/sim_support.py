"""Helpers for the simulator tests: small frame decoders (the clock is tests.support.clock)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from serial import Serial

from tests.support.clock import FakeClock as FakeClock  # re-exported for the sim tests
from tests.support.sim import SimProcess as SimProcess


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


def read_a0_frames(port: Serial, count: int, timeout_s: float = 5.0) -> list[bytes]:
    """Read ``count`` A0 frames from a pyserial port (resyncing on noise)."""
    import time

    buf = b""
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < count:
        assert time.monotonic() < deadline, f"only {len(frames)} of {count} frames in time"
        buf += port.read(max(1, port.in_waiting))
        while len(buf) >= 2:
            start = buf.find(b"\xa0")
            if start < 0:
                buf = b""
                break
            buf = buf[start:]
            if len(buf) < 2 or len(buf) < buf[1] + 2:
                break
            frame = buf[: buf[1] + 2]
            if sum(frame) & 0xFF:
                buf = buf[1:]
                continue
            frames.append(frame)
            buf = buf[len(frame) :]
    return frames


class _Driven(Protocol):
    def poll(self, limit: int = 64) -> list[bytes]: ...

    def next_due_s(self) -> float | None: ...


def drive(dev: _Driven, clock: FakeClock, seconds: float) -> list[bytes]:
    """Move the clock from due time to due time for ``seconds``; collect every frame sent."""
    end = clock.now_s + seconds
    out = dev.poll()
    while (due := dev.next_due_s()) is not None and due <= end:
        clock.now_s = max(clock.now_s, due)
        out += dev.poll()
    clock.now_s = end
    return out + dev.poll()
