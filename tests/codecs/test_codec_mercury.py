"""Mercury codec against the golden vectors of reader-protocols.md §3.

The doc's vectors are host -> module messages: the encoders must produce them byte for byte and
the CRC must verify them. The module's replies carry a status word the doc has no sample of, so
replies are built with the simulator's CRC (computed bit by bit, not with the codec's nibble
table) after that CRC, too, has been checked against every doc vector.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from readersim.population import Population, TagSpec
from readersim.thingmagic import ThingMagicConfig, ThingMagicDevice
from readersim.thingmagic import crc16 as sim_crc16
from readersim.thingmagic import encode_reply as sim_reply

from agent.readers.codecs import mercury
from agent.readers.codecs.mercury import (
    MercuryDecoder,
    MercuryFrame,
    StreamStatus,
    TagRecord,
    crc16,
    parse_stream,
)


def v(text: str) -> bytes:
    return bytes.fromhex(text)


# §3 [V] vectors, with the encoder call that must build each one.
DOC = [
    ("ff 00 03 1d 0c", mercury.get_version()),
    ("ff 00 04 1d 0b", mercury.boot_firmware()),
    ("ff 01 97 01 4b bc", mercury.set_region(0x01)),
    ("ff 01 97 02 4b bf", mercury.set_region(0x02)),
    ("ff 00 63 1d 6c", mercury.encode(mercury.Opcode.GET_TAG_PROTOCOL)),
    ("ff 03 9a 01 0c 00 a3 5d", mercury.disable_read_filter()),
    ("ff 03 29 01 ff 00 1b 03", mercury.encode(mercury.Opcode.GET_TAG_ID_BUFFER, v("01 ff 00"))),
    ("ff 10 2f 00 00 01 22 00 00 05 07 22 10 00 1b 03 e8 01 ff dd 2b", mercury.start_reading()),
    ("ff 03 2f 00 00 02 5e 86", mercury.stop_reading()),
]
# §3: "FF 03 29 00 15 00 97 55 does not verify", and the datasheet erratum "...4B BE".
BAD = ["ff 03 29 00 15 00 97 55", "ff 01 97 02 4b be"]


@pytest.mark.parametrize(("text", "built"), DOC, ids=[t for t, _ in DOC])
def test_encoders_build_the_doc_vectors(text: str, built: bytes) -> None:
    raw = v(text)
    assert built == raw
    assert crc16(raw[1:-2]) == int.from_bytes(raw[-2:], "big")
    assert sim_crc16(raw[1:-2]) == int.from_bytes(raw[-2:], "big")  # the independent CRC


@pytest.mark.parametrize(("text", "built"), DOC, ids=[t for t, _ in DOC])
def test_doc_vectors_decode_whole_bytewise_and_in_garbage(text: str, built: bytes) -> None:
    """The doc's vectors are requests: the decoder's request mode takes them straight."""
    raw = v(text)
    expected = MercuryFrame(raw[2], 0, raw[3:-2])
    assert MercuryDecoder(requests=True).feed(raw) == [expected]

    d = MercuryDecoder(requests=True)
    assert [f for b in raw for f in d.feed(bytes([b]))] == [expected]
    assert d.pending == 0

    d = MercuryDecoder(requests=True)
    frames = d.feed(v("13 ff 37 ff") + raw + v("00 ff"))
    assert frames + d.resync() == [expected]
    assert d.stats.frames == 1
    assert d.stats.bytes_discarded >= 1


@pytest.mark.parametrize("text", BAD)
def test_bad_vectors_are_rejected_and_counted(text: str) -> None:
    d = MercuryDecoder(requests=True)
    good = v(DOC[0][0])
    assert d.feed(v(text) + good) == [MercuryFrame(0x03, 0, b"")]
    assert d.stats.bad_checksums >= 1


@pytest.mark.parametrize("text", BAD)
def test_bad_vectors_do_not_verify(text: str) -> None:
    raw = v(text)
    assert crc16(raw[1:-2]) != int.from_bytes(raw[-2:], "big")


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0xA69D  # §3
    assert sim_crc16(b"123456789") == 0xA69D


EPC = v("30 14 02 76 6c 00 00 40 00 00 00 01")
REPLIES = [
    sim_reply(0x03, 0x0000, v("12 06 11 00 30 00 00 01 20 19 04 17 01 09 00 02 00 00 00 10")),
    sim_reply(0x04, 0x0101),
    sim_reply(0x97, 0x0000),
    sim_reply(0x62, 0x0000, v("00 07 d0")),
    sim_reply(0x72, 0x0000, v("21")),
    sim_reply(0x22, 0x0400),  # keep-alive
    mercury.encode_tag_record(EPC, pc=0x3000, antenna=1, rssi_dbm=-61, frequency_khz=865_700,
                              timestamp_ms=1234, phase=90),
]


@pytest.mark.parametrize("raw", REPLIES, ids=[r.hex(" ")[:20] for r in REPLIES])
def test_each_reply_whole_bytewise_and_in_garbage(raw: bytes) -> None:
    expected = MercuryFrame(raw[2], int.from_bytes(raw[3:5], "big"), raw[5:-2])
    assert mercury.encode_reply(expected.opcode, expected.status, expected.data) == raw

    assert MercuryDecoder().feed(raw) == [expected]

    d = MercuryDecoder()
    out = [f for b in raw for f in d.feed(bytes([b]))]
    assert out == [expected]
    assert d.pending == 0

    d = MercuryDecoder()
    noise = v("00 ff 13 37 ff ff 02 fe")  # header bytes inside the noise
    assert d.feed(noise + raw + v("aa")) + d.resync() == [expected]
    assert d.stats.bytes_discarded >= 1
    assert d.stats.frames == 1


def test_bad_crc_is_rejected_counted_and_the_next_frame_found() -> None:
    good = REPLIES[0]
    broken = bytearray(REPLIES[3])
    broken[-1] ^= 0x01
    d = MercuryDecoder()
    assert d.feed(bytes(broken) + good) == [
        MercuryFrame(0x03, 0, good[5:-2])]
    assert d.stats.bad_checksums >= 1


def test_doc_bad_vector_in_a_stream_is_skipped() -> None:
    d = MercuryDecoder()
    frames = d.feed(v(BAD[0]) + REPLIES[2] + REPLIES[4])
    assert [f.opcode for f in frames] == [0x97, 0x72]
    assert d.stats.bad_checksums >= 1


def test_a_partial_frame_with_a_noise_length_is_resynced_on_idle() -> None:
    d = MercuryDecoder()
    assert d.feed(v("ff f0") + REPLIES[2]) == []  # Len 0xF0: waits for 247 bytes
    assert d.resync() == [MercuryFrame(0x97, 0, b"")]
    assert d.stats.partial_timeouts == 1


def test_unknown_opcode_with_valid_crc_is_implausible() -> None:
    d = MercuryDecoder()
    assert d.feed(sim_reply(0x55, 0) + REPLIES[2]) == [MercuryFrame(0x97, 0, b"")]
    assert d.stats.implausible == 1


def test_tag_record_fields() -> None:
    frame = MercuryDecoder().feed(REPLIES[-1])[0]
    rec = parse_stream(frame)
    assert rec == TagRecord(epc=EPC, pc=0x3000, antenna=1, rssi_dbm=-61, frequency_khz=865_700,
                            phase=90, timestamp_ms=1234, read_count=1, protocol=0x05)


def test_tag_record_from_the_simulator_layout() -> None:
    """The simulator's record builder is its own code: both must agree on the layout."""
    tag = TagSpec(epc=EPC, rssi_dbm=-55)
    dev = ThingMagicDevice(ThingMagicConfig(rssi_jitter_db=0), Population((tag,)),
                           clock=lambda: 0.0, rng=random.Random(1))
    raw = dev._record(tag, 1, 0.5)
    rec = parse_stream(MercuryDecoder().feed(raw)[0])
    assert isinstance(rec, TagRecord)
    assert (rec.epc, rec.pc, rec.antenna, rec.rssi_dbm, rec.timestamp_ms) == (
        EPC, tag.pc, 1, -55, 500)


def test_keepalive_and_status_records() -> None:
    assert parse_stream(MercuryFrame(0x22, 0x0400, b"")) == StreamStatus(0x0400)
    assert parse_stream(MercuryFrame(0x22, 0x0400, b"")).keepalive  # type: ignore[union-attr]
    hot = parse_stream(MercuryFrame(0x22, 0x0504, b""))
    assert hot == StreamStatus(0x0504)
    assert "temperature_exceed_limits" in mercury.status_name(0x0504)


@pytest.mark.parametrize("cut", [1, 5, 12, 30])
def test_truncated_or_inconsistent_records_are_none(cut: int) -> None:
    data = REPLIES[-1][5:-2]
    assert parse_stream(MercuryFrame(0x22, 0, data[:-cut])) is None
    assert parse_stream(MercuryFrame(0x22, 0, data + b"\x00\x00")) is None
    assert parse_stream(MercuryFrame(0x2F, 0, data)) is None


def test_status_words_are_named() -> None:
    assert mercury.status_name(0x0101).startswith("0x0101 invalid_opcode")
    assert mercury.status_name(0x0105).startswith("0x0105 msg_invalid_parameter_value")
    assert mercury.status_name(0x0400).startswith("0x0400 no_tags_found")
    assert mercury.status_name(0x0504).startswith("0x0504 temperature_exceed_limits")
    assert "unknown_status" in mercury.status_name(0x1234)


def test_version_reply() -> None:
    frame = MercuryDecoder().feed(REPLIES[0])[0]
    info = mercury.parse_version(frame.data)
    assert info is not None
    assert info.model == "M6e Nano"
    assert info.firmware_text == "01.09.00.02"
    assert info.gen2
    assert mercury.parse_version(b"\x00" * 5) is None


def test_power_and_temperature_replies() -> None:
    assert mercury.parse_read_power(v("00 07 d0")) == 2000
    assert mercury.set_read_power(2000)[3:5] == v("07 d0")
    assert mercury.parse_read_power(v("07")) is None
    assert mercury.parse_temperature(v("21")) == 33
    assert mercury.parse_temperature(v("f6")) == -10
    assert mercury.parse_temperature(b"") is None


def test_other_commands() -> None:
    assert mercury.set_baud_rate(921600)[3:7] == (921600).to_bytes(4, "big")
    assert mercury.set_tag_protocol()[1:5] == v("02 93 00 05")
    assert mercury.set_antenna(1)[1:5] == v("02 91 01 01")
    assert mercury.set_antenna_search_list([1, 2])[1:8] == v("05 91 02 01 01 02 02")
    assert mercury.get_temperature()[1:3] == v("00 72")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=20), st.booleans())
def test_random_bytes_never_raise(data: bytes, cuts: list[int], requests: bool) -> None:
    d = MercuryDecoder(requests=requests)
    pos = 0
    for cut in cuts:
        for frame in d.feed(data[pos : pos + cut]):
            parse_stream(frame)
            mercury.parse_version(frame.data)
        pos += cut
    for frame in d.feed(data[pos:]) + d.resync():
        parse_stream(frame)
    assert d.pending <= 0xFF + 7


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=255), st.integers(0, 0xFFFF))
def test_random_record_data_never_raises(data: bytes, status: int) -> None:
    parse_stream(MercuryFrame(0x22, status, data))


def test_serial_number() -> None:
    assert mercury.get_serial_number()[1:5] == v("02 10 00 40")
    assert mercury.parse_serial_number(v("00 40 00 04") + b"AB12") == "AB12"
    assert mercury.parse_serial_number(v("00 40 00 09") + b"AB12") is None  # too short
    assert mercury.parse_serial_number(v("00 40 00 02 00 ff")) is None  # not text
    assert mercury.parse_serial_number(b"") is None
