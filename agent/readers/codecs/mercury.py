"""The ThingMagic/JADAK Mercury embedded serial protocol (M6e, M6e Nano, M7e, SparkFun boards).

Source: docs reader-protocols.md §3 (the Mercury C API ``serial_reader_l3.c`` / ``tmr_status.h``
and SparkFun's "stripped down implementation of the Mercury API"). Pure: bytes in, frozen
dataclasses out; never raises on line noise.

    # host -> module   [FF][Len:1][Opcode:1][Data:Len][CRC:2]                     total Len + 5
    # module -> host   [FF][Len:1][Opcode:1][Status:2][Data:Len][CRC:2]           total Len + 7
    # CRC: poly 0x1021, init 0xFFFF, message nibbles shifted *into* the register (not the usual
    # CRC-16/CCITT-FALSE), over Len..Data (the header excluded), sent big-endian (§3)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from agent.readers.codecs.base import DecoderStats, to_header

HEADER = 0xFF
REPLY_OVERHEAD = 7  # header, len, opcode, status (2), CRC (2)
REQUEST_OVERHEAD = 5

# §3 reference code: the 16-entry nibble table of polynomial 0x1021.
_CRC_TABLE = (
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50A5, 0x60C6, 0x70E7,
    0x8108, 0x9129, 0xA14A, 0xB16B, 0xC18C, 0xD1AD, 0xE1CE, 0xF1EF,
)


def crc16(body: bytes | bytearray | memoryview) -> int:
    """§3: the "ThingMagic-mutated" CRC; check("123456789") = 0xA69D."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in body:
        crc = (((crc << 4) | (b >> 4)) & 0xFFFF) ^ table[crc >> 12]
        crc = (((crc << 4) | (b & 0x0F)) & 0xFFFF) ^ table[crc >> 12]
    return crc


class Opcode(IntEnum):
    """Opcodes (§3; Mercury ``serial_reader_imp.h`` names beside them)."""

    VERSION = 0x03  # TMR_SR_OPCODE_VERSION
    BOOT_FIRMWARE = 0x04  # TMR_SR_OPCODE_BOOT_FIRMWARE
    SET_BAUD_RATE = 0x06  # TMR_SR_OPCODE_SET_BAUD_RATE
    HW_VERSION = 0x10  # TMR_SR_OPCODE_HW_VERSION (flags 0x40: the serial number)
    READ_TAG_ID_MULTIPLE = 0x22  # TMR_SR_OPCODE_READ_TAG_ID_MULTIPLE (streamed records too)
    GET_TAG_ID_BUFFER = 0x29  # TMR_SR_OPCODE_GET_TAG_ID_BUFFER
    CLEAR_TAG_ID_BUFFER = 0x2A  # TMR_SR_OPCODE_CLEAR_TAG_ID_BUFFER
    MULTI_PROTOCOL_TAG_OP = 0x2F  # TMR_SR_OPCODE_MULTI_PROTOCOL_TAG_OP (continuous reading)
    GET_ANTENNA_PORT = 0x61  # TMR_SR_OPCODE_GET_ANTENNA_PORT
    GET_READ_TX_POWER = 0x62  # TMR_SR_OPCODE_GET_READ_TX_POWER
    GET_TAG_PROTOCOL = 0x63  # TMR_SR_OPCODE_GET_TAG_PROTOCOL
    GET_PROTOCOL_PARAM = 0x6B  # TMR_SR_OPCODE_GET_PROTOCOL_PARAM
    GET_TEMPERATURE = 0x72  # TMR_SR_OPCODE_GET_TEMPERATURE
    SET_ANTENNA_PORT = 0x91  # TMR_SR_OPCODE_SET_ANTENNA_PORT
    SET_READ_TX_POWER = 0x92  # TMR_SR_OPCODE_SET_READ_TX_POWER
    SET_TAG_PROTOCOL = 0x93  # TMR_SR_OPCODE_SET_TAG_PROTOCOL
    SET_REGION = 0x97  # TMR_SR_OPCODE_SET_REGION
    SET_READER_OPTIONAL_PARAMS = 0x9A  # TMR_SR_OPCODE_SET_READER_OPTIONAL_PARAMS
    SET_PROTOCOL_PARAM = 0x9B  # TMR_SR_OPCODE_SET_PROTOCOL_PARAM


KNOWN_OPCODES = frozenset(int(o) for o in Opcode)

OK = 0x0000
# Status words of the module's replies (tmr_status.h, TMR_ERROR_CODE(x)): name, meaning.
STATUS: dict[int, tuple[str, str]] = {
    0x0000: ("success", "command succeeded"),
    0x0100: ("msg_wrong_number_of_data", "message length is wrong for the command"),
    0x0101: ("invalid_opcode", "opcode not recognised (in the bootloader: boot the firmware)"),
    0x0102: ("unimplemented_opcode", "opcode recognised but not supported"),
    0x0103: ("msg_power_too_high", "power above the module's maximum"),
    0x0104: ("msg_invalid_freq_received", "frequency outside the allowed range"),
    0x0105: ("msg_invalid_parameter_value", "parameter value outside the allowed range"),
    0x0106: ("msg_power_too_low", "power below the module's minimum"),
    0x0109: ("unimplemented_feature", "command not supported"),
    0x010A: ("invalid_baud_rate", "serial speed not supported"),
    0x010B: ("invalid_region", "region not supported"),
    0x010C: ("invalid_license_key", "license key invalid"),
    0x0200: ("bl_invalid_image_crc", "firmware image corrupt (CRC mismatch)"),
    0x0201: ("bl_invalid_app_end_addr", "firmware image end address invalid"),
    0x0400: ("no_tags_found", "no tags found"),
    0x0401: ("no_protocol_defined", "RFID protocol not configured"),
    0x0402: ("invalid_protocol_specified", "RFID protocol not recognised"),
    0x0404: ("protocol_no_data_read", "tag data could not be read"),
    0x0405: ("afe_not_on", "radio not on: has the region been set?"),
    0x040A: ("general_tag_error", "unknown error during the RFID operation"),
    0x0500: ("ahal_invalid_freq", "frequency outside the region's range"),
    0x0501: ("ahal_channel_occupied", "channel occupied (listen before talk)"),
    0x0502: ("ahal_transmitter_on", "antenna check while the carrier is on"),
    0x0503: ("antenna_not_connected", "antenna not detected"),
    0x0504: ("temperature_exceed_limits", "module temperature outside the safe range"),
    0x0505: ("high_return_loss", "excess reflected power (antenna mismatch)"),
    0x0507: ("invalid_antenna_config", "invalid antenna configuration"),
    0x0509: ("ipvoltage_exceeded_limits", "supply voltage outside the safe range"),
    0x0600: ("tag_id_buffer_not_enough_tags_available", "fewer tags in the buffer than asked"),
    0x0601: ("tag_id_buffer_full", "tag buffer full"),
    0x7F00: ("system_unknown_error", "internal module error"),
    0x7F01: ("tm_assert_failed", "internal module assertion failed"),
}
INVALID_OPCODE = 0x0101
INVALID_PARAMETER = 0x0105
NO_TAGS_FOUND = 0x0400
AFE_NOT_ON = 0x0405
TEMPERATURE_EXCEEDED = 0x0504


def status_name(code: int) -> str:
    name, meaning = STATUS.get(code, ("unknown_status", "status word not in tmr_status.h"))
    return f"0x{code:04X} {name} ({meaning})"


# Region codes (Mercury TMR_Region; SparkFun setRegion comment, §3 vector "set region 0x01 NA").
REGIONS: dict[str, int] = {
    "NA": 0x01, "EU": 0x02, "KR": 0x03, "IN": 0x04, "JP": 0x05, "PRC": 0x06, "EU2": 0x07,
    "EU3": 0x08, "KR2": 0x09, "PRC2": 0x0A, "AU": 0x0B, "NZ": 0x0C, "NA2": 0x0D, "NA3": 0x0E,
    "OPEN": 0xFF,
}
GEN2 = 0x0005  # TMR_TAG_PROTOCOL_GEN2
# Baud rates the modules take (cmd 0x06 is 4 bytes of plain baud, big-endian).
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
# Where to look for a module, most likely first: the factory 115200, the bootloader fallback
# 9600 of older firmware, then the fast rates people set, then the rest.
SEARCH_BAUDS = (115200, 9600, 921600, 230400, 460800, 57600, 38400, 19200)

# Hardware version byte 0 -> model (TMR_SR_ModelHardwareID).
MODELS: dict[int, str] = {
    0x18: "M6e", 0x19: "M6e-I", 0x20: "M6e Micro", 0x30: "M6e Nano", 0x38: "M7e Pico",
}
# Antenna ports per model (datasheets): what the settings page offers once the module answered.
MODEL_PORTS: dict[int, int] = {0x18: 4, 0x19: 4, 0x20: 2, 0x30: 1, 0x38: 1}


# ----------------------------------------------------------------------------- frames


def encode(opcode: int, data: bytes = b"") -> bytes:
    """A host -> module message: ``FF Len Opcode Data CRC``."""
    if len(data) > 0xFF:
        raise ValueError("Mercury message data is at most 255 bytes")
    body = bytes((len(data), opcode & 0xFF)) + data
    return bytes((HEADER,)) + body + crc16(body).to_bytes(2, "big")


def encode_reply(opcode: int, status: int, data: bytes = b"") -> bytes:
    """A module -> host message (tests, tools): ``FF Len Opcode Status Data CRC``."""
    if len(data) > 0xFF:
        raise ValueError("Mercury message data is at most 255 bytes")
    body = bytes((len(data), opcode & 0xFF)) + (status & 0xFFFF).to_bytes(2, "big") + data
    return bytes((HEADER,)) + body + crc16(body).to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class MercuryFrame:
    """A module reply (or streamed record): opcode, status word, data."""

    opcode: int
    status: int
    data: bytes

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def status_text(self) -> str:
        return status_name(self.status)


class MercuryDecoder:
    """Stream decoder for the module's messages: find 0xFF, read Len, wait for Len + 7 bytes,
    check the CRC. On a bad CRC drop ONE byte and rescan (0xFF is common inside EPCs and in
    noise). Pending bytes never exceed one maximal message (255 + 7).

    ``requests=True`` decodes the host's side instead (no status word, Len + 5 bytes; frames
    carry status 0): a captured line, or the doc's vectors, which are all requests.
    """

    __slots__ = ("_buf", "_overhead", "_status_len", "stats")

    def __init__(self, *, requests: bool = False) -> None:
        self._buf = bytearray()
        self._overhead = REQUEST_OVERHEAD if requests else REPLY_OVERHEAD
        self._status_len = 0 if requests else 2
        self.stats = DecoderStats()

    def feed(self, data: bytes) -> list[MercuryFrame]:
        self.stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[MercuryFrame] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] != HEADER:
                pos = to_header(buf, pos, HEADER, self.stats)
                continue
            if pos + 1 >= n:
                break  # need the Len byte
            end = pos + buf[pos + 1] + self._overhead
            if end > n:
                break  # need more bytes
            if crc16(memoryview(buf)[pos + 1 : end - 2]) != int.from_bytes(
                buf[end - 2 : end], "big"
            ):
                self.stats.bad_checksums += 1
                self.stats.bytes_discarded += 1
                pos += 1
                continue
            opcode = buf[pos + 2]
            if opcode not in KNOWN_OPCODES:
                # A valid CRC on an opcode we never send: noise that passed (1 in 65536).
                self.stats.implausible += 1
                self.stats.bytes_discarded += 1
                pos += 1
                continue
            data_at = pos + 3 + self._status_len
            status = int.from_bytes(buf[pos + 3 : data_at], "big")  # b"" -> 0 for requests
            out.append(MercuryFrame(opcode, status, bytes(buf[data_at : end - 2])))
            self.stats.frames += 1
            pos = end
        del buf[:pos]
        return out

    def resync(self) -> list[MercuryFrame]:
        """The line went idle with a partial message pending: its Len byte was noise (an 0xFF
        then a large length), so drop one byte and rescan what is buffered."""
        if not self._buf:
            return []
        del self._buf[0]
        self.stats.bytes_discarded += 1
        self.stats.partial_timeouts += 1
        out: list[MercuryFrame] = []
        while self._buf:
            pending = bytes(self._buf)
            self._buf.clear()
            self.stats.bytes_in -= len(pending)  # re-fed bytes are not new input
            out += self.feed(pending)
            if self._buf:  # still partial: it cannot complete either
                del self._buf[0]
                self.stats.bytes_discarded += 1
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


# ----------------------------------------------------------------------------- commands


def get_version() -> bytes:
    """§3 vector ``FF 00 03 1D 0C``: the canonical probe (bootloader and application answer)."""
    return encode(Opcode.VERSION)


def boot_firmware() -> bytes:
    """§3 vector ``FF 00 04 1D 0B``: leave the bootloader, start the application firmware."""
    return encode(Opcode.BOOT_FIRMWARE)


def set_baud_rate(baud: int) -> bytes:
    """0x06 with the rate as 4 bytes big-endian; the module answers at the old rate."""
    return encode(Opcode.SET_BAUD_RATE, baud.to_bytes(4, "big"))


def set_region(code: int) -> bytes:
    """§3 vector ``FF 01 97 01 4B BC`` (NA)."""
    return encode(Opcode.SET_REGION, bytes((code & 0xFF,)))


def set_tag_protocol(protocol: int = GEN2) -> bytes:
    """0x93 with a 16-bit protocol id (GEN2 = 0x0005)."""
    return encode(Opcode.SET_TAG_PROTOCOL, protocol.to_bytes(2, "big"))


def set_antenna(tx: int, rx: int | None = None) -> bytes:
    """0x91 ``TX RX`` (monostatic: the same port both ways; the Nano has port 1 only)."""
    return encode(Opcode.SET_ANTENNA_PORT, bytes((tx & 0xFF, (tx if rx is None else rx) & 0xFF)))


def set_antenna_search_list(ports: list[int]) -> bytes:
    """0x91 option 0x02: the logical antenna list ``02 [TX RX]...`` the search cycles over
    (SparkFun setAntennaSearchList; serial_reader_l3.c cmdSetAntennaSearchList)."""
    return encode(Opcode.SET_ANTENNA_PORT, bytes([0x02, *(b for p in ports for b in (p, p))]))


def get_antenna_ports() -> bytes:
    """0x61 option 0x00: the configured TX/RX pair; reply data ``TX RX``
    (serial_reader_l3.c cmdGetTxRxPorts)."""
    return encode(Opcode.GET_ANTENNA_PORT, b"\x00")


def get_antenna_search_list() -> bytes:
    """0x61 option 0x02: the logical antenna list; reply data ``02 [TX RX]...``, the layout
    0x91 option 0x02 sets (cmdGetAntennaSearchList)."""
    return encode(Opcode.GET_ANTENNA_PORT, b"\x02")


def parse_antenna_ports(data: bytes) -> list[int] | None:
    """The TX ports of a 0x61 reply (option 00 or 02); None if malformed."""
    if len(data) == 2:
        return [data[0]]
    if len(data) >= 3 and data[0] == 0x02 and len(data) % 2 == 1:
        return list(data[1::2])
    return None


# Gen2 protocol parameters (0x9B set / 0x6B get): [Protocol:1=05][Key:1][Value]
# (serial_reader_l3.c cmdSetProtocolConfiguration / cmdGetProtocolConfiguration).
GEN2_SESSION = 0x00  # TMR_SR_GEN2_CONFIGURATION_SESSION: value 1 byte, S0..S3
GEN2_TARGET = 0x01  # TMR_SR_GEN2_CONFIGURATION_TARGET: value 2 bytes
# TMR_GEN2_Target on the wire: A 0100, B 0101, AB 0000 (A then B), BA 0001.
GEN2_TARGETS: dict[str, int] = {"A": 0x0100, "B": 0x0101, "AB": 0x0000, "BA": 0x0001}


def set_gen2_session(session: int) -> bytes:
    return encode(Opcode.SET_PROTOCOL_PARAM, bytes((GEN2 & 0xFF, GEN2_SESSION, session & 0x03)))


def set_gen2_target(target: str) -> bytes:
    return encode(Opcode.SET_PROTOCOL_PARAM, bytes((GEN2 & 0xFF, GEN2_TARGET))
                  + GEN2_TARGETS[target].to_bytes(2, "big"))


def get_gen2_param(key: int) -> bytes:
    return encode(Opcode.GET_PROTOCOL_PARAM, bytes((GEN2 & 0xFF, key)))


def parse_gen2_session(data: bytes) -> int | None:
    """A 0x6B session reply ``05 00 S``; None if malformed."""
    if len(data) >= 3 and data[0] == GEN2 & 0xFF and data[1] == GEN2_SESSION and data[2] <= 3:
        return data[2]
    return None


def parse_gen2_target(data: bytes) -> str | None:
    """A 0x6B target reply ``05 01 TT TT``: "A", "B", "AB", "BA"; None if malformed."""
    if len(data) < 4 or data[0] != GEN2 & 0xFF or data[1] != GEN2_TARGET:
        return None
    value = int.from_bytes(data[2:4], "big")
    return next((name for name, v in GEN2_TARGETS.items() if v == value), None)


def set_read_power(centi_dbm: int) -> bytes:
    """0x92 with the power in centi-dBm, signed 16-bit big-endian (2000 = 20.00 dBm)."""
    return encode(Opcode.SET_READ_TX_POWER, centi_dbm.to_bytes(2, "big", signed=True))


def get_read_power() -> bytes:
    """0x62 option 0x00: the power only (option 0x01 adds the limits)."""
    return encode(Opcode.GET_READ_TX_POWER, b"\x00")


SERIAL_NUMBER_FLAGS = 0x40


def get_serial_number() -> bytes:
    """0x10 ``Option Flags=0x40`` (serial_reader.c getSerialNumber)."""
    return encode(Opcode.HW_VERSION, bytes((0x00, SERIAL_NUMBER_FLAGS)))


def parse_serial_number(data: bytes) -> str | None:
    """0x10 flags 0x40 reply: the serial's length at byte 3, its ASCII after it (the Mercury
    API reads it so; bytes 0-2 are not interpreted). None if malformed or not printable."""
    if len(data) < 4 or data[3] == 0 or 4 + data[3] > len(data):
        return None
    raw = data[4 : 4 + data[3]]
    if not all(0x20 <= b < 0x7F for b in raw):
        return None
    return raw.decode("ascii")


def get_temperature() -> bytes:
    return encode(Opcode.GET_TEMPERATURE)


def disable_read_filter() -> bytes:
    """§3 vector ``FF 03 9A 01 0C 00 A3 5D``: report every read, not one per tag per search."""
    return encode(Opcode.SET_READER_OPTIONAL_PARAMS, bytes((0x01, 0x0C, 0x00)))


# Metadata the agent asks for in the stream: read count .. GPIO (TMR_TRD_METADATA_FLAG_*).
METADATA_ALL = 0x01FF
CONTINUOUS = 0x01  # 0x2F option: start continuous reading
STOP_CONTINUOUS = 0x02  # 0x2F option: stop continuous reading


def start_reading(*, metadata: int = METADATA_ALL, search_ms: int = 1000) -> bytes:
    """§3 vector (``FF 10 2F ... DD 2B`` with the defaults):

        # [Timeout:2=0][Option:1=01 continuous][SubOpcode:1=22][SearchFlags:2=0]
        # [Protocol:1=05 Gen2][PLen:1] then the 0x22 sub-command:
        # [22][Option:1=10][SearchFlags:2=001B][Timeout_ms:2][MetadataFlags:2]
    """
    sub = bytes((Opcode.READ_TAG_ID_MULTIPLE, 0x10)) + (0x001B).to_bytes(2, "big")
    sub += search_ms.to_bytes(2, "big") + metadata.to_bytes(2, "big")
    data = bytes((0x00, 0x00, CONTINUOUS, Opcode.READ_TAG_ID_MULTIPLE, 0x00, 0x00, GEN2,
                  len(sub) - 1)) + sub
    return encode(Opcode.MULTI_PROTOCOL_TAG_OP, data)


def stop_reading() -> bytes:
    """§3 vector ``FF 03 2F 00 00 02 5E 86``."""
    return encode(Opcode.MULTI_PROTOCOL_TAG_OP, bytes((0x00, 0x00, STOP_CONTINUOUS)))


# ----------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """0x03 reply: ``Bootloader:4 Hardware:4 FirmwareDate:4 FirmwareVersion:4 Protocols:4``."""

    bootloader: bytes
    hardware: bytes
    firmware_date: bytes
    firmware: bytes
    protocols: int

    @property
    def model(self) -> str:
        return MODELS.get(self.hardware[0], f"Mercury hardware 0x{self.hardware[0]:02X}")

    @staticmethod
    def dotted(raw: bytes) -> str:
        return ".".join(f"{b:02X}" for b in raw)

    @property
    def firmware_text(self) -> str:
        return self.dotted(self.firmware)

    @property
    def gen2(self) -> bool:
        return bool(self.protocols & (1 << (GEN2 - 1)))


def parse_version(data: bytes) -> VersionInfo | None:
    if len(data) < 20:
        return None
    return VersionInfo(data[0:4], data[4:8], data[8:12], data[12:16],
                       int.from_bytes(data[16:20], "big"))


def parse_read_power(data: bytes) -> int | None:
    """0x62 option 0 reply ``Option:1 Power:2`` -> centi-dBm; None if malformed."""
    if len(data) != 3:
        return None
    return int.from_bytes(data[1:3], "big", signed=True)


def parse_temperature(data: bytes) -> int | None:
    """0x72 reply: one signed byte, °C."""
    if len(data) != 1:
        return None
    return int.from_bytes(data, "big", signed=True)


# ----------------------------------------------------------------------------- the stream


@dataclass(frozen=True, slots=True)
class TagRecord:
    """One streamed tag read (0x22 record in continuous mode, §3 / serial_reader_l3.c
    ``TMR_SR_parseMetadataFromMessage``). Fields the metadata flags left out are None."""

    epc: bytes
    pc: int
    antenna: int | None  # logical port: the TX nibble of the antenna byte
    rssi_dbm: int | None
    frequency_khz: int | None
    phase: int | None  # degrees, 0..180
    timestamp_ms: int | None  # since the search started (module clock)
    read_count: int | None
    protocol: int | None


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A record without a tag: keep-alive (status 0x0400 once a second when nothing is read),
    temperature throttle (0x0504) or another status word."""

    status: int

    @property
    def keepalive(self) -> bool:
        return self.status == NO_TAGS_FOUND


# TMR_TRD_METADATA_FLAG_* in bit order -> field size in bytes (DATA: 2-byte bit count + data).
_META_SIZES = ((0x0001, 1), (0x0002, 1), (0x0004, 1), (0x0008, 3), (0x0010, 4), (0x0020, 2),
               (0x0040, 1), (0x0080, -1), (0x0100, 1))
_META_KNOWN = 0x01FF
# Record header: Option:1 SearchFlags:2 MetadataFlags:2 then one byte before the metadata.
_RECORD_HEAD = 6


def parse_stream(frame: MercuryFrame) -> TagRecord | StreamStatus | None:
    """Classify a streamed 0x22 message; None if it is not one or cannot be parsed.

        # [Option:1][SearchFlags:2][MetadataFlags:2][RFU:1]
        # [ReadCount:1][RSSI:1 signed dBm][Antenna:1 TX<<4|RX][Freq:3 kHz][Timestamp:4 ms]
        # [Phase:2][Protocol:1][DataBits:2][Data][GPIO:1]      (each present if its flag is)
        # [EPCLenBits:2 = PC + EPC + CRC][PC:2][EPC][TagCRC:2]
    """
    if frame.opcode != Opcode.READ_TAG_ID_MULTIPLE:
        return None
    if frame.status != OK or not frame.data:
        return StreamStatus(frame.status) if not frame.data else None
    data = frame.data
    n = len(data)
    if n < _RECORD_HEAD:
        return None
    flags = int.from_bytes(data[3:5], "big")
    if flags & ~_META_KNOWN:
        return None  # a field we cannot size: the rest of the record cannot be found
    i = _RECORD_HEAD
    values: dict[int, int] = {}
    for flag, size in _META_SIZES:
        if not flags & flag:
            continue
        if size < 0:  # DATA: bit count, then the bytes
            if i + 2 > n:
                return None
            bits = int.from_bytes(data[i : i + 2], "big")
            i += 2 + (bits + 7) // 8
            continue
        if i + size > n:
            return None
        values[flag] = int.from_bytes(data[i : i + size], "big", signed=flag == 0x0002)
        i += size
    if i + 2 > n:
        return None
    epc_bits = int.from_bytes(data[i : i + 2], "big")
    i += 2
    if epc_bits % 8 or epc_bits < 32 or i + epc_bits // 8 != n:
        return None  # the record must end exactly with PC + EPC + CRC
    pc = int.from_bytes(data[i : i + 2], "big")
    epc = bytes(data[i + 2 : n - 2])
    if not epc or len(epc) % 2:
        return None
    antenna = values.get(0x0004)
    return TagRecord(
        epc=epc,
        pc=pc,
        antenna=None if antenna is None else antenna >> 4,
        rssi_dbm=values.get(0x0002),
        frequency_khz=values.get(0x0008),
        phase=values.get(0x0020),
        timestamp_ms=values.get(0x0010),
        read_count=values.get(0x0001),
        protocol=values.get(0x0040),
    )


def encode_tag_record(
    epc: bytes, *, pc: int, antenna: int = 1, rssi_dbm: int = -60, frequency_khz: int = 915_250,
    timestamp_ms: int = 0, phase: int = 0, read_count: int = 1, tag_crc: int = 0,
) -> bytes:
    """The streamed record for one read with METADATA_ALL (tests, tools; see parse_stream)."""
    data = bytes((0x10,)) + (0x001B).to_bytes(2, "big") + METADATA_ALL.to_bytes(2, "big")
    data += bytes((0x01, read_count & 0xFF, rssi_dbm & 0xFF, ((antenna << 4) | antenna) & 0xFF))
    data += frequency_khz.to_bytes(3, "big") + timestamp_ms.to_bytes(4, "big")
    data += phase.to_bytes(2, "big") + bytes((GEN2,)) + b"\x00\x00" + b"\x00"  # no data, GPIO
    data += ((len(epc) + 4) * 8).to_bytes(2, "big") + pc.to_bytes(2, "big") + epc
    data += tag_crc.to_bytes(2, "big")
    return encode_reply(Opcode.READ_TAG_ID_MULTIPLE, OK, data)
