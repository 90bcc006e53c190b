"""EPCglobal LLRP 1.1 / 1.0.1 (Low Level Reader Protocol, TCP port 5084): messages.

Source: EPCglobal "Low Level Reader Protocol (LLRP), Version 1.1", binary encoding chapter (§17:
17.1 messages, e.g. 17.1.1 GET_SUPPORTED_VERSION; 17.2 parameters; same encoding as 1.0.1 for
everything here). Every type number and field layout checked against the Wireshark LLRP dissector
(``epan/dissectors/packet-llrp.c``) and the LTK-generated tables of ``llrpjs``. Pure: bytes in,
frozen dataclasses out; never raises on a bad byte stream. Parameters: ``llrp_params``.

    # [rsvd:3][Ver:3][MessageType:10][MessageLength:32][MessageID:32][body]          (§4.2)
    # MessageLength counts the whole message, the 10-byte header included. Ver 1 = LLRP 1.0.1,
    # Ver 2 = LLRP 1.1. All integers big-endian.

TCP has no frame marker to hunt for: a length below 10 or above the cap cannot be skipped past,
so the decoder marks itself ``broken`` and the session must reconnect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from agent.readers.codecs.base import DecoderStats
from agent.readers.codecs.llrp_params import (
    P_AISPEC,
    P_AISPEC_STOP_TRIGGER,
    P_ANTENNA_CONFIGURATION,
    P_C1G2_EPC_MEMORY_SELECTOR,
    P_C1G2_INVENTORY_COMMAND,
    P_C1G2_RF_CONTROL,
    P_C1G2_SINGULATION_CONTROL,
    P_CUSTOM,
    P_EVENT_NOTIFICATION_STATE,
    P_GENERAL_DEVICE_CAPABILITIES,
    P_GPIO_CAPABILITIES,
    P_INVENTORY_PARAMETER_SPEC,
    P_KEEPALIVE_SPEC,
    P_READER_EVENT_NOTIFICATION_SPEC,
    P_REGULATORY_CAPABILITIES,
    P_RF_TRANSMITTER,
    P_RO_BOUNDARY_SPEC,
    P_RO_REPORT_SPEC,
    P_ROSPEC,
    P_ROSPEC_START_TRIGGER,
    P_ROSPEC_STOP_TRIGGER,
    P_TAG_REPORT_CONTENT_SELECTOR,
    P_TRANSMIT_POWER_LEVEL_TABLE_ENTRY,
    P_UHF_BAND_CAPABILITIES,
    P_UHF_C1G2_RF_MODE_TABLE,
    P_UHF_C1G2_RF_MODE_TABLE_ENTRY,
    VENDOR_IMPINJ,
    LlrpStatus,
    ReaderEvent,
    TagReport,
    decode_reader_event,
    decode_tag_reports,
    find_status,
    parse_params,
    sub_params,
    utf8v,
)

HEADER_LEN = 10
IMPINJ_ENABLE_EXTENSIONS = 21  # Impinj CUSTOM_MESSAGE subtype (22 = its response)
MAX_MESSAGE = 16 * 1024 * 1024  # cap on MessageLength: a full-config response is a few KiB
VERSION_1_0_1 = 1
VERSION_1_1 = 2
KNOWN_VERSIONS = frozenset({VERSION_1_0_1, VERSION_1_1})
PORT = 5084


class MsgType(IntEnum):
    """Message types (LLRP 1.1 message table)."""

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
    DELETE_ACCESSSPEC_RESPONSE = 51
    GET_SUPPORTED_VERSION = 46  # LLRP 1.1
    SET_PROTOCOL_VERSION = 47  # LLRP 1.1
    GET_SUPPORTED_VERSION_RESPONSE = 56
    SET_PROTOCOL_VERSION_RESPONSE = 57
    GET_REPORT = 60
    RO_ACCESS_REPORT = 61
    KEEPALIVE = 62
    READER_EVENT_NOTIFICATION = 63
    ENABLE_EVENTS_AND_REPORTS = 64
    KEEPALIVE_ACK = 72
    ERROR_MESSAGE = 100
    CUSTOM_MESSAGE = 1023


_KNOWN_TYPES = frozenset(int(t) for t in MsgType)


@dataclass(frozen=True, slots=True)
class LlrpMessage:
    version: int
    type: int
    msg_id: int
    body: bytes

    @property
    def name(self) -> str:
        return MsgType(self.type).name if self.type in _KNOWN_TYPES else f"TYPE_{self.type}"


def parse_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(version, type, length, msg_id) of the first 10 bytes; None if fewer."""
    if len(data) < HEADER_LEN:
        return None
    word = int.from_bytes(data[0:2], "big")
    return (
        (word >> 10) & 0x7,
        word & 0x3FF,
        int.from_bytes(data[2:6], "big"),
        int.from_bytes(data[6:10], "big"),
    )


class LlrpDecoder:
    """Stream decoder: read the header, wait for MessageLength bytes, emit, repeat.

    Messages of an unknown version (not 1 or 2) are still delivered (their length is sound, so
    the stream stays in step) and counted as ``implausible``; the session answers or drops them.
    A length < 10 or > ``max_message`` counts ``oversize`` and sets ``broken``: every later byte
    is discarded, since nothing in a TCP stream marks where the next message starts.
    """

    __slots__ = ("_buf", "broken", "max_message", "stats")

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self.max_message = max_message
        self.broken = False
        self.stats = DecoderStats()

    def feed(self, data: bytes) -> list[LlrpMessage]:
        self.stats.bytes_in += len(data)
        if self.broken:
            self.stats.bytes_discarded += len(data)
            return []
        buf = self._buf
        buf += data
        out: list[LlrpMessage] = []
        pos = 0
        n = len(buf)
        while n - pos >= HEADER_LEN:
            word = (buf[pos] << 8) | buf[pos + 1]
            length = int.from_bytes(buf[pos + 2 : pos + 6], "big")
            if length < HEADER_LEN or length > self.max_message:
                self.stats.oversize += 1
                self.stats.bytes_discarded += n - pos
                self.broken = True
                pos = n
                break
            if n - pos < length:
                break
            version = (word >> 10) & 0x7
            if version not in KNOWN_VERSIONS or word >> 13:
                self.stats.implausible += 1
            out.append(
                LlrpMessage(
                    version,
                    word & 0x3FF,
                    int.from_bytes(buf[pos + 6 : pos + 10], "big"),
                    bytes(buf[pos + HEADER_LEN : pos + length]),
                )
            )
            self.stats.frames += 1
            pos += length
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)

    def resync(self) -> list[LlrpMessage]:
        """FrameSession's idle rule: a TCP stream has no line noise to resync from, and a
        partial message simply waits for the rest."""
        return []

    def reset(self) -> None:
        """A new connection: forget the partial message and the broken state (stats stay)."""
        self._buf.clear()
        self.broken = False


# ----------------------------------------------------------------------------- content


def _uint(data: bytes, at: int, n: int) -> int:
    return int.from_bytes(data[at : at + n], "big")


def parse_status(msg: LlrpMessage, stats: DecoderStats | None = None) -> LlrpStatus | None:
    """The LLRPStatus (TLV 287) of a *_RESPONSE or ERROR_MESSAGE (or a vendor's CUSTOM_MESSAGE
    response: VendorIdentifier u32 + MessageSubtype u8 first); None when it has none."""
    if msg.type == MsgType.CUSTOM_MESSAGE:
        return find_status(msg.body[5:], stats)
    return find_status(msg.body, stats)


def parse_ro_access_report(
    msg: LlrpMessage, stats: DecoderStats | None = None
) -> tuple[TagReport, ...]:
    """The TagReportData (TLV 240) of an RO_ACCESS_REPORT; () for any other message."""
    if msg.type != MsgType.RO_ACCESS_REPORT:
        return ()
    return decode_tag_reports(msg.body, stats)


def parse_reader_event(msg: LlrpMessage, stats: DecoderStats | None = None) -> ReaderEvent | None:
    """ReaderEventNotificationData (TLV 246) of a READER_EVENT_NOTIFICATION."""
    if msg.type != MsgType.READER_EVENT_NOTIFICATION:
        return None
    return decode_reader_event(msg.body, stats)


def parse_capabilities(msg: LlrpMessage, stats: DecoderStats | None = None) -> Capabilities | None:
    """GeneralDeviceCapabilities (137) + RegulatoryCapabilities (143) of the response."""
    if msg.type != MsgType.GET_READER_CAPABILITIES_RESPONSE:
        return None
    return decode_capabilities(msg.body, stats)


# ----------------------------------------------------------------------------- capabilities


@dataclass(frozen=True, slots=True)
class RfMode:
    """UHFC1G2RFModeTableEntry (TLV 329)."""

    mode_id: int
    dr_64_3: bool  # DRValue: 0 = DR 8, 1 = DR 64/3
    epc_hag_conformance: bool
    m_value: int  # 0 FM0, 1 M2, 2 M4, 3 M8
    forward_link_modulation: int  # 0 PR-ASK, 1 SSB-ASK, 2 DSB-ASK
    spectral_mask: int
    bdr_bps: int
    pie_x1000: int
    min_tari_ns: int
    max_tari_ns: int
    step_tari_ns: int


# Impinj Octane's RF mode names (Impinj "Reader modes" application note; ModeIdentifier).
IMPINJ_MODE_NAMES: dict[int, str] = {
    0: "max_throughput", 1: "hybrid", 2: "dense_reader_m4", 3: "dense_reader_m8",
    4: "max_miller", 5: "dense_reader_m4_two", 1000: "autoset_dense_reader",
    1002: "autoset_dense_reader_deep_scan", 1003: "autoset_static_fast",
    1004: "autoset_static_dense_reader",
}
_M_NAMES = ("fm0", "m2", "m4", "m8")


def mode_key(name: str) -> str:
    """A mode name as compared: lower case, runs of anything else than [a-z0-9] -> '_'."""
    return "_".join(part for part in "".join(
        c if c.isascii() and c.isalnum() else " " for c in name.lower()).split())


def mode_names(mode: RfMode, manufacturer_pen: int | None) -> tuple[str, ...]:
    """Names a configuration may use for one RF mode: the vendor's (Impinj) and one built from
    the table entry, e.g. ``m4_250k`` (Miller M4, 250 kbps backscatter data rate)."""
    names: list[str] = []
    if manufacturer_pen == VENDOR_IMPINJ and mode.mode_id in IMPINJ_MODE_NAMES:
        names.append(IMPINJ_MODE_NAMES[mode.mode_id])
    if 0 <= mode.m_value < len(_M_NAMES) and mode.bdr_bps:
        names.append(f"{_M_NAMES[mode.m_value]}_{round(mode.bdr_bps / 1000)}k")
    return tuple(names)


def find_mode(wanted: int | str, modes: Sequence[RfMode],
              manufacturer_pen: int | None) -> tuple[int | None, str]:
    """``reader_mode`` against the reader's UHFC1G2RFModeTable: (ModeIdentifier, "") or
    (None, why, naming what the reader has). An empty table accepts a number as given."""
    if isinstance(wanted, int):
        if not modes or wanted in {m.mode_id for m in modes}:
            return wanted, ""
        return None, (f"reader_mode {wanted} is not in the reader's RF mode table (it has "
                      f"{mode_list(modes, manufacturer_pen)})")
    key = mode_key(wanted)
    hits = [m.mode_id for m in modes if key in mode_names(m, manufacturer_pen)]
    if len(hits) == 1:
        return hits[0], ""
    if not modes:
        return None, (f"reader_mode {wanted!r}: the reader sent no RF mode table, so a mode "
                      "can only be given by its number (ModeIdentifier)")
    what = "names more than one mode" if hits else "is not a mode of this reader"
    return None, (f"reader_mode {wanted!r} {what} (it has "
                  f"{mode_list(modes, manufacturer_pen)})")


def mode_list(modes: Sequence[RfMode], manufacturer_pen: int | None) -> str:
    return ", ".join(
        f"{m.mode_id}" + (f" ({' / '.join(n)})" if (n := mode_names(m, manufacturer_pen)) else "")
        for m in modes)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What GET_READER_CAPABILITIES_RESPONSE told: GeneralDeviceCapabilities + regulatory."""

    max_antennas: int | None = None
    can_set_antenna_properties: bool = False
    has_utc_clock: bool = False
    manufacturer_pen: int | None = None  # IANA Private Enterprise Number (25882 = Impinj)
    model: int | None = None
    firmware: str = ""
    country_code: int | None = None
    communications_standard: int | None = None
    power_table_cdbm: tuple[tuple[int, int], ...] = ()  # (index, dBm * 100)
    rf_modes: tuple[RfMode, ...] = ()
    gpi_ports: int | None = None  # GPIOCapabilities NumGPIs


def _rf_mode(v: bytes) -> RfMode | None:
    if len(v) < 28:
        return None
    return RfMode(
        _uint(v, 0, 4), bool(v[4] & 0x80), bool(v[4] & 0x40), v[5], v[6], v[7],
        _uint(v, 8, 4), _uint(v, 12, 4), _uint(v, 16, 4), _uint(v, 20, 4), _uint(v, 24, 4),
    )


def decode_capabilities(body: bytes, stats: DecoderStats | None = None) -> Capabilities:
    gen: dict[str, int | bool | str] = {}
    powers: list[tuple[int, int]] = []
    modes: list[RfMode] = []
    for p in parse_params(body, stats):
        v = p.value
        if p.tv:
            continue
        if p.type == P_GENERAL_DEVICE_CAPABILITIES and len(v) >= 12:
            gen["max_antennas"] = _uint(v, 0, 2)
            gen["can_set_antenna_properties"] = bool(v[2] & 0x80)
            gen["has_utc_clock"] = bool(v[2] & 0x40)
            gen["manufacturer_pen"] = _uint(v, 4, 4)
            gen["model"] = _uint(v, 8, 4)
            gen["firmware"], end = utf8v(v, 12)
            for sub in sub_params(p, end, stats):  # §16.2.3.2: GPIOCapabilities inside
                if sub.type == P_GPIO_CAPABILITIES and not sub.tv and len(sub.value) >= 4:
                    gen["gpi_ports"] = _uint(sub.value, 0, 2)
        elif p.type == P_REGULATORY_CAPABILITIES and len(v) >= 4:
            gen["country_code"] = _uint(v, 0, 2)
            gen["communications_standard"] = _uint(v, 2, 2)
            for band in sub_params(p, 4, stats):
                if band.type != P_UHF_BAND_CAPABILITIES or band.tv:
                    continue
                for e in band.children(stats):
                    if e.tv:
                        continue
                    if e.type == P_TRANSMIT_POWER_LEVEL_TABLE_ENTRY and len(e.value) >= 4:
                        dbm_x100 = int.from_bytes(e.value[2:4], "big", signed=True)
                        powers.append((_uint(e.value, 0, 2), dbm_x100))
                    elif e.type == P_UHF_C1G2_RF_MODE_TABLE:
                        for m in e.children(stats):
                            if m.type != P_UHF_C1G2_RF_MODE_TABLE_ENTRY or m.tv:
                                continue
                            mode = _rf_mode(m.value)
                            if mode is not None:
                                modes.append(mode)
    return Capabilities(
        power_table_cdbm=tuple(powers), rf_modes=tuple(modes), **gen  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------------------- encoders


def _u8(v: int) -> bytes:
    return (v & 0xFF).to_bytes(1, "big")


def _u16(v: int) -> bytes:
    return (v & 0xFFFF).to_bytes(2, "big")


def _u32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "big")


def message(mtype: int, msg_id: int, body: bytes = b"", version: int = VERSION_1_0_1) -> bytes:
    """§4.2 header + body. Version 1 (LLRP 1.0.1) by default: every reader speaks it."""
    word = ((version & 0x7) << 10) | (mtype & 0x3FF)
    return _u16(word) + _u32(HEADER_LEN + len(body)) + _u32(msg_id) + body


def tlv(ptype: int, body: bytes = b"") -> bytes:
    """§4.3.2 TLV parameter: type (10 bits, top bit 0), length including the 4-byte header."""
    return _u16(ptype & 0x3FF) + _u16(4 + len(body)) + body


def tv(ptype: int, value: bytes) -> bytes:
    """§4.3.1 TV parameter: 1 bit set + 7-bit type, then the fixed-length value."""
    return _u8(0x80 | (ptype & 0x7F)) + value


def custom(vendor: int, subtype: int, data: bytes = b"") -> bytes:
    """Custom parameter (TLV 1023): vendor PEN u32, subtype u32, data."""
    return tlv(P_CUSTOM, _u32(vendor) + _u32(subtype) + data)


def custom_message(msg_id: int, vendor: int, subtype: int, data: bytes = b"") -> bytes:
    """CUSTOM_MESSAGE (1023): VendorIdentifier u32, MessageSubtype u8, data."""
    return message(MsgType.CUSTOM_MESSAGE, msg_id, _u32(vendor) + _u8(subtype) + data)


def impinj_enable_extensions(msg_id: int) -> bytes:
    """Impinj IMPINJ_ENABLE_EXTENSIONS (subtype 21, u32 reserved): unlocks Impinj parameters."""
    return custom_message(msg_id, VENDOR_IMPINJ, IMPINJ_ENABLE_EXTENSIONS, _u32(0))


def get_supported_version(msg_id: int) -> bytes:
    """LLRP 1.1 GET_SUPPORTED_VERSION; sent with Ver 2 (a 1.0.1-only reader answers an error)."""
    return message(MsgType.GET_SUPPORTED_VERSION, msg_id, version=VERSION_1_1)


def set_protocol_version(msg_id: int, version: int) -> bytes:
    return message(MsgType.SET_PROTOCOL_VERSION, msg_id, _u8(version), version=VERSION_1_1)


def parse_supported_version(msg: LlrpMessage) -> tuple[int, int] | None:
    """GET_SUPPORTED_VERSION_RESPONSE: (CurrentVersion u8, SupportedVersion u8), LLRPStatus."""
    if msg.type != MsgType.GET_SUPPORTED_VERSION_RESPONSE or len(msg.body) < 2:
        return None
    return msg.body[0], msg.body[1]


def get_reader_capabilities(msg_id: int, requested_data: int = 0) -> bytes:
    """RequestedData u8: 0 all, 1 general device, 2 LLRP, 3 regulatory, 4 air protocol."""
    return message(MsgType.GET_READER_CAPABILITIES, msg_id, _u8(requested_data))


def get_reader_config(
    msg_id: int, requested_data: int = 0, antenna_id: int = 0, gpi_port: int = 0, gpo_port: int = 0
) -> bytes:
    """AntennaID u16, RequestedData u8 (0 all, 8 keepalive spec...), GPIPortNum, GPOPortNum."""
    body = _u16(antenna_id) + _u8(requested_data) + _u16(gpi_port) + _u16(gpo_port)
    return message(MsgType.GET_READER_CONFIG, msg_id, body)


P_ANTENNA_PROPERTIES = 221
REQUESTED_ANTENNA_PROPERTIES = 2


def antenna_properties(msg: LlrpMessage, stats: DecoderStats | None = None) -> dict[int, bool]:
    """GET_READER_CONFIG_RESPONSE's AntennaProperties (TLV 221, §12.2.5): AntennaConnected
    u1 (+7), AntennaID u16, AntennaGain s16 -> {antenna: connected}."""
    if msg.type != MsgType.GET_READER_CONFIG_RESPONSE:
        return {}
    return {_uint(p.value, 1, 2): bool(p.value[0] & 0x80)
            for p in parse_params(msg.body, stats)
            if p.type == P_ANTENNA_PROPERTIES and not p.tv and len(p.value) >= 5}


def _rospec_msg(mtype: MsgType, msg_id: int, rospec_id: int) -> bytes:
    return message(mtype, msg_id, _u32(rospec_id))


def delete_rospec(msg_id: int, rospec_id: int = 0) -> bytes:
    """ROSpecID u32; 0 deletes every ROSpec."""
    return _rospec_msg(MsgType.DELETE_ROSPEC, msg_id, rospec_id)


def start_rospec(msg_id: int, rospec_id: int) -> bytes:
    return _rospec_msg(MsgType.START_ROSPEC, msg_id, rospec_id)


def stop_rospec(msg_id: int, rospec_id: int) -> bytes:
    return _rospec_msg(MsgType.STOP_ROSPEC, msg_id, rospec_id)


def enable_rospec(msg_id: int, rospec_id: int) -> bytes:
    return _rospec_msg(MsgType.ENABLE_ROSPEC, msg_id, rospec_id)


def disable_rospec(msg_id: int, rospec_id: int) -> bytes:
    return _rospec_msg(MsgType.DISABLE_ROSPEC, msg_id, rospec_id)


def get_rospecs(msg_id: int) -> bytes:
    """GET_ROSPECS: the ROSpecs the reader holds (their ids tell what an earlier client left)."""
    return message(MsgType.GET_ROSPECS, msg_id)


def rospec_ids(msg: LlrpMessage, stats: DecoderStats | None = None) -> tuple[int, ...]:
    """The ROSpecIDs in a GET_ROSPECS_RESPONSE (each ROSpec starts with its u32 id)."""
    return tuple(int.from_bytes(p.value[:4], "big") for p in parse_params(msg.body, stats)
                 if not p.tv and p.type == P_ROSPEC and len(p.value) >= 4)


@dataclass(frozen=True, slots=True)
class RospecSettings:
    """What a reader reports of one ROSpec (GET_ROSPECS_RESPONSE): the AISpec's antennas, the
    session of C1G2SingulationControl and the ModeIndex of C1G2RFControl (first antenna
    configuration that has them; None when the ROSpec leaves them to the reader)."""

    antennas: tuple[int, ...]
    session: int | None
    mode_index: int | None
    # (AntennaID, TransmitPower) of every AntennaConfiguration that carries an RFTransmitter:
    # the 1-based index into the reader's TransmitPowerTable (absent: the reader's own power).
    powers: tuple[tuple[int, int], ...] = ()


def rospec_settings(msg: LlrpMessage, rospec_id: int,
                    stats: DecoderStats | None = None) -> RospecSettings | None:
    """The settings of ROSpec ``rospec_id`` in a GET_ROSPECS_RESPONSE; None if it is absent.

    # ROSpec(177): [ROSpecID:4][Priority:1][CurrentState:1] ROBoundarySpec AISpec+ ROReportSpec
    # AISpec(183): [AntennaCount:2][AntennaID:2 x n] AISpecStopTrigger InventoryParameterSpec+
    # InventoryParameterSpec(186): [ID:2][ProtocolID:1] AntennaConfiguration*
    # AntennaConfiguration(222): [AntennaID:2] RFTransmitter? C1G2InventoryCommand*
    # RFTransmitter(224): [HopTableID:2][ChannelIndex:2][TransmitPower:2]
    # C1G2InventoryCommand(330): [TagInventoryStateAware:1] C1G2RFControl? C1G2SingulationControl?
    # C1G2RFControl(335): [ModeIndex:2][Tari:2]; C1G2SingulationControl(336): [Session:2 bits]...
    """
    for spec in parse_params(msg.body, stats):
        if spec.tv or spec.type != P_ROSPEC or len(spec.value) < 6:
            continue
        if int.from_bytes(spec.value[:4], "big") != rospec_id:
            continue
        antennas: list[int] = []
        session: int | None = None
        mode: int | None = None
        powers: list[tuple[int, int]] = []
        for ai in sub_params(spec, 6, stats):
            if ai.tv or ai.type != P_AISPEC or len(ai.value) < 2:
                continue
            count = int.from_bytes(ai.value[:2], "big")
            ids = ai.value[2:2 + 2 * count]
            antennas += [int.from_bytes(ids[i:i + 2], "big") for i in range(0, len(ids) - 1, 2)]
            for ips in sub_params(ai, 2 + 2 * count, stats):
                if ips.type != P_INVENTORY_PARAMETER_SPEC:
                    continue
                for conf in sub_params(ips, 3, stats):
                    if conf.type != P_ANTENNA_CONFIGURATION or len(conf.value) < 2:
                        continue
                    antenna = int.from_bytes(conf.value[:2], "big")
                    for inv in sub_params(conf, 2, stats):
                        if inv.type == P_RF_TRANSMITTER and len(inv.value) >= 6:
                            powers.append((antenna, int.from_bytes(inv.value[4:6], "big")))
                        if inv.type != P_C1G2_INVENTORY_COMMAND:
                            continue
                        for q in sub_params(inv, 1, stats):
                            if q.type == P_C1G2_RF_CONTROL and len(q.value) >= 2 and mode is None:
                                mode = int.from_bytes(q.value[:2], "big")
                            elif (q.type == P_C1G2_SINGULATION_CONTROL and q.value
                                  and session is None):
                                session = q.value[0] >> 6
        return RospecSettings(tuple(antennas), session, mode, tuple(powers))
    return None


def delete_accessspec(msg_id: int, accessspec_id: int = 0) -> bytes:
    """AccessSpecID u32; 0 deletes every AccessSpec."""
    return message(MsgType.DELETE_ACCESSSPEC, msg_id, _u32(accessspec_id))


def enable_events_and_reports(msg_id: int) -> bytes:
    return message(MsgType.ENABLE_EVENTS_AND_REPORTS, msg_id)


def get_report(msg_id: int) -> bytes:
    return message(MsgType.GET_REPORT, msg_id)


def keepalive_ack(msg_id: int) -> bytes:
    """The reply to KEEPALIVE; carries the KEEPALIVE's MessageID."""
    return message(MsgType.KEEPALIVE_ACK, msg_id)


def close_connection(msg_id: int) -> bytes:
    return message(MsgType.CLOSE_CONNECTION, msg_id)


def keepalive_spec(period_ms: int | None) -> bytes:
    """KeepaliveSpec (TLV 220): trigger u8 (0 null, 1 periodic), PeriodicTriggerValue u32 ms."""
    if period_ms is None or period_ms <= 0:
        return tlv(P_KEEPALIVE_SPEC, _u8(0) + _u32(0))
    return tlv(P_KEEPALIVE_SPEC, _u8(1) + _u32(period_ms))


def reader_event_notification_spec(events: Mapping[int, bool]) -> bytes:
    """ReaderEventNotificationSpec (244) > EventNotificationState (245: EventType u16, u1)."""
    states = b"".join(
        tlv(P_EVENT_NOTIFICATION_STATE, _u16(event) + _u8(0x80 if on else 0))
        for event, on in sorted(events.items())
    )
    return tlv(P_READER_EVENT_NOTIFICATION_SPEC, states)


def set_reader_config(
    msg_id: int,
    *,
    reset_to_factory_default: bool = False,
    keepalive_ms: int | None = None,
    events: Mapping[int, bool] | None = None,
    extra: bytes = b"",
) -> bytes:
    """ResetToFactoryDefault u1 (+7 reserved), then [ReaderEventNotificationSpec] [KeepaliveSpec].

    Parameter order follows the message's definition: ReaderEventNotificationSpec, (antenna
    params, ROReportSpec, AccessReportSpec), KeepaliveSpec, ... ``extra`` goes last (Custom).
    """
    body = _u8(0x80 if reset_to_factory_default else 0)
    if events:
        body += reader_event_notification_spec(events)
    if keepalive_ms is not None:
        body += keepalive_spec(keepalive_ms)
    return message(MsgType.SET_READER_CONFIG, msg_id, body + extra)


# TagReportContentSelector enable bits (u16, MSB first).
SELECT_ROSPEC_ID = 1 << 15
SELECT_SPEC_INDEX = 1 << 14
SELECT_INVENTORY_PARAMETER_SPEC_ID = 1 << 13
SELECT_ANTENNA_ID = 1 << 12
SELECT_CHANNEL_INDEX = 1 << 11
SELECT_PEAK_RSSI = 1 << 10
SELECT_FIRST_SEEN = 1 << 9
SELECT_LAST_SEEN = 1 << 8
SELECT_TAG_SEEN_COUNT = 1 << 7
SELECT_ACCESS_SPEC_ID = 1 << 6
DEFAULT_SELECT = (
    SELECT_ANTENNA_ID | SELECT_CHANNEL_INDEX | SELECT_PEAK_RSSI | SELECT_FIRST_SEEN
    | SELECT_LAST_SEEN | SELECT_TAG_SEEN_COUNT
)
PROTOCOL_EPC_C1G2 = 1
# ROReportTrigger (§13.2.6.1): N tags, or the end of the AISpec / of the ROSpec.
REPORT_UPON_N_TAGS_OR_END_OF_AISPEC = 1
REPORT_UPON_N_TAGS_OR_END_OF_ROSPEC = 2
# Impinj Octane LLRP: ImpinjInventorySearchMode (custom parameter in C1G2InventoryCommand).
IMPINJ_INVENTORY_SEARCH_MODE = 23
P_GPI_TRIGGER_VALUE = 181
P_GPI_PORT_CURRENT_STATE = 225


def gpi_trigger_value(port: int, high: bool, timeout_ms: int = 0) -> bytes:
    """GPITriggerValue (TLV 181, §10.2.1.1.2): GPIPortNum u16, GPIEvent u1 (+7), Timeout u32 ms
    (0: none)."""
    return tlv(P_GPI_TRIGGER_VALUE, _u16(port) + _u8(0x80 if high else 0) + _u32(timeout_ms))


def gpi_port_current_state(port: int, enabled: bool = True) -> bytes:
    """GPIPortCurrentState (TLV 225, §12.2.6.3): GPIPortNum u16, Config u1 (+7), State u8
    (ignored in SET_READER_CONFIG)."""
    return tlv(P_GPI_PORT_CURRENT_STATE, _u16(port) + _u8(0x80 if enabled else 0) + _u8(2))


def impinj_inventory_search_mode(mode: int) -> bytes:
    """ImpinjInventorySearchMode (Impinj custom subtype 23): u16 (1 single target, 2 dual
    target, 3 single target with suppression / TagFocus, 5 single target reset, 6 dual target
    with B->A select)."""
    return custom(VENDOR_IMPINJ, IMPINJ_INVENTORY_SEARCH_MODE, _u16(mode))


@dataclass(frozen=True, slots=True)
class GpiTrigger:
    """Start the ROSpec when GPI ``port`` goes high; stop it when it goes low, or
    ``stop_after_ms`` after the start (0: only when it goes low)."""

    port: int
    stop_after_ms: int = 0


def _powers(antennas: Sequence[int], power_index: int | Sequence[int]) -> list[int]:
    if isinstance(power_index, int):
        return [power_index] * len(antennas)
    powers = list(power_index)
    last = powers[-1] if powers else 0
    return (powers + [last] * len(antennas))[: len(antennas)]


def add_rospec(
    msg_id: int,
    rospec_id: int,
    antennas: Iterable[int] = (),
    *,
    report_every_n_tags: int = 1,
    timeout_ms: int = 0,
    power_index: int | Sequence[int] = 0,
    mode_index: int | None = None,
    session: int = 1,
    tag_population: int = 32,
    tag_transit_time_ms: int = 0,
    select: int = DEFAULT_SELECT,
    epc_memory_selector: int | None = None,
    report_trigger: int = REPORT_UPON_N_TAGS_OR_END_OF_ROSPEC,
    inventory_parameter_spec_id: int = 1,
    configure_antennas: bool = True,
    hop_table_id: int = 1,
    channel_index: int = 1,
    report_custom: bytes = b"",
    gpi: GpiTrigger | None = None,
    aispec_duration_ms: int = 0,
    inventory_custom: bytes = b"",
) -> bytes:
    """ADD_ROSPEC for one C1G2 inventory over ``antennas`` (empty: all, AntennaID 0).

    ROSpec(177) > ROBoundarySpec(178) > ROSpecStartTrigger(179: null, START_ROSPEC starts it)
    + ROSpecStopTrigger(182: null, or duration ``timeout_ms``); AISpec(183) > AISpecStopTrigger
    (184: null) + InventoryParameterSpec(186) > AntennaConfiguration(222) per antenna >
    [RFTransmitter(224: power table index, 1-based; 0 leaves it out)] + C1G2InventoryCommand(330)
    > [C1G2RFControl(335: mode index, None leaves it out; Tari 0)] + C1G2SingulationControl(336:
    session, tag population, transit time); ROReportSpec(237: upon N tags or end of ROSpec;
    ``report_every_n_tags=0``: only at the end) >
    TagReportContentSelector(238) [> C1G2EPCMemorySelector(348): ``epc_memory_selector`` flag
    byte, 0x80 CRC, 0x40 PC] + ``report_custom`` (e.g. Impinj selectors).
    ``configure_antennas=False`` leaves out the AntennaConfigurations: reader defaults apply.
    ``gpi``: ROSpecStartTrigger type 3 (GPI goes high) and ROSpecStopTrigger type 2 (GPI goes
    low, with the timeout), §10.2.1.1. ``aispec_duration_ms``: AISpecStopTrigger type 1, so the
    ROSpec loops over its AISpec and, with ``REPORT_UPON_N_TAGS_OR_END_OF_AISPEC``, reports at
    least that often. ``inventory_custom``: Custom parameters of C1G2InventoryCommand.
    """
    ants = [a & 0xFFFF for a in antennas] or [0]
    powers = _powers(ants, power_index)
    if gpi is not None:
        start = tlv(P_ROSPEC_START_TRIGGER, _u8(3) + gpi_trigger_value(gpi.port, True))
        stop = _u8(2) + _u32(0) + gpi_trigger_value(gpi.port, False, gpi.stop_after_ms)
    else:
        start = tlv(P_ROSPEC_START_TRIGGER, _u8(0))
        stop = _u8(1) + _u32(timeout_ms) if timeout_ms > 0 else _u8(0) + _u32(0)
    boundary = tlv(P_RO_BOUNDARY_SPEC, start + tlv(P_ROSPEC_STOP_TRIGGER, stop))
    c1g2 = tlv(
        P_C1G2_INVENTORY_COMMAND,
        _u8(0)  # TagInventoryStateAware = 0
        + (b"" if mode_index is None else tlv(P_C1G2_RF_CONTROL, _u16(mode_index) + _u16(0)))
        + tlv(
            P_C1G2_SINGULATION_CONTROL,
            _u8((session & 0x3) << 6) + _u16(tag_population) + _u32(tag_transit_time_ms),
        )
        + inventory_custom,
    )
    rf = _u16(hop_table_id) + _u16(channel_index)
    configs = b"".join(
        tlv(
            P_ANTENNA_CONFIGURATION,
            _u16(ant) + (tlv(P_RF_TRANSMITTER, rf + _u16(pw)) if pw else b"") + c1g2,
        )
        for ant, pw in zip(ants, powers, strict=True)
    ) if configure_antennas else b""
    ai = tlv(
        P_AISPEC,
        _u16(len(ants))
        + b"".join(_u16(a) for a in ants)
        + tlv(P_AISPEC_STOP_TRIGGER, (_u8(1) + _u32(aispec_duration_ms)) if aispec_duration_ms
              else (_u8(0) + _u32(0)))
        + tlv(
            P_INVENTORY_PARAMETER_SPEC,
            _u16(inventory_parameter_spec_id) + _u8(PROTOCOL_EPC_C1G2) + configs,
        ),
    )
    memory = b"" if epc_memory_selector is None else tlv(
        P_C1G2_EPC_MEMORY_SELECTOR, _u8(epc_memory_selector)
    )
    report = tlv(
        P_RO_REPORT_SPEC,
        _u8(report_trigger)
        + _u16(report_every_n_tags)
        + tlv(P_TAG_REPORT_CONTENT_SELECTOR, _u16(select & 0xFFC0) + memory)
        + report_custom,
    )
    rospec = tlv(P_ROSPEC, _u32(rospec_id) + _u8(0) + _u8(0) + boundary + ai + report)
    return message(MsgType.ADD_ROSPEC, msg_id, rospec)
