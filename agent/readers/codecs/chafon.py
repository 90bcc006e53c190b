"""The Chafon / UHFReader18 / UHFReader288 / UR-series / "UHFEx10" serial protocol.

Source: docs reader-protocols.md §2 (UHFReader18 User's Manual V2.0 as cleaned in
``xynogen/uhfreader18``, UR-series manual v1.14, ``wabson/chafon-rfid``). Pure: bytes in, frozen
dataclasses out; never raises on line noise.

    # command:  [Len:1][Adr:1][Cmd:1][Data:Len-4][CRC_LSB:1][CRC_MSB:1]               (§2.3)
    # response: [Len:1][Adr:1][reCmd:1][Status:1][Data:Len-5][CRC_LSB:1][CRC_MSB:1]   (§2.3)
    # Len counts the bytes after itself (CRC included): a frame is Len + 1 bytes long.
    # CRC-16/MCRF4XX over Len..Data, LSB first; CRC over a whole valid frame is 0x0000 (§2.4)

There is no start byte. The only re-sync the protocol defines is time: a gap of more than 15 ms
between two bytes ends a partial frame (§2.2). The decoder also drops ONE byte and rescans when a
candidate frame fails its CRC, so frames hidden behind a noise "length" byte are recovered.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Generic, Literal, TypeVar

from agent.readers.codecs.base import DecoderStats

BROADCAST = 0xFF
DEFAULT_ADDRESS = 0x00  # factory address of the readers (§2.3)
MAX_GAP_S = 0.015  # §2.2: "Max gap between bytes inside a frame: 15 ms"
MIN_COMMAND_LEN = 4  # Adr + Cmd + CRC(2)
MIN_RESPONSE_LEN = 5  # Adr + reCmd + Status + CRC(2)
MAX_FRAME = 0xFF + 1

Form = Literal["18", "288"]
"""Which reply layout a reader uses: UHFReader18 (no antenna, no RSSI) or UHFReader288/UR/Ex10."""

# ----------------------------------------------------------------------------- CRC (§2.4)

# CRC-16/MCRF4XX is the bit-reflected twin of CRC-16/XMODEM-with-preset-0xFFFF, which the
# standard library computes in C (binascii.crc_hqx). Reflect every input byte, run crc_hqx from
# 0xFFFF (its own reflection), reflect the 16-bit result: same value as the manual's loop
#     crc ^= b; 8 x: crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
# tests/codecs/test_codec_chafon.py checks the two agree on arbitrary data.
_REFLECT8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reflect16(x: int) -> int:
    return (_REFLECT8[x & 0xFF] << 8) | _REFLECT8[x >> 8]


def crc16_mcrf4xx(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/MCRF4XX: reflected polynomial 0x8408, preset 0xFFFF, no final XOR (§2.4).

    ``crc16_mcrf4xx(b"123456789") == 0x6F91``; over a whole valid frame (CRC bytes included,
    LSB first) the result is 0.
    """
    return _reflect16(binascii.crc_hqx(bytes(data).translate(_REFLECT8), _reflect16(crc)))


def _crc_ok(frame: bytes | bytearray) -> bool:
    # crc16_mcrf4xx(frame) == 0, without the final reflection (the reflection of 0 is 0).
    return binascii.crc_hqx(bytes(frame).translate(_REFLECT8), 0xFFFF) == 0


# ----------------------------------------------------------------------------- codes


class Cmd(IntEnum):
    """Command codes (§2.5), snake_case with the manual's name beside them."""

    INVENTORY = 0x01  # Inventory (G2 / ISO 18000-6C)
    READ_DATA = 0x02  # Read Data
    WRITE_DATA = 0x03  # Write Data
    WRITE_EPC = 0x04  # Write EPC
    KILL_TAG = 0x05  # Kill Tag
    LOCK = 0x06  # Lock
    BLOCK_ERASE = 0x07  # Block Erase
    INVENTORY_SINGLE = 0x0F  # Inventory (Single)
    BLOCK_WRITE = 0x10  # Block Write
    GET_READER_INFO = 0x21  # Get Reader Information
    SET_REGION = 0x22  # Set Region
    SET_ADDRESS = 0x24  # Set Address
    SET_SCAN_TIME = 0x25  # Set Scan Time
    SET_BAUD_RATE = 0x28  # Set Baud Rate
    SET_POWER = 0x2F  # Set Power
    ACOUSTO_OPTIC_CONTROL = 0x33  # Acousto-optic Control (LED/buzzer)
    SET_WORK_MODE = 0x35  # Set WorkMode (UHFReader18)
    GET_WORK_MODE = 0x36  # Get WorkMode
    START_FAST_INVENTORY = 0x50  # (Ex10/E310) start fast inventory
    STOP_FAST_INVENTORY = 0x51  # (Ex10/E310) stop fast inventory
    STOP_IMMEDIATELY = 0x93  # (Ex10) stop immediately
    SCAN_PUSH = 0xEE  # reCmd of scan / real-time mode pushes (not a host command)


class Status(IntEnum):
    """Result statuses that the codec acts on (full table in STATUS_CODES)."""

    SUCCESS = 0x00
    INVENTORY_DONE = 0x01
    INVENTORY_SCAN_TIME_OVERFLOW = 0x02
    INVENTORY_MORE_FRAMES = 0x03
    INVENTORY_BUFFER_FULL = 0x04
    INVENTORY_STATISTICS = 0x26  # UR-series statistics packet
    SCAN_HEARTBEAT = 0x28  # UR-series real-time mode heartbeat
    ANTENNA_ERROR = 0xF8
    NO_TAG = 0xFB
    TAG_ERROR_CODE = 0xFC
    COMMAND_LENGTH_WRONG = 0xFD
    ILLEGAL_COMMAND = 0xFE
    PARAMETER_ERROR = 0xFF


# §2.5 and the UHFReader18 manual §5 (status table); 0x26/0x28/0xF8 from the UR-series manual.
STATUS_CODES: dict[int, tuple[str, str]] = {
    0x00: ("success", "command executed successfully"),
    0x01: ("inventory_done", "inventory finished within the scan time"),
    0x02: ("inventory_scan_time_overflow", "scan time ran out before every tag was read"),
    0x03: ("inventory_more_frames", "more frames of this inventory follow"),
    0x04: ("inventory_buffer_full", "the reader's tag buffer is full; some tags not reported"),
    0x05: ("access_password_error", "wrong access password"),
    0x09: ("kill_tag_error", "kill failed (wrong kill password or poor tag communication)"),
    0x0A: ("kill_password_zero", "kill password cannot be zero"),
    0x0B: ("tag_not_support_command", "the tag does not support this command"),
    0x0C: ("access_password_zero", "access password cannot be zero for this command"),
    0x0D: ("tag_is_protected", "the tag is already read-protected"),
    0x0E: ("tag_is_unprotected", "the tag is not protected or does not support the command"),
    0x10: ("some_bytes_locked", "6B tag: some bytes are locked, write failed"),
    0x11: ("cannot_lock", "6B tag: cannot be locked"),
    0x12: ("already_locked", "6B tag: already locked"),
    0x13: ("save_fail", "saving the parameter failed (valid until power-off)"),
    0x14: ("cannot_adjust_power", "the output power cannot be adjusted"),
    0x15: ("inventory_6b_done", "6B inventory finished within the scan time"),
    0x16: ("inventory_6b_scan_time_overflow", "6B inventory: scan time ran out"),
    0x17: ("inventory_6b_more_frames", "6B inventory: more frames follow"),
    0x18: ("inventory_6b_buffer_full", "6B inventory: the reader's buffer is full"),
    0x19: ("not_support_or_password_zero", "EAS not supported or access password is zero"),
    0x26: ("statistics", "inventory statistics packet"),
    0x28: ("heartbeat", "real-time mode heartbeat (no tag in the interval)"),
    0xF8: ("antenna_error", "antenna error: the current antenna may be disconnected"),
    0xF9: ("command_execute_error", "command execution error"),
    0xFA: ("poor_communication", "tags present but communication with them failed"),
    0xFB: ("no_tag", "no tag operable in the field"),
    0xFC: ("tag_error_code", "the tag returned an error code"),
    0xFD: ("command_length_wrong", "command operand length is wrong"),
    0xFE: ("illegal_command", "unknown command or CRC error in the command"),
    0xFF: ("parameter_error", "invalid command parameter"),
}

# Tag error codes that follow a 0xFC status (UHFReader18 manual §6).
TAG_ERROR_CODES: dict[int, str] = {
    0x00: "other error",
    0x03: "memory overrun",
    0x04: "memory locked",
    0x0B: "insufficient power",
    0x0F: "non-specific error",
}

_OK_STATUSES = frozenset({0x00, 0x01, 0x02, 0x03, 0x04, 0x15, 0x16, 0x17, 0x18, 0x26, 0x28})


def status_name(code: int) -> str:
    name, meaning = STATUS_CODES.get(code, ("unknown_status", "status not in the manual"))
    return f"0x{code:02X} {name} ({meaning})"


def is_error_status(code: int) -> bool:
    """True for statuses that report a failure (0xFB "no tag" included: callers decide)."""
    return code not in _OK_STATUSES


# Reader type byte of the 0x21 reply (wabson/chafon-rfid ``ReaderType``; UHFReader18 manual).
READER_TYPES: dict[int, str] = {
    0x09: "UHFReader18",
    0x0C: "UHFReader288M",
    0x0F: "UHFReader86",  # CF-MU903/CF-MU904 as documented
    0x10: "UHFReader86",  # CF-MU903/CF-MU904 as shipped
}

# Frequency band: MaxFre bits 7..6 then MinFre bits 7..6 of the 0x21 reply (UHFReader18 manual
# §8.4.1, wabson ``ReaderFrequencyBand``). Channel formula (start MHz, step MHz) where documented.
BANDS: dict[int, tuple[str, tuple[float, float] | None]] = {
    0b0000: ("user", (902.6, 0.4)),
    0b0001: ("china2", (920.125, 0.25)),
    0b0010: ("us", (902.75, 0.5)),
    0b0011: ("korea", (917.1, 0.2)),
    0b0100: ("eu", (865.1, 0.2)),
    0b0110: ("ukraine", None),
    0b0111: ("peru", None),
    0b1000: ("china1", None),
    0b1001: ("eu3", None),
    0b1010: ("taiwan", None),
    0b1100: ("us3", None),
}

# Baud codes of cmd 0x28 (§2.2).
BAUD_CODES: dict[int, int] = {9600: 0, 19200: 1, 38400: 2, 57600: 5, 115200: 6}


# ----------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class ChafonFrame:
    """A response (reader -> host): ``Len Adr reCmd Status Data CRC``."""

    address: int
    cmd: int  # reCmd: the command echoed, 0x00 for an unknown command, 0xEE for pushes
    status: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ChafonCommand:
    """A command (host -> reader): ``Len Adr Cmd Data CRC``. Decoded by simulators and tests."""

    address: int
    cmd: int
    data: bytes


def encode(address: int, cmd: int, data: bytes = b"") -> bytes:
    """A command frame: ``Len Adr Cmd Data CRC_LSB CRC_MSB`` with ``Len = len(Data) + 4``."""
    if len(data) > 0xFF - MIN_COMMAND_LEN:
        raise ValueError(f"command data too long: {len(data)} bytes (max {0xFF - 4})")
    body = bytes((len(data) + MIN_COMMAND_LEN, address & 0xFF, cmd & 0xFF)) + data
    crc = crc16_mcrf4xx(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def encode_response(address: int, cmd: int, status: int, data: bytes = b"") -> bytes:
    """A response frame (what a reader sends): ``Len Adr reCmd Status Data CRC``."""
    return encode(address, cmd, bytes((status & 0xFF,)) + data)


F = TypeVar("F")


class _LenCrcDecoder(Generic[F]):
    """Stream decoder for frames that start with their length and end with CRC-16/MCRF4XX.

    At each position read Len, wait for Len+1 bytes, verify the CRC. Len too small or a bad CRC:
    drop ONE byte and rescan (the frame may start inside what looked like a frame). Bounded: a
    Len byte asks for at most 256 bytes, so fewer than 256 bytes are ever pending.

    ``feed(data, now_s)``: when ``now_s`` is given and more than ``max_gap_s`` passed since the
    previous byte, the pending partial frame is abandoned first (§2.2), after one last rescan of
    it for whole frames. ``feed(b"", now_s)`` applies only that rule (a poll).
    """

    __slots__ = ("_buf", "_last_rx_s", "address", "max_gap_s", "stats")

    _min_len: ClassVar[int]

    def __init__(self, address: int | None = None, *, max_gap_s: float | None = MAX_GAP_S) -> None:
        self._buf = bytearray()
        self._last_rx_s: float | None = None
        self.address = address  # None: accept any; else own address and broadcast
        self.max_gap_s = max_gap_s  # None: no time rule (the session's idle resync still applies)
        self.stats = DecoderStats()

    def _make(self, frame: bytes) -> F:
        raise NotImplementedError

    def feed(self, data: bytes, now_s: float | None = None) -> list[F]:
        out: list[F] = []
        if now_s is not None:
            last = self._last_rx_s
            if (
                self._buf
                and self.max_gap_s is not None
                and last is not None
                and now_s - last > self.max_gap_s + 1e-9  # float noise: exactly 15 ms is OK
            ):
                out += self.resync()
            if data:
                self._last_rx_s = now_s
        elif data:
            self._last_rx_s = None  # bytes of unknown age: no gap judgement on the next feed
        if data:
            self.stats.bytes_in += len(data)
            self._buf += data
            out += self._scan()
        return out

    def _scan(self) -> list[F]:
        buf = self._buf
        stats = self.stats
        min_len = self._min_len
        out: list[F] = []
        pos = 0
        n = len(buf)
        while pos < n:
            length = buf[pos]
            if length < min_len:
                stats.bytes_discarded += 1
                pos += 1
                continue
            end = pos + length + 1
            if end > n:
                break  # need more bytes
            if not _crc_ok(buf[pos:end]):
                stats.bad_checksums += 1
                stats.bytes_discarded += 1
                pos += 1
                continue
            addr = buf[pos + 1]
            if self.address is not None and addr not in (self.address, BROADCAST):
                # Noise can pass the CRC too (1 in 65,536); like a bad CRC, drop one byte so a
                # real frame that a false Len reached into is still found.
                stats.wrong_address += 1
                stats.bytes_discarded += 1
                pos += 1
                continue
            frame = bytes(buf[pos:end])
            pos = end
            stats.frames += 1
            out.append(self._make(frame))
        del buf[:pos]
        return out

    def resync(self) -> list[F]:
        """The line went quiet with a partial frame pending: it can never complete.

        Its Len byte was probably noise, so drop one byte at a time and rescan what is buffered;
        whole frames found behind it are returned, the rest is discarded. Counted once in
        ``stats.partial_timeouts``. Called by ``feed`` on a gap and by FrameSession when idle.
        """
        if not self._buf:
            return []
        self.stats.partial_timeouts += 1
        out: list[F] = []
        while self._buf:
            del self._buf[0]
            self.stats.bytes_discarded += 1
            out += self._scan()
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


class ChafonDecoder(_LenCrcDecoder[ChafonFrame]):
    """Reader responses and pushes (host side)."""

    __slots__ = ()
    _min_len = MIN_RESPONSE_LEN

    def _make(self, frame: bytes) -> ChafonFrame:
        return ChafonFrame(frame[1], frame[2], frame[3], frame[4:-2])


class ChafonCommandDecoder(_LenCrcDecoder[ChafonCommand]):
    """Host commands (reader side: simulators, tests)."""

    __slots__ = ()
    _min_len = MIN_COMMAND_LEN

    def _make(self, frame: bytes) -> ChafonCommand:
        return ChafonCommand(frame[1], frame[2], frame[3:-2])


# ----------------------------------------------------------------------------- parsed replies


def antenna_from_mask(mask: int) -> int | None:
    """UHFReader288/UR ``Ant`` bitmask -> 1-based antenna (01, 02, 04, 08 -> 1..4; up to 8).

    Real-time pushes may set several bits (0x05 = antennas 1 and 3): the lowest one is returned;
    ``antennas_from_mask`` gives them all. 0 -> None.
    """
    if mask <= 0:
        return None
    return (mask & -mask).bit_length()


def antennas_from_mask(mask: int) -> tuple[int, ...]:
    return tuple(i + 1 for i in range(8) if mask >> i & 1)


@dataclass(frozen=True, slots=True)
class ChafonTag:
    """One tag of an inventory reply or a scan-mode push."""

    epc: bytes  # EPC (or TID / memory words when the reader was asked for those)
    antenna: int | None  # 1-based; None on UHFReader18 replies (no Ant field)
    rssi_raw: int | None  # the reader's RSSI byte (UHFReader288/UR); unit not documented
    tid: bytes | None = None  # 12-byte TID when FastID was on (UR: EPCLen bit 7)


@dataclass(frozen=True, slots=True)
class InventoryReply:
    """Reply to cmd 0x01 (§2.5).

    UHFReader18:       ``Status Num {EPCLen EPC}...``
    UHFReader288/UR:   ``Status Ant Num {EPCLen EPC RSSI}...``   (Ant is a bitmask)
    UR FastID:         EPCLen bit 7 set -> bits 6..0 = len(EPC) + 12, then EPC, then 12-byte TID
    """

    status: int  # 01 done · 02 scan time overflow · 03 more frames follow · 04 buffer full · FB
    antenna_mask: int | None
    tags: tuple[ChafonTag, ...]

    @property
    def more(self) -> bool:
        """Status 0x03: further frames of the same inventory follow."""
        return self.status == Status.INVENTORY_MORE_FRAMES

    @property
    def done(self) -> bool:
        return self.status != Status.INVENTORY_MORE_FRAMES

    @property
    def no_tag(self) -> bool:
        return self.status == Status.NO_TAG

    @property
    def description(self) -> str:
        return status_name(self.status)


@dataclass(frozen=True, slots=True)
class InventoryStatistics:
    """UR-series statistics packet (status 0x26): ``Ant ReadRate(2) TotalCount(4)``, MSB first."""

    antenna_mask: int
    read_rate: int  # reads/s
    total_count: int


@dataclass(frozen=True, slots=True)
class ScanHeartbeat:
    """UR real-time mode heartbeat (reCmd 0xEE, status 0x28):
    ``PacketNo(4) AntStatus(8) TotalCount(4)``, MSB first."""

    packet_no: int
    antenna_status: bytes
    total_count: int


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    """Reply to 0x21 Get Reader Information (UHFReader18 manual §8.4.1; 288M/UR add 4 bytes).

    ``Version(2) Type Tr_Type dmaxfre dminfre Power Scntm [Ant BeepEn OutputRep CheckAnt]``
    """

    address: int
    version: tuple[int, int]
    reader_type: int
    protocols: int  # Tr_Type: bit 1 = ISO 18000-6C (EPC Gen2), bit 0 = ISO 18000-6B
    band: int  # 4-bit band code (BANDS)
    max_channel: int
    min_channel: int
    power_dbm: int | None  # 0xFF = unknown
    scan_time_ms: int  # Scntm x 100 ms
    antenna_config: int | None  # 288M/UR: Ant byte
    extra: bytes  # anything after Scntm/Ant, unparsed (BeepEn, OutputRep, CheckAnt, ...)

    @property
    def firmware(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def model(self) -> str:
        return READER_TYPES.get(self.reader_type, f"unknown type 0x{self.reader_type:02X}")

    @property
    def protocol_names(self) -> tuple[str, ...]:
        names: list[str] = []
        if self.protocols & 0b10:
            names.append("ISO18000-6C")
        if self.protocols & 0b01:
            names.append("ISO18000-6B")
        return tuple(names)

    @property
    def band_name(self) -> str:
        entry = BANDS.get(self.band)
        return entry[0] if entry else f"band 0x{self.band:X}"

    def channel_mhz(self, channel: int) -> float | None:
        entry = BANDS.get(self.band)
        if entry is None or entry[1] is None:
            return None
        start, step = entry[1]
        return round(start + channel * step, 3)


@dataclass(frozen=True, slots=True)
class ChafonError:
    """A reply whose status reports a failure (0xFE illegal command/CRC, 0xFF parameter error,
    0xF8 antenna error, ...). ``cmd`` is 0x00 when the reader did not recognise the command."""

    cmd: int
    status: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return STATUS_CODES.get(self.status, ("unknown_status", ""))[0]

    @property
    def meaning(self) -> str:
        return STATUS_CODES.get(self.status, ("", "status not in the manual"))[1]

    @property
    def tag_error(self) -> int | None:
        if self.status == Status.TAG_ERROR_CODE and self.data:
            return self.data[0]
        return None

    @property
    def description(self) -> str:
        text = status_name(self.status)
        code = self.tag_error
        if code is not None:
            text += f": tag error 0x{code:02X} {TAG_ERROR_CODES.get(code, 'unknown')}"
        return text


@dataclass(frozen=True, slots=True)
class Ack:
    """A success reply (status 0x00) to any other command; ``data`` as sent."""

    cmd: int
    data: bytes = b""


ChafonReply = (
    InventoryReply
    | InventoryStatistics
    | ReaderInfo
    | ChafonTag
    | ScanHeartbeat
    | ChafonError
    | Ack
)


def _tags(
    buf: bytes, pos: int, count: int, *, rssi: bool, antenna: int | None
) -> tuple[ChafonTag, ...] | None:
    """``count`` x ``EPCLen EPC [RSSI]`` filling ``buf[pos:]`` exactly; None if it does not."""
    tags: list[ChafonTag] = []
    n = len(buf)
    for _ in range(count):
        if pos >= n:
            return None
        length = buf[pos]
        size = length & 0x7F
        pos += 1
        end = pos + size
        if end + rssi > n:
            return None
        body = buf[pos:end]
        if length & 0x80:  # UR FastID: EPC + 12-byte TID
            if size < 12:
                return None
            epc, tid = body[:-12], body[-12:]
        else:
            epc, tid = body, None
        tags.append(ChafonTag(epc, antenna, buf[end] if rssi else None, tid))
        pos = end + rssi
    return tuple(tags) if pos == n else None


_INVENTORY_DATA = frozenset(
    {
        Status.INVENTORY_DONE,
        Status.INVENTORY_SCAN_TIME_OVERFLOW,
        Status.INVENTORY_MORE_FRAMES,
        Status.INVENTORY_BUFFER_FULL,
    }
)


def parse_inventory(
    frame: ChafonFrame, *, form: Form = "288"
) -> InventoryReply | InventoryStatistics | ChafonError | None:
    """Classify a reply to cmd 0x01. None if the data does not fit the layout (malformed)."""
    status = frame.status
    data = frame.data
    if status == Status.NO_TAG:
        return InventoryReply(status, None, ())
    if status == Status.INVENTORY_STATISTICS:
        if len(data) != 7:
            return None
        return InventoryStatistics(
            data[0], int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:7], "big")
        )
    if status not in _INVENTORY_DATA:
        return ChafonError(frame.cmd, status, data)
    if form == "18":
        if not data:
            return InventoryReply(status, None, ())
        tags = _tags(data, 1, data[0], rssi=False, antenna=None)
        return None if tags is None else InventoryReply(status, None, tags)
    if not data:
        return InventoryReply(status, None, ())
    if len(data) < 2:
        return None
    mask = data[0]
    tags = _tags(data, 2, data[1], rssi=True, antenna=antenna_from_mask(mask))
    return None if tags is None else InventoryReply(status, mask, tags)


def parse_reader_info(frame: ChafonFrame) -> ReaderInfo | ChafonError | None:
    """Decode a 0x21 reply; None if too short."""
    if frame.status != Status.SUCCESS:
        return ChafonError(frame.cmd, frame.status, frame.data)
    d = frame.data
    if len(d) < 8:
        return None
    dmax, dmin = d[4], d[5]
    return ReaderInfo(
        address=frame.address,
        version=(d[0], d[1]),
        reader_type=d[2],
        protocols=d[3],
        band=((dmax >> 6) << 2) | (dmin >> 6),
        max_channel=dmax & 0x3F,
        min_channel=dmin & 0x3F,
        power_dbm=None if d[6] == 0xFF else d[6],
        scan_time_ms=d[7] * 100,
        antenna_config=d[8] if len(d) > 8 else None,
        extra=bytes(d[9:]),
    )


def parse_scan_push(
    frame: ChafonFrame, *, form: Form = "288"
) -> ChafonTag | ScanHeartbeat | None:
    """Decode a scan / real-time mode push (reCmd 0xEE); None if unknown or malformed.

    UHFReader18 scan mode: Data = EPC (or the memory words configured). UR/Ex10 real-time mode:
    ``Ant Len EPC RSSI`` (Ant may have several bits set), heartbeat status 0x28.
    """
    d = frame.data
    if frame.status == Status.SCAN_HEARTBEAT:
        if len(d) != 16:
            return None
        return ScanHeartbeat(
            int.from_bytes(d[0:4], "big"), bytes(d[4:12]), int.from_bytes(d[12:16], "big")
        )
    if frame.status != Status.SUCCESS or not d:
        return None
    if form == "18":
        return ChafonTag(bytes(d), None, None)
    if len(d) < 3:
        return None
    tags = _tags(d, 1, 1, rssi=True, antenna=antenna_from_mask(d[0]))
    return tags[0] if tags else None


def parse_response(frame: ChafonFrame, *, form: Form = "288") -> ChafonReply | None:
    """Dispatch on reCmd: inventory, reader info, pushes, errors, plain acknowledgements."""
    if frame.cmd == Cmd.SCAN_PUSH:
        return parse_scan_push(frame, form=form)
    if frame.cmd == Cmd.INVENTORY:
        return parse_inventory(frame, form=form)
    if frame.cmd == Cmd.GET_READER_INFO:
        return parse_reader_info(frame)
    if is_error_status(frame.status):
        return ChafonError(frame.cmd, frame.status, frame.data)
    return Ack(frame.cmd, frame.data)


# ----------------------------------------------------------------------------- command builders


def _check(name: str, value: int, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be {lo}..{hi}, got {value}")
    return value


def inventory_18(address: int = BROADCAST, *, tid: tuple[int, int] | None = None) -> bytes:
    """UHFReader18 inventory: no data, or ``AdrTID LenTID`` (words) for a TID inventory.

    ``04 FF 01 1B B4`` for broadcast (§2.4).
    """
    if tid is None:
        return encode(address, Cmd.INVENTORY)
    adr, words = tid
    data = bytes((_check("AdrTID", adr, 0, 255), _check("LenTID", words, 1, 15)))
    return encode(address, Cmd.INVENTORY, data)


def inventory_288(
    address: int = BROADCAST,
    *,
    q: int = 15,
    session: int = 0,
    mask_mem: int = 1,
    mask_address_bits: int = 0,
    mask: bytes = b"",
    mask_len_bits: int | None = None,
    tid: tuple[int, int] | None = None,
    target: int = 0,
    antenna: int = 1,
    scan_time_100ms: int = 0x14,
    fast_id: bool = False,
    statistics: bool = False,
) -> bytes:
    """UHFReader288/UR inventory (§2.5):

    ``QValue Session MaskMem MaskAdr(2) MaskLen [MaskData] [AdrTID LenTID] Target Ant ScanTime``

    QValue bits 3..0 = Q; bit 5 = FastID, bit 7 = statistics packets (UR manual; wabson).
    Session 0..3 (0xFF = smart). MaskMem 1 EPC, 2 TID, 3 user; MaskAdr and MaskLen in bits.
    Ant ``0x80 + antenna - 1`` (antenna 1..8). ScanTime x 100 ms.
    The defaults give the doc's ``0D FF 01 0F 00 01 00 00 00 00 80 14 C0 3A``.
    """
    _check("q", q, 0, 15)
    if session != 0xFF:
        _check("session", session, 0, 3)
    if mask_len_bits is None:
        mask_len_bits = 8 * len(mask)
    _check("mask_len_bits", mask_len_bits, 0, 255)
    if len(mask) != (mask_len_bits + 7) // 8:
        raise ValueError(f"mask is {len(mask)} bytes but mask_len_bits is {mask_len_bits}")
    qvalue = q | (0x20 if fast_id else 0) | (0x80 if statistics else 0)
    data = bytearray((qvalue, session, _check("mask_mem", mask_mem, 1, 3)))
    data += _check("mask_address_bits", mask_address_bits, 0, 0xFFFF).to_bytes(2, "big")
    data.append(mask_len_bits)
    data += mask
    if tid is not None:
        data += bytes((_check("AdrTID", tid[0], 0, 255), _check("LenTID", tid[1], 1, 15)))
    data += bytes(
        (
            _check("target", target, 0, 1),
            0x80 + _check("antenna", antenna, 1, 8) - 1,
            _check("scan_time_100ms", scan_time_100ms, 0, 255),
        )
    )
    return encode(address, Cmd.INVENTORY, bytes(data))


def get_reader_info(address: int = BROADCAST) -> bytes:
    """``04 FF 21 19 95`` for broadcast (§2.4)."""
    return encode(address, Cmd.GET_READER_INFO)


def set_power(address: int, power_dbm: int) -> bytes:
    """0x2F Set Power, 0..30 dBm (stored in EEPROM)."""
    return encode(address, Cmd.SET_POWER, bytes((_check("power_dbm", power_dbm, 0, 30),)))


def set_address(address: int, new_address: int) -> bytes:
    """0x24 Set Address, 0x00..0xFE. The reply carries the OLD address."""
    return encode(address, Cmd.SET_ADDRESS, bytes((_check("new_address", new_address, 0, 0xFE),)))


def set_scan_time(address: int, scan_time_100ms: int) -> bytes:
    """0x25 Set Scan Time, 3..255 x 100 ms."""
    return encode(
        address, Cmd.SET_SCAN_TIME, bytes((_check("scan_time_100ms", scan_time_100ms, 3, 255),))
    )


def set_baud_rate(address: int, baudrate: int) -> bytes:
    """0x28 Set Baud Rate. The reply comes at the old rate; the next command needs the new one."""
    code = BAUD_CODES.get(baudrate)
    if code is None:
        raise ValueError(f"baud rate must be one of {sorted(BAUD_CODES)}, got {baudrate}")
    return encode(address, Cmd.SET_BAUD_RATE, bytes((code,)))


def start_fast_inventory(address: int, target: int = 0) -> bytes:
    """(Ex10/E310) 0x50 start fast inventory; tags then arrive as 0xEE pushes."""
    return encode(address, Cmd.START_FAST_INVENTORY, bytes((_check("target", target, 0, 1),)))


def stop_fast_inventory(address: int) -> bytes:
    return encode(address, Cmd.STOP_FAST_INVENTORY)


def is_reply_to(cmd: int) -> Callable[[ChafonFrame], bool]:
    """A FrameSession ``is_reply`` predicate: the echo of ``cmd``, or the 0x00/FE "illegal command
    or CRC" reply (which does not echo the command)."""

    def check(frame: ChafonFrame) -> bool:
        return frame.cmd == cmd or (frame.cmd == 0x00 and frame.status == Status.ILLEGAL_COMMAND)

    return check
