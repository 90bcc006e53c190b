"""R2000 "A0" device: replies against the protocol doc's golden vectors, byte for byte."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from readersim.epc import sgtin96
from readersim.faults import DeviceFaults, ErrorInjection, Window
from readersim.population import Population, TagSpec, generated_tags
from readersim.r2000 import (
    BAD_VECTORS_A0,
    R2000Config,
    R2000Device,
    checksum,
    encode_frame,
    frequency_mhz,
)

from tests.support.sim_support import FakeClock, a0_frames, decode_a0_tag, drive, h

IND903_EPC = h("e2 00 30 16 66 13 01 21 15 50 74 ef")
RODINBELL_EPC = h("30 09 66 37 81 db 02 97 48 76 fc 6a")


def make(
    tags: tuple[TagSpec, ...] = (),
    *,
    clock: FakeClock | None = None,
    faults: DeviceFaults | None = None,
    **cfg: object,
) -> tuple[R2000Device, FakeClock]:
    clock = clock or FakeClock()
    config = R2000Config(**({"rssi_jitter_db": 0.0} | cfg))  # type: ignore[arg-type]
    dev = R2000Device(config, Population(tags), clock=clock, rng=random.Random(7), faults=faults)
    return dev, clock


def run(dev: R2000Device, clock: FakeClock, request: bytes, seconds: float = 2.0) -> list[bytes]:
    """Feed a request and collect every frame sent within ``seconds``."""
    return dev.feed(request) + drive(dev, clock, seconds)


# -- checksum and framing (§1.4) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "check"),
    [
        ([1, 2, 3, 4], 246),
        ([134, 200, 3, 253], 178),
        ([220, 4, 3, 30], 255),
        ([20, 45, 3, 30, 150, 230, 120], 170),
    ],
)
def test_checksum_matches_rust_invelion_vectors(data: list[int], check: int) -> None:
    assert checksum(bytes(data)) == check


def test_encode_frame_matches_worked_examples() -> None:
    assert encode_frame(0x01, 0x72) == h("a0 03 01 72 ea")
    assert encode_frame(0x01, 0x89, h("01")) == h("a0 04 01 89 01 d1")
    assert encode_frame(0xFF, 0x89, h("01")) == h("a0 04 ff 89 01 d3")
    tag = h("04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45")
    assert encode_frame(0x01, 0x89, tag) == h(
        "a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf"
    )


def test_bad_vectors_really_are_bad() -> None:
    for frame in BAD_VECTORS_A0:
        assert sum(frame) & 0xFF != 0


# -- simple commands (§1.10) ---------------------------------------------------------------------

FIRMWARE_REQ = h("a0 03 01 72 ea")
FIRMWARE_REPLY = h("a0 05 01 72 01 09 de")


def test_firmware_version_whole() -> None:
    dev, _ = make()
    assert dev.feed(FIRMWARE_REQ) == [FIRMWARE_REPLY]


def test_firmware_version_byte_by_byte() -> None:
    dev, _ = make()
    out: list[bytes] = []
    for b in FIRMWARE_REQ:
        out += dev.feed(bytes([b]))
    assert out == [FIRMWARE_REPLY]


def test_firmware_version_wrapped_in_garbage_and_bad_frames() -> None:
    dev, _ = make()
    noise = h("00 a0 01 a0 02 13") + b"".join(BAD_VECTORS_A0) + h("a0 05 01")
    out = dev.feed(noise + FIRMWARE_REQ + h("a0 a0 77"))
    assert out == [FIRMWARE_REPLY]
    assert dev.stats.bad_checksums >= len(BAD_VECTORS_A0)
    assert dev.stats.bytes_discarded > 0


def test_stalled_partial_frame_is_dropped_after_the_input_timeout() -> None:
    dev, clock = make()
    assert dev.feed(h("a0 ff 01")) == []  # noise: a head byte claiming 255 more bytes
    assert dev.feed(FIRMWARE_REQ) == []  # swallowed while the false frame waits
    clock.advance(0.2)
    assert dev.feed(FIRMWARE_REQ) == [FIRMWARE_REPLY]


def test_bad_vector_host_frame_gets_no_reply() -> None:
    dev, _ = make()
    assert dev.feed(h("a0 04 01 89 01 71")) == []  # [BAD]: the right check is D1
    assert dev.stats.bad_checksums == 1


@given(
    noise=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\xa0", b"")), max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=6),
)
@settings(max_examples=100, deadline=None)
def test_resync_finds_every_request_among_noise(noise: list[bytes], cuts: list[int]) -> None:
    dev, _ = make()
    stream = b"".join(n + FIRMWARE_REQ for n in noise) + FIRMWARE_REQ
    chunks, i = [], 0
    for c in cuts:
        chunks.append(stream[i : i + c])
        i += c
    chunks.append(stream[i:])
    out: list[bytes] = []
    for chunk in chunks:
        out += dev.feed(chunk)
    assert out == [FIRMWARE_REPLY] * (len(noise) + 1)


def test_set_and_get_work_antenna() -> None:
    dev, _ = make()
    assert dev.feed(h("a0 04 01 74 00 e7")) == [h("a0 04 01 74 10 d7")]
    assert dev.feed(h("a0 04 01 74 01 e6")) == [h("a0 04 01 74 10 d7")]
    assert dev.feed(h("a0 03 01 75 e7")) == [encode_frame(1, 0x75, h("01"))]
    assert dev.feed(h("a0 04 01 74 00 e7")) == [h("a0 04 01 74 10 d7")]
    assert dev.feed(h("a0 03 01 75 e7")) == [h("a0 04 01 75 00 e6")]
    assert dev.feed(encode_frame(1, 0x74, h("04"))) == [encode_frame(1, 0x74, h("47"))]


def test_output_power_replies() -> None:
    dev, _ = make()
    assert dev.feed(h("a0 04 01 76 1e c7")) == [h("a0 04 01 76 10 d5")]
    assert dev.feed(h("a0 03 01 77 e5")) == [encode_frame(1, 0x77, h("1e"))]
    assert dev.feed(h("a0 07 01 76 1e 1e 1e 1e 6a")) == [h("a0 04 01 76 10 d5")]
    assert dev.feed(h("a0 03 01 77 e5")) == [h("a0 07 01 77 1e 1e 1e 1e 69")]
    eight = encode_frame(1, 0x76, bytes([20, 21, 22, 23, 24, 25, 26, 27]))
    assert dev.feed(eight) == [h("a0 04 01 76 10 d5")]
    assert dev.feed(encode_frame(1, 0x97)) == [
        encode_frame(1, 0x97, bytes([20, 21, 22, 23, 24, 25, 26, 27]))
    ]
    assert dev.feed(encode_frame(1, 0x76, h("22"))) == [encode_frame(1, 0x76, h("48"))]


def test_temperature_reset_and_antenna_group() -> None:
    dev, _ = make(ports=16, connected_antennas=frozenset({1, 9}))
    assert dev.feed(encode_frame(1, 0x7B)) == [encode_frame(1, 0x7B, h("01 23"))]
    assert dev.feed(h("a0 04 01 6c 01 ee")) == [encode_frame(1, 0x6C, h("10"))]
    assert dev.feed(encode_frame(1, 0x6D)) == [encode_frame(1, 0x6D, h("01"))]
    assert dev.feed(h("a0 04 01 74 03 e4")) == [h("a0 04 01 74 10 d7")]
    assert dev.feed(h("a0 03 01 70 ec")) == []  # reset: no reply
    assert dev.feed(h("a0 03 01 75 e7")) == [h("a0 04 01 75 00 e6")]
    assert dev.feed(encode_frame(1, 0x6D)) == [encode_frame(1, 0x6D, h("00"))]
    four_port, _ = make()
    assert four_port.feed(h("a0 04 01 6c 01 ee")) == [encode_frame(1, 0x6C, h("41"))]


def test_temperature_steps_over_time() -> None:
    dev, clock = make(temperature_c=40, temperature_steps=((5.0, 70), (10.0, -3)))
    assert dev.feed(encode_frame(1, 0x7B)) == [encode_frame(1, 0x7B, h("01 28"))]
    clock.advance(6)
    assert dev.feed(encode_frame(1, 0x7B)) == [encode_frame(1, 0x7B, h("01 46"))]
    clock.advance(5)
    assert dev.feed(encode_frame(1, 0x7B)) == [encode_frame(1, 0x7B, h("00 03"))]


def test_baud_change_applies_after_the_reply() -> None:
    dev, _ = make()
    assert dev.baud == 115200
    assert dev.feed(encode_frame(1, 0x71, h("03"))) == [encode_frame(1, 0x71, h("10"))]
    assert dev.baud == 38400
    assert dev.feed(encode_frame(1, 0x71, h("09"))) == [encode_frame(1, 0x71, h("4a"))]


def test_address_own_broadcast_and_others() -> None:
    dev, _ = make(address=0x05)
    assert dev.feed(encode_frame(0x05, 0x72)) == [encode_frame(0x05, 0x72, h("01 09"))]
    assert dev.feed(encode_frame(0xFF, 0x72)) == [encode_frame(0x05, 0x72, h("01 09"))]
    assert dev.feed(FIRMWARE_REQ) == []
    assert dev.stats.other_address == 1
    assert dev.feed(encode_frame(0xFF, 0x73, h("07"))) == [encode_frame(0x05, 0x73, h("10"))]
    assert dev.feed(encode_frame(0x07, 0x72)) == [encode_frame(0x07, 0x72, h("01 09"))]


# -- inventories (§1.6-1.8) ----------------------------------------------------------------------


def test_89_one_tag_reproduces_the_ind903_capture_and_v3_summary() -> None:
    tag = TagSpec(epc=IND903_EPC, rssi_dbm=-60)
    dev, clock = make((tag,), channels=(1,))
    out = run(dev, clock, h("a0 04 01 89 01 d1"))
    assert out == [
        h("a0 13 01 89 04 30 00 e2 00 30 16 66 13 01 21 15 50 74 ef 45 bf"),
        h("a0 0a 01 89 00 00 19 00 00 00 01 b2"),  # ant 0, 25 reads/s, 1 read
    ]


def test_89_broadcast_request() -> None:
    tag = TagSpec(epc=IND903_EPC, rssi_dbm=-60)
    dev, clock = make((tag,), channels=(1,))
    out = run(dev, clock, h("a0 04 ff 89 01 d3"))
    assert out[-1] == h("a0 0a 01 89 00 00 19 00 00 00 01 b2")


def test_89_v22_summary() -> None:
    tag = TagSpec(epc=IND903_EPC, antenna=2)
    dev, clock = make((tag,), summary_version="v2.2")
    dev.feed(h("a0 04 01 74 01 e6"))
    out = run(dev, clock, h("a0 04 01 89 01 d1"))
    assert len(out) == 2
    assert decode_a0_tag(out[0]).antenna == 2
    assert out[1] == h("a0 08 01 89 01 00 00 00 01 cc")


def test_8b_reproduces_the_rodinbell_capture() -> None:
    tag = TagSpec(epc=RODINBELL_EPC, rssi_dbm=0x67 - 129)
    dev, clock = make((tag,), channels=(4,))
    out = run(dev, clock, h("a0 06 01 8b 01 00 01 cc"))
    assert out == [
        h("a0 13 01 8b 10 30 00 30 09 66 37 81 db 02 97 48 76 fc 6a 67 2b"),
        h("a0 0a 01 8b 00 00 19 00 00 00 01 b0"),
    ]


def test_8b_with_sl_and_phase_adds_two_phase_bytes() -> None:
    dev, clock = make((TagSpec(epc=RODINBELL_EPC),))
    out = run(dev, clock, encode_frame(1, 0x8B, h("02 01 00 01 01")))  # S2 B SL0 Phase Repeat1
    tag = decode_a0_tag(out[0])
    assert out[0][1] == 0x15
    assert tag.phase is not None
    assert tag.epc == RODINBELL_EPC
    assert out[-1][1] == 0x0A
    assert dev.feed(encode_frame(1, 0x8B, h("04 00 01"))) == [encode_frame(1, 0x8B, h("41"))]


def test_89_work_antenna_missing() -> None:
    dev, clock = make(connected_antennas=frozenset({2}))
    assert run(dev, clock, h("a0 04 01 89 01 d1")) == [h("a0 04 01 89 22 b0")]


def test_8a_v3_four_port_summary_16_reads_in_100_ms() -> None:
    tags = generated_tags(16, seed=1, antennas=(1, 2, 3, 4))
    dev, clock = make(tags, min_round_s=0.025)
    out = run(dev, clock, h("a0 0d 01 8a 00 01 01 01 02 01 03 01 00 01 bd"))
    assert len(out) == 17
    assert (
        sorted(decode_a0_tag(f).antenna for f in out[:-1]) == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4
    )
    assert out[-1] == h("a0 0a 01 8a 00 00 10 00 00 00 64 57")


def test_8a_v22_form_and_v22_summary() -> None:
    tags = generated_tags(4, seed=1, antennas=(1, 2))
    dev, clock = make(tags, min_round_s=0.025, summary_version="v2.2")
    out = run(dev, clock, h("a0 08 01 8a 00 01 02 03 01 c6"))
    assert len(out) == 5
    assert out[-1] == encode_frame(1, 0x8A, h("00 00 00 04 00 00 00 64"))
    assert out[-1][1] == 0x0B


def test_8a_disconnected_antenna_notice_is_not_terminal() -> None:
    tags = generated_tags(4, seed=1, antennas=(1, 2, 4))
    dev, clock = make(tags, connected_antennas=frozenset({1, 2, 4}))
    out = run(dev, clock, h("a0 0d 01 8a 00 01 01 01 02 01 03 01 00 01 bd"))
    assert h("a0 05 01 8a 02 22 ac") in out
    assert out.index(h("a0 05 01 8a 02 22 ac")) < len(out) - 2  # tags of ant 4 follow
    assert out[-1][1] == 0x0A
    assert int.from_bytes(out[-1][4:7], "big") == 4


def test_8a_eight_port_rssi_bit7_encoding() -> None:
    tags = tuple(
        TagSpec(epc=sgtin96("0614141", "812345", port), antenna=port, rssi_dbm=-60)
        for port in range(1, 9)
    )
    dev, clock = make(tags, ports=8, connected_antennas=frozenset(range(1, 9)))
    pairs = b"".join(bytes([ant, 1]) for ant in range(8))
    out = run(dev, clock, encode_frame(1, 0x8A, pairs + h("00 01")))
    frames = out[:-1]
    assert len(frames) == 8
    for frame in frames:
        tag = decode_a0_tag(frame)
        serial = int.from_bytes(tag.epc, "big") & ((1 << 38) - 1)
        assert tag.antenna == serial
        assert (frame[-2] & 0x80 != 0) == (tag.antenna > 4)  # RSSI bit 7 = antenna bit 2
        assert tag.rssi_raw == 69
    assert out[-1][1] == 0x0A


def test_8a_eight_port_extended_form_with_phase() -> None:
    dev, clock = make((TagSpec(epc=RODINBELL_EPC, antenna=1),), ports=8)
    pairs = h("00 01") + h("ff 00") * 7
    ext = h("00") + h("00") * 5 + h("01 00 00 00 01 01") + h("01")  # ... TargetQty Phase Repeat
    out = run(dev, clock, encode_frame(1, 0x8A, pairs + ext))
    assert decode_a0_tag(out[0]).phase is not None
    assert out[0][1] == 0x15


def test_repeat_runs_several_rounds_then_one_summary() -> None:
    tags = generated_tags(5, seed=3)
    dev, clock = make(tags)
    out = run(dev, clock, encode_frame(1, 0x89, h("03")))
    assert len(out) == 16
    assert int.from_bytes(out[-1][7:11], "big") == 15


def test_reads_per_round_and_frequency_hopping() -> None:
    tags = generated_tags(3, seed=3, reads_per_round=2)
    dev, clock = make(tags)
    out = run(dev, clock, encode_frame(1, 0x89, h("32")), seconds=10)  # 50 rounds
    tags_out = [decode_a0_tag(f) for f in out[:-1]]
    assert len(tags_out) == 300
    freqs = {t.freq_index for t in tags_out}
    assert freqs <= set(range(7, 60))
    assert len(freqs) >= 30  # hops over the FCC table
    assert all(902.0 <= frequency_mhz(f) <= 928.0 for f in freqs)


def test_read_rate_spreads_frames_over_time() -> None:
    tags = generated_tags(10, seed=3)
    dev, clock = make(tags, read_rate_per_s=100.0)
    assert dev.feed(h("a0 04 01 89 01 d1")) == []
    assert dev.next_due_s() == pytest.approx(clock.now_s + 0.01)
    clock.advance(0.0501)
    assert len(dev.poll()) == 5
    clock.advance(0.05)
    out = dev.poll()
    assert len(out) == 6
    assert int.from_bytes(out[-1][5:7], "big") == 100  # ReadRate


def test_commands_wait_for_the_running_inventory() -> None:
    dev, clock = make(generated_tags(4, seed=3), read_rate_per_s=100.0)
    dev.feed(h("a0 04 01 89 01 d1"))
    assert dev.feed(FIRMWARE_REQ) == []
    clock.advance(1.0)
    out = dev.poll()
    assert out[-1] == FIRMWARE_REPLY
    assert out[-2][3] == 0x89
    assert out[-2][1] == 0x0A


def test_generated_population_is_distinct_sgtin96() -> None:
    tags = generated_tags(50, seed=11)
    epcs = [t.epc for t in tags]
    assert len(set(epcs)) == 50
    assert all(e[0] == 0x30 and len(e) == 12 for e in epcs)
    assert {t.pc for t in tags} == {0x3000}
    serials = [int.from_bytes(e, "big") & ((1 << 38) - 1) for e in epcs]
    assert serials == list(range(1, 51))
    assert all(-70 <= t.rssi_dbm <= -55 for t in tags)
    assert generated_tags(50, seed=11) == tags
    assert generated_tags(50, seed=12) != tags


def test_sgtin96_matches_the_gs1_tds_example() -> None:
    # urn:epc:tag:sgtin-96:3.0614141.812345.6789
    assert sgtin96("0614141", "812345", 6789, filter_value=3) == h(
        "30 74 25 7b f7 19 4e 40 00 00 1a 85"
    )


def test_rssi_raw_is_dbm_plus_129() -> None:
    tags = (TagSpec(epc=IND903_EPC, rssi_dbm=-55), TagSpec(epc=RODINBELL_EPC, rssi_dbm=-70))
    dev, clock = make(tags)
    raws = sorted(decode_a0_tag(f).rssi_raw for f in run(dev, clock, h("a0 04 01 89 01 d1"))[:-1])
    assert raws == [-70 + 129, -55 + 129]


# -- injected faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reply"),
    [(0x11, "a0 04 01 89 11 c1"), (0x22, "a0 04 01 89 22 b0"), (0x36, "a0 04 01 89 36 9c")],
)
def test_injected_error_replies(code: int, reply: str) -> None:
    faults = DeviceFaults(errors=(ErrorInjection(code=code, probability=1.0),))
    dev, clock = make(generated_tags(3, seed=1), faults=faults)
    assert run(dev, clock, h("a0 04 01 89 01 d1")) == [h(reply)]
    assert dev.feed(FIRMWARE_REQ) == [FIRMWARE_REPLY]  # only inventories fail


def test_error_window_then_recovery() -> None:
    faults = DeviceFaults(
        errors=(ErrorInjection(code=0x11, windows=(Window(start_s=1.0, duration_s=1.0),)),)
    )
    dev, clock = make(generated_tags(2, seed=1), faults=faults)
    assert len(run(dev, clock, h("a0 04 01 89 01 d1"))) == 3
    clock.now_s = dev.epoch_s + 1.5
    assert run(dev, clock, h("a0 04 01 89 01 d1")) == [h("a0 04 01 89 11 c1")]
    clock.now_s = dev.epoch_s + 2.5
    assert len(run(dev, clock, h("a0 04 01 89 01 d1"))) == 3


def test_silent_window_ignores_input_and_stops_output() -> None:
    faults = DeviceFaults(silent=(Window(start_s=1.0, duration_s=2.0),))
    dev, clock = make(generated_tags(2, seed=1), faults=faults, read_rate_per_s=10.0)
    dev.feed(h("a0 04 01 89 0a cf"))  # 10 rounds, 2 s long
    clock.now_s = dev.epoch_s + 1.1
    assert dev.poll() == []  # went silent mid-inventory
    assert dev.feed(FIRMWARE_REQ) == []
    assert dev.next_due_s() == pytest.approx(dev.epoch_s + 3.0)
    clock.now_s = dev.epoch_s + 3.0
    assert dev.poll() == []  # the interrupted inventory is gone
    assert dev.feed(FIRMWARE_REQ) == [FIRMWARE_REPLY]


def test_saturate_streams_rounds_once_the_host_has_spoken() -> None:
    dev, _clock = make(
        generated_tags(3, seed=1), saturate=True, read_rate_per_s=float("inf"), min_round_s=0.0
    )
    assert dev.poll() == []
    out = dev.feed(FIRMWARE_REQ)
    assert out[0] == FIRMWARE_REPLY
    assert len(out) == 64  # bounded by poll's limit, and more keeps coming
    more = dev.poll(limit=200)
    assert len(more) == 200
    frames = a0_frames(b"".join(out[1:] + more))
    assert sum(1 for f in frames if f[1] == 0x0A) >= 60  # a summary after every round
    dev.feed(h("a0 03 01 70 ec"))  # reset stops the stream
    dev.poll(limit=1000)
    assert dev.poll() == []
