"""Chafon / UHFReader18 / UHFReader288 device against the protocol doc's vectors (§2)."""

from __future__ import annotations

import random

import pytest
import serial
from readersim.chafon import (
    BAD_VECTORS_CHAFON,
    ChafonConfig,
    ChafonDevice,
    crc16_mcrf4xx,
    encode_command,
    encode_response,
)
from readersim.faults import DeviceFaults, ErrorInjection
from readersim.population import Population, TagSpec, generated_tags

from tests.support.sim_support import FakeClock, SimProcess, drive, h, mcrf4xx

EPC_0313 = h("00 00 00 00 00 00 00 00 00 00 03 13")
INFO_REPLY = h("11 00 21 00 00 16 0c 03 4e 00 1e 0a 01 00 00 00 e6 51")
INVENTORY_18 = h("04 ff 01 1b b4")
INVENTORY_288 = h("0d ff 01 0f 00 01 00 00 00 00 80 14 c0 3a")


def make(
    tags: tuple[TagSpec, ...] = (),
    *,
    faults: DeviceFaults | None = None,
    **cfg: object,
) -> tuple[ChafonDevice, FakeClock]:
    clock = FakeClock()
    config = ChafonConfig(**({"rssi_jitter_db": 0.0} | cfg))  # type: ignore[arg-type]
    dev = ChafonDevice(config, Population(tags), clock=clock, rng=random.Random(3), faults=faults)
    return dev, clock


def run(dev: ChafonDevice, clock: FakeClock, request: bytes, seconds: float = 3.0) -> list[bytes]:
    return dev.feed(request) + drive(dev, clock, seconds)


def test_crc_vectors() -> None:
    assert crc16_mcrf4xx(b"123456789") == 0x6F91
    assert encode_command(0xFF, 0x01) == h("04 ff 01 1b b4")
    assert encode_command(0x00, 0x01) == h("04 00 01 db 4b")
    assert encode_command(0xFF, 0x21) == h("04 ff 21 19 95")
    assert encode_command(0x00, 0x21) == h("04 00 21 d9 6a")
    assert encode_command(0xFF, 0x01, h("0f 00 01 00 00 00 00 80 14")) == INVENTORY_288
    for vector in (INFO_REPLY, h("0700010101001e4b"), h("05 00 01 fb f2 3d")):
        assert crc16_mcrf4xx(vector) == 0  # residue over the whole frame
        assert mcrf4xx(vector) == 0  # the test's own CRC agrees
    for bad in BAD_VECTORS_CHAFON:
        assert crc16_mcrf4xx(bad) != 0


@pytest.mark.parametrize("request_frame", [h("04 ff 21 19 95"), h("04 00 21 d9 6a")])
def test_get_reader_info_reply(request_frame: bytes) -> None:
    dev, _ = make()
    assert dev.feed(request_frame) == [INFO_REPLY]


def test_get_reader_info_byte_by_byte_within_the_gap() -> None:
    dev, clock = make()
    out: list[bytes] = []
    for b in h("04 ff 21 19 95"):
        clock.advance(0.005)
        out += dev.feed(bytes([b]))
    assert out == [INFO_REPLY]


def test_inter_byte_gap_over_15_ms_discards_the_partial_frame() -> None:
    dev, clock = make()
    assert dev.feed(h("04 ff 21")) == []
    clock.advance(0.020)
    assert dev.feed(h("19 95")) == []  # the tail alone is no frame
    assert dev.stats.bytes_discarded == 3
    clock.advance(0.020)
    assert dev.feed(h("04 ff 21 19 95")) == [INFO_REPLY]


def test_uhfreader18_inventory_chain() -> None:
    dev, clock = make((TagSpec(epc=EPC_0313),), model="18")
    out = run(dev, clock, INVENTORY_18)
    assert out == [
        h("13 00 01 03 01 0c 00 00 00 00 00 00 00 00 00 00 03 13 3f 39"),  # status 03, 1 tag
        encode_response(0x00, 0x01, 0x01, h("00")),  # status 01: done
    ]


def test_uhfreader288_inventory_chain() -> None:
    dev, clock = make((TagSpec(epc=EPC_0313, rssi_dbm=0x6B - 129),))
    out = run(dev, clock, INVENTORY_288)
    assert out == [
        h("15 00 01 03 01 01 0c 00 00 00 00 00 00 00 00 00 00 03 13 6b b1 a5"),
        h("07 00 01 01 01 00 1e 4b"),  # status 01, Ant 01, 0 tags
    ]


def test_empty_field() -> None:
    dev, clock = make()
    assert run(dev, clock, INVENTORY_288) == [h("07 00 01 01 01 00 1e 4b")]
    dev18, clock18 = make(model="18")
    assert run(dev18, clock18, INVENTORY_18) == [h("05 00 01 fb f2 3d")]  # no tag operable


def test_chaining_packs_tags_and_ends_with_status_01() -> None:
    tags = generated_tags(7, seed=5)
    dev, clock = make(tags, tags_per_frame=3)
    out = run(dev, clock, INVENTORY_288)
    assert [f[3] for f in out] == [0x03, 0x03, 0x03, 0x01]
    assert [f[5] for f in out] == [3, 3, 1, 0]  # Num
    epcs = set()
    for frame in out:
        assert crc16_mcrf4xx(frame) == 0
        assert frame[0] == len(frame) - 1
        data, i = frame[6:-2], 0
        while i < len(data):
            n = data[i]
            epcs.add(data[i + 1 : i + 1 + n])
            i += n + 2  # EPCLen EPC RSSI
    assert epcs == {t.epc for t in tags}


def test_antenna_selection_and_antenna_error() -> None:
    tags = (TagSpec(epc=EPC_0313, antenna=2),)
    dev, clock = make(tags, connected_antennas=frozenset({1, 2}))
    ant2 = encode_command(0xFF, 0x01, h("0f 00 01 00 00 00 00 81 14"))
    out = run(dev, clock, ant2)
    assert [f[4] for f in out] == [0x02, 0x02]  # Ant bitmask of antenna 2
    ant3 = encode_command(0xFF, 0x01, h("0f 00 01 00 00 00 00 82 14"))
    assert run(dev, clock, ant3) == [encode_response(0x00, 0x01, 0xF8)]


def test_crc_error_unknown_command_and_other_address() -> None:
    dev, clock = make()
    assert dev.feed(h("04 ff 21 19 96")) == [encode_response(0, 0x00, 0xFE)]
    clock.advance(0.1)
    assert dev.feed(encode_command(0x00, 0x7E)) == [encode_response(0, 0x00, 0xFE)]
    clock.advance(0.1)
    assert dev.feed(encode_command(0x05, 0x21)) == []
    assert dev.stats.other_address == 1
    assert dev.feed(encode_command(0x00, 0x21, h("01"))) == [encode_response(0, 0x21, 0xFD)]


def test_set_power_address_and_scan_time() -> None:
    dev, _ = make()
    assert dev.feed(encode_command(0xFF, 0x2F, h("14"))) == [encode_response(0, 0x2F, 0x00)]
    assert dev.feed(encode_command(0xFF, 0x2F, h("1f"))) == [encode_response(0, 0x2F, 0xFF)]
    assert dev.feed(encode_command(0xFF, 0x25, h("05"))) == [encode_response(0, 0x25, 0x00)]
    assert dev.feed(encode_command(0xFF, 0x24, h("07"))) == [encode_response(0, 0x24, 0x00)]
    info = dev.feed(encode_command(0x07, 0x21))[0]
    assert info[1] == 0x07
    assert info[10] == 0x14  # power 20
    assert info[11] == 0x05  # scan time


def test_injected_error_status() -> None:
    faults = DeviceFaults(errors=(ErrorInjection(code=0xFB, probability=1.0),))
    dev, clock = make(generated_tags(3, seed=1), faults=faults)
    assert run(dev, clock, INVENTORY_288) == [encode_response(0, 0x01, 0xFB)]


def test_uhfreader18_scan_mode_push_matches_the_hw_vx_capture() -> None:
    tag = TagSpec(epc=h("20 00 70 8c 2b 38 0b 2d 00 00 00 00"))
    dev, clock = make((tag,), model="18", scan_mode=True)
    pushes = drive(dev, clock, 0.1)
    assert pushes[0] == h("11 00 ee 00 20 00 70 8c 2b 38 0b 2d 00 00 00 00 e0 56")
    assert len(pushes) == 3  # one read per 40 ms round


def test_288_scan_mode_started_and_stopped_by_commands() -> None:
    tags = generated_tags(2, seed=1)
    dev, clock = make(tags)
    assert dev.feed(encode_command(0xFF, 0x76, h("01"))) == [encode_response(0, 0x76, 0x00)]
    pushes = drive(dev, clock, 0.1)
    assert len(pushes) >= 4
    for frame in pushes:
        assert frame[2:4] == h("ee 00")
        assert frame[4] == 0x01  # Ant
        assert frame[5] == 12  # EPC length
        assert frame[6:18] in {t.epc for t in tags}
        assert crc16_mcrf4xx(frame) == 0
    dev.feed(encode_command(0xFF, 0x51))  # answered after the current round
    assert drive(dev, clock, 0.1)[-1] == encode_response(0, 0x51, 0x00)
    assert drive(dev, clock, 0.5) == []


def test_scan_mode_keeps_looking_while_the_field_is_empty() -> None:
    tag = TagSpec(epc=EPC_0313, enter_s=1.0)
    dev, clock = make((tag,), scan_mode=True)
    assert dev.poll() == []
    due = dev.next_due_s()
    assert due is not None
    assert due <= clock.now_s + 0.05  # not idle forever
    assert drive(dev, clock, 0.99) == []
    assert 1 <= len(drive(dev, clock, 0.1)) <= 3


def test_saturate_repeats_the_inventory_once_the_host_has_spoken() -> None:
    dev, _ = make(generated_tags(4, seed=1), saturate=True, read_rate_per_s=0.0, min_round_s=0.0)
    assert dev.poll() == []
    out = dev.feed(INVENTORY_288)
    assert len(out) == 64
    assert sum(1 for f in out if f[3] == 0x01) >= 12


def test_chafon_pty_subprocess_defaults_to_57600() -> None:
    sim = SimProcess("chafon", "--pty", "--tags", "2")
    try:
        path = sim.line()
        with serial.Serial(path, 57600, timeout=0.5) as port:
            port.write(h("04 ff 21 19 95"))
            assert port.read(len(INFO_REPLY)) == INFO_REPLY
            port.write(INVENTORY_288)
            frames = port.read(22 * 2 + 8)
            assert frames[3] == 0x03
            assert frames[-8:-2] == h("07 00 01 01 01 00")
    finally:
        code, err = sim.stop()
    assert code == 0
    assert "Traceback" not in err
