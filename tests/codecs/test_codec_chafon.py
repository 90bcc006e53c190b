"""Chafon / UHFReader18 / UHFReader288 codec against the golden vectors of reader-protocols §2."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.readers.codecs.chafon import (
    BROADCAST,
    Ack,
    ChafonCommand,
    ChafonCommandDecoder,
    ChafonDecoder,
    ChafonError,
    ChafonFrame,
    ChafonTag,
    InventoryReply,
    InventoryStatistics,
    ReaderInfo,
    ScanHeartbeat,
    antenna_from_mask,
    antennas_from_mask,
    crc16_mcrf4xx,
    encode,
    encode_response,
    get_reader_info,
    inventory_18,
    inventory_288,
    is_reply_to,
    parse_inventory,
    parse_reader_info,
    parse_response,
    parse_scan_push,
    set_address,
    set_baud_rate,
    set_power,
    set_scan_time,
    start_fast_inventory,
    status_name,
    stop_fast_inventory,
)
from agent.readers.link import LinkBase
from agent.readers.session import FrameDecoder, FrameSession


def v(text: str) -> bytes:
    return bytes.fromhex(text)


# Responses printed in §2.5 ([V], CRCs verified by the doc's script).
INFO_288M = "11 00 21 00 00 16 0c 03 4e 00 1e 0a 01 00 00 00 e6 51"
INV_18 = "13 00 01 03 01 0c 00 00 00 00 00 00 00 00 00 00 03 13 3f 39"
INV_288 = "15 00 01 03 01 01 0c 00 00 00 00 00 00 00 00 00 00 03 13 6b b1 a5"
INV_288_EMPTY = "07 00 01 01 01 00 1e 4b"
NO_TAG = "05 00 01 fb f2 3d"
PUSH_HWVX = "11 00 ee 00 20 00 70 8c 2b 38 0b 2d 00 00 00 00 e0 56"
GOOD_RESPONSES = [INFO_288M, INV_18, INV_288, INV_288_EMPTY, NO_TAG, PUSH_HWVX]

# [BAD]: wabson's negative test, the last CRC byte is wrong.
BAD_RESPONSE = "15 00 01 03 01 01 0c 00 00 00 00 00 00 00 00 00 00 03 13 6b b1 a6"

# Commands printed in §2.4/§2.5 ([V] and [C]).
GOOD_COMMANDS = [
    "04 ff 01 1b b4",  # inventory, broadcast                        [V]
    "04 00 01 db 4b",  # inventory, address 0                        [V]
    "04 ff 21 19 95",  # get reader info, broadcast                  [V]
    "04 00 21 d9 6a",  # get reader info, address 0                  [V]
    "0d ff 01 0f 00 01 00 00 00 00 80 14 c0 3a",  # 288 inventory    [C]
    "05 00 50 00 81 be",  # Ex10 start fast inventory                [C]
    "04 00 51 5e 19",  # Ex10 stop fast inventory                    [C]
]

# Noise that opens a long fake frame (0xFF asks for 256 bytes): only a resync can end it.
NOISE = v("ff 13 a0 02 00 03 7f")


def frame_of(raw: bytes) -> ChafonFrame:
    return ChafonFrame(raw[1], raw[2], raw[3], raw[4:-2])


# ----------------------------------------------------------------------------- CRC


def reference_crc(data: bytes) -> int:
    """The manual's loop, verbatim in spirit (§2.4)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def test_crc_check_value_and_worked_example() -> None:
    assert crc16_mcrf4xx(b"123456789") == 0x6F91
    # §2.4: 04 FF 01 -> 0x49A3 after 04, 0x98A0 after FF, 0xB41B after 01.
    assert crc16_mcrf4xx(v("04")) == 0x49A3
    assert crc16_mcrf4xx(v("ff"), 0x49A3) == 0x98A0
    assert crc16_mcrf4xx(v("01"), 0x98A0) == 0xB41B
    assert crc16_mcrf4xx(v("04 ff 01")) == 0xB41B


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_crc_matches_the_manuals_loop(data: bytes) -> None:
    assert crc16_mcrf4xx(data) == reference_crc(data)


@pytest.mark.parametrize("text", GOOD_RESPONSES + GOOD_COMMANDS)
def test_crc_over_a_whole_valid_frame_is_zero(text: str) -> None:
    assert crc16_mcrf4xx(v(text)) == 0


# ----------------------------------------------------------------------------- stream decoding


@pytest.mark.parametrize("text", GOOD_RESPONSES)
def test_each_response_whole_bytewise_and_in_garbage(text: str) -> None:
    raw = v(text)
    expected = frame_of(raw)

    d = ChafonDecoder()
    assert d.feed(raw) == [expected]
    assert d.pending == 0
    assert d.stats.frames == 1

    d = ChafonDecoder()
    got: list[ChafonFrame] = []
    for b in raw:
        got += d.feed(bytes([b]))
    assert got == [expected]
    assert d.pending == 0

    # The 0xFF noise byte opens a 256-byte fake frame: the frames behind it come out when the
    # line goes quiet (resync), not before.
    d = ChafonDecoder()
    got = d.feed(NOISE + raw + v("55 02 ee") + raw)
    got += d.resync()
    assert got == [expected, expected]
    assert d.stats.frames == 2
    assert d.stats.bytes_discarded >= len(NOISE)
    assert d.pending == 0


@pytest.mark.parametrize("text", GOOD_RESPONSES)
def test_encoder_reproduces_each_response(text: str) -> None:
    raw = v(text)
    assert encode_response(raw[1], raw[2], raw[3], raw[4:-2]) == raw


@pytest.mark.parametrize("text", GOOD_COMMANDS)
def test_each_command_whole_bytewise_and_in_garbage(text: str) -> None:
    raw = v(text)
    expected = ChafonCommand(raw[1], raw[2], raw[3:-2])
    assert encode(raw[1], raw[2], raw[3:-2]) == raw

    assert ChafonCommandDecoder().feed(raw) == [expected]

    d = ChafonCommandDecoder()
    got: list[ChafonCommand] = []
    for b in raw:
        got += d.feed(bytes([b]))
    assert got == [expected]

    d = ChafonCommandDecoder()
    got = d.feed(NOISE + raw + v("03 02") + raw) + d.resync()
    assert got == [expected, expected]


def test_bad_vector_is_rejected_counted_and_the_next_frame_recovered() -> None:
    d = ChafonDecoder()
    frames = d.feed(v(BAD_RESPONSE) + v(NO_TAG))
    frames += d.resync()
    assert frames == [frame_of(v(NO_TAG))]
    assert d.stats.bad_checksums >= 1
    assert d.stats.frames == 1


def test_commands_are_not_responses() -> None:
    # A 4-byte command frame (Len 4) is too short to be a response: noise to the host decoder.
    d = ChafonDecoder()
    assert d.feed(v("04 ff 21 19 95")) == []
    assert d.resync() == []


def test_address_filter_accepts_own_and_broadcast() -> None:
    d = ChafonDecoder(address=0x00)
    stream = v(NO_TAG) + encode_response(BROADCAST, 0x01, 0xFB) + encode_response(0x05, 0x01, 0xFB)
    assert [f.address for f in d.feed(stream)] == [0x00, 0xFF]
    assert d.stats.wrong_address == 1


def test_pending_is_bounded_by_one_maximal_frame() -> None:
    d = ChafonDecoder()
    d.feed(b"\xff" * 255)
    assert d.pending == 255
    d.feed(b"\xff")  # now 256 bytes: the first candidate completes, fails its CRC, is dropped
    assert d.pending <= 255


# ----------------------------------------------------------------------------- 15 ms gap rule


def test_gap_over_15ms_discards_the_partial_frame_and_counts_it() -> None:
    raw = v(INFO_288M)
    d = ChafonDecoder()
    assert d.feed(raw[:7], now_s=10.000) == []
    # 16 ms of silence: the reader would have dropped the frame; so do we.
    assert d.feed(raw[7:], now_s=10.016) == []
    assert d.stats.partial_timeouts == 1
    assert d.stats.frames == 0
    # The orphaned tail (03 4e ...) opens a fake frame; the next complete frame is hidden behind
    # it until the next gap, which a poll (feed with no bytes) detects.
    got = d.feed(raw, now_s=10.017)
    got += d.feed(b"", now_s=10.040)
    assert got == [frame_of(raw)]
    assert d.pending == 0
    assert d.stats.partial_timeouts == 2


def test_gap_of_exactly_15ms_or_less_keeps_the_frame() -> None:
    raw = v(INV_288)
    d = ChafonDecoder()
    t = 5.0
    got: list[ChafonFrame] = []
    for i, b in enumerate(raw):
        got += d.feed(bytes([b]), now_s=t + i * 0.015)
    assert got == [frame_of(raw)]
    assert d.stats.partial_timeouts == 0


def test_gap_rule_can_be_widened_for_usb_adapters() -> None:
    raw = v(INV_288)
    d = ChafonDecoder(max_gap_s=0.040)  # e.g. an FTDI adapter with a 16 ms latency timer
    assert d.feed(raw[:10], now_s=1.0) == []
    assert d.feed(raw[10:], now_s=1.032) == [frame_of(raw)]
    d = ChafonDecoder(max_gap_s=None)  # rule off: the session's idle resync is the only limit
    assert d.feed(raw[:10], now_s=1.0) == []
    assert d.feed(raw[10:], now_s=9.0) == [frame_of(raw)]


def test_feed_without_time_does_not_trigger_the_gap_rule() -> None:
    raw = v(NO_TAG)
    d = ChafonDecoder()
    d.feed(raw[:3], now_s=1.0)
    d.feed(raw[3:4])  # untimed bytes: their age is unknown
    assert d.feed(raw[4:], now_s=2.0) == [frame_of(raw)]


def test_a_complete_frame_behind_noise_survives_the_gap() -> None:
    # The gap abandons the partial frame at the head, but a whole frame buffered behind a noise
    # length byte is still found by the rescan.
    raw = v(NO_TAG)
    d = ChafonDecoder()
    assert d.feed(v("40") + raw, now_s=0.0) == []
    assert d.feed(b"", now_s=0.1) == [frame_of(raw)]


# ----------------------------------------------------------------------------- parsed replies


def test_reader_info_reply() -> None:
    (f,) = ChafonDecoder().feed(v(INFO_288M))
    info = parse_reader_info(f)
    assert isinstance(info, ReaderInfo)
    assert info.address == 0x00
    assert info.firmware == "0.22"
    assert info.reader_type == 0x0C
    assert info.model == "UHFReader288M"
    assert info.protocol_names == ("ISO18000-6C", "ISO18000-6B")
    assert info.band_name == "eu"
    assert (info.min_channel, info.max_channel) == (0, 14)
    assert info.channel_mhz(info.min_channel) == 865.1
    assert info.channel_mhz(info.max_channel) == 867.9
    assert info.power_dbm == 30
    assert info.scan_time_ms == 1000
    assert info.antenna_config == 0x01
    assert parse_response(f) == info


def test_uhfreader18_inventory_reply() -> None:
    (f,) = ChafonDecoder().feed(v(INV_18))
    reply = parse_inventory(f, form="18")
    assert reply == InventoryReply(
        0x03, None, (ChafonTag(v("00 00 00 00 00 00 00 00 00 00 03 13"), None, None),)
    )
    assert isinstance(reply, InventoryReply)
    assert reply.more
    assert not reply.done


def test_uhfreader288_inventory_reply() -> None:
    (f,) = ChafonDecoder().feed(v(INV_288))
    reply = parse_inventory(f, form="288")
    assert reply == InventoryReply(
        0x03, 0x01, (ChafonTag(v("00 00 00 00 00 00 00 00 00 00 03 13"), 1, 0x6B),)
    )
    # The same frame read with the wrong layout does not fit: malformed, not a wrong tag.
    assert parse_inventory(f, form="18") is None


def test_288_done_without_tags_and_no_tag() -> None:
    (f,) = ChafonDecoder().feed(v(INV_288_EMPTY))
    reply = parse_inventory(f)
    assert reply == InventoryReply(0x01, 0x01, ())
    assert isinstance(reply, InventoryReply)
    assert reply.done
    (f,) = ChafonDecoder().feed(v(NO_TAG))
    reply = parse_inventory(f)
    assert isinstance(reply, InventoryReply)
    assert reply.no_tag
    assert reply.done
    assert reply.tags == ()
    assert "no tag" in reply.description


def test_multi_frame_inventory_status_03_then_01() -> None:
    # [C] built with our encoder: two tags on antenna 3 (mask 04), then the closing frame.
    epc1, epc2 = v("e2 00 00 17 22 0a 01 23 45 67 89 ab"), v("30 08 33 b2 dd d9 01 40")
    first = encode_response(0, 0x01, 0x03, v("04 02") + bytes([12]) + epc1 + v("50")
                            + bytes([8]) + epc2 + v("48"))
    last = encode_response(0, 0x01, 0x01, v("04 00"))
    d = ChafonDecoder()
    replies = [parse_inventory(f) for f in d.feed(first + last)]
    assert replies == [
        InventoryReply(0x03, 0x04, (ChafonTag(epc1, 3, 0x50), ChafonTag(epc2, 3, 0x48))),
        InventoryReply(0x01, 0x04, ()),
    ]


def test_fast_id_entry_carries_epc_and_tid() -> None:
    # UR-series: EPCLen bit 7 set -> bits 6..0 = EPC + 12-byte TID.
    epc, tid = v("30 08 33 b2 dd d9 01 40 00 00 00 01"), v("e2 80 11 05 20 00 74 c9 5a 1b 09 07")
    f = frame_of(encode_response(0, 0x01, 0x01, v("02 01") + bytes([0x80 | 24]) + epc + tid
                                 + v("3a")))
    assert parse_inventory(f) == InventoryReply(0x01, 0x02, (ChafonTag(epc, 2, 0x3A, tid),))


def test_truncated_inventory_data_is_malformed_not_an_exception() -> None:
    f = frame_of(encode_response(0, 0x01, 0x01, v("01 02 0c 00 01")))
    assert parse_inventory(f) is None
    f = frame_of(encode_response(0, 0x01, 0x01, v("01")))
    assert parse_inventory(f) is None


def test_statistics_packet() -> None:
    f = frame_of(encode_response(0, 0x01, 0x26, v("01 00 2a 00 00 01 00")))
    assert parse_inventory(f) == InventoryStatistics(0x01, 42, 256)


@pytest.mark.parametrize(
    ("status", "name", "words"),
    [
        (0xFE, "illegal_command", "CRC"),
        (0xFF, "parameter_error", "parameter"),
        (0xF8, "antenna_error", "antenna"),
        (0xFD, "command_length_wrong", "length"),
    ],
)
def test_error_statuses_have_names_and_meanings(status: int, name: str, words: str) -> None:
    cmd = 0x00 if status == 0xFE else 0x01
    f = frame_of(encode_response(0, cmd, status))
    err = parse_response(f)
    assert isinstance(err, ChafonError)
    assert (err.cmd, err.status, err.name) == (cmd, status, name)
    assert words.lower() in err.meaning.lower()
    assert err.description.startswith(f"0x{status:02X} {name}")


def test_illegal_command_reply_matches_any_request() -> None:
    # §2.3: unknown command or CRC error -> 05 Adr 00 FE CRC; it does not echo the command.
    (f,) = ChafonDecoder().feed(encode_response(0x00, 0x00, 0xFE))
    assert is_reply_to(0x21)(f)
    (info,) = ChafonDecoder().feed(v(INFO_288M))
    assert is_reply_to(0x21)(info)
    assert not is_reply_to(0x01)(info)


def test_tag_error_code_is_named() -> None:
    err = parse_response(frame_of(encode_response(0, 0x02, 0xFC, v("04"))))
    assert isinstance(err, ChafonError)
    assert err.tag_error == 0x04
    assert "memory locked" in err.description


def test_plain_success_is_an_ack() -> None:
    assert parse_response(frame_of(encode_response(0, 0x2F, 0x00))) == Ack(0x2F)


def test_status_names() -> None:
    assert status_name(0x01) == "0x01 inventory_done (inventory finished within the scan time)"
    assert "unknown" in status_name(0x77)


def test_scan_push_uhfreader18_form() -> None:
    (f,) = ChafonDecoder().feed(v(PUSH_HWVX))
    tag = parse_scan_push(f, form="18")
    assert tag == ChafonTag(v("20 00 70 8c 2b 38 0b 2d 00 00 00 00"), None, None)
    assert parse_response(f, form="18") == tag


def test_scan_push_ur_form_and_heartbeat() -> None:
    epc = v("e2 00 00 17 22 0a 01 23 45 67 89 ab")
    f = frame_of(encode_response(0, 0xEE, 0x00, v("05 0c") + epc + v("44")))
    tag = parse_scan_push(f)
    assert tag == ChafonTag(epc, 1, 0x44)
    assert antennas_from_mask(0x05) == (1, 3)
    hb = frame_of(encode_response(0, 0xEE, 0x28, v("00 00 00 07") + bytes(8) + v("00 00 01 00")))
    assert parse_scan_push(hb) == ScanHeartbeat(7, bytes(8), 256)
    assert parse_scan_push(frame_of(encode_response(0, 0xEE, 0x00, v("01 09 00")))) is None


@pytest.mark.parametrize(
    ("mask", "antenna"), [(0x01, 1), (0x02, 2), (0x04, 3), (0x08, 4), (0x80, 8), (0x00, None)]
)
def test_antenna_bitmask(mask: int, antenna: int | None) -> None:
    assert antenna_from_mask(mask) == antenna


# ----------------------------------------------------------------------------- command builders


def test_command_builders_match_doc_vectors() -> None:
    assert inventory_288() == v("0d ff 01 0f 00 01 00 00 00 00 80 14 c0 3a")
    assert inventory_18() == v("04 ff 01 1b b4")
    assert inventory_18(0x00) == v("04 00 01 db 4b")
    assert get_reader_info() == v("04 ff 21 19 95")
    assert get_reader_info(0x00) == v("04 00 21 d9 6a")
    assert start_fast_inventory(0x00) == v("05 00 50 00 81 be")
    assert stop_fast_inventory(0x00) == v("04 00 51 5e 19")


def test_command_builders_layout() -> None:
    (c,) = ChafonCommandDecoder().feed(set_power(0x00, 26))
    assert c == ChafonCommand(0x00, 0x2F, bytes([26]))
    (c,) = ChafonCommandDecoder().feed(set_address(0xFF, 0x07))
    assert c == ChafonCommand(0xFF, 0x24, bytes([7]))
    (c,) = ChafonCommandDecoder().feed(set_scan_time(0, 10))
    assert c.data == bytes([10])
    (c,) = ChafonCommandDecoder().feed(set_baud_rate(0, 115200))
    assert c.data == bytes([6])
    (c,) = ChafonCommandDecoder().feed(inventory_18(0, tid=(0, 6)))
    assert c.data == v("00 06")
    (c,) = ChafonCommandDecoder().feed(
        inventory_288(0x00, q=4, session=1, antenna=6, scan_time_100ms=10, target=1, fast_id=True,
                      mask=v("30 08"), mask_address_bits=0x20, tid=(0, 6))
    )
    assert c.data == v("24 01 01 00 20 10 30 08 00 06 01 85 0a")


@pytest.mark.parametrize(
    "build",
    [
        lambda: set_power(0, 31),
        lambda: set_address(0, 0xFF),
        lambda: set_scan_time(0, 2),
        lambda: set_baud_rate(0, 4800),
        lambda: inventory_288(antenna=9),
        lambda: inventory_288(q=16),
        lambda: inventory_288(mask=v("30"), mask_len_bits=12),
        lambda: encode(0, 1, bytes(252)),
    ],
)
def test_builders_refuse_values_the_reader_would_reject(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


# ----------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(max_size=600), st.floats(min_value=0, max_value=0.05)), max_size=20
    )
)
def test_noise_never_raises_and_memory_stays_bounded(chunks: list[tuple[bytes, float]]) -> None:
    d = ChafonDecoder()
    t = 0.0
    for data, dt in chunks:
        t += dt
        for f in d.feed(data, now_s=t):
            parse_response(f)
            parse_response(f, form="18")
        assert d.pending <= 255
    d.resync()
    assert d.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_valid_frames_between_noise_are_recovered(pre: bytes, post: bytes, step: int) -> None:
    frame = v(INV_288)
    # A candidate frame opened by noise ends at most 256 bytes later; zero bytes (Len 0) can't
    # open one, so after that guard the second copy is always found by byte-count alone.
    stream = pre + frame + post + bytes(256) + frame
    d = ChafonDecoder()
    got: list[ChafonFrame] = []
    for i in range(0, len(stream), step):
        got += d.feed(stream[i : i + step])
    assert frame_of(frame) in got


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_a_gap_after_noise_recovers_the_next_frame(noise: bytes, step: int) -> None:
    frame = v(INFO_288M)
    d = ChafonDecoder()
    got: list[ChafonFrame] = []
    for i in range(0, len(noise), step):
        got += d.feed(noise[i : i + step], now_s=0.0)
    for i in range(0, len(frame), step):
        got += d.feed(frame[i : i + step], now_s=0.020)  # after a 20 ms gap
    got += d.feed(b"", now_s=0.050)
    assert frame_of(frame) in got


# ----------------------------------------------------------------------------- session


class QueueLink(LinkBase):
    """A link whose reads come from a queue, for FrameSession."""

    def __init__(self, replies: list[bytes]) -> None:
        self.written: list[bytes] = []
        self._reads: asyncio.Queue[bytes] = asyncio.Queue()
        self._replies = replies

    async def read(self) -> bytes:
        return await self._reads.get()

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        for chunk in self._replies:
            self._reads.put_nowait(chunk)

    async def aclose(self) -> None:
        return None


async def test_frame_session_drives_the_decoder() -> None:
    raw = v(INFO_288M)
    # A push arrives first (unsolicited), then the reply split in two reads.
    link = QueueLink([v(PUSH_HWVX) + raw[:5], raw[5:]])
    decoder: FrameDecoder[ChafonFrame] = ChafonDecoder()
    session = FrameSession(link, decoder, idle_resync_s=0.015)
    others: list[ChafonFrame] = []
    reply = await session.request(
        get_reader_info(), is_reply_to(0x21), timeout_s=1.0, on_other=others.append
    )
    assert link.written == [v("04 ff 21 19 95")]
    assert reply == frame_of(raw)
    assert [f.cmd for f in others] == [0xEE]


async def test_frame_session_idle_resync_is_the_gap_rule() -> None:
    # Noise opens a long fake frame; the session's idle timeout (set to the 15 ms rule) resyncs.
    raw = v(NO_TAG)
    link = QueueLink([v("40") + raw])
    session = FrameSession(link, ChafonDecoder(), idle_resync_s=0.015)
    reply = await session.request(inventory_18(), is_reply_to(0x01), timeout_s=1.0)
    assert reply == frame_of(raw)
    assert session.decoder.stats.partial_timeouts == 1
