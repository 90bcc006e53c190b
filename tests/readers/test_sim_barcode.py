"""Barcode scanner device: AIM identifiers, GS inside GS1 strings, terminators, timing."""

from __future__ import annotations

import itertools
import random

import pytest
import serial
from readersim.barcode import DEFAULT_SCANS, BarcodeConfig, BarcodeDevice, Scan, parse_code

from tests.support.sim_support import FakeClock, SimProcess, h

DATAMATRIX = b"]d2010950600013435217201231" + b"10ABC123\x1d21SN0001\r\n"


def make(**cfg: object) -> tuple[BarcodeDevice, FakeClock]:
    clock = FakeClock()
    dev = BarcodeDevice(BarcodeConfig(**cfg), clock=clock, rng=random.Random(1))  # type: ignore[arg-type]
    return dev, clock


def timeline(dev: BarcodeDevice, clock: FakeClock, seconds: float) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    end = clock.now_s + seconds
    while (due := dev.next_due_s()) is not None and due <= end:
        clock.now_s = max(clock.now_s, due)
        out += [(round(clock.now_s - dev.epoch_s, 6), f) for f in dev.poll()]
    return out


def test_default_codes_on_the_wire() -> None:
    dev, clock = make()
    frames = [f for _, f in timeline(dev, clock, 5.0)]
    assert frames[0] == DATAMATRIX
    assert frames[0].startswith(h("5d 64 32 30 31 30 39 35"))  # the doc's example bytes
    assert frames[1] == b"]C100106141411234567897\r\n"  # GS1-128 SSCC
    assert frames[2] == b"]E09781492053743\r\n"  # EAN-13
    assert frames[3] == b"]C0ABC-12345\r\n"  # plain Code 128
    assert frames[4] == b"]C10107032069804988100329\x1d15210526\r\n"
    assert len(frames) == 5


def test_scans_come_at_the_configured_rate() -> None:
    dev, clock = make(interval_s=0.5, first_scan_s=0.25)
    times = [t for t, _ in timeline(dev, clock, 3.0)]
    assert times == pytest.approx([0.25, 0.75, 1.25, 1.75, 2.25, 2.75])


@pytest.mark.parametrize(
    ("terminator", "suffix"), [("cr", b"\r"), ("crlf", b"\r\n"), ("none", b"")]
)
def test_terminators(terminator: str, suffix: bytes) -> None:
    dev, clock = make(terminator=terminator, scans=(Scan("]C0", b"X1"),))
    frames = [f for _, f in timeline(dev, clock, 2.0)]
    assert frames
    assert all(f == b"]C0X1" + suffix for f in frames)


def test_unterminated_scans_keep_a_quiet_gap_even_when_saturated() -> None:
    dev, clock = make(terminator="none", saturate=True, quiet_gap_s=0.1, baud=9600)
    events = timeline(dev, clock, 2.0)
    for (t1, f1), (t2, _) in itertools.pairwise(events):
        line_s = 10 * len(f1) / 9600
        assert t2 - t1 >= line_s + 0.1 - 1e-5


def test_no_aim_and_random_order() -> None:
    dev, clock = make(send_aim=False, order="random", interval_s=0.1)
    frames = [f for _, f in timeline(dev, clock, 3.0)]
    assert not any(f.startswith(b"]") for f in frames)
    assert {f for f in frames} == {s.data + b"\r\n" for s in DEFAULT_SCANS}


def test_parse_code() -> None:
    assert parse_code("]d20109506000134352<GS>21X") == Scan("]d2", b"0109506000134352\x1d21X")
    assert parse_code("]C110ABC\\x1d21X") == Scan("]C1", b"10ABC\x1d21X")
    assert parse_code("HELLO") == Scan("", b"HELLO")
    with pytest.raises(ValueError):
        parse_code("]C1")


def test_host_input_is_ignored() -> None:
    dev, _ = make()
    assert dev.feed(b"\x16T\r") == []


def test_barcode_pty_subprocess() -> None:
    sim = SimProcess(
        "barcode",
        "--pty",
        "--interval",
        "0.1",
        "--code",
        "]C0HELLO",
        "--code",
        "]d2010950600013435210A<GS>21B",
        "--terminator",
        "cr",
    )
    try:
        path = sim.line()
        with serial.Serial(path, 9600, timeout=1.0) as port:
            port.reset_input_buffer()
            lines = {port.read_until(b"\r") for _ in range(4)}
    finally:
        code, err = sim.stop()
    assert b"]C0HELLO\r" in lines
    assert b"]d2010950600013435210A\x1d21B\r" in lines
    assert code == 0
    assert "Traceback" not in err
