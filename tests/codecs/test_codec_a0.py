"""R2000 "A0" codec against the golden vectors of reader-protocols.md §1 (not our own encoder)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.readers.codecs.a0 import (
    A0Decoder,
    A0Frame,
    AntennaMissing,
    InventoryError,
    InventorySummary,
    TagFrame,
    checksum,
    encode,
    error_name,
    parse_inventory,
    real_time_inventory,
    session_inventory,
)


def v(text: str) -> bytes:
    return bytes.fromhex(text)


# Every valid A0 frame printed in the doc ([V] checked and [C] constructed ones).
GOOD = [
    "a0 03 01 72 ea",
    "a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf",
    "a0 13 01 8b 10 30 00 30 09 66 37 81 db 02 97 48 76 fc 6a 67 2b",
    "a0 04 01 89 01 d1",
    "a0 04 01 89 ff d3",
    "a0 04 ff 89 01 d3",
    "a0 06 01 8b 01 00 01 cc",
    "a0 07 01 8b 02 01 00 01 c9",
    "a0 08 01 8a 00 01 02 03 01 c6",
    "a0 0d 01 8a 00 01 01 01 02 01 03 01 00 01 bd",
    "a0 0a 01 8b 00 00 19 00 00 00 01 b0",
    "a0 0a 01 89 00 00 19 00 00 00 01 b2",
    "a0 08 01 89 01 00 00 00 01 cc",
    "a0 0a 01 8a 00 00 10 00 00 00 64 57",
    "a0 05 01 8a 02 22 ac",
    "a0 04 01 89 22 b0",
    "a0 04 01 89 11 c1",
    "a0 05 01 72 01 09 de",
    "a0 04 01 74 00 e7",
    "a0 04 01 74 10 d7",
    "a0 04 01 74 01 e6",
    "a0 03 01 75 e7",
    "a0 04 01 75 00 e6",
    "a0 04 01 76 1e c7",
    "a0 07 01 76 1e 1e 1e 1e 6a",
    "a0 04 01 76 10 d5",
    "a0 03 01 77 e5",
    "a0 07 01 77 1e 1e 1e 1e 69",
    "a0 03 01 70 ec",
    "a0 11 01 85 00 0c 11 22 33 44 55 66 77 88 99 00 aa bb 5b",
    "a0 04 01 85 10 c6",
    "a0 04 01 6c 01 ee",
]

# [BAD] vectors found in public material: their checksums are wrong (§1.8).
BAD = [
    "a0 0a 01 89 00 00 1d 00 00 00 01 bc",
    "a0 04 01 89 11 bd",
    "a0 04 01 89 01 71",
]


@pytest.mark.parametrize("text", GOOD)
def test_each_vector_whole_bytewise_and_in_garbage(text: str) -> None:
    raw = v(text)
    expected = A0Frame(raw[2], raw[3], raw[4:-1])

    assert A0Decoder().feed(raw) == [expected]

    d = A0Decoder()
    got: list[A0Frame] = []
    for b in raw:
        got += d.feed(bytes([b]))
    assert got == [expected]
    assert d.pending == 0

    d = A0Decoder()
    noisy = v("00 ff 13 a0 02 a0 01 7f") + raw + v("55 a0 01 a0 02") + raw
    assert d.feed(noisy) == [expected, expected]
    assert d.stats.frames == 2
    assert d.stats.bytes_discarded > 0


@pytest.mark.parametrize("text", GOOD)
def test_checksum_and_encoder_agree_with_doc(text: str) -> None:
    raw = v(text)
    assert checksum(raw[:-1]) == raw[-1]
    assert encode(raw[2], raw[3], raw[4:-1]) == raw


def test_rust_invelion_checksum_vectors() -> None:
    # §1.4: checksum over arbitrary buffers.
    assert checksum(bytes([1, 2, 3, 4])) == 246
    assert checksum(bytes([134, 200, 3, 253])) == 178
    assert checksum(bytes([220, 4, 3, 30])) == 255
    assert checksum(bytes([20, 45, 3, 30, 150, 230, 120])) == 170


@pytest.mark.parametrize("text", BAD)
def test_bad_vectors_rejected_counted_and_decoder_resyncs(text: str) -> None:
    d = A0Decoder()
    good = v("a0 04 01 89 22 b0")
    frames = d.feed(v(text) + good)
    assert frames == [A0Frame(0x01, 0x89, b"\x22")]
    assert d.stats.bad_checksums >= 1


def test_idle_resync_recovers_a_frame_hidden_behind_a_fake_length() -> None:
    # Noise "A0" followed by the real frame's A0 reads as Len=0xA0: the decoder would wait for
    # 162 bytes. When the line goes idle the session calls resync() and gets the frame.
    raw = v("a0 05 01 72 01 09 de")
    d = A0Decoder()
    assert d.feed(v("a0") + raw) == []
    assert d.resync() == [A0Frame(1, 0x72, v("01 09"))]
    assert d.pending == 0


def test_a0_inside_epc_is_not_a_frame_start() -> None:
    # A tag whose EPC is full of A0 bytes, preceded by a truncated frame.
    body = v("a0 13 01 89 04 30 00 a0 a0 a0 a0 a0 a0 a0 a0 a0 a0 a0 a0 45")
    frame = body + bytes([checksum(body)])
    d = A0Decoder()
    assert d.feed(v("a0 13 01 89") + frame) == [A0Frame(1, 0x89, frame[4:-1])]


def test_address_filter_accepts_own_and_broadcast() -> None:
    d = A0Decoder(address=0x01)
    stream = v("a0 04 01 74 10 d7") + encode(0xFF, 0x74, b"\x10") + encode(0x02, 0x74, b"\x10")
    frames = d.feed(stream)
    assert [f.address for f in frames] == [0x01, 0xFF]
    assert d.stats.wrong_address == 1


def test_tag_frame_decodes_capture() -> None:
    (f,) = A0Decoder().feed(v("a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf"))
    tag = parse_inventory(f)
    assert tag == TagFrame(
        antenna=1, frequency_index=1, pc=0x3000, epc=v("e2 00 30 16 66 13 01 21 15 50 74 ef"),
        rssi_raw=0x45, phase=None,
    )
    assert isinstance(tag, TagFrame)
    assert tag.rssi_dbm == -60
    assert tag.frequency_khz == 865_500


def test_8b_capture_decodes() -> None:
    (f,) = A0Decoder().feed(v("a0 13 01 8b 10 30 00 30 09 66 37 81 db 02 97 48 76 fc 6a 67 2b"))
    tag = parse_inventory(f)
    assert isinstance(tag, TagFrame)
    assert tag.antenna == 1
    assert tag.frequency_khz == 867_000
    assert tag.rssi_dbm == 0x67 - 129
    assert tag.epc.hex().upper() == "3009663781DB02974876FC6A"


def test_eight_port_antenna_encoding_and_group() -> None:
    # FreqAnt low bits = 2, RSSI bit 7 set -> antenna 3 + 4 = 7; group 1 adds 8.
    body = v("a0 13 01 89 0e 30 00 30 74 25 7b f7 19 4e 40 00 00 1a 85") + bytes([0x80 | 0x50])
    frame = body + bytes([checksum(body)])
    (f,) = A0Decoder().feed(frame)
    tag = parse_inventory(f)
    assert isinstance(tag, TagFrame)
    assert (tag.antenna, tag.rssi_raw) == (7, 0x50)
    tag16 = parse_inventory(f, antenna_group=1)
    assert isinstance(tag16, TagFrame)
    assert tag16.antenna == 15


def test_phase_after_rssi() -> None:
    body = v("a0 15 01 8b 00 30 00 30 74 25 7b f7 19 4e 40 00 00 1a 85 50 12 34")
    frame = body + bytes([checksum(body)])
    (f,) = A0Decoder().feed(frame)
    tag = parse_inventory(f, phase=True)
    assert isinstance(tag, TagFrame)
    assert (tag.rssi_raw, tag.phase) == (0x50, 0x1234)
    assert tag.epc.hex().upper() == "3074257BF7194E4000001A85"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a0 0a 01 8b 00 00 19 00 00 00 01 b0", InventorySummary(0x8B, 0, 25, 1, None)),
        ("a0 0a 01 89 00 00 19 00 00 00 01 b2", InventorySummary(0x89, 0, 25, 1, None)),
        ("a0 08 01 89 01 00 00 00 01 cc", InventorySummary(0x89, 1, None, 1, None)),
        ("a0 0a 01 8a 00 00 10 00 00 00 64 57", InventorySummary(0x8A, None, None, 16, 100)),
        ("a0 05 01 8a 02 22 ac", AntennaMissing(3, 0x22)),
        ("a0 04 01 89 22 b0", InventoryError(0x89, 0x22)),
        ("a0 04 01 89 11 c1", InventoryError(0x89, 0x11)),
    ],
)
def test_summary_and_error_frames(text: str, expected: object) -> None:
    (f,) = A0Decoder().feed(v(text))
    assert parse_inventory(f) == expected


def test_v22_8a_summary_vs_short_epc_tag_by_pc() -> None:
    summary = encode(1, 0x8A, v("00 00 00 10 00 00 00 64"))
    (f,) = A0Decoder().feed(summary)
    assert parse_inventory(f) == InventorySummary(0x8A, None, None, 16, 100)
    tag = encode(1, 0x8A, v("00 10 00 ab cd ef 01 50"))  # PC 0x1000 = 2 words
    (f,) = A0Decoder().feed(tag)
    parsed = parse_inventory(f)
    assert isinstance(parsed, TagFrame)
    assert parsed.epc == v("ab cd ef 01")


def test_error_names_are_meaningful() -> None:
    assert error_name(0x22) == "0x22 antenna_missing (antenna not connected)"
    assert "no tag" in error_name(0x36)
    assert "unknown" in error_name(0x99)


def test_command_builders_match_doc() -> None:
    assert real_time_inventory(0x01, 1) == v("a0 04 01 89 01 d1")
    assert real_time_inventory(0xFF, 1) == v("a0 04 ff 89 01 d3")
    assert session_inventory(0x01, 1, 0, 1) == v("a0 06 01 8b 01 00 01 cc")
    assert session_inventory(0x01, 2, 1, 1, sl=0) == v("a0 07 01 8b 02 01 00 01 c9")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=20))
def test_noise_never_raises_and_memory_stays_bounded(chunks: list[bytes]) -> None:
    d = A0Decoder()
    for c in chunks:
        for f in d.feed(c):
            parse_inventory(f)
        assert d.pending <= 257


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_valid_frames_between_noise_are_recovered(pre: bytes, post: bytes, step: int) -> None:
    frame = v("a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf")
    # A garbage prefix could open a long fake frame; two valid frames after it and a guard of
    # zero bytes longer than any frame make the second one always recoverable.
    stream = pre + bytes(260) + frame + post + bytes(260) + frame
    d = A0Decoder()
    got: list[A0Frame] = []
    for i in range(0, len(stream), step):
        got += d.feed(stream[i : i + step])
    assert A0Frame(1, 0x89, frame[4:-1]) in got
