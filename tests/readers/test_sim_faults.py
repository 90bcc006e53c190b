"""Line-fault transforms (pure) and fault flags end to end over a pty."""

from __future__ import annotations

import random
import time

import serial
from readersim.chafon import BAD_VECTORS_CHAFON
from readersim.faults import GarbageBurst, LineFaultInjector, LineFaults
from readersim.r2000 import BAD_VECTORS_A0, encode_frame

from tests.support.sim_support import SimProcess, decode_a0_tag, h, read_a0_frames

FRAME = encode_frame(1, 0x89, h("04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45"))


def injector(**faults: object) -> LineFaultInjector:
    return LineFaultInjector(
        LineFaults(**faults),  # type: ignore[arg-type]
        random.Random(5),
        bad_vectors=BAD_VECTORS_A0,
    )


def test_no_faults_pass_frames_through() -> None:
    chunks = injector().transform(FRAME)
    assert [c.data for c in chunks] == [FRAME]


def test_garbage_goes_before_the_intact_frame() -> None:
    inj = injector(garbage_probability=1.0, garbage_max_bytes=8)
    for _ in range(50):
        (chunk,) = inj.transform(FRAME)
        assert chunk.data.endswith(FRAME)
        assert 1 <= len(chunk.data) - len(FRAME) <= 8
    assert inj.stats.garbage_bytes > 50


def test_split_frames_rejoin() -> None:
    inj = injector(split_probability=1.0, split_gap_s=0.004)
    for _ in range(50):
        chunks = inj.transform(FRAME)
        assert 2 <= len(chunks) <= 3
        assert b"".join(c.data for c in chunks) == FRAME
        assert [c.gap_after_s for c in chunks[:-1]] == [0.004] * (len(chunks) - 1)
        assert chunks[-1].gap_after_s == 0.0


def test_dropped_byte_and_bad_checksum_break_the_frame() -> None:
    (dropped,) = injector(drop_byte_probability=1.0).transform(FRAME)
    assert len(dropped.data) == len(FRAME) - 1
    (bad,) = injector(bad_checksum_probability=1.0).transform(FRAME)
    assert bad.data[:-1] == FRAME[:-1]
    assert sum(bad.data) & 0xFF != 0


def test_documented_bad_vectors_are_inserted() -> None:
    inj = injector(bad_vector_probability=1.0)
    seen = set()
    for _ in range(30):
        (chunk,) = inj.transform(FRAME)
        assert chunk.data.endswith(FRAME)
        seen.add(chunk.data[: -len(FRAME)])
    assert seen == set(BAD_VECTORS_A0)
    assert all(sum(v) & 0xFF for v in seen)
    assert BAD_VECTORS_CHAFON  # the chafon device brings its own


def test_garbage_bursts_fire_once_at_their_time() -> None:
    inj = injector(
        bursts=(GarbageBurst(at_s=2.0, size_bytes=64), GarbageBurst(at_s=1.0, size_bytes=8))
    )
    assert inj.next_burst_s() == 1.0
    assert inj.due_bursts(0.5) == b""
    assert len(inj.due_bursts(1.5)) == 8
    assert inj.next_burst_s() == 2.0
    assert len(inj.due_bursts(5.0)) == 64
    assert inj.due_bursts(6.0) == b""
    assert inj.next_burst_s() is None


def test_faulty_saturated_line_still_carries_valid_frames() -> None:
    sim = SimProcess(
        "r2000",
        "--pty",
        "--saturate",
        "--tags",
        "5",
        "--garbage",
        "0.2",
        "--split",
        "0.3",
        "--drop-byte",
        "0.05",
        "--bad-checksum",
        "0.05",
        "--bad-vectors",
        "0.1",
    )
    try:
        path = sim.line()
        with serial.Serial(path, 115200, timeout=0.05) as port:
            port.write(h("a0 03 01 72 ea"))
            read_a0_frames(port, 5)
            data = b""
            end = time.monotonic() + 0.8
            while time.monotonic() < end:
                data += port.read(4096)
    finally:
        code, _ = sim.stop()
    assert code == 0
    assert any(bad in data for bad in BAD_VECTORS_A0)
    frames = []
    i = data.find(b"\xa0")
    while 0 <= i < len(data) - 1:  # resync: drop one byte on a bad frame
        frame = data[i : i + data[i + 1] + 2]
        if len(frame) == data[i + 1] + 2 and sum(frame) & 0xFF == 0:
            frames.append(frame)
            i += len(frame)
        else:
            i = data.find(b"\xa0", i + 1)
    tag_frames = [f for f in frames if f[1] == 0x13 and f[3] == 0x89]
    assert len(tag_frames) > 100
    assert all(decode_a0_tag(f).pc == 0x3000 for f in tag_frames)


def test_error_code_and_silence_flags() -> None:
    sim = SimProcess(
        "r2000", "--pty", "--error-code", "0x22", "--silent-after", "0", "--silent-for", "0.6"
    )
    try:
        path = sim.line()
        with serial.Serial(path, 115200, timeout=0.3) as port:
            port.write(h("a0 03 01 72 ea"))
            assert port.read(7) == b""  # silent
            time.sleep(0.4)
            port.write(h("a0 04 01 89 01 d1"))
            assert port.read(6) == h("a0 04 01 89 22 b0")
    finally:
        code, _ = sim.stop()
    assert code == 0
