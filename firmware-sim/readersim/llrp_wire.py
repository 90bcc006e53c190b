"""LLRP 1.0.1 binary encoding for the simulator: messages, TLV/TV parameters (all big-endian).

An independent, deliberately small implementation (it must not share code with the agent's
codec, which it exists to test). Message header::

    # [Rsvd:3 Ver:3 Type:10 = u16][Length:u32, header included][MessageID:u32]
    # TLV parameter: [Rsvd:6 Type:10 = u16][Length:u16, header included][body]
    # TV parameter:  [1 TypeNum:7 = u8][fixed-size value]
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

VERSION = 1  # LLRP 1.0.1
HEADER_LEN = 10
MAX_MESSAGE_LEN = 1 << 20  # a longer announced length is treated as line garbage

# Message types.
GET_READER_CAPABILITIES = 1
GET_READER_CONFIG = 2
SET_READER_CONFIG = 3
CLOSE_CONNECTION_RESPONSE = 4
GET_READER_CAPABILITIES_RESPONSE = 11
GET_READER_CONFIG_RESPONSE = 12
SET_READER_CONFIG_RESPONSE = 13
CLOSE_CONNECTION = 14
ADD_ROSPEC = 20
DELETE_ROSPEC = 21
START_ROSPEC = 22
STOP_ROSPEC = 23
ENABLE_ROSPEC = 24
DISABLE_ROSPEC = 25
GET_ROSPECS = 26
ADD_ROSPEC_RESPONSE = 30
DELETE_ROSPEC_RESPONSE = 31
START_ROSPEC_RESPONSE = 32
STOP_ROSPEC_RESPONSE = 33
ENABLE_ROSPEC_RESPONSE = 34
DISABLE_ROSPEC_RESPONSE = 35
GET_ROSPECS_RESPONSE = 36
ADD_ACCESSSPEC = 40
DELETE_ACCESSSPEC = 41
ENABLE_ACCESSSPEC = 42
DISABLE_ACCESSSPEC = 43
GET_ACCESSSPECS = 44
ADD_ACCESSSPEC_RESPONSE = 50
DELETE_ACCESSSPEC_RESPONSE = 51
ENABLE_ACCESSSPEC_RESPONSE = 52
DISABLE_ACCESSSPEC_RESPONSE = 53
GET_ACCESSSPECS_RESPONSE = 54
GET_REPORT = 60
RO_ACCESS_REPORT = 61
KEEPALIVE = 62
READER_EVENT_NOTIFICATION = 63
ENABLE_EVENTS_AND_REPORTS = 64
KEEPALIVE_ACK = 72
ERROR_MESSAGE = 100
CUSTOM_MESSAGE = 1023

# Request -> response type, for the requests that are simply acknowledged.
RESPONSE_OF: dict[int, int] = {
    GET_READER_CAPABILITIES: GET_READER_CAPABILITIES_RESPONSE,
    GET_READER_CONFIG: GET_READER_CONFIG_RESPONSE,
    SET_READER_CONFIG: SET_READER_CONFIG_RESPONSE,
    CLOSE_CONNECTION: CLOSE_CONNECTION_RESPONSE,
    ADD_ROSPEC: ADD_ROSPEC_RESPONSE,
    DELETE_ROSPEC: DELETE_ROSPEC_RESPONSE,
    START_ROSPEC: START_ROSPEC_RESPONSE,
    STOP_ROSPEC: STOP_ROSPEC_RESPONSE,
    ENABLE_ROSPEC: ENABLE_ROSPEC_RESPONSE,
    DISABLE_ROSPEC: DISABLE_ROSPEC_RESPONSE,
    GET_ROSPECS: GET_ROSPECS_RESPONSE,
    ADD_ACCESSSPEC: ADD_ACCESSSPEC_RESPONSE,
    DELETE_ACCESSSPEC: DELETE_ACCESSSPEC_RESPONSE,
    ENABLE_ACCESSSPEC: ENABLE_ACCESSSPEC_RESPONSE,
    DISABLE_ACCESSSPEC: DISABLE_ACCESSSPEC_RESPONSE,
    GET_ACCESSSPECS: GET_ACCESSSPECS_RESPONSE,
}

# Parameter types (TLV).
P_UTC_TIMESTAMP = 128
P_GENERAL_DEVICE_CAPABILITIES = 137
P_GPIO_CAPABILITIES = 141
P_REGULATORY_CAPABILITIES = 143
P_UHF_BAND_CAPABILITIES = 144
P_TRANSMIT_POWER_LEVEL_TABLE_ENTRY = 145
P_ROSPEC = 177
P_RO_BOUNDARY_SPEC = 178
P_ROSPEC_START_TRIGGER = 179
P_GPI_TRIGGER_VALUE = 181
P_ROSPEC_STOP_TRIGGER = 182
P_AISPEC = 183
P_AISPEC_STOP_TRIGGER = 184
P_INVENTORY_PARAMETER_SPEC = 186
P_ANTENNA_CONFIGURATION = 222
P_RF_TRANSMITTER = 224
P_C1G2_INVENTORY_COMMAND = 330
P_UHF_C1G2_RF_MODE_TABLE = 328
P_UHF_C1G2_RF_MODE_TABLE_ENTRY = 329
P_READER_EVENT_NOTIFICATION_SPEC = 244
P_EVENT_NOTIFICATION_STATE = 245
P_GPI_EVENT = 248
P_ROSPEC_EVENT = 249
P_IDENTIFICATION = 218
P_KEEPALIVE_SPEC = 220
P_RO_REPORT_SPEC = 237
P_TAG_REPORT_DATA = 240
P_EPC_DATA = 241
P_READER_EVENT_NOTIFICATION_DATA = 246
P_ANTENNA_EVENT = 255
P_CONNECTION_ATTEMPT_EVENT = 256
P_LLRP_STATUS = 287
P_CUSTOM = 1023

# TV parameters and their value sizes (LLRP 1.0.1 §16.2).
TV_ANTENNA_ID = 1
TV_FIRST_SEEN_UTC = 2
TV_LAST_SEEN_UTC = 4
TV_PEAK_RSSI = 6
TV_CHANNEL_INDEX = 7
TV_TAG_SEEN_COUNT = 8
TV_EPC96 = 13
TV_SIZES: dict[int, int] = {
    1: 2, 2: 8, 3: 8, 4: 8, 5: 8, 6: 1, 7: 2, 8: 2, 9: 4, 10: 2,
    11: 2, 12: 2, 13: 12, 14: 2, 15: 2, 16: 4, 17: 2, 18: 4, 19: 2, 20: 2,
}  # fmt: skip

# LLRPStatus codes.
M_SUCCESS = 0
M_PARAMETER_ERROR = 100
M_FIELD_ERROR = 101
M_UNSUPPORTED_MESSAGE = 109
M_UNSUPPORTED_VERSION = 110

# ConnectionAttemptEvent status.
CONN_SUCCESS = 0
CONN_FAILED_CLIENT_CONNECTION_EXISTS = 2

VENDOR_IMPINJ = 25882
IMPINJ_ENABLE_EXTENSIONS = 21
IMPINJ_INVENTORY_SEARCH_MODE = 23
IMPINJ_ENABLE_EXTENSIONS_RESPONSE = 22
IMPINJ_PEAK_RSSI = 57


class WireError(ValueError):
    """A malformed message or parameter."""


@dataclass(frozen=True, slots=True)
class Message:
    version: int
    type: int
    id: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: ``tv`` tells the encoding; ``body`` is the value (after the header)."""

    type: int
    body: bytes
    tv: bool = False


# -- encoding ---------------------------------------------------------------------------------


def u8(v: int) -> bytes:
    return struct.pack(">B", v)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def s16(v: int) -> bytes:
    return struct.pack(">h", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def u64(v: int) -> bytes:
    return struct.pack(">Q", v)


def utf8v(text: str) -> bytes:
    """A u16-length-prefixed UTF-8 string."""
    raw = text.encode()
    return u16(len(raw)) + raw


def message(msg_type: int, msg_id: int, body: bytes = b"", *, version: int = VERSION) -> bytes:
    if not 0 <= msg_type < 1024:
        raise ValueError("message type is 10 bits")
    if not 0 <= version < 8:
        raise ValueError("version is 3 bits")
    return u16((version << 10) | msg_type) + u32(HEADER_LEN + len(body)) + u32(msg_id) + body


def tlv(param_type: int, body: bytes = b"") -> bytes:
    if not 0 <= param_type < 1024:
        raise ValueError("TLV type is 10 bits")
    if len(body) + 4 > 0xFFFF:
        raise ValueError("TLV parameter too long")
    return u16(param_type) + u16(4 + len(body)) + body


def tv(param_type: int, value: bytes) -> bytes:
    if TV_SIZES.get(param_type) != len(value):
        raise ValueError(f"TV {param_type} takes {TV_SIZES.get(param_type)} bytes")
    return u8(0x80 | param_type) + value


def llrp_status(code: int = M_SUCCESS, description: str = "") -> bytes:
    """LLRPStatus (287): u16 StatusCode, UTF-8v ErrorDescription."""
    return tlv(P_LLRP_STATUS, u16(code) + utf8v(description))


def response(msg_type: int, msg_id: int, code: int = M_SUCCESS, text: str = "") -> bytes:
    """A response whose body is just its LLRPStatus."""
    return message(msg_type, msg_id, llrp_status(code, text))


def error_message(msg_id: int, code: int = M_UNSUPPORTED_MESSAGE, text: str = "") -> bytes:
    return message(ERROR_MESSAGE, msg_id, llrp_status(code, text))


def utc_timestamp(us: int) -> bytes:
    return tlv(P_UTC_TIMESTAMP, u64(us))


def connection_event(msg_id: int, utc_us: int, status: int = CONN_SUCCESS) -> bytes:
    """READER_EVENT_NOTIFICATION with a ConnectionAttemptEvent."""
    data = utc_timestamp(utc_us) + tlv(P_CONNECTION_ATTEMPT_EVENT, u16(status))
    return message(READER_EVENT_NOTIFICATION, msg_id, tlv(P_READER_EVENT_NOTIFICATION_DATA, data))


def antenna_event(msg_id: int, utc_us: int, antenna: int, connected: bool) -> bytes:
    data = utc_timestamp(utc_us) + tlv(P_ANTENNA_EVENT, u8(int(connected)) + u16(antenna))
    return message(READER_EVENT_NOTIFICATION, msg_id, tlv(P_READER_EVENT_NOTIFICATION_DATA, data))


def gpi_event(msg_id: int, utc_us: int, port: int, high: bool) -> bytes:
    data = utc_timestamp(utc_us) + tlv(P_GPI_EVENT, u16(port) + u8(0x80 if high else 0))
    return message(READER_EVENT_NOTIFICATION, msg_id, tlv(P_READER_EVENT_NOTIFICATION_DATA, data))


def rospec_event(msg_id: int, utc_us: int, rospec_id: int, started: bool) -> bytes:
    """ROSpecEvent (249): EventType 0 start / 1 end, ROSpecID, PreemptingROSpecID 0."""
    body = u8(0 if started else 1) + u32(rospec_id) + u32(0)
    data = utc_timestamp(utc_us) + tlv(P_ROSPEC_EVENT, body)
    return message(READER_EVENT_NOTIFICATION, msg_id, tlv(P_READER_EVENT_NOTIFICATION_DATA, data))


# (ModeIdentifier, M value 0..3, BDR bps): Impinj Octane's modes / a Zebra-like table.
IMPINJ_MODES = ((0, 0, 640_000), (1, 1, 640_000), (2, 2, 274_000), (3, 3, 256_000),
                (4, 3, 320_000), (1000, 2, 320_000), (1002, 2, 250_000))
PLAIN_MODES = ((1, 0, 640_000), (2, 1, 320_000), (3, 2, 256_000), (4, 3, 160_000))


def rf_mode_table(modes: tuple[tuple[int, int, int], ...]) -> bytes:
    """UHFC1G2RFModeTable (328) of UHFC1G2RFModeTableEntry (329)."""
    entries = b"".join(
        tlv(P_UHF_C1G2_RF_MODE_TABLE_ENTRY,
            u32(mode_id) + u8(0x40) + u8(m) + u8(2) + u8(2) + u32(bdr) + u32(1500)
            + u32(6250) + u32(25000) + u32(0))
        for mode_id, m, bdr in modes)
    return tlv(P_UHF_C1G2_RF_MODE_TABLE, entries)


POWER_TABLE_CDBM = tuple(range(1000, 3150 + 1, 25))  # index 1.. = 10.00 .. 31.50 dBm


def power_table(levels: tuple[int, ...] = POWER_TABLE_CDBM) -> bytes:
    """TransmitPowerLevelTableEntry (145) list, index 1.. of ``levels`` (centi-dBm)."""
    return b"".join(
        tlv(P_TRANSMIT_POWER_LEVEL_TABLE_ENTRY, u16(i) + s16(v)) for i, v in enumerate(levels, 1)
    )


def capabilities_body(
    *, antennas: int, manufacturer: int, model: int, firmware: str, country: int = 840,
    gpis: int = 4, modes: tuple[tuple[int, int, int], ...] = (),
) -> bytes:
    """GET_READER_CAPABILITIES_RESPONSE body (after LLRPStatus): general (with GPIO
    capabilities) + regulatory (power table, RF mode table)."""
    flags = 0x80 | 0x40  # CanSetAntennaProperties, HasUTCClockCapability
    general = tlv(
        P_GENERAL_DEVICE_CAPABILITIES,
        u16(antennas) + u8(flags) + u8(0) + u32(manufacturer) + u32(model) + utf8v(firmware)
        + tlv(P_GPIO_CAPABILITIES, u16(gpis) + u16(4)),
    )
    band = tlv(P_UHF_BAND_CAPABILITIES, power_table() + (rf_mode_table(modes) if modes else b""))
    regulatory = tlv(P_REGULATORY_CAPABILITIES, u16(country) + u16(1) + band)  # 1 = US FCC 15
    return general + regulatory


def keepalive_spec(periodic: bool, period_ms: int) -> bytes:
    return tlv(P_KEEPALIVE_SPEC, u8(1 if periodic else 0) + u32(period_ms))


@dataclass(frozen=True, slots=True, kw_only=True)
class TagRead:
    """One TagReportData's content."""

    epc: bytes
    antenna: int
    rssi_dbm: int
    channel: int
    first_us: int
    last_us: int
    seen: int = 1
    impinj_rssi_cdbm: int | None = None  # adds the Impinj ImpinjPeakRSSI custom parameter


def tag_report_data(read: TagRead) -> bytes:
    if len(read.epc) == 12:
        epc = tv(TV_EPC96, read.epc)
    else:
        epc = tlv(P_EPC_DATA, u16(8 * len(read.epc)) + read.epc)
    body = (
        epc
        + tv(TV_ANTENNA_ID, u16(read.antenna))
        + tv(TV_PEAK_RSSI, struct.pack(">b", max(-128, min(127, read.rssi_dbm))))
        + tv(TV_CHANNEL_INDEX, u16(read.channel))
        + tv(TV_FIRST_SEEN_UTC, u64(read.first_us))
        + tv(TV_LAST_SEEN_UTC, u64(read.last_us))
        + tv(TV_TAG_SEEN_COUNT, u16(read.seen))
    )
    if read.impinj_rssi_cdbm is not None:
        cdbm = max(-0x8000, min(0x7FFF, read.impinj_rssi_cdbm))
        body += tlv(P_CUSTOM, u32(VENDOR_IMPINJ) + u32(IMPINJ_PEAK_RSSI) + s16(cdbm))
    return tlv(P_TAG_REPORT_DATA, body)


def ro_access_report(msg_id: int, reads: list[TagRead]) -> bytes:
    return message(RO_ACCESS_REPORT, msg_id, b"".join(tag_report_data(r) for r in reads))


# -- decoding ---------------------------------------------------------------------------------


def split_messages(buf: bytearray) -> tuple[list[Message], int]:
    """Take the complete messages off the front of ``buf``; returns them and bytes discarded.

    An impossible length (below the header, above :data:`MAX_MESSAGE_LEN`) means the stream is
    out of step: everything buffered is discarded (a TCP stream cannot resync on its own).
    """
    out: list[Message] = []
    while len(buf) >= HEADER_LEN:
        word, length, msg_id = struct.unpack_from(">HII", buf)
        if not HEADER_LEN <= length <= MAX_MESSAGE_LEN:
            dropped = len(buf)
            buf.clear()
            return out, dropped
        if len(buf) < length:
            break
        body = bytes(buf[HEADER_LEN:length])
        out.append(Message((word >> 10) & 0x07, word & 0x3FF, msg_id, body))
        del buf[:length]
    return out, 0


def parse_message(data: bytes) -> Message:
    """Exactly one message (tests, clients)."""
    buf = bytearray(data)
    messages, dropped = split_messages(buf)
    if dropped or len(messages) != 1 or buf:
        raise WireError(f"not exactly one LLRP message: {data.hex(' ')}")
    return messages[0]


def iter_params(data: bytes) -> Iterator[Param]:
    """The parameters of a body (after its fixed fields), TV and TLV mixed."""
    i = 0
    n = len(data)
    while i < n:
        first = data[i]
        if first & 0x80:
            ptype = first & 0x7F
            size = TV_SIZES.get(ptype)
            if size is None or i + 1 + size > n:
                raise WireError(f"unknown or truncated TV parameter {ptype} at {i}")
            yield Param(ptype, data[i + 1 : i + 1 + size], tv=True)
            i += 1 + size
            continue
        if i + 4 > n:
            raise WireError(f"truncated TLV header at {i}")
        ptype, length = struct.unpack_from(">HH", data, i)
        ptype &= 0x3FF
        if length < 4 or i + length > n:
            raise WireError(f"bad TLV length {length} of parameter {ptype} at {i}")
        yield Param(ptype, data[i + 4 : i + length])
        i += length


def find(data: bytes, param_type: int) -> Param | None:
    """The first TLV parameter of ``param_type`` among the parameters of ``data``."""
    return next((p for p in iter_params(data) if p.type == param_type and not p.tv), None)


def find_all(data: bytes, param_type: int) -> list[Param]:
    return [p for p in iter_params(data) if p.type == param_type and not p.tv]


def status_of(body: bytes) -> tuple[int, str]:
    """The LLRPStatus of a response body: (code, description)."""
    status = find(body, P_LLRP_STATUS)
    if status is None or len(status.body) < 4:
        raise WireError("no LLRPStatus")
    code, length = struct.unpack_from(">HH", status.body)
    return code, status.body[4 : 4 + length].decode(errors="replace")


@dataclass(frozen=True, slots=True, kw_only=True)
class ROSpecInfo:
    """What the simulator needs from an ROSpec (177)."""

    rospec_id: int
    priority: int
    state: int
    antennas: tuple[int, ...]  # from the AISpecs; (0,) = all
    tags_per_report: int  # ROReportSpec N; 0 / absent -> 1
    start_immediate: bool  # ROSpecStartTrigger type 1
    duration_ms: int  # ROSpecStopTrigger type 1 (duration); 0 = runs until STOP_ROSPEC
    raw: bytes  # the whole ROSpec parameter, header included (GET_ROSPECS echoes it)
    start_gpi: int | None = None  # ROSpecStartTrigger type 3: this GPI port going high
    stop_gpi: int | None = None  # ROSpecStopTrigger type 2: this GPI port going low ...
    stop_gpi_timeout_ms: int = 0  # ... or this long after the start (0: no timeout)
    aispec_ms: int = 0  # AISpecStopTrigger duration (the ROSpec loops over its AISpec)
    report_trigger: int = 1  # ROReportTrigger: 1 N tags or end of AISpec, 2 ... of ROSpec
    mode_id: int | None = None  # C1G2RFControl ModeIndex of the first AntennaConfiguration
    search_mode: int | None = None  # ImpinjInventorySearchMode, when sent
    session: int | None = None  # C1G2SingulationControl Session of the first configuration
    # (AntennaID, TransmitPower index) of each AntennaConfiguration with an RFTransmitter (224)
    powers: tuple[tuple[int, int], ...] = ()


def parse_rospec(param: Param) -> ROSpecInfo:
    body = param.body
    if len(body) < 6:
        raise WireError("ROSpec too short")
    rospec_id, priority, state = struct.unpack_from(">IBB", body)
    antennas: list[int] = []
    n = 1
    immediate = False
    duration_ms = 0
    extra: dict[str, int] = {}
    powers: list[tuple[int, int]] = []
    for p in iter_params(body[6:]):
        if p.type == P_AISPEC:
            if len(p.body) < 2:
                raise WireError("AISpec too short")
            (count,) = struct.unpack_from(">H", p.body)
            if len(p.body) < 2 + 2 * count:
                raise WireError("AISpec antenna list truncated")
            antennas += struct.unpack_from(f">{count}H", p.body, 2)
            _aispec(p.body[2 + 2 * count:], extra)
            powers += _powers(p.body[2 + 2 * count:])
        elif p.type == P_RO_REPORT_SPEC:
            if len(p.body) < 3:
                raise WireError("ROReportSpec too short")
            extra["report_trigger"] = p.body[0]
            (n,) = struct.unpack_from(">H", p.body, 1)
        elif p.type == P_RO_BOUNDARY_SPEC:
            trigger = find(p.body, P_ROSPEC_START_TRIGGER)
            immediate = trigger is not None and trigger.body[:1] == b"\x01"
            if trigger is not None and trigger.body[:1] == b"\x03":
                gpi = find(trigger.body[1:], P_GPI_TRIGGER_VALUE)
                if gpi is None or len(gpi.body) < 7:
                    raise WireError("GPI start trigger without its GPITriggerValue")
                extra["start_gpi"] = struct.unpack_from(">H", gpi.body)[0]
            stop = find(p.body, P_ROSPEC_STOP_TRIGGER)
            if stop is not None and len(stop.body) >= 5 and stop.body[0] == 1:
                (duration_ms,) = struct.unpack_from(">I", stop.body, 1)
            if stop is not None and len(stop.body) >= 5 and stop.body[0] == 2:
                gpi = find(stop.body[5:], P_GPI_TRIGGER_VALUE)
                if gpi is None or len(gpi.body) < 7:
                    raise WireError("GPI stop trigger without its GPITriggerValue")
                port, _event, timeout_ms = struct.unpack_from(">HBI", gpi.body)
                extra["stop_gpi"] = port
                extra["stop_gpi_timeout_ms"] = timeout_ms
    return ROSpecInfo(
        rospec_id=rospec_id,
        priority=priority,
        state=state,
        antennas=tuple(antennas) or (0,),
        tags_per_report=n or 1,
        start_immediate=immediate,
        duration_ms=duration_ms,
        raw=tlv(P_ROSPEC, body),
        powers=tuple(powers),
        **extra,
    )


def _powers(params: bytes) -> list[tuple[int, int]]:
    """(AntennaID, TransmitPower) of every AntennaConfiguration that has an RFTransmitter.

    RFTransmitter(224): [HopTableID:2][ChannelIndex:2][TransmitPower:2], the power an index
    into the reader's TransmitPowerLevelTable (1-based)."""
    out: list[tuple[int, int]] = []
    for p in iter_params(params):
        if p.type != P_INVENTORY_PARAMETER_SPEC or len(p.body) < 3:
            continue
        for conf in iter_params(p.body[3:]):
            if conf.type != P_ANTENNA_CONFIGURATION or len(conf.body) < 2:
                continue
            rf = find(conf.body[2:], P_RF_TRANSMITTER)
            if rf is not None and len(rf.body) >= 6:
                out.append((struct.unpack_from(">H", conf.body)[0],
                            struct.unpack_from(">H", rf.body, 4)[0]))
    return out


def _aispec(params: bytes, out: dict[str, int]) -> None:
    """AISpecStopTrigger duration; from the first AntennaConfiguration's
    C1G2InventoryCommand: the RF mode and the Impinj search mode."""
    for p in iter_params(params):
        if p.type == P_AISPEC_STOP_TRIGGER and len(p.body) >= 5 and p.body[0] == 1:
            out["aispec_ms"] = struct.unpack_from(">I", p.body, 1)[0]
        elif p.type == P_INVENTORY_PARAMETER_SPEC and len(p.body) >= 3:
            for conf in iter_params(p.body[3:]):
                if conf.type != P_ANTENNA_CONFIGURATION or len(conf.body) < 2:
                    continue
                inv = find(conf.body[2:], P_C1G2_INVENTORY_COMMAND)
                if inv is None or not inv.body:
                    continue
                for q in iter_params(inv.body[1:]):
                    if q.type == 335 and len(q.body) >= 2:  # C1G2RFControl: ModeIndex
                        out.setdefault("mode_id", struct.unpack_from(">H", q.body)[0])
                    elif q.type == 336 and q.body:  # C1G2SingulationControl: Session (2 bits)
                        out.setdefault("session", q.body[0] >> 6)
                    elif q.type == P_CUSTOM and len(q.body) >= 10:
                        vendor, sub, mode = struct.unpack_from(">IIH", q.body)
                        if vendor == VENDOR_IMPINJ and sub == IMPINJ_INVENTORY_SEARCH_MODE:
                            out.setdefault("search_mode", mode)
                return


def rospec(
    rospec_id: int,
    antennas: tuple[int, ...] = (0,),
    tags_per_report: int = 1,
    *,
    immediate: bool = False,
) -> bytes:
    """A minimal ROSpec (tests and the stale-ROSpec fault): null stop triggers, report on N."""
    start = tlv(P_ROSPEC_START_TRIGGER, u8(1 if immediate else 0))
    stop = tlv(P_ROSPEC_STOP_TRIGGER, u8(0) + u32(0))  # null
    boundary = tlv(P_RO_BOUNDARY_SPEC, start + stop)
    ai_stop = tlv(184, u8(0) + u32(0))  # AISpecStopTrigger: null
    inventory = tlv(186, u16(1) + u8(1))  # InventoryParameterSpec: id 1, EPCGlobal C1G2
    ants = u16(len(antennas)) + b"".join(u16(a) for a in antennas)
    aispec = tlv(P_AISPEC, ants + ai_stop + inventory)
    report = tlv(P_RO_REPORT_SPEC, u8(1) + u16(tags_per_report))  # 1 = upon N tags or end
    return tlv(P_ROSPEC, u32(rospec_id) + u8(0) + u8(0) + boundary + aispec + report)
