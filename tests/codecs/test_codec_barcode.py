"""Barcode line-mode framer against reader-protocols.md §4.1/§4.2."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.values import parse_terminator
from agent.readers.codecs.barcode import (
    CR,
    CRLF,
    LF,
    BarcodeFramer,
    Scan,
    split_aim,
)
from agent.readers.link import LinkBase
from agent.readers.session import FrameDecoder, FrameSession


def v(text: str) -> bytes:
    return bytes.fromhex(text)


# §4.3: the wire bytes of a GS1 DataMatrix scan, GS between (10) and (21), CR LF suffix.
DATAMATRIX_WIRE = b"]d2" + b"0109506000134352" + b"17201231" + b"10ABC123" + b"\x1d" + b"21SN0001"
DATAMATRIX_WIRE += b"\r\n"


# ----------------------------------------------------------------------------- framer


def test_doc_datamatrix_wire_bytes_whole_bytewise_and_split() -> None:
    assert DATAMATRIX_WIRE.startswith(v("5d 64 32 30 31 30 39 35"))
    expected = Scan(b"0109506000134352" b"17201231" b"10ABC123\x1d21SN0001", "]d2")

    f = BarcodeFramer(CRLF)
    assert f.feed(DATAMATRIX_WIRE) == [expected]
    assert f.pending == 0

    f = BarcodeFramer(CRLF)
    got: list[Scan] = []
    for b in DATAMATRIX_WIRE:
        got += f.feed(bytes([b]))
    assert got == [expected]  # CR and LF arrived in separate reads: still one terminator

    f = BarcodeFramer(CRLF)
    assert f.feed(DATAMATRIX_WIRE * 3) == [expected] * 3
    assert f.stats.frames == 3


@pytest.mark.parametrize(
    ("terminator", "wire"),
    [(CR, b"]E09781492053743\r"), (LF, b"]E09781492053743\n"), (b"\x03", b"]E09781492053743\x03")],
)
def test_configured_terminators(terminator: bytes, wire: bytes) -> None:
    assert BarcodeFramer(terminator).feed(wire) == [Scan(b"9781492053743", "]E0")]


def test_gs_and_other_control_bytes_are_kept() -> None:
    f = BarcodeFramer(CR)
    assert f.feed(b"]C10107032069804988100329\x1d15210526\r") == [
        Scan(b"0107032069804988100329\x1d15210526", "]C1")
    ]
    assert f.feed(b"A\tB\x04C\r") == [Scan(b"A\tB\x04C", None)]


@pytest.mark.parametrize(
    ("raw", "symbology", "rest"),
    [
        (b"]d2010950", "]d2", b"010950"),
        (b"]C0ABC", "]C0", b"ABC"),
        (b"]Q3011234", "]Q3", b"011234"),
        (b"]E09781492053743", "]E0", b"9781492053743"),
        (b"]Y1Z123", "]Y1Z", b"123"),  # system expansion: digit n, then n more characters
        (b"]12345", None, b"]12345"),  # not a code character
        (b"]d", None, b"]d"),  # too short
        (b"]d-1", None, b"]d-1"),  # not a modifier
        (b"ABC", None, b"ABC"),
    ],
)
def test_split_aim(raw: bytes, symbology: str | None, rest: bytes) -> None:
    assert split_aim(raw) == (symbology, rest)


def test_aim_splitting_can_be_turned_off_and_a_prefix_stripped() -> None:
    assert BarcodeFramer(CR, aim=False).feed(b"]C0ABC\r") == [Scan(b"]C0ABC", None)]
    assert BarcodeFramer(CR, prefix=b"\x02").feed(b"\x02]C0ABC\r") == [Scan(b"ABC", "]C0")]


def test_empty_scans_are_ignored() -> None:
    f = BarcodeFramer(CR)
    assert f.feed(b"\r\rA\r\r") == [Scan(b"A", None)]


def test_idle_timeout_frames_a_scanner_without_suffix() -> None:
    f = BarcodeFramer(None, idle_s=0.05)
    assert f.feed(b"]E0978149", now_s=1.000) == []
    assert f.feed(b"2053743", now_s=1.010) == []
    assert f.flush_idle(1.040) == []  # only 30 ms of silence
    assert f.flush_idle(1.060) == [Scan(b"9781492053743", "]E0")]
    assert f.pending == 0
    assert f.flush_idle(9.0) == []


def test_bytes_after_the_idle_time_start_a_new_scan() -> None:
    f = BarcodeFramer(None, idle_s=0.05)
    assert f.feed(b"AAA", now_s=0.0) == []
    # Without a flush_idle call in between, feed itself ends the previous scan first.
    assert f.feed(b"BBB", now_s=0.2) == [Scan(b"AAA", None)]
    assert f.feed(b"", now_s=0.3) == [Scan(b"BBB", None)]


def test_terminator_and_idle_timeout_together() -> None:
    f = BarcodeFramer(CR, idle_s=0.05)
    assert f.feed(b"ONE\rTW", now_s=0.0) == [Scan(b"ONE", None)]
    assert f.flush_idle(0.1) == [Scan(b"TW", None)]  # the suffix never came
    f = BarcodeFramer(CR, idle_s=None)
    assert f.feed(b"TW", now_s=0.0) == []
    assert f.flush_idle(10.0) == []  # no timeout framing configured
    assert f.resync() == []  # the session's idle resync drops the fragment instead
    assert (f.stats.partial_timeouts, f.stats.bytes_discarded, f.pending) == (1, 2, 0)
    assert f.feed(b"OK\r") == [Scan(b"OK", None)]


def test_oversize_scan_is_dropped_whole_and_counted() -> None:
    f = BarcodeFramer(CR, max_len=10)
    assert f.feed(b"0123456789ABCDEF") == []
    assert f.pending <= 10
    assert f.feed(b"GHIJ\rOK\r") == [Scan(b"OK", None)]
    assert f.stats.oversize == 1
    assert f.stats.bytes_discarded == 20
    # In a single read too.
    assert f.feed(b"0123456789ABCDEF\rOK\r") == [Scan(b"OK", None)]
    assert f.stats.oversize == 2


def test_oversize_with_a_split_crlf_terminator() -> None:
    f = BarcodeFramer(CRLF, max_len=4)
    assert f.feed(b"ABCD\r") == []  # 4 bytes and maybe half a terminator: not oversize yet
    assert f.feed(b"\n") == [Scan(b"ABCD", None)]
    assert f.feed(b"ABCDEFGH\r") == []
    assert f.feed(b"\nOK\r\n") == [Scan(b"OK", None)]
    assert f.stats.oversize == 1


def test_oversize_in_timeout_mode_ends_at_the_idle_gap() -> None:
    f = BarcodeFramer(None, idle_s=0.05, max_len=4)
    assert f.feed(b"ABCDEFGH", now_s=0.0) == []
    assert f.feed(b"IJ", now_s=0.01) == []
    assert f.flush_idle(0.1) == []
    assert f.stats.oversize == 1
    assert f.feed(b"OK", now_s=0.2) == []
    assert f.flush_idle(0.3) == [Scan(b"OK", None)]


def test_framer_rejects_configs_that_cannot_end_a_scan() -> None:
    with pytest.raises(ValueError):
        BarcodeFramer(None, idle_s=None)
    with pytest.raises(ValueError):
        BarcodeFramer(b"")
    with pytest.raises(ValueError):
        BarcodeFramer(CR, max_len=0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("CR", b"\r"),
        ("lf", b"\n"),
        ("CRLF", b"\r\n"),
        ("tab", b"\t"),
        ("none", None),
        ("\\x03", b"\x03"),
        ("#\\r", b"#\r"),
    ],
)
def test_parse_terminator(spec: str, expected: bytes | None) -> None:
    assert parse_terminator(spec) == expected


def test_parse_terminator_rejects_empty_and_bad_escapes() -> None:
    with pytest.raises(ValueError):
        parse_terminator("")
    with pytest.raises(ValueError):
        parse_terminator("\\x0")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=300), st.floats(min_value=0, max_value=0.2)), max_size=20
    ),
    st.sampled_from([CR, LF, CRLF, None]),
)
def test_noise_never_raises_and_memory_stays_bounded(
    chunks: list[tuple[bytes, float]], terminator: bytes | None
) -> None:
    f = BarcodeFramer(terminator, idle_s=0.1, max_len=64)
    t = 0.0
    for data, dt in chunks:
        t += dt
        for scan in f.feed(data, now_s=t):
            assert 0 < len(scan.data) <= 64
            if terminator is not None:
                assert terminator not in scan.data
        assert f.pending <= 64 + 1  # max_len + a CR of a split CR LF
    f.flush_idle(t + 1)
    assert f.pending == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b), max_size=10),
    st.integers(min_value=1, max_value=30),
)
def test_scans_survive_any_chunking(scans: list[bytes], step: int) -> None:
    stream = b"".join(s + b"\r" for s in scans)
    f = BarcodeFramer(CR, aim=False)
    got: list[Scan] = []
    for i in range(0, len(stream), step):
        got += f.feed(stream[i : i + step])
    assert [s.data for s in got] == scans


async def test_frame_session_idle_resync_is_the_timeout_framing() -> None:
    class OneShotLink(LinkBase):
        def __init__(self) -> None:
            self.sent = False

        async def read(self) -> bytes:
            if not self.sent:
                self.sent = True
                return b"]E09781492053743"
            await asyncio.sleep(3600)
            return b""

        async def write(self, data: bytes) -> None:
            return None

        async def aclose(self) -> None:
            return None

    framer: FrameDecoder[Scan] = BarcodeFramer(None, idle_s=0.02)
    session = FrameSession(OneShotLink(), framer, idle_resync_s=0.02)
    assert await session.next_frame(timeout_s=1.0) == Scan(b"9781492053743", "]E0")


def test_an_aim_identifier_alone_is_no_scan_and_is_counted() -> None:
    """Found by the noise test above: "]A0" and nothing after it made an empty scan."""
    for terminator, data in ((CR, b"]A0\r]E0123\r"), (None, b"]A0")):
        f = BarcodeFramer(terminator, idle_s=0.1)
        scans = f.feed(data, now_s=0.0) + f.flush_idle(1.0)
        assert [s.data for s in scans] == ([b"123"] if terminator else [])
        assert f.stats.bytes_discarded == 3
