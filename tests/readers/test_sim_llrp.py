"""LLRP 1.0.1 reader simulator: the pure device (fake clock) and one session over real TCP.

The messages the tests send are written out as bytes or built with small local helpers, and
replies are decoded here by hand, so a fault in the simulator's encoder is not hidden by the
same fault in its decoder.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from readersim import llrp_wire as w
from readersim.faults import DeviceFaults, Window
from readersim.llrp import STALE_ROSPEC_ID, LLRPConfig, LLRPDevice
from readersim.population import Population, TagSpec, generated_tags

from agent.readers.codecs import llrp as agent_llrp
from tests.support.sim_support import FakeClock, SimProcess, drive, h

UTC0 = 1_700_000_000.0


# -- local decoding (independent of readersim.llrp_wire's parser) -------------------------------


@dataclass(frozen=True, slots=True)
class Msg:
    version: int
    type: int
    id: int
    body: bytes


def decode(frame: bytes) -> Msg:
    word, length, msg_id = struct.unpack_from(">HII", frame)
    assert length == len(frame), f"length field {length} != {len(frame)}: {frame.hex(' ')}"
    return Msg(word >> 10, word & 0x3FF, msg_id, frame[10:])


def params(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each parameter; TV types as 0x80 | type, with the sizes used here."""
    tv_sizes = {1: 2, 2: 8, 4: 8, 6: 1, 7: 2, 8: 2, 9: 4, 13: 12}
    i = 0
    while i < len(data):
        if data[i] & 0x80:
            t = data[i] & 0x7F
            yield 0x80 | t, data[i + 1 : i + 1 + tv_sizes[t]]
            i += 1 + tv_sizes[t]
        else:
            t, n = struct.unpack_from(">HH", data, i)
            assert n >= 4
            yield t & 0x3FF, data[i + 4 : i + n]
            i += n


def one(data: bytes, ptype: int) -> bytes:
    found = [v for t, v in params(data) if t == ptype]
    assert len(found) == 1, f"{len(found)} parameters of type {ptype}"
    return found[0]


def status(body: bytes) -> int:
    first_type, value = next(params(body))
    assert first_type == 287, "LLRPStatus comes first"
    code, n = struct.unpack_from(">HH", value)
    assert len(value) == 4 + n
    return int(code)


@dataclass(frozen=True, slots=True)
class Read:
    epc: bytes
    antenna: int
    rssi: int
    channel: int
    first_us: int
    last_us: int
    seen: int
    custom: bytes | None


def tag_reads(frame: bytes) -> list[Read]:
    msg = decode(frame)
    assert msg.type == 61
    reads = []
    for t, trd in params(msg.body):
        assert t == 240
        fields = dict(params(trd))
        epc = fields.get(0x80 | 13)
        if epc is None:
            bits = struct.unpack_from(">H", fields[241])[0]
            epc = fields[241][2 : 2 + bits // 8]
        reads.append(
            Read(
                epc=epc,
                antenna=struct.unpack(">H", fields[0x81])[0],
                rssi=struct.unpack(">b", fields[0x86])[0],
                channel=struct.unpack(">H", fields[0x87])[0],
                first_us=struct.unpack(">Q", fields[0x82])[0],
                last_us=struct.unpack(">Q", fields[0x84])[0],
                seen=struct.unpack(">H", fields[0x88])[0],
                custom=fields.get(1023),
            )
        )
    return reads


# -- local encoding ---------------------------------------------------------------------------


def msg(mtype: int, mid: int, body: bytes = b"") -> bytes:
    return struct.pack(">HII", 0x0400 | mtype, 10 + len(body), mid) + body


def tlv(ptype: int, body: bytes) -> bytes:
    return struct.pack(">HH", ptype, 4 + len(body)) + body


def rospec(rid: int, antennas: tuple[int, ...] = (0,), n: int = 1) -> bytes:
    boundary = tlv(178, tlv(179, b"\x00") + tlv(182, b"\x00" + bytes(4)))
    ai = tlv(
        183,
        struct.pack(">H", len(antennas))
        + b"".join(struct.pack(">H", a) for a in antennas)
        + tlv(184, b"\x00" + bytes(4))
        + tlv(186, b"\x00\x01\x01"),
    )
    report = tlv(237, b"\x01" + struct.pack(">H", n))
    return tlv(177, struct.pack(">IBB", rid, 0, 0) + boundary + ai + report)


def add_rospec(mid: int, rid: int, antennas: tuple[int, ...] = (0,), n: int = 1) -> bytes:
    return msg(20, mid, rospec(rid, antennas, n))


def rospec_op(mtype: int, mid: int, rid: int) -> bytes:
    return msg(mtype, mid, struct.pack(">I", rid))


def keepalive_config(mid: int, period_ms: int) -> bytes:
    return msg(3, mid, b"\x00" + tlv(220, b"\x01" + struct.pack(">I", period_ms)))


GET_CAPABILITIES = h("04 01 00 00 00 0b 00 00 00 01 00")  # GET_READER_CAPABILITIES id 1, all


# -- fixtures ---------------------------------------------------------------------------------


def make(
    tags: tuple[TagSpec, ...] | None = None,
    *,
    faults: DeviceFaults | None = None,
    **cfg: object,
) -> tuple[LLRPDevice, FakeClock]:
    clock = FakeClock()
    config = LLRPConfig(**({"rssi_jitter_db": 0.0, "utc_at_epoch_s": UTC0} | cfg))  # type: ignore[arg-type]
    population = Population(tags if tags is not None else generated_tags(4, seed=3))
    dev = LLRPDevice(config, population, clock=clock, rng=random.Random(7), faults=faults)
    return dev, clock


def connected(**kw: object) -> tuple[LLRPDevice, FakeClock]:
    """A device whose connection event has been read."""
    dev, clock = make(**kw)  # type: ignore[arg-type]
    hello = dev.poll()
    assert [decode(f).type for f in hello] == [63]
    return dev, clock


def ask(dev: LLRPDevice, request: bytes) -> Msg:
    frames = dev.feed(request)
    assert len(frames) == 1, [f.hex(" ") for f in frames]
    return decode(frames[0])


def start_inventory(dev: LLRPDevice, antennas: tuple[int, ...] = (0,), n: int = 1) -> None:
    assert status(ask(dev, add_rospec(10, 5, antennas, n)).body) == 0
    assert status(ask(dev, rospec_op(24, 11, 5)).body) == 0
    reply = ask(dev, rospec_op(22, 12, 5))
    assert (reply.type, reply.id, status(reply.body)) == (32, 12, 0)


# -- tests ------------------------------------------------------------------------------------


def test_connect_sends_connection_attempt_event_success() -> None:
    dev, clock = make()
    frames = dev.poll()
    assert len(frames) == 1
    m = decode(frames[0])
    assert (m.version, m.type) == (1, 63)
    data = one(m.body, 246)
    utc = struct.unpack(">Q", one(data, 128))[0]
    assert utc == round(UTC0 * 1_000_000)
    assert one(data, 256) == b"\x00\x00"
    assert drive(dev, clock, 5.0) == []  # nothing more until asked
    assert dev.hangup_due_s() is None


def test_capabilities_response() -> None:
    dev, _ = connected(flavour="impinj", ports=4)
    m = ask(dev, GET_CAPABILITIES)
    assert (m.type, m.id, status(m.body)) == (11, 1, 0)
    general = one(m.body, 137)
    max_ant, flags, manufacturer, model = struct.unpack_from(">HBxII", general)
    assert (max_ant, flags & 0xC0, manufacturer) == (4, 0xC0, 25882)
    assert model > 0
    n = struct.unpack_from(">H", general, 12)[0]
    assert general[14 : 14 + n] == b"5.14.0.240"
    regulatory = one(m.body, 143)
    band = one(regulatory[4:], 144)
    entries = [struct.unpack(">Hh", v) for t, v in params(band) if t == 145]
    assert entries[0] == (1, 1000)
    assert entries[-1] == (len(entries), 3150)
    assert len(entries) == 87  # 10.00 .. 31.50 dBm in 0.25 dB steps


def test_add_enable_start_reports_the_population() -> None:
    tags = generated_tags(6, seed=5, antennas=(1, 2, 3))
    dev, clock = connected(tags=tags, read_rate_per_s=100.0, connected_antennas=frozenset({1, 2}))
    start_inventory(dev, antennas=(0,), n=2)
    frames = drive(dev, clock, 1.0)
    reports = [tag_reads(f) for f in frames]
    assert all(decode(f).type == 61 for f in frames)
    assert 45 <= len(reports) <= 50  # 100 reads/s, 2 tags per report
    assert all(len(r) == 2 for r in reports)
    reads = [r for rep in reports for r in rep]
    expected = {(t.epc, t.antenna) for t in tags if t.antenna in (1, 2)}  # antenna 3 not connected
    assert {(r.epc, r.antenna) for r in reads} == expected
    by_epc = {t.epc: t for t in tags}
    for r in reads:
        assert r.rssi == by_epc[r.epc].rssi_dbm  # no jitter configured
        assert 1 <= r.channel <= 50
        assert r.first_us == r.last_us
        assert r.seen == 1
        assert r.custom is None  # plain flavour
        assert UTC0 * 1e6 < r.first_us <= (UTC0 + 1.0) * 1e6
    stamps = [r.first_us for r in reads]
    assert stamps == sorted(stamps)
    ids = [decode(f).id for f in frames]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_aispec_antenna_list_limits_the_reads() -> None:
    tags = generated_tags(4, seed=5, antennas=(1, 2))
    dev, clock = connected(tags=tags)
    start_inventory(dev, antennas=(2,))
    reads = [r for f in drive(dev, clock, 0.5) for r in tag_reads(f)]
    assert reads
    assert {r.antenna for r in reads} == {2}
    assert {r.epc for r in reads} == {t.epc for t in tags if t.antenna == 2}


def test_impinj_flavour_adds_peak_rssi_custom_parameter_and_jitter() -> None:
    tags = (TagSpec(epc=bytes(range(12)), rssi_dbm=-60.0),)
    dev, clock = connected(tags=tags, flavour="impinj", rssi_jitter_db=2.0)
    start_inventory(dev)
    reads = [r for f in drive(dev, clock, 0.2) for r in tag_reads(f)]
    assert reads
    for r in reads:
        assert r.custom is not None
        vendor, subtype, cdbm = struct.unpack(">IIh", r.custom)
        assert (vendor, subtype) == (25882, 57)
        assert -6200 <= cdbm <= -5800
        assert abs(cdbm / 100 - r.rssi) <= 0.5
    assert len({r.rssi for r in reads}) > 1


def test_non_96_bit_epc_uses_epcdata() -> None:
    epc = bytes(range(1, 17))  # 128 bits
    dev, clock = connected(tags=(TagSpec(epc=epc),))
    start_inventory(dev)
    frames = drive(dev, clock, 0.05)
    trd = one(decode(frames[0]).body, 240)
    assert one(trd, 241) == struct.pack(">H", 128) + epc
    assert tag_reads(frames[0])[0].epc == epc


def test_stop_rospec_stops_reports() -> None:
    dev, clock = connected()
    start_inventory(dev)
    assert drive(dev, clock, 0.5)
    m = ask(dev, rospec_op(23, 20, 5))
    assert (m.type, m.id, status(m.body)) == (33, 20, 0)
    assert drive(dev, clock, 2.0) == []
    m = ask(dev, rospec_op(22, 21, 5))  # start again
    assert status(m.body) == 0
    assert drive(dev, clock, 0.5)


def test_start_of_a_disabled_or_unknown_rospec_fails() -> None:
    dev, clock = connected()
    assert status(ask(dev, add_rospec(1, 5)).body) == 0
    assert status(ask(dev, rospec_op(22, 2, 5)).body) == 100  # not enabled
    assert status(ask(dev, rospec_op(22, 3, 6)).body) == 100  # unknown
    assert status(ask(dev, add_rospec(4, 5)).body) == 100  # duplicate id
    assert drive(dev, clock, 1.0) == []


def test_keepalive_every_period_with_increasing_ids() -> None:
    dev, clock = connected()
    m = ask(dev, keepalive_config(7, 1000))
    assert (m.type, m.id, status(m.body)) == (13, 7, 0)
    t0 = clock.now_s
    times: list[float] = []
    ids: list[int] = []
    end = t0 + 3.5
    while (due := dev.next_due_s()) is not None and due <= end:
        clock.now_s = max(clock.now_s, due)
        for frame in dev.poll():
            k = decode(frame)
            assert (k.type, k.body) == (62, b"")
            times.append(clock.now_s - t0)
            ids.append(k.id)
        dev.feed(msg(72, ids[-1]) if ids else b"")  # KEEPALIVE_ACK: no answer
    assert times == pytest.approx([1.0, 2.0, 3.0])
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert dev.llrp_stats.keepalive_acks == 3
    config = ask(dev, msg(2, 8, b"\x00\x00\x00\x00\x00\x00\x00"))
    assert config.type == 12
    assert one(config.body, 220) == b"\x01" + struct.pack(">I", 1000)


def test_keepalives_stop_while_silent() -> None:
    faults = DeviceFaults(silent=(Window(start_s=1.5, duration_s=2.0),))
    dev, clock = connected(faults=faults)
    ask(dev, keepalive_config(1, 500))
    frames = drive(dev, clock, 1.4)
    assert [decode(f).type for f in frames] == [62, 62]
    assert drive(dev, clock, 2.0) == []  # 1.4 .. 3.4: silent from 1.5 to 3.5
    assert dev.feed(GET_CAPABILITIES) == []  # ignored while silent
    frames = drive(dev, clock, 1.0)  # 3.4 .. 4.4
    assert 1 <= len(frames) <= 3
    assert all(decode(f).type == 62 for f in frames)


def test_delete_all_removes_the_stale_rospec() -> None:
    dev, clock = connected(stale_rospec=True)
    listing = ask(dev, msg(26, 1))
    assert (listing.type, status(listing.body)) == (36, 0)
    specs = [v for t, v in params(listing.body) if t == 177]
    assert [struct.unpack_from(">I", s)[0] for s in specs] == [STALE_ROSPEC_ID]
    assert status(ask(dev, add_rospec(2, STALE_ROSPEC_ID)).body) == 100  # id is taken
    assert status(ask(dev, add_rospec(3, 5)).body) == 0
    m = ask(dev, rospec_op(21, 4, 0))
    assert (m.type, m.id, status(m.body)) == (31, 4, 0)
    assert dev.rospecs == {}
    listing = ask(dev, msg(26, 5))
    assert [t for t, _ in params(listing.body)] == [287]
    assert status(ask(dev, rospec_op(21, 6, 0)).body) == 0  # id 0 with nothing left: success
    assert status(ask(dev, rospec_op(21, 7, 5)).body) == 100  # unknown id
    assert status(ask(dev, add_rospec(8, STALE_ROSPEC_ID)).body) == 0
    assert drive(dev, clock, 0.5) == []


def test_delete_of_the_active_rospec_stops_reports() -> None:
    dev, clock = connected()
    start_inventory(dev)
    assert drive(dev, clock, 0.2)
    assert status(ask(dev, rospec_op(21, 30, 5)).body) == 0
    assert drive(dev, clock, 1.0) == []


@pytest.mark.parametrize(
    ("flavour", "refuse"),
    [("plain", False), ("plain", True), ("impinj", True)],
)
def test_custom_message_refused(flavour: str, refuse: bool) -> None:
    dev, _ = connected(flavour=flavour, refuse_custom=refuse)
    m = ask(dev, msg(1023, 42, struct.pack(">IB", 25882, 21) + bytes(4)))
    assert (m.type, m.id, status(m.body)) == (100, 42, 109)


def test_custom_message_accepted_by_impinj() -> None:
    dev, _ = connected(flavour="impinj")
    m = ask(dev, msg(1023, 42, struct.pack(">IB", 25882, 21) + bytes(4)))
    assert (m.type, m.id) == (1023, 42)
    vendor, subtype = struct.unpack_from(">IB", m.body)
    assert (vendor, subtype) == (25882, 22)  # IMPINJ_ENABLE_EXTENSIONS_RESPONSE
    assert status(m.body[5:]) == 0
    m = ask(dev, msg(1023, 43, struct.pack(">IB", 25882, 30) + bytes(4)))
    assert (m.type, m.id, m.body[4]) == (1023, 43, 30)  # other subtypes: the same subtype back


def test_unknown_message_gets_error_message_109() -> None:
    dev, _ = connected()
    m = ask(dev, msg(46, 77))  # GET_SUPPORTED_VERSION (LLRP 1.1): not in 1.0.1
    assert (m.version, m.type, m.id, status(m.body)) == (1, 100, 77, 109)
    assert dev.feed(msg(64, 78)) == []  # ENABLE_EVENTS_AND_REPORTS has no response


def test_llrp_1_1_message_gets_unsupported_version() -> None:
    dev, _ = connected()
    frames = dev.feed(h("08 2e 00 00 00 0a 00 00 00 05"))  # GET_SUPPORTED_VERSION, version 2
    m = decode(frames[0])
    assert (m.version, m.type, m.id, status(m.body)) == (1, 100, 5, 110)
    agent_reply = agent_ask(dev, agent_llrp.get_supported_version(6))
    st = agent_llrp.parse_status(agent_reply)
    assert st is not None
    assert (agent_reply.type, st.code) == (100, 110)


def test_reports_resume_after_a_silence_without_a_burst() -> None:
    faults = DeviceFaults(silent=(Window(start_s=0.5, duration_s=1.0),))
    dev, clock = connected(faults=faults, read_rate_per_s=100.0)
    start_inventory(dev)
    assert 45 <= len(drive(dev, clock, 0.5)) <= 50
    assert drive(dev, clock, 0.99) == []
    clock.advance(0.02)  # 1.51 s: the silence is over
    assert len(dev.poll()) <= 2
    assert 45 <= len(drive(dev, clock, 0.5)) <= 52


def test_simple_requests_answer_with_their_response_and_id() -> None:
    dev, _ = connected()
    for req, resp in [(2, 12), (41, 51), (44, 54)]:
        body = struct.pack(">I", 0) + (b"\x00\x00\x00" if req == 2 else b"")
        m = ask(dev, msg(req, 1000 + req, body))
        assert (m.type, m.id, status(m.body)) == (resp, 1000 + req, 0)


def test_split_and_coalesced_input() -> None:
    dev, _ = connected()
    data = GET_CAPABILITIES + msg(41, 2, bytes(4))
    out: list[bytes] = []
    for i in range(len(data)):
        out += dev.feed(data[i : i + 1])
    assert [(decode(f).type, decode(f).id) for f in out] == [(11, 1), (51, 2)]


def test_pipelined_requests_are_all_answered() -> None:
    dev, _ = connected()
    data = b"".join(msg(41, 100 + i, bytes(4)) for i in range(40))
    frames = dev.feed(data) + dev.poll()
    assert [decode(f).id for f in frames] == list(range(100, 140))


def test_close_connection_answers_then_hangs_up() -> None:
    dev, clock = connected()
    ask(dev, keepalive_config(1, 100))
    m = ask(dev, msg(14, 9))
    assert (m.type, m.id, status(m.body)) == (4, 9, 0)
    assert dev.hangup_due_s() == clock.now_s
    assert drive(dev, clock, 1.0) == []  # no keepalives after the close
    assert dev.feed(GET_CAPABILITIES) == []


def test_drop_after_ends_a_timed_inventory_too() -> None:
    dev, clock = connected(drop_after_s=0.2, read_rate_per_s=100.0)
    boundary = tlv(178, tlv(179, b"\x01") + tlv(182, b"\x01" + struct.pack(">I", 500)))
    ai = tlv(183, struct.pack(">HH", 1, 0) + tlv(184, b"\x00" + bytes(4)))
    spec = tlv(177, struct.pack(">IBB", 8, 0, 0) + boundary + ai)
    assert status(ask(dev, msg(20, 1, spec)).body) == 0
    assert status(ask(dev, rospec_op(24, 2, 8)).body) == 0  # immediate start trigger
    frames = drive(dev, clock, 1.0)
    assert 18 <= len(frames) <= 20  # reports until the drop at 0.2 s, then nothing
    assert dev.next_due_s() is None


def test_busy_reports_status_2_and_hangs_up() -> None:
    dev, clock = make(busy=True)
    frames = dev.poll()
    data = one(decode(frames[0]).body, 246)
    assert one(data, 256) == b"\x00\x02"
    assert dev.hangup_due_s() == clock.now_s


def test_drop_after() -> None:
    dev, clock = connected(drop_after_s=2.5)
    assert dev.hangup_due_s() == clock.now_s + 2.5


def test_wire_helpers_roundtrip() -> None:
    param = w.find(w.rospec(7, (1, 3), 4, immediate=True), w.P_ROSPEC)
    assert param is not None
    info = w.parse_rospec(param)
    assert (info.rospec_id, info.antennas, info.tags_per_report, info.start_immediate) == (
        7,
        (1, 3),
        4,
        True,
    )
    assert w.parse_message(GET_CAPABILITIES) == w.Message(1, 1, 1, b"\x00")
    assert w.status_of(w.llrp_status(109, "x")) == (109, "x")
    (ant_msg,) = agent_llrp.LlrpDecoder().feed(w.antenna_event(3, 42, antenna=2, connected=False))
    ant_event = agent_llrp.parse_reader_event(ant_msg)
    assert ant_event is not None
    assert ant_event.timestamp_us == 42
    assert [(a.antenna_id, a.connected) for a in ant_event.antenna_events] == [(2, False)]
    buf = bytearray(h("04 01 00 00 00 02 00 00 00 01") + GET_CAPABILITIES)
    assert w.split_messages(buf) == ([], 21)  # impossible length: stream dropped


def test_rospec_stop_trigger_duration_ends_the_inventory() -> None:
    dev, clock = connected(read_rate_per_s=100.0)
    boundary = tlv(178, tlv(179, b"\x00") + tlv(182, b"\x01" + struct.pack(">I", 300)))
    ai = tlv(183, struct.pack(">HH", 1, 0) + tlv(184, b"\x00" + bytes(4)))
    spec = tlv(177, struct.pack(">IBB", 8, 0, 0) + boundary + ai)
    assert status(ask(dev, msg(20, 1, spec)).body) == 0
    assert status(ask(dev, rospec_op(24, 2, 8)).body) == 0
    assert status(ask(dev, rospec_op(22, 3, 8)).body) == 0
    frames = drive(dev, clock, 2.0)
    assert 28 <= len(frames) <= 30  # 100 reads/s for 0.3 s, one tag per report
    assert dev.rospecs[8].state == 1  # inactive again
    assert status(ask(dev, rospec_op(22, 4, 8)).body) == 0  # and can be started again
    assert drive(dev, clock, 1.0)


# -- against the agent's own codec (the simulator shares no code with it) -----------------------


def agent_ask(dev: LLRPDevice, request: bytes) -> agent_llrp.LlrpMessage:
    decoder = agent_llrp.LlrpDecoder()
    replies = [m for f in dev.feed(request) for m in decoder.feed(f)]
    assert len(replies) == 1
    assert decoder.stats.implausible == 0
    return replies[0]


def test_agent_codec_session() -> None:
    tags = generated_tags(4, seed=9, antennas=(1, 2))
    dev, clock = make(tags=tags, flavour="impinj", stale_rospec=True, rssi_jitter_db=1.0)
    decoder = agent_llrp.LlrpDecoder()
    (hello,) = [m for f in dev.poll() for m in decoder.feed(f)]
    event = agent_llrp.parse_reader_event(hello)
    assert event is not None
    assert event.connection_ok
    assert event.timestamp_us == round(UTC0 * 1_000_000)

    caps = agent_llrp.parse_capabilities(agent_ask(dev, agent_llrp.get_reader_capabilities(1)))
    assert caps is not None
    assert (caps.max_antennas, caps.manufacturer_pen, caps.firmware) == (4, 25882, "5.14.0.240")
    assert caps.has_utc_clock
    assert caps.can_set_antenna_properties
    assert caps.power_table_cdbm[0] == (1, 1000)
    assert caps.power_table_cdbm[-1] == (87, 3150)

    ext = agent_ask(dev, agent_llrp.impinj_enable_extensions(2))
    assert ext.type == agent_llrp.MsgType.CUSTOM_MESSAGE
    ext_status = agent_llrp.parse_status(ext)  # after VendorIdentifier + MessageSubtype
    assert ext_status is not None
    assert ext_status.ok
    requests = [
        agent_llrp.set_reader_config(3, keepalive_ms=1000, events={0: True}),
        agent_llrp.delete_accessspec(4),
        agent_llrp.delete_rospec(5),  # clears the stale ROSpec 99
        agent_llrp.add_rospec(6, 99, (1, 2), report_every_n_tags=2, power_index=81),
        agent_llrp.enable_rospec(7, 99),
        agent_llrp.start_rospec(8, 99),
    ]
    for request in requests:
        reply = agent_ask(dev, request)
        st = agent_llrp.parse_status(reply)
        assert st is not None
        assert st.ok, (reply.name, st)
        assert reply.msg_id == int.from_bytes(request[6:10], "big")
    assert dev.feed(agent_llrp.enable_events_and_reports(9)) == []

    got = [m for f in drive(dev, clock, 2.2) for m in decoder.feed(f)]
    keepalives = [m for m in got if m.type == agent_llrp.MsgType.KEEPALIVE]
    assert len(keepalives) == 2
    reports = [r for m in got for r in agent_llrp.parse_ro_access_report(m)]
    assert len(reports) > 300
    by_epc = {t.epc: t for t in tags}
    for r in reports:
        tag = by_epc[r.epc]
        assert (r.epc_bits, r.antenna_id, r.tag_seen_count) == (96, tag.antenna, 1)
        assert r.impinj_rssi_cdbm is not None
        assert abs(r.impinj_rssi_cdbm - tag.rssi_dbm * 100) <= 100
        assert r.first_seen_us == r.last_seen_us
    assert {r.epc for r in reports} == set(by_epc)
    assert decoder.stats.implausible == 0

    stop = agent_ask(dev, agent_llrp.stop_rospec(10, 99))
    assert stop.type == agent_llrp.MsgType.STOP_ROSPEC_RESPONSE
    dev.feed(agent_llrp.keepalive_ack(keepalives[-1].msg_id))
    closed = agent_ask(dev, agent_llrp.close_connection(11))
    assert closed.type == agent_llrp.MsgType.CLOSE_CONNECTION_RESPONSE
    assert dev.hangup_due_s() is not None


def test_agent_codec_sees_unsupported_custom_and_busy() -> None:
    dev, _ = connected()
    refused = agent_ask(dev, agent_llrp.impinj_enable_extensions(5))
    st = agent_llrp.parse_status(refused)
    assert refused.type == agent_llrp.MsgType.ERROR_MESSAGE
    assert st is not None
    assert (st.code, refused.msg_id) == (109, 5)
    busy, _ = make(busy=True)
    (event_msg,) = agent_llrp.LlrpDecoder().feed(busy.poll()[0])
    event = agent_llrp.parse_reader_event(event_msg)
    assert event is not None
    assert event.connection_attempt == 2


# -- over real TCP ----------------------------------------------------------------------------


_pending: dict[int, bytes] = {}


def recv_message(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    """The next whole message from ``sock`` (bytes past it are kept for the next call)."""
    deadline = time.monotonic() + timeout_s
    buf = _pending.pop(sock.fileno(), b"")
    while len(buf) < 10 or len(buf) < struct.unpack_from(">I", buf, 2)[0]:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        buf += chunk
    n = struct.unpack_from(">I", buf, 2)[0]
    if buf[n:]:
        _pending[sock.fileno()] = buf[n:]
    return buf[:n]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    _pending.pop(sock.fileno(), None)  # a closed socket's leftovers under a reused fd
    return sock


def no_more_bytes(sock: socket.socket) -> bool:
    """True when the peer closed the connection with nothing left unread."""
    sock.settimeout(5)
    return _pending.pop(sock.fileno(), b"") == b"" and sock.recv(1) == b""


def test_tcp_session() -> None:
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "3")
    try:
        url = sim.port
        assert url.startswith("tcp://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        with connect(port) as sock:
            hello = decode(recv_message(sock))
            assert hello.type == 63
            assert one(one(hello.body, 246), 256) == b"\x00\x00"
            sock.sendall(GET_CAPABILITIES)
            reply = decode(recv_message(sock))
            assert (reply.type, reply.id, status(reply.body)) == (11, 1, 0)
            sock.sendall(msg(14, 2))
            closed = decode(recv_message(sock))
            assert (closed.type, closed.id) == (4, 2)
            assert no_more_bytes(sock)  # the reader closed the connection
    finally:
        code, err = sim.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_tcp_inventory_reports() -> None:
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", "--tags", "3", "--read-rate", "50")
    try:
        port = int(sim.port.rsplit(":", 1)[1])
        with connect(port) as sock:
            assert decode(recv_message(sock)).type == 63
            sock.sendall(add_rospec(1, 5) + rospec_op(24, 2, 5) + rospec_op(22, 3, 5))
            answers = [decode(recv_message(sock)) for _ in range(3)]
            assert [(a.type, a.id, status(a.body)) for a in answers] == [
                (30, 1, 0),
                (34, 2, 0),
                (32, 3, 0),
            ]
            start = time.monotonic()
            reads = [r for _ in range(10) for r in tag_reads(recv_message(sock))]
            elapsed = time.monotonic() - start
            assert len(reads) == 10
            assert len({r.epc for r in reads}) == 3
            assert 0.1 < elapsed < 2.0  # 50 reads/s
            now_us = time.time() * 1e6
            assert all(abs(r.first_us - now_us) < 5e6 for r in reads)  # wall-clock UTC
    finally:
        code, err = sim.stop()
    assert code == 0, err


@pytest.mark.parametrize(
    ("flag", "connection_status", "min_s"),
    [(("--busy",), b"\x00\x02", 0.0), (("--drop-after", "0.5"), b"\x00\x00", 0.45)],
)
def test_tcp_reader_closes_the_connection(
    flag: tuple[str, ...], connection_status: bytes, min_s: float
) -> None:
    sim = SimProcess("llrp", "--tcp", "127.0.0.1:0", *flag)
    try:
        port = int(sim.port.rsplit(":", 1)[1])
        start = time.monotonic()
        with connect(port) as sock:
            hello = decode(recv_message(sock))
            assert one(one(hello.body, 246), 256) == connection_status
            assert no_more_bytes(sock)
            assert min_s <= time.monotonic() - start < 3.0
        with connect(port) as sock:
            assert decode(recv_message(sock)).type == 63  # the next connection is served
    finally:
        code, err = sim.stop()
    assert code == 0, err
    assert "Traceback" not in err


# -- GPI triggers, RF modes, search mode, report timeout (agent's encoders -> simulator) --------


def _ok(dev: LLRPDevice, request: bytes) -> bool:
    status_ = agent_llrp.parse_status(agent_ask(dev, request))
    assert status_ is not None
    return status_.ok


def _agent_frames(frames: list[bytes]) -> list[agent_llrp.LlrpMessage]:
    decoder = agent_llrp.LlrpDecoder()
    return [m for f in frames for m in decoder.feed(f)]


def test_capabilities_carry_gpis_and_the_rf_mode_table() -> None:
    for flavour, ids in (("impinj", {0, 1, 2, 3, 4, 1000, 1002}), ("plain", {1, 2, 3, 4})):
        dev, _ = connected(flavour=flavour, gpis=2)
        caps = agent_llrp.parse_capabilities(agent_ask(dev, agent_llrp.get_reader_capabilities(1)))
        assert caps is not None
        assert caps.gpi_ports == 2
        assert {m.mode_id for m in caps.rf_modes} == ids
        found, _why = agent_llrp.find_mode("autoset_dense_reader", caps.rf_modes,
                                           caps.manufacturer_pen)
        assert found == (1000 if flavour == "impinj" else None)


def test_a_gpi_triggered_rospec_runs_only_while_the_input_is_high() -> None:
    # GPI 1 goes high 1 s after the connection, for 0.5 s of every 2 s.
    dev, clock = connected(read_rate_per_s=100.0, gpi_pulse=(1, 2.0, 0.5, 1.0))
    events = {1: True, 2: True}
    requests = [
        agent_llrp.set_reader_config(1, events=events,
                                     extra=agent_llrp.gpi_port_current_state(1)),
        agent_llrp.add_rospec(2, 7, (1,), gpi=agent_llrp.GpiTrigger(1)),
        agent_llrp.enable_rospec(3, 7),
    ]
    for request in requests:
        assert _ok(dev, request), request.hex()
    assert dev.last_rospec is not None
    assert dev.last_rospec.start_gpi == 1
    assert _agent_frames(drive(dev, clock, 0.9)) == []  # low: no inventory, no reports
    window = _agent_frames(drive(dev, clock, 0.7))  # 0.9 .. 1.6 s: high from 1.0 to 1.5 s
    kinds = [m.type for m in window]
    assert kinds[0] == agent_llrp.MsgType.READER_EVENT_NOTIFICATION
    first = agent_llrp.parse_reader_event(window[0])
    assert first is not None
    assert [(g.port, g.high) for g in first.gpi_events] == [(1, True)]
    reports = [m for m in window if m.type == agent_llrp.MsgType.RO_ACCESS_REPORT]
    assert 45 <= len(reports) <= 51  # 100 reads/s for 0.5 s
    notes = [agent_llrp.parse_reader_event(m) for m in window
             if m.type == agent_llrp.MsgType.READER_EVENT_NOTIFICATION]
    rospec_events = [(r.event_type, r.rospec_id) for n in notes if n for r in n.rospec_events]
    assert rospec_events == [(0, 7), (1, 7)]  # started, then stopped when the GPI went low
    assert [m for m in _agent_frames(drive(dev, clock, 1.3))
            if m.type == agent_llrp.MsgType.RO_ACCESS_REPORT] == []  # 1.6 .. 2.9 s: low
    assert dev.llrp_stats.gpi_starts == 1


def test_a_gpi_stop_timeout_ends_the_inventory_before_the_input_goes_low() -> None:
    dev, clock = connected(read_rate_per_s=100.0, gpi_pulse=(2, 10.0, 5.0, 0.5))
    assert _ok(dev, agent_llrp.add_rospec(1, 7, (1,), gpi=agent_llrp.GpiTrigger(2, 200)))
    assert _ok(dev, agent_llrp.enable_rospec(2, 7))
    reports = [m for m in _agent_frames(drive(dev, clock, 3.0))
               if m.type == agent_llrp.MsgType.RO_ACCESS_REPORT]
    assert 18 <= len(reports) <= 21  # 200 ms of 100 reads/s, although GPI 2 stays high 5 s


def test_mode_search_mode_and_report_timeout_reach_the_rospec() -> None:
    dev, clock = connected(flavour="impinj", read_rate_per_s=100.0)
    request = agent_llrp.add_rospec(
        1, 7, (1,), mode_index=1002, report_every_n_tags=1000, aispec_duration_ms=200,
        report_trigger=agent_llrp.REPORT_UPON_N_TAGS_OR_END_OF_AISPEC,
        inventory_custom=agent_llrp.impinj_inventory_search_mode(2))
    assert _ok(dev, request)
    info = dev.last_rospec
    assert info is not None
    assert (info.mode_id, info.search_mode, info.aispec_ms, info.report_trigger) == (
        1002, 2, 200, 1)
    assert _ok(dev, agent_llrp.enable_rospec(2, 7))
    assert _ok(dev, agent_llrp.start_rospec(3, 7))
    reports = [m for m in _agent_frames(drive(dev, clock, 1.05))
               if m.type == agent_llrp.MsgType.RO_ACCESS_REPORT]
    # 1000 tags per report would take 10 s; the 200 ms AISpec ends a report 5 times a second.
    assert len(reports) == 5
    assert all(len(agent_llrp.parse_ro_access_report(r)) == 20 for r in reports)


def test_a_plain_reader_refuses_an_unknown_mode_and_the_impinj_search_mode() -> None:
    dev, _ = connected(flavour="plain")
    bad_mode = agent_llrp.parse_status(agent_ask(dev, agent_llrp.add_rospec(1, 7, (1,),
                                                                            mode_index=1000)))
    assert bad_mode is not None
    assert not bad_mode.ok
    custom = agent_llrp.parse_status(agent_ask(dev, agent_llrp.add_rospec(
        2, 7, (1,), inventory_custom=agent_llrp.impinj_inventory_search_mode(2))))
    assert custom is not None
    assert not custom.ok
