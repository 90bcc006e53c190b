"""LLRP parameters: TLV/TV parsing and the content decoders built on them (pure, never raise).

Source: EPCglobal LLRP 1.1 (and 1.0.1, whose binary encoding is the same), §4.3 parameter
encoding; numbers checked against the Wireshark LLRP dissector (``packet-llrp.c``) and the
LTK-generated type tables of ``llrpjs``; Impinj subtypes against ``sllurp``'s decoder.

    # TLV: [0:1][rsvd:5][Type:10][Length:16 incl. 4-byte header][Value...]          (§4.3.2)
    # TV:  [1:1][Type:7][Value: fixed length by type, table TV_LENGTHS]               (§4.3.1)

Every parser here works on ``bytes`` and returns frozen dataclasses. A malformed body (a TLV
length below 4 or past the end, an unknown TV type whose length cannot be known) stops the walk
at that point: what came before is returned and, when a ``DecoderStats`` is given, its
``implausible`` counter goes up by one.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.readers.codecs.base import DecoderStats

# §4.3.1 TV parameter types and value lengths (bytes after the type byte).
TV_ANTENNA_ID = 1
TV_FIRST_SEEN_UTC = 2
TV_FIRST_SEEN_UPTIME = 3
TV_LAST_SEEN_UTC = 4
TV_LAST_SEEN_UPTIME = 5
TV_PEAK_RSSI = 6
TV_CHANNEL_INDEX = 7
TV_TAG_SEEN_COUNT = 8
TV_ROSPEC_ID = 9
TV_INVENTORY_PARAMETER_SPEC_ID = 10
TV_C1G2_CRC = 11
TV_C1G2_PC = 12
TV_EPC_96 = 13
TV_SPEC_INDEX = 14
TV_CLIENT_REQUEST_OP_SPEC_RESULT = 15
TV_ACCESS_SPEC_ID = 16
TV_OP_SPEC_ID = 17
TV_C1G2_SINGULATION_DETAILS = 18
TV_C1G2_XPC_W1 = 19
TV_C1G2_XPC_W2 = 20

TV_LENGTHS: dict[int, int] = {
    TV_ANTENNA_ID: 2,
    TV_FIRST_SEEN_UTC: 8,
    TV_FIRST_SEEN_UPTIME: 8,
    TV_LAST_SEEN_UTC: 8,
    TV_LAST_SEEN_UPTIME: 8,
    TV_PEAK_RSSI: 1,  # signed dBm
    TV_CHANNEL_INDEX: 2,
    TV_TAG_SEEN_COUNT: 2,
    TV_ROSPEC_ID: 4,
    TV_INVENTORY_PARAMETER_SPEC_ID: 2,
    TV_C1G2_CRC: 2,
    TV_C1G2_PC: 2,
    TV_EPC_96: 12,
    TV_SPEC_INDEX: 2,
    TV_CLIENT_REQUEST_OP_SPEC_RESULT: 2,
    TV_ACCESS_SPEC_ID: 4,
    TV_OP_SPEC_ID: 2,
    TV_C1G2_SINGULATION_DETAILS: 4,
    TV_C1G2_XPC_W1: 2,
    TV_C1G2_XPC_W2: 2,
}

# TLV parameter types used here (LLRP 1.1 binary encoding tables).
P_UTC_TIMESTAMP = 128
P_UPTIME = 129
P_GENERAL_DEVICE_CAPABILITIES = 137
P_GPIO_CAPABILITIES = 141
P_REGULATORY_CAPABILITIES = 143
P_UHF_BAND_CAPABILITIES = 144
P_TRANSMIT_POWER_LEVEL_TABLE_ENTRY = 145
P_ROSPEC = 177
P_RO_BOUNDARY_SPEC = 178
P_ROSPEC_START_TRIGGER = 179
P_ROSPEC_STOP_TRIGGER = 182
P_AISPEC = 183
P_AISPEC_STOP_TRIGGER = 184
P_INVENTORY_PARAMETER_SPEC = 186
P_KEEPALIVE_SPEC = 220
P_ANTENNA_CONFIGURATION = 222
P_RF_TRANSMITTER = 224
P_EVENTS_AND_REPORTS = 226
P_RO_REPORT_SPEC = 237
P_TAG_REPORT_CONTENT_SELECTOR = 238
P_TAG_REPORT_DATA = 240
P_EPC_DATA = 241
P_READER_EVENT_NOTIFICATION_SPEC = 244
P_EVENT_NOTIFICATION_STATE = 245
P_READER_EVENT_NOTIFICATION_DATA = 246
P_GPI_EVENT = 248
P_ROSPEC_EVENT = 249
P_READER_EXCEPTION_EVENT = 252
P_ANTENNA_EVENT = 255
P_CONNECTION_ATTEMPT_EVENT = 256
P_CONNECTION_CLOSE_EVENT = 257
P_LLRP_STATUS = 287
P_FIELD_ERROR = 288
P_PARAMETER_ERROR = 289
P_UHF_C1G2_RF_MODE_TABLE = 328
P_UHF_C1G2_RF_MODE_TABLE_ENTRY = 329
P_C1G2_INVENTORY_COMMAND = 330
P_C1G2_RF_CONTROL = 335
P_C1G2_SINGULATION_CONTROL = 336
P_C1G2_EPC_MEMORY_SELECTOR = 348
P_CUSTOM = 1023

# Impinj (IANA PEN 25882) custom parameter subtypes in TagReportData (Octane LLRP extensions).
VENDOR_IMPINJ = 25882
IMPINJ_RF_PHASE_ANGLE = 56  # u16, 0..4095 over 0..2*pi
IMPINJ_PEAK_RSSI = 57  # s16, dBm * 100
IMPINJ_RF_DOPPLER_FREQUENCY = 68  # s16, raw as sent

TLV_HEADER = 4


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: ``tv`` tells the encoding; ``value`` is the TV value or the TLV body."""

    type: int
    tv: bool
    value: bytes

    def children(self, stats: DecoderStats | None = None) -> tuple[Param, ...]:
        """The sub-parameters of a TLV without fixed fields (see :func:`sub_params` otherwise)."""
        return parse_params(self.value, stats)


def _u(data: bytes, at: int, n: int) -> int:
    return int.from_bytes(data[at : at + n], "big")


def _s(data: bytes, at: int, n: int) -> int:
    return int.from_bytes(data[at : at + n], "big", signed=True)


def parse_params(body: bytes, stats: DecoderStats | None = None) -> tuple[Param, ...]:
    """Split ``body`` into TLV/TV parameters (§4.3). Never raises; stops at the first bad one."""
    out: list[Param] = []
    pos = 0
    n = len(body)
    while pos < n:
        first = body[pos]
        if first & 0x80:  # TV (§4.3.1)
            ptype = first & 0x7F
            size = TV_LENGTHS.get(ptype)
            if size is None or pos + 1 + size > n:
                break  # unknown TV: its length is unknowable, the rest cannot be parsed
            out.append(Param(ptype, True, bytes(body[pos + 1 : pos + 1 + size])))
            pos += 1 + size
            continue
        if pos + TLV_HEADER > n:
            break
        ptype = _u(body, pos, 2) & 0x3FF
        length = _u(body, pos + 2, 2)
        if length < TLV_HEADER or pos + length > n:
            break
        out.append(Param(ptype, False, bytes(body[pos + TLV_HEADER : pos + length])))
        pos += length
    else:
        return tuple(out)
    if stats is not None:
        stats.implausible += 1
    return tuple(out)


def sub_params(param: Param, skip: int, stats: DecoderStats | None = None) -> tuple[Param, ...]:
    """The sub-parameters of a TLV whose fixed fields take ``skip`` bytes."""
    if len(param.value) < skip:
        if stats is not None:
            stats.implausible += 1
        return ()
    return parse_params(param.value[skip:], stats)


def utf8v(data: bytes, at: int) -> tuple[str, int]:
    """An LLRP ``utf8v`` field: u16 byte count + UTF-8. Returns (text, offset after it)."""
    if at + 2 > len(data):
        return "", len(data)
    count = _u(data, at, 2)
    end = min(at + 2 + count, len(data))
    return data[at + 2 : end].decode("utf-8", "replace"), end


# ----------------------------------------------------------------------------- LLRPStatus

# §14 status codes (LLRP 1.1 "Status Codes" table; 1.0.1 has the same values).
STATUS_NAMES: dict[int, str] = {
    0: "M_Success",
    100: "M_ParameterError",
    101: "M_FieldError",
    102: "M_UnexpectedParameter",
    103: "M_MissingParameter",
    104: "M_DuplicateParameter",
    105: "M_OverflowParameter",
    106: "M_OverflowField",
    107: "M_UnknownParameter",
    108: "M_UnknownField",
    109: "M_UnsupportedMessage",
    110: "M_UnsupportedVersion",
    111: "M_UnsupportedParameter",
    112: "M_UnexpectedMessage",  # LLRP 1.1 only
    200: "P_ParameterError",
    201: "P_FieldError",
    202: "P_UnexpectedParameter",
    203: "P_MissingParameter",
    204: "P_DuplicateParameter",
    205: "P_OverflowParameter",
    206: "P_OverflowField",
    207: "P_UnknownParameter",
    208: "P_UnknownField",
    209: "P_UnsupportedParameter",
    300: "A_Invalid",
    301: "A_OutOfRange",
    401: "R_DeviceError",
}
M_SUCCESS = 0


def status_name(code: int) -> str:
    return STATUS_NAMES.get(code, f"unknown_status_{code}")


@dataclass(frozen=True, slots=True)
class FieldError:
    """FieldError (TLV 288): FieldNum u16, ErrorCode u16."""

    field_num: int
    code: int


@dataclass(frozen=True, slots=True)
class ParameterError:
    """ParameterError (TLV 289): ParameterType u16, ErrorCode u16, [FieldError] [ParameterError]."""

    parameter_type: int
    code: int
    field_error: FieldError | None
    parameter_error: ParameterError | None


@dataclass(frozen=True, slots=True)
class LlrpStatus:
    """LLRPStatus (TLV 287): StatusCode u16, ErrorDescription utf8v, [FieldError] [ParamError]."""

    code: int
    name: str
    description: str
    field_error: FieldError | None = None
    parameter_error: ParameterError | None = None

    @property
    def ok(self) -> bool:
        return self.code == M_SUCCESS


def _field_error(p: Param) -> FieldError | None:
    v = p.value
    return FieldError(_u(v, 0, 2), _u(v, 2, 2)) if len(v) >= 4 else None


def _parameter_error(p: Param, depth: int, stats: DecoderStats | None) -> ParameterError | None:
    v = p.value
    if len(v) < 4:
        return None
    fe: FieldError | None = None
    pe: ParameterError | None = None
    for sub in sub_params(p, 4, stats):
        if sub.type == P_FIELD_ERROR and not sub.tv:
            fe = _field_error(sub)
        elif sub.type == P_PARAMETER_ERROR and not sub.tv and depth < 8:
            pe = _parameter_error(sub, depth + 1, stats)
    return ParameterError(_u(v, 0, 2), _u(v, 2, 2), fe, pe)


def decode_status(p: Param, stats: DecoderStats | None = None) -> LlrpStatus | None:
    v = p.value
    if p.tv or p.type != P_LLRP_STATUS or len(v) < 4:
        return None
    code = _u(v, 0, 2)
    text, end = utf8v(v, 2)
    fe: FieldError | None = None
    pe: ParameterError | None = None
    for sub in sub_params(p, end, stats):
        if sub.type == P_FIELD_ERROR and not sub.tv:
            fe = _field_error(sub)
        elif sub.type == P_PARAMETER_ERROR and not sub.tv:
            pe = _parameter_error(sub, 0, stats)
    return LlrpStatus(code, status_name(code), text, fe, pe)


def find_status(body: bytes, stats: DecoderStats | None = None) -> LlrpStatus | None:
    """The LLRPStatus among the top-level parameters of a response (or ERROR_MESSAGE) body."""
    for p in parse_params(body, stats):
        if p.type == P_LLRP_STATUS and not p.tv:
            return decode_status(p, stats)
    return None


# ----------------------------------------------------------------------------- tag reports


@dataclass(frozen=True, slots=True)
class CustomParam:
    """Custom (TLV 1023): VendorIdentifier u32 (IANA PEN), ParameterSubtype u32, data kept raw."""

    vendor: int
    subtype: int
    data: bytes


def decode_custom(p: Param) -> CustomParam | None:
    v = p.value
    if p.tv or p.type != P_CUSTOM or len(v) < 8:
        return None
    return CustomParam(_u(v, 0, 4), _u(v, 4, 4), v[8:])


@dataclass(frozen=True, slots=True)
class TagReport:
    """One TagReportData (TLV 240): the EPC plus whatever the TagReportContentSelector enabled."""

    epc: bytes
    epc_bits: int  # EPCData's EPCLengthBits; 96 for EPC-96
    antenna_id: int | None = None
    rssi_dbm: int | None = None  # PeakRSSI, signed dBm
    channel_index: int | None = None
    first_seen_us: int | None = None  # FirstSeenTimestampUTC, microseconds since the Unix epoch
    last_seen_us: int | None = None
    first_seen_uptime_us: int | None = None
    last_seen_uptime_us: int | None = None
    tag_seen_count: int | None = None
    pc: int | None = None  # C1G2PC
    crc: int | None = None  # C1G2CRC
    rospec_id: int | None = None
    spec_index: int | None = None
    inventory_parameter_spec_id: int | None = None
    access_spec_id: int | None = None
    impinj_rssi_cdbm: int | None = None  # ImpinjPeakRSSI, dBm * 100
    impinj_phase_raw: int | None = None  # ImpinjRFPhaseAngle, 0..4095 = 0..2*pi
    impinj_doppler_raw: int | None = None  # ImpinjRFDopplerFrequency, as sent
    custom: tuple[CustomParam, ...] = ()

    @property
    def epc_hex(self) -> str:
        return self.epc.hex()

    @property
    def best_rssi_dbm(self) -> float | None:
        """Impinj's centi-dBm value when present, else the whole-dBm PeakRSSI."""
        if self.impinj_rssi_cdbm is not None:
            return self.impinj_rssi_cdbm / 100
        return None if self.rssi_dbm is None else float(self.rssi_dbm)


_TV_FIELDS: dict[int, str] = {
    TV_ANTENNA_ID: "antenna_id",
    TV_CHANNEL_INDEX: "channel_index",
    TV_FIRST_SEEN_UTC: "first_seen_us",
    TV_LAST_SEEN_UTC: "last_seen_us",
    TV_FIRST_SEEN_UPTIME: "first_seen_uptime_us",
    TV_LAST_SEEN_UPTIME: "last_seen_uptime_us",
    TV_TAG_SEEN_COUNT: "tag_seen_count",
    TV_C1G2_PC: "pc",
    TV_C1G2_CRC: "crc",
    TV_ROSPEC_ID: "rospec_id",
    TV_SPEC_INDEX: "spec_index",
    TV_INVENTORY_PARAMETER_SPEC_ID: "inventory_parameter_spec_id",
    TV_ACCESS_SPEC_ID: "access_spec_id",
}
_IMPINJ_FIELDS: dict[int, str] = {
    IMPINJ_PEAK_RSSI: "impinj_rssi_cdbm",
    IMPINJ_RF_PHASE_ANGLE: "impinj_phase_raw",
    IMPINJ_RF_DOPPLER_FREQUENCY: "impinj_doppler_raw",
}


def decode_tag_report(p: Param, stats: DecoderStats | None = None) -> TagReport | None:
    """TagReportData -> TagReport; None (counted) when it carries no EPC."""
    if p.tv or p.type != P_TAG_REPORT_DATA:
        return None
    epc: bytes | None = None
    bits = 0
    fields: dict[str, int] = {}
    custom: list[CustomParam] = []
    body = p.value
    n = len(body)
    pos = 0
    tlvs: list[Param] = []
    # The TV parameters are walked in place (no Param per field): a report carries a dozen
    # per tag, and this loop is what bounds LLRP tags/s per core (bench_decoders.py).
    while pos < n:
        first = body[pos]
        if not first & 0x80:
            rest = parse_params(body[pos:], stats)  # TLVs (and any TVs after them)
            tlvs.extend(rest)
            break
        ptype = first & 0x7F
        size = TV_LENGTHS.get(ptype)
        if size is None or pos + 1 + size > n:
            if stats is not None:
                stats.implausible += 1
            break
        start = pos + 1
        pos = start + size
        if ptype == TV_EPC_96:
            epc, bits = body[start:pos], 96
        elif ptype == TV_PEAK_RSSI:
            fields["rssi_dbm"] = int.from_bytes(body[start:pos], "big", signed=True)
        else:
            name = _TV_FIELDS.get(ptype)
            if name is not None:
                fields[name] = int.from_bytes(body[start:pos], "big")
    for sub in tlvs:
        if sub.tv:
            if sub.type == TV_EPC_96:
                epc, bits = sub.value, 96
            elif sub.type == TV_PEAK_RSSI:
                fields["rssi_dbm"] = _s(sub.value, 0, 1)
            elif sub.type in _TV_FIELDS:
                fields[_TV_FIELDS[sub.type]] = _u(sub.value, 0, len(sub.value))
        elif sub.type == P_EPC_DATA and len(sub.value) >= 2:
            bits = _u(sub.value, 0, 2)
            epc = sub.value[2 : 2 + (bits + 7) // 8]
            if len(epc) < (bits + 7) // 8 and stats is not None:
                stats.implausible += 1  # EPCLengthBits says more than the parameter holds
        elif sub.type == P_CUSTOM:
            c = decode_custom(sub)
            if c is None:
                continue
            custom.append(c)
            name = _IMPINJ_FIELDS.get(c.subtype) if c.vendor == VENDOR_IMPINJ else None
            if name is not None and len(c.data) >= 2:
                signed = c.subtype != IMPINJ_RF_PHASE_ANGLE
                fields[name] = int.from_bytes(c.data[:2], "big", signed=signed)
    if epc is None:
        if stats is not None:
            stats.implausible += 1
        return None
    return TagReport(epc=epc, epc_bits=bits, custom=tuple(custom), **fields)


def decode_tag_reports(body: bytes, stats: DecoderStats | None = None) -> tuple[TagReport, ...]:
    out: list[TagReport] = []
    for p in parse_params(body, stats):
        if p.type == P_TAG_REPORT_DATA and not p.tv:
            tag = decode_tag_report(p, stats)
            if tag is not None:
                out.append(tag)
    return tuple(out)


# ----------------------------------------------------------------------------- reader events

# ConnectionAttemptEvent Status values.
CONNECTION_STATUS: dict[int, str] = {
    0: "Success",
    1: "Failed_A_Reader_Initiated_Connection_Already_Exists",
    2: "Failed_A_Client_Initiated_Connection_Already_Exists",
    3: "Failed_Reason_Other_Than_A_Connection_Already_Exists",
    4: "Another_Connection_Attempted",
}


@dataclass(frozen=True, slots=True)
class AntennaEvent:
    """AntennaEvent (TLV 255): EventType u8 (0 disconnected, 1 connected), AntennaID u16."""

    connected: bool
    antenna_id: int


@dataclass(frozen=True, slots=True)
class GpiEvent:
    """GPIEvent (TLV 248): GPIPortNumber u16, GPIEvent u1 (+7 reserved)."""

    port: int
    high: bool


@dataclass(frozen=True, slots=True)
class RoSpecEvent:
    """ROSpecEvent (TLV 249): EventType u8 (0 start, 1 end, 2 preempted), ROSpecID, Preempting."""

    event_type: int
    rospec_id: int
    preempting_rospec_id: int


@dataclass(frozen=True, slots=True)
class ReaderEvent:
    """ReaderEventNotificationData (TLV 246) of a READER_EVENT_NOTIFICATION."""

    timestamp_us: int | None  # UTCTimestamp, microseconds since the Unix epoch
    uptime_us: int | None  # Uptime, when the reader has no UTC clock
    connection_attempt: int | None = None  # ConnectionAttemptEvent status, see CONNECTION_STATUS
    connection_closed: bool = False  # ConnectionCloseEvent
    reader_exception: str | None = None  # ReaderExceptionEvent message
    antenna_events: tuple[AntennaEvent, ...] = ()
    gpi_events: tuple[GpiEvent, ...] = ()
    rospec_events: tuple[RoSpecEvent, ...] = ()
    other: tuple[int, ...] = ()  # types of the event parameters not decoded here

    @property
    def connection_ok(self) -> bool:
        return self.connection_attempt == 0


def decode_reader_event(body: bytes, stats: DecoderStats | None = None) -> ReaderEvent | None:
    for p in parse_params(body, stats):
        if p.type == P_READER_EVENT_NOTIFICATION_DATA and not p.tv:
            break
    else:
        return None
    ts: int | None = None
    up: int | None = None
    attempt: int | None = None
    closed = False
    exc: str | None = None
    antennas: list[AntennaEvent] = []
    gpis: list[GpiEvent] = []
    rospecs: list[RoSpecEvent] = []
    other: list[int] = []
    for sub in p.children(stats):
        v = sub.value
        t = -1 if sub.tv else sub.type
        if t == P_UTC_TIMESTAMP and len(v) >= 8:
            ts = _u(v, 0, 8)
        elif t == P_UPTIME and len(v) >= 8:
            up = _u(v, 0, 8)
        elif t == P_CONNECTION_ATTEMPT_EVENT and len(v) >= 2:
            attempt = _u(v, 0, 2)
        elif t == P_CONNECTION_CLOSE_EVENT:
            closed = True
        elif t == P_READER_EXCEPTION_EVENT:
            exc = utf8v(v, 0)[0]
        elif t == P_ANTENNA_EVENT and len(v) >= 3:
            antennas.append(AntennaEvent(v[0] == 1, _u(v, 1, 2)))
        elif t == P_GPI_EVENT and len(v) >= 3:
            gpis.append(GpiEvent(_u(v, 0, 2), bool(v[2] & 0x80)))
        elif t == P_ROSPEC_EVENT and len(v) >= 9:
            rospecs.append(RoSpecEvent(v[0], _u(v, 1, 4), _u(v, 5, 4)))
        else:
            other.append(sub.type)
    return ReaderEvent(
        ts, up, attempt, closed, exc, tuple(antennas), tuple(gpis), tuple(rospecs), tuple(other)
    )
