"""Chafon / UHFReader18 / UHFReader288 reader ("Len Adr Cmd Data CRC16"): a pure state machine.

Protocol doc §2. No start byte; the only resync is the inter-byte gap (§2.2)::

    # host -> reader: [Len:1][Adr:1][Cmd:1][Data:Len-4][CRC16 LSB][CRC16 MSB]          (§2.3)
    # reader -> host: [Len:1][Adr:1][reCmd:1][Status:1][Data:Len-5][CRC16 LSB][MSB]
    # CRC-16/MCRF4XX (reflected 0x8408, preset FFFF) over Len..Data, sent LSB first   (§2.4)

Answer-mode inventory 0x01 (§2.5) sends its tags in Status 03 ("more frames follow") frames,
then a Status 01 frame. UHFReader288 entries are ``EPCLen EPC RSSI`` after ``Ant Num``
(Ant = bitmask 01/02/04/08...); UHFReader18 entries are ``EPCLen EPC`` after ``Num``.
Scan mode pushes ``Len Adr EE 00 Data CRC`` frames on its own.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

from readersim.device import Clock, Emission, Job, ScheduledDevice
from readersim.faults import DeviceFaults
from readersim.population import Population, TagSpec, rssi_raw

BROADCAST = 0xFF

# Commands (§2.5)
INVENTORY = 0x01
GET_READER_INFO = 0x21
SET_REGION = 0x22
SET_ADDRESS = 0x24
SET_SCAN_TIME = 0x25
SET_BAUD_RATE = 0x28
SET_POWER = 0x2F
LED_BUZZER = 0x33
SET_WORK_MODE = 0x35  # UHFReader18
SET_WORK_MODE_288M = 0x76  # wabson CF_SET_WORK_MODE_288M
START_FAST_INVENTORY = 0x50  # Ex10
STOP_FAST_INVENTORY = 0x51  # Ex10
STOP_IMMEDIATELY = 0x93  # Ex10
SCAN_PUSH = 0xEE  # reCmd of scan-mode / real-time pushes

# Status bytes (§2.5)
STATUS_OK = 0x00
STATUS_DONE = 0x01
STATUS_SCAN_TIME_OVERFLOW = 0x02
STATUS_MORE_FRAMES = 0x03
STATUS_ANTENNA_ERROR = 0xF8
STATUS_NO_TAG = 0xFB
STATUS_BAD_LENGTH = 0xFD
STATUS_ILLEGAL_COMMAND = 0xFE
STATUS_PARAMETER_ERROR = 0xFF

BAUD_CODES = {0: 9600, 1: 19200, 2: 38400, 5: 57600, 6: 115200}  # cmd 0x28 (§2.2)
READER_TYPE = {"288": 0x0C, "18": 0x09}  # UHFReader288M, UHFReader18
MAX_POWER_DBM = 30

# Published frame with a wrong CRC (§2.5 [BAD], wabson negative test).
BAD_VECTORS_CHAFON: tuple[bytes, ...] = (
    bytes.fromhex("1500010301010c0000000000000000000003136bb1a6"),
)


def crc16_mcrf4xx(data: bytes) -> int:
    """CRC-16/MCRF4XX: reflected poly 0x8408, preset 0xFFFF, no final XOR (§2.4)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    crc = crc16_mcrf4xx(body)
    return body + bytes([crc & 0xFF, crc >> 8])


def encode_command(address: int, cmd: int, data: bytes = b"") -> bytes:
    """Host -> reader frame."""
    return with_crc(bytes([len(data) + 4, address, cmd]) + data)


def encode_response(address: int, cmd: int, status: int, data: bytes = b"") -> bytes:
    """Reader -> host frame."""
    if len(data) > 0xFF - 5:
        raise ValueError("Chafon frame data too long")
    return with_crc(bytes([len(data) + 5, address, cmd, status]) + data)


def antenna_mask(port: int) -> int:
    """1-based port -> the Ant bitmask of 288 replies (01, 02, 04, 08, ...)."""
    return 1 << (port - 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChafonConfig:
    model: Literal["288", "18"] = "288"
    address: int = 0x00
    baud: int = 57600
    firmware: tuple[int, int] = (0x00, 0x16)
    protocols: int = 0x03  # Tr_Type: bit0 ISO18000-6B, bit1 6C
    dmaxfre: int = 0x4E  # band bits 7..6 + max channel (EU, 14)
    dminfre: int = 0x00
    power_dbm: int = 30
    scan_time_100ms: int = 10
    ports: int = 4
    connected_antennas: frozenset[int] = frozenset({1})
    tags_per_frame: int = 1
    read_rate_per_s: float = 200.0  # 0 or inf = unlimited
    min_round_s: float = 0.04
    rssi_jitter_db: float = 2.0
    inter_byte_gap_s: float = 0.015  # partial frame discarded after a longer gap (§2.2)
    scan_mode: bool = False  # start in scan (push) mode
    saturate: bool = False  # once the host has spoken: stream at full speed
    reply_latency_s: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in READER_TYPE:
            raise ValueError("model must be '288' or '18'")
        if not 0 <= self.address <= 0xFE:
            raise ValueError("reader address must be 0x00-0xFE")
        if self.ports not in (1, 4, 8):
            raise ValueError("ports must be 1, 4 or 8")
        bad = [a for a in self.connected_antennas if not 1 <= a <= self.ports]
        if bad:
            raise ValueError(f"antennas {sorted(bad)} do not exist on a {self.ports}-port reader")
        if self.tags_per_frame < 1:
            raise ValueError("tags_per_frame must be >= 1")


@dataclass(slots=True)
class _State:
    address: int
    power_dbm: int
    scan_time_100ms: int
    dmaxfre: int
    dminfre: int
    scan_mode: bool
    spoken: bool = False
    last_inventory: bytes = b""
    next_scan_antenna: int = 0


class ChafonDevice(ScheduledDevice):
    """A simulated Chafon-family reader (UHFReader288 by default, or UHFReader18)."""

    BAD_VECTORS = BAD_VECTORS_CHAFON

    def __init__(
        self,
        config: ChafonConfig,
        population: Population,
        *,
        clock: Clock,
        rng: random.Random,
        faults: DeviceFaults | None = None,
        epoch_s: float | None = None,
    ) -> None:
        super().__init__(clock=clock, rng=rng, baud=config.baud, faults=faults, epoch_s=epoch_s)
        self.config = config
        self.population = population
        self._buf = bytearray()
        self._last_rx_s = float("-inf")
        self.state = _State(
            address=config.address,
            power_dbm=config.power_dbm,
            scan_time_100ms=config.scan_time_100ms,
            dmaxfre=config.dmaxfre,
            dminfre=config.dminfre,
            scan_mode=config.scan_mode,
        )
        self._bad_frames: list[bytes] = []  # CRC errors to answer with 00 FE

    @property
    def is288(self) -> bool:
        return self.config.model == "288"

    # -- input: Len-prefixed frames, resync only by the inter-byte gap (§2.2) -------------------

    def _parse(self, data: bytes, now_s: float) -> list[bytes]:
        buf = self._buf
        if buf and now_s - self._last_rx_s > self.config.inter_byte_gap_s:
            self.stats.bytes_discarded += len(buf)
            buf.clear()
        self._last_rx_s = now_s
        buf += data
        frames: list[bytes] = []
        while buf:
            length = buf[0]
            if length < 4:
                del buf[:1]
                self.stats.bytes_discarded += 1
                continue
            if len(buf) < length + 1:
                break
            frame = bytes(buf[: length + 1])
            del buf[: length + 1]
            if frame[1] not in (self.state.address, BROADCAST):
                self.stats.other_address += 1
                continue
            if crc16_mcrf4xx(frame):
                self.stats.bad_checksums += 1
                frames.append(b"")  # answered with "illegal command / CRC error"
                continue
            frames.append(frame)
        if frames:
            self.state.spoken = True
        return frames

    def _on_abort(self) -> None:
        self._buf.clear()

    # -- output helpers ------------------------------------------------------------------------

    def _resp(self, cmd: int, status: int, data: bytes = b"") -> bytes:
        return encode_response(self.state.address, cmd, status, data)

    def _reply(self, t0: float, cmd: int, status: int, data: bytes = b"") -> Job:
        yield Emission(t0 + self.config.reply_latency_s, self._resp(cmd, status, data))

    def _info(self) -> bytes:
        st = self.state
        cfg = self.config
        data = bytes(cfg.firmware) + bytes(
            [
                READER_TYPE[cfg.model],
                cfg.protocols,
                st.dmaxfre,
                st.dminfre,
                st.power_dbm,
                st.scan_time_100ms,
            ]
        )
        if self.is288:
            ants = sum(antenna_mask(p) for p in cfg.connected_antennas if p <= 8)
            data += bytes([ants & 0xFF, 0, 0, 0])
        return data

    # -- commands ------------------------------------------------------------------------------

    def _start(self, command: bytes, t0_s: float) -> Job:
        if not command:
            return self._reply(t0_s, 0x00, STATUS_ILLEGAL_COMMAND)  # CRC error
        cmd = command[2]
        data = command[3:-2]
        st = self.state
        n = len(data)
        if cmd == INVENTORY:
            st.last_inventory = command
            return self._inventory(data, t0_s)
        if cmd == GET_READER_INFO:
            if n:
                return self._reply(t0_s, cmd, STATUS_BAD_LENGTH)
            return self._reply(t0_s, cmd, STATUS_OK, self._info())
        if cmd == SET_REGION:
            if n != 2:
                return self._reply(t0_s, cmd, STATUS_BAD_LENGTH)
            st.dmaxfre, st.dminfre = data[0], data[1]
            return self._reply(t0_s, cmd, STATUS_OK)
        if cmd == SET_ADDRESS:
            if n != 1:
                return self._reply(t0_s, cmd, STATUS_BAD_LENGTH)
            if data[0] > 0xFE:
                return self._reply(t0_s, cmd, STATUS_PARAMETER_ERROR)
            replies = list(self._reply(t0_s, cmd, STATUS_OK))  # from the old address
            st.address = data[0]
            return iter(replies)
        if cmd == SET_SCAN_TIME:
            if n != 1:
                return self._reply(t0_s, cmd, STATUS_BAD_LENGTH)
            if data[0] < 3:
                return self._reply(t0_s, cmd, STATUS_PARAMETER_ERROR)
            st.scan_time_100ms = data[0]
            return self._reply(t0_s, cmd, STATUS_OK)
        if cmd == SET_BAUD_RATE:
            return self._set_baud(data, t0_s)
        if cmd == SET_POWER:
            if n != 1:
                return self._reply(t0_s, cmd, STATUS_BAD_LENGTH)
            if data[0] > MAX_POWER_DBM:
                return self._reply(t0_s, cmd, STATUS_PARAMETER_ERROR)
            st.power_dbm = data[0]
            return self._reply(t0_s, cmd, STATUS_OK)
        if cmd == LED_BUZZER:
            return self._reply(t0_s, cmd, STATUS_OK)
        if cmd in (SET_WORK_MODE, SET_WORK_MODE_288M):
            if not n:
                return self._reply(t0_s, cmd, STATUS_BAD_LENGTH)
            st.scan_mode = data[0] & 0x01 == 0x01  # Read_mode: 0 answer, 1 scan
            return self._reply(t0_s, cmd, STATUS_OK)
        if cmd == START_FAST_INVENTORY:
            st.scan_mode = True
            return self._reply(t0_s, cmd, STATUS_OK)
        if cmd in (STOP_FAST_INVENTORY, STOP_IMMEDIATELY):
            st.scan_mode = False
            return self._reply(t0_s, cmd, STATUS_OK)
        return self._reply(t0_s, 0x00, STATUS_ILLEGAL_COMMAND)

    def _set_baud(self, data: bytes, t0: float) -> Job:
        if len(data) != 1 or data[0] not in BAUD_CODES:
            yield from self._reply(t0, SET_BAUD_RATE, STATUS_PARAMETER_ERROR)
            return
        yield from self._reply(t0, SET_BAUD_RATE, STATUS_OK)
        self._baud = BAUD_CODES[data[0]]

    def _auto_job(self, t0_s: float) -> Job | None:
        st = self.state
        if st.scan_mode:
            return self._scan_round(t0_s)
        if self.config.saturate and st.spoken:
            default = encode_command(
                st.address, INVENTORY, bytes.fromhex("0f 00 01 00 00 00 00 80 0a")
            )
            command = st.last_inventory or default
            return self._inventory(command[3:-2], t0_s)
        return None

    # -- inventories ---------------------------------------------------------------------------

    def _rate(self) -> float:
        rate = self.config.read_rate_per_s
        return rate if rate > 0 and math.isfinite(rate) else math.inf

    def _entry(self, tag: TagSpec) -> bytes:
        entry = bytes([len(tag.epc)]) + tag.epc
        if self.is288:
            entry += bytes([self._rssi(tag)])
        return entry

    def _rssi(self, tag: TagSpec) -> int:
        jitter = self.config.rssi_jitter_db
        return rssi_raw(tag.rssi_dbm + (self._rng.uniform(-jitter, jitter) if jitter else 0.0))

    def _reads(self, port: int, t_s: float) -> list[TagSpec]:
        tags = [
            tag
            for tag in self.population.visible(self.world_s(t_s), port)
            if tag.read_probability >= 1.0 or self._rng.random() < tag.read_probability
        ]
        self._rng.shuffle(tags)
        return tags

    def _inventory_port(self, data: bytes) -> int | None:
        """Which antenna the 0x01 data selects; None if it cannot be parsed."""
        # 288/UR: QValue Session MaskMem MaskAdr(2) MaskLen [MaskData] [AdrTID LenTID]
        #         Target Ant ScanTime.  UHFReader18: nothing, or AdrTID LenTID.
        if len(data) in (0, 2):
            return 1
        if len(data) < 9:
            return None
        mask_bytes = (data[5] + 7) // 8
        rest = data[6 + mask_bytes :]
        if len(rest) not in (3, 5) or rest[-2] < 0x80:
            return None
        return rest[-2] - 0x80 + 1

    def _inventory(self, data: bytes, t0: float) -> Job:
        cmd = INVENTORY
        err = self._error_code(t0)
        if err is not None:
            yield from self._reply(t0, cmd, err)
            return
        port = self._inventory_port(data) if self.is288 else 1
        if port is None:
            yield from self._reply(t0, cmd, STATUS_PARAMETER_ERROR)
            return
        if port not in self.config.connected_antennas:
            yield from self._reply(t0, cmd, STATUS_ANTENNA_ERROR)
            return
        scan_s = (self.state.scan_time_100ms if len(data) < 9 else data[-1] or 1) * 0.1
        rate = self._rate()
        tags = self._reads(port, t0)
        final = STATUS_DONE
        if len(tags) / rate > scan_s:  # the field holds more than one scan time can read
            tags = tags[: int(scan_s * rate)]
            final = STATUS_SCAN_TIME_OVERFLOW
        duration_s = min(scan_s, max(self.config.min_round_s, len(tags) / rate))
        head = bytes([antenna_mask(port)]) if self.is288 else b""
        per = self.config.tags_per_frame
        for i in range(0, len(tags), per):
            group = tags[i : i + per]
            due = t0 + (i + len(group)) / rate if math.isfinite(rate) else t0
            body = head + bytes([len(group)]) + b"".join(self._entry(t) for t in group)
            yield Emission(due, self._resp(cmd, STATUS_MORE_FRAMES, body))
        if not tags and not self.is288:
            yield Emission(t0 + duration_s, self._resp(cmd, STATUS_NO_TAG))
            return
        yield Emission(t0 + duration_s, self._resp(cmd, final, head + b"\x00"))

    def _scan_round(self, t0: float) -> Generator[Emission, None, None]:
        """Scan mode: one round on the next connected antenna, one push frame per read."""
        ports = sorted(self.config.connected_antennas)
        st = self.state
        port = ports[st.next_scan_antenna % len(ports)]
        st.next_scan_antenna += 1
        rate = self._rate() if not self.config.saturate else math.inf
        tags = self._reads(port, t0)
        for i, tag in enumerate(tags):
            due = t0 + (i + 1) / rate if math.isfinite(rate) else t0
            if self.is288:
                data = bytes([antenna_mask(port), len(tag.epc)]) + tag.epc
                data += bytes([self._rssi(tag)])
            else:
                data = tag.epc
            yield Emission(due, self._resp(SCAN_PUSH, STATUS_OK, data))
        min_round_s = 0.0 if self.config.saturate else self.config.min_round_s
        busy_s = len(tags) / rate if math.isfinite(rate) else 0.0
        self._busy_until_s = max(self._busy_until_s, t0 + max(min_round_s, busy_s))
