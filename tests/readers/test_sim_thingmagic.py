"""reader-sim thingmagic: the pure device, driven by hand with a fake clock.

Requests are the doc's §3 vectors written out, not built with the agent's encoders."""

from __future__ import annotations

import random

from readersim.args import build_parser
from readersim.cli import build_plan
from readersim.population import Population, TagSpec, generated_tags
from readersim.thingmagic import (
    ThingMagicConfig,
    ThingMagicDevice,
    crc16,
    encode_request,
)

from tests.support.sim_support import FakeClock, drive, h

GET_VERSION = h("ff 00 03 1d 0c")
BOOT_FIRMWARE = h("ff 00 04 1d 0b")
SET_REGION_NA = h("ff 01 97 01 4b bc")
START_READING = h("ff 10 2f 00 00 01 22 00 00 05 07 22 10 00 1b 03 e8 01 ff dd 2b")
STOP_READING = h("ff 03 2f 00 00 02 5e 86")


def make(
    tags: tuple[TagSpec, ...] = (), **cfg: object
) -> tuple[ThingMagicDevice, FakeClock]:
    clock = FakeClock()
    config = ThingMagicConfig(**({"rssi_jitter_db": 0.0} | cfg))  # type: ignore[arg-type]
    dev = ThingMagicDevice(config, Population(tags), clock=clock, rng=random.Random(7))
    return dev, clock


def replies(dev: ThingMagicDevice, clock: FakeClock, request: bytes,
            seconds: float = 0.1) -> list[tuple[int, int, bytes]]:
    """(opcode, status, data) of every frame sent within ``seconds`` after ``request``."""
    out = dev.feed(request) + drive(dev, clock, seconds)
    parsed = []
    for f in out:
        assert f[0] == 0xFF
        assert len(f) == f[1] + 7
        assert crc16(f[1:-2]) == int.from_bytes(f[-2:], "big")
        parsed.append((f[2], int.from_bytes(f[3:5], "big"), f[5:-2]))
    return parsed


def test_crc_matches_every_doc_vector() -> None:
    for vector in (GET_VERSION, BOOT_FIRMWARE, SET_REGION_NA, START_READING, STOP_READING,
                   h("ff 01 97 02 4b bf"), h("ff 03 9a 01 0c 00 a3 5d")):
        assert crc16(vector[1:-2]) == int.from_bytes(vector[-2:], "big")
    assert encode_request(0x03) == GET_VERSION


def test_powers_up_in_the_bootloader() -> None:
    dev, clock = make()
    version = replies(dev, clock, GET_VERSION)
    assert [(op, status) for op, status, _ in version] == [(0x03, 0x0000)]
    assert version[0][2][4] == 0x30  # hardware byte 0: M6e Nano
    assert replies(dev, clock, SET_REGION_NA) == [(0x97, 0x0101, b"")]  # invalid opcode
    assert replies(dev, clock, BOOT_FIRMWARE) == [(0x04, 0x0000, b"")]
    assert replies(dev, clock, BOOT_FIRMWARE) == [(0x04, 0x0101, b"")]  # already running
    assert replies(dev, clock, SET_REGION_NA) == [(0x97, 0x0000, b"")]


def test_region_is_required_before_reading() -> None:
    dev, clock = make()
    replies(dev, clock, BOOT_FIRMWARE)
    assert replies(dev, clock, START_READING) == [(0x2F, 0x0405, b"")]  # AFE not on
    assert replies(dev, clock, encode_request(0x97, b"\x42")) == [(0x97, 0x010B, b"")]


def test_streams_records_and_keepalives_then_stops() -> None:
    tags = generated_tags(3, seed=1)
    dev, clock = make(tags)
    replies(dev, clock, BOOT_FIRMWARE)
    replies(dev, clock, SET_REGION_NA)
    got = replies(dev, clock, START_READING, seconds=0.5)
    assert got[0] == (0x2F, 0x0000, h("00 00 01"))
    records = [d for op, st, d in got[1:] if op == 0x22 and st == 0 and d]
    epcs = {bytes(d[-14:-2]) for d in records}
    assert epcs == {t.epc for t in tags}
    assert all(d[6] == 1 and d[8] == 0x11 for d in records)  # read count 1, antenna 1/1
    rssi = {t.epc: t.rssi_dbm for t in tags}
    assert all(int.from_bytes(d[7:8], "big", signed=True) == rssi[bytes(d[-14:-2])]
               for d in records)  # signed dBm
    # While streaming it hears nothing but stop-reading.
    assert 0x03 not in [op for op, _, _ in replies(dev, clock, GET_VERSION)]
    stop = replies(dev, clock, STOP_READING, seconds=0.5)
    assert (0x2F, 0x0000, h("00 00 02")) in stop
    assert replies(dev, clock, GET_VERSION, seconds=1.5)[0][0] == 0x03


def test_keepalive_once_a_second_without_tags() -> None:
    dev, clock = make()
    replies(dev, clock, BOOT_FIRMWARE)
    replies(dev, clock, SET_REGION_NA)
    got = replies(dev, clock, START_READING, seconds=3.05)
    keepalives = [1 for op, st, d in got if (op, st, d) == (0x22, 0x0400, b"")]
    assert len(keepalives) == 3


def test_streaming_at_start_is_what_a_dead_process_leaves() -> None:
    tags = (TagSpec(epc=h("30 14 02 76 6c 00 00 40 00 00 00 01")),)
    dev, clock = make(tags, streaming_at_start=True)
    first = drive(dev, clock, 0.2)
    assert first
    assert all(f[2] == 0x22 for f in first)
    assert 0x03 not in [op for op, _, _ in replies(dev, clock, GET_VERSION)]  # unheard
    assert (0x2F, 0, h("00 00 02")) in replies(dev, clock, STOP_READING, seconds=0.3)
    assert [op for op, _, _ in replies(dev, clock, GET_VERSION)] == [0x03]


def test_power_limits_and_read_back() -> None:
    dev, clock = make()
    replies(dev, clock, BOOT_FIRMWARE)
    assert replies(dev, clock, encode_request(0x92, (2500).to_bytes(2, "big"))) == [
        (0x92, 0, b"")]
    assert replies(dev, clock, encode_request(0x62, b"\x00")) == [(0x62, 0, h("00 09 c4"))]
    assert replies(dev, clock, encode_request(0x92, (2800).to_bytes(2, "big"))) == [
        (0x92, 0x0103, b"")]  # the Nano stops at 27 dBm
    assert replies(dev, clock, encode_request(0x72)) == [(0x72, 0, h("21"))]


def test_baud_change_answers_at_the_old_rate_then_switches() -> None:
    dev, clock = make()
    assert dev.baud == 115200
    assert replies(dev, clock, encode_request(0x06, (921600).to_bytes(4, "big"))) == [
        (0x06, 0, b"")]
    assert dev.baud == 921600
    assert replies(dev, clock, encode_request(0x06, (1234).to_bytes(4, "big"))) == [
        (0x06, 0x010A, b"")]


def test_bad_crc_requests_are_counted_not_answered() -> None:
    dev, clock = make()
    broken = bytearray(GET_VERSION)
    broken[-1] ^= 1
    assert replies(dev, clock, b"\x13\x37" + bytes(broken)) == []
    assert dev.stats.bad_checksums == 1


def test_cli_plan() -> None:
    args = build_parser().parse_args(["thingmagic", "--pty", "--model", "m6e",
                                      "--streaming-at-start", "--tags", "4"])
    plan = build_plan(args)
    assert "thingmagic m6e: 4 port(s), 4 tags, 115200 baud, streaming at start" in plan.summary
