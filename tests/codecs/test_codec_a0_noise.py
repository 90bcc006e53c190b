"""Issue 13 item 5: a checksum-valid noise frame must neither invent a read nor swallow the
real frames behind it (reader-protocols.md §1.6, §1.9)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.readers.codecs.a0 import (
    A0Decoder,
    A0Frame,
    InventorySummary,
    TagFrame,
    checksum,
    encode,
    parse_inventory,
    plausible,
)


def v(text: str) -> bytes:
    return bytes.fromhex(text)


def frame_of(raw: bytes) -> A0Frame:
    return A0Frame(raw[2], raw[3], raw[4:-1])


CAPTURE_89 = v("a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf")
CAPTURE_8B = v("a0 13 01 8b 10 30 00 30 09 66 37 81 db 02 97 48 76 fc 6a 67 2b")
SUMMARY_V3 = v("a0 0a 01 89 00 00 19 00 00 00 01 b2")


def with_check(body: bytes) -> bytes:
    return body + bytes((checksum(body),))


@pytest.mark.parametrize("raw", [
    CAPTURE_89, CAPTURE_8B, SUMMARY_V3,
    v("a0 08 01 89 01 00 00 00 01 cc"),  # V2.2 summary
    v("a0 0a 01 8a 00 00 10 00 00 00 64 57"),  # 0x8A end
    v("a0 05 01 8a 02 22 ac"),  # antenna missing
    v("a0 04 01 89 22 b0"),  # error code
    encode(0x01, 0x72, b"\x01\x09"),  # firmware 1.9, the reply to the 0x72 of the doc
])
def test_doc_vectors_are_plausible(raw: bytes) -> None:
    assert plausible(frame_of(raw))
    assert plausible(frame_of(raw), antennas=frozenset({1}))


def _tag(pc_words: int, epc_len: int, *, freq_ant: int = 0x04, rssi: int = 0x45,
         cmd: int = 0x89) -> A0Frame:
    data = bytes((freq_ant,)) + (pc_words << 11).to_bytes(2, "big") + bytes(epc_len)
    return A0Frame(1, cmd, data + bytes((rssi,)))


def test_tag_frame_must_agree_with_its_pc_word() -> None:
    assert plausible(_tag(6, 12))
    assert not plausible(_tag(6, 10))  # PC says 12 bytes of EPC, the frame holds 10
    assert not plausible(_tag(2, 12))
    assert not plausible(_tag(0, 2))  # no EPC word at all


def test_replies_to_other_commands_must_have_their_size() -> None:
    assert not plausible(frame_of(v("a0 03 01 72 ea")))  # the request itself: no data
    assert not plausible(A0Frame(1, 0x74, b"\x10\x00"))  # set_work_antenna answers 1 byte
    assert plausible(A0Frame(1, 0x77, bytes(4)))


def test_fields_out_of_range_are_refused() -> None:
    assert not plausible(_tag(6, 12, freq_ant=60 << 2))  # frequency index 60: not in §1.6
    assert not plausible(_tag(6, 12, rssi=0x00))  # -129 dBm
    assert not plausible(_tag(6, 12, rssi=0x7F))  # -2 dBm
    assert not plausible(A0Frame(1, 0x01, b"\x10"))  # a command code not in the manual
    # Antenna 3 was never asked for; the RSSI high bit makes it antenna 5 (8-port readers).
    assert not plausible(_tag(6, 12, freq_ant=0x02), antennas=frozenset({1, 2}))
    assert not plausible(_tag(6, 12, rssi=0xC5), antennas=frozenset({1, 2}))
    assert plausible(_tag(6, 12, rssi=0xC5), antennas=frozenset({5}))


def test_phase_form_must_match_the_configuration() -> None:
    with_phase = A0Frame(1, 0x8B, _tag(6, 12, cmd=0x8B).data + b"\x12\x34")
    assert plausible(with_phase, phase=True)
    assert not plausible(with_phase, phase=False)
    assert not plausible(_tag(6, 12, cmd=0x8B), phase=True)
    assert plausible(with_phase)
    assert plausible(_tag(6, 12, cmd=0x8B))


def _swallower(inner: bytes, cmd: int) -> bytes:
    """A noise 'frame' whose Len reaches over ``inner`` and whose checksum happens to pass."""
    body = bytes((0xA0, len(inner) + 3 + 1, 0x01, cmd)) + inner + b"\x00"
    return with_check(body)


def test_a_noise_frame_that_passes_the_checksum_no_longer_swallows_the_round_end() -> None:
    stream = _swallower(SUMMARY_V3, cmd=0x01)
    plain = A0Decoder(0x01)
    assert [f.cmd for f in plain.feed(stream)] == [0x01]  # before: the summary is gone
    guarded = A0Decoder(0x01, accept=plausible)
    frames = guarded.feed(stream)
    assert [parse_inventory(f) for f in frames] == [parse_inventory(frame_of(SUMMARY_V3))]
    assert guarded.stats.implausible == 1


def test_noise_for_another_address_is_rescanned_too() -> None:
    # Same checksum luck, but the noise names reader 0x07 while ours is 0x01.
    body = bytes((0xA0, len(CAPTURE_89) + 4, 0x07, 0x89)) + CAPTURE_89 + b"\x00"
    d = A0Decoder(0x01)
    frames = d.feed(with_check(body))
    assert len(frames) == 1
    assert isinstance(parse_inventory(frames[0]), TagFrame)
    assert d.stats.wrong_address >= 1


def test_a_swallowing_inventory_frame_is_refused_by_length() -> None:
    # cmd 0x89 with an even length whose PC word disagrees: refused, the summary survives.
    inner = b"\x04\x30\x00" + SUMMARY_V3
    stream = _swallower(inner, cmd=0x89)
    d = A0Decoder(0x01, accept=plausible)
    parsed = [parse_inventory(f) for f in d.feed(stream)]
    assert any(isinstance(p, InventorySummary) for p in parsed)
    assert not any(isinstance(p, TagFrame) for p in parsed)


def test_pure_noise_yields_almost_no_tag_frames() -> None:
    """2 MB of noise (a quarter of it 0xA0, as reader-sim makes it): the bench runs 1 GB."""
    rng = random.Random(7)
    d = A0Decoder(0x01, accept=lambda f: plausible(f, antennas=frozenset({1, 2, 3, 4})))
    tags = 0
    for _ in range(32):
        chunk = bytes(0xA0 if rng.random() < 0.25 else rng.randrange(256) for _ in range(65536))
        for f in d.feed(chunk):
            tags += isinstance(parse_inventory(f), TagFrame)
    assert tags == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=3))
def test_plausible_frames_always_parse(noise: bytes, phase_opt: int) -> None:
    phase = (None, False, True, None)[phase_opt]
    d = A0Decoder(None, accept=lambda f: plausible(f, phase=phase))
    for f in d.feed(noise + SUMMARY_V3):
        if f.cmd in (0x89, 0x8A, 0x8B):
            assert parse_inventory(f, phase=bool(phase)) is not None


async def test_fasttid_frames_are_refused_and_explained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reader with FastTID saved in its flash sends EPC + CRC + TID after the PC's length:
    refused (the agent never turns FastTID on), with one WARNING naming the likely cause."""
    import logging

    from agent.config import R2000Config
    from agent.readers.drivers.r2000 import R2000Reader
    from agent.readers.status import ReaderStatus

    cfg = R2000Config.model_validate({"name": "r", "driver": "r2000", "port": "/dev/x"})
    reader = R2000Reader(cfg, None, ReaderStatus("r", "r2000", "/dev/x"))  # type: ignore[arg-type]
    tid = bytes(2) + bytes(12)  # CRC + a 96-bit TID after the 12-byte EPC
    frame = A0Frame(1, 0x89, b"\x04\x30\x00" + bytes(12) + tid + b"\x45")
    with caplog.at_level(logging.WARNING, logger="agent.readers"):
        assert not reader._plausible(frame)
        assert not reader._plausible(frame)
    assert caplog.text.count("FastTID on in") == 1
