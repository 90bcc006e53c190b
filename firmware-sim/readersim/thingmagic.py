"""ThingMagic/JADAK Mercury embedded module (M6e Nano, M7e): a pure state machine.

Protocol doc §3. Frames::

    # host -> module   [FF][Len][Opcode][Data:Len][CRC:2]
    # module -> host   [FF][Len][Opcode][Status:2][Data:Len][CRC:2]
    # CRC: poly 0x1021, init 0xFFFF, over Len..Data, big-endian (computed bit by bit here, not
    # with the agent's nibble table, so that a bug in one cannot hide in the other)

What it models:

* boot states: the module powers up in its bootloader; there only version (0x03), boot
  firmware (0x04) and set baud (0x06) work, anything else answers 0x0101 invalid opcode. Boot
  firmware starts the application, which answers 0x04 itself with 0x0101.
* region (0x97) is required before reading: continuous reading without one answers 0x0405
  (tmr_status.h: "Reader not fully initialized ... Have you set region?").
* continuous reading (0x2F option 01): one 0x22 record per read of the tag population on the
  antennas of the search list, a keep-alive (0x22, status 0x0400, no data) each second without
  a read; while streaming the module answers nothing but stop-reading (0x2F option 02).
* ``streaming_at_start``: powered up in the application, region set, already streaming -- the
  state an earlier process leaves behind when it dies without stop-reading.
* antenna ports (0x91 set, 0x61 get: option 00 the TX/RX pair, 02 the search list) and the Gen2
  session and target (0x9B set / 0x6B get protocol parameter, Gen2 keys 00 and 01), kept and
  reported back as the Mercury API reads them (serial_reader_l3.c), and logged at INFO so a
  test can see what the module holds.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Generator
from dataclasses import dataclass, field

from readersim.device import Clock, Emission, Job, ScheduledDevice
from readersim.faults import DeviceFaults
from readersim.population import Population, TagSpec

HEADER = 0xFF

VERSION = 0x03
BOOT_FIRMWARE = 0x04
SET_BAUD_RATE = 0x06
HW_VERSION = 0x10
READ_TAG_ID_MULTIPLE = 0x22
MULTI_PROTOCOL_TAG_OP = 0x2F
GET_ANTENNA_PORT = 0x61
GET_READ_TX_POWER = 0x62
GET_PROTOCOL_PARAM = 0x6B
GET_TEMPERATURE = 0x72
SET_ANTENNA_PORT = 0x91
SET_READ_TX_POWER = 0x92
SET_TAG_PROTOCOL = 0x93
SET_REGION = 0x97
SET_READER_OPTIONAL_PARAMS = 0x9A
SET_PROTOCOL_PARAM = 0x9B
GEN2_SESSION = 0x00  # TMR_SR_GEN2_CONFIGURATION_SESSION
GEN2_TARGET = 0x01  # TMR_SR_GEN2_CONFIGURATION_TARGET
# TMR_GEN2_Target on the wire (cmdSetProtocolConfiguration): A 0100, B 0101, AB 0000, BA 0001
TARGETS = {0x0100: "A", 0x0101: "B", 0x0000: "AB", 0x0001: "BA"}

OK = 0x0000
INVALID_OPCODE = 0x0101
POWER_TOO_HIGH = 0x0103
INVALID_PARAMETER = 0x0105
POWER_TOO_LOW = 0x0106
INVALID_BAUD_RATE = 0x010A
INVALID_REGION = 0x010B
NO_TAGS_FOUND = 0x0400
INVALID_PROTOCOL = 0x0402
AFE_NOT_ON = 0x0405

REGIONS = frozenset({*range(0x01, 0x0F), 0xFF})
BAUD_RATES = frozenset({9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600})
GEN2 = 0x0005
# Region -> (first channel kHz, step kHz, channels): enough to hop plausibly.
HOPS: dict[int, tuple[int, int, int]] = {0x01: (902_750, 500, 50), 0x08: (865_700, 600, 4)}
DEFAULT_HOP = (915_000, 500, 10)

# §3: the one published sample that does not verify; line-fault injection sends it.
BAD_VECTORS_MERCURY: tuple[bytes, ...] = (bytes.fromhex("ff 03 29 00 15 00 97 55"),)

log = logging.getLogger(__name__)


def crc16(body: bytes) -> int:
    """Bit by bit: each message bit shifted in at the bottom, 0x1021 folded in when the top
    bit falls out (the same register as the §3 nibble-table code)."""
    crc = 0xFFFF
    for byte in body:
        for bit in range(7, -1, -1):
            top = crc & 0x8000
            crc = ((crc << 1) | ((byte >> bit) & 1)) & 0xFFFF
            if top:
                crc ^= 0x1021
    return crc


def encode_reply(opcode: int, status: int, data: bytes = b"") -> bytes:
    body = bytes([len(data), opcode]) + status.to_bytes(2, "big") + data
    return bytes([HEADER]) + body + crc16(body).to_bytes(2, "big")


def encode_request(opcode: int, data: bytes = b"") -> bytes:
    body = bytes([len(data), opcode]) + data
    return bytes([HEADER]) + body + crc16(body).to_bytes(2, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class ThingMagicConfig:
    hardware: bytes = bytes.fromhex("30 00 00 01")  # byte 0 = 0x30: M6e Nano
    bootloader: bytes = bytes.fromhex("12 06 11 00")
    firmware: bytes = bytes.fromhex("01 09 00 02")
    firmware_date: bytes = bytes.fromhex("20 19 04 17")
    serial: str = "SIM-NANO-0001"
    ports: int = 1  # the Nano has one antenna port
    baud: int = 115200
    read_rate_per_s: float = 200.0
    min_round_s: float = 0.05  # shortest search cycle
    rssi_jitter_db: float = 2.0
    max_power_centi_dbm: int = 2700  # the Nano's maximum
    power_centi_dbm: int = 2000
    temperature_c: int = 33
    # (scenario seconds, °C) steps: from each time on, 0x72 reports that temperature.
    temperature_steps: tuple[tuple[float, int], ...] = ()
    keepalive_s: float = 1.0
    streaming_at_start: bool = False
    saturate: bool = False

    def __post_init__(self) -> None:
        if len(self.hardware) != 4 or len(self.firmware) != 4:
            raise ValueError("hardware and firmware versions are 4 bytes")
        if self.baud not in BAUD_RATES:
            raise ValueError(f"baud must be one of {sorted(BAUD_RATES)}")


@dataclass(slots=True)
class _State:
    application: bool = False  # False: in the bootloader
    region: int | None = None
    protocol: int | None = None
    antennas: tuple[int, ...] = (1,)
    power_centi_dbm: int = 2000
    session: int = 0  # Gen2 S0 after power-up
    target: int = 0x0100  # A
    streaming: bool = False
    hop: int = 0
    last_emit_s: float = field(default=float("-inf"))
    started_s: float = 0.0


class ThingMagicDevice(ScheduledDevice):
    """A simulated Mercury module."""

    BAD_VECTORS = BAD_VECTORS_MERCURY

    def __init__(
        self,
        config: ThingMagicConfig,
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
        self.state = _State(power_centi_dbm=config.power_centi_dbm)
        if config.streaming_at_start:
            st = self.state
            st.application, st.region, st.protocol, st.streaming = True, 0x01, GEN2, True
            st.started_s = self.epoch_s
            st.last_emit_s = self.epoch_s

    # -- input ---------------------------------------------------------------------------------

    def _parse(self, data: bytes, now_s: float) -> list[bytes]:
        buf = self._buf
        if buf and now_s - self._last_rx_s > 0.05:
            self.stats.bytes_discarded += len(buf)  # a stalled partial request
            buf.clear()
        self._last_rx_s = now_s
        buf += data
        frames: list[bytes] = []
        while buf:
            if buf[0] != HEADER:
                skip = buf.find(HEADER)
                skip = len(buf) if skip < 0 else skip
                del buf[:skip]
                self.stats.bytes_discarded += skip
                continue
            if len(buf) < 2 or len(buf) < buf[1] + 5:
                break
            end = buf[1] + 5
            frame = bytes(buf[:end])
            if crc16(frame[1:-2]) != int.from_bytes(frame[-2:], "big"):
                self.stats.bad_checksums += 1
                self.stats.bytes_discarded += 1
                del buf[:1]
                continue
            del buf[:end]
            frames.append(frame)
        return frames

    def _on_abort(self) -> None:
        self._buf.clear()

    # -- commands ------------------------------------------------------------------------------

    def _reply(self, t0_s: float, opcode: int, status: int = OK, data: bytes = b"") -> Job:
        yield Emission(t0_s, encode_reply(opcode, status, data))

    def _start(self, command: bytes, t0_s: float) -> Job:
        opcode = command[2]
        data = command[3:-2]
        st = self.state
        if st.streaming:
            if opcode == MULTI_PROTOCOL_TAG_OP and data[2:3] == b"\x02":
                st.streaming = False
                return self._reply(t0_s, opcode, OK, data[:3])
            return iter(())  # busy streaming: nothing else is heard
        if opcode == VERSION:
            version = (self.config.bootloader + self.config.hardware + self.config.firmware_date
                       + self.config.firmware + (1 << (GEN2 - 1)).to_bytes(4, "big"))
            return self._reply(t0_s, opcode, OK, version)
        if opcode == BOOT_FIRMWARE:
            if st.application:
                return self._reply(t0_s, opcode, INVALID_OPCODE)
            st.application = True
            return self._reply(t0_s, opcode, OK)
        if opcode == SET_BAUD_RATE:
            return self._set_baud(data, t0_s)
        if opcode == HW_VERSION:
            if data != b"\x00\x40":
                return self._reply(t0_s, opcode, INVALID_PARAMETER)
            serial = self.config.serial.encode("ascii")
            return self._reply(t0_s, opcode, OK, b"\x00\x40\x00" + bytes([len(serial)]) + serial)
        if not st.application:
            return self._reply(t0_s, opcode, INVALID_OPCODE)
        return self._application(opcode, data, t0_s)

    def _application(self, opcode: int, data: bytes, t0: float) -> Job:
        st = self.state
        n = len(data)
        if opcode == SET_REGION:
            if n != 1 or data[0] not in REGIONS:
                return self._reply(t0, opcode, INVALID_REGION)
            st.region = data[0]
            return self._reply(t0, opcode)
        if opcode == SET_TAG_PROTOCOL:
            if data != GEN2.to_bytes(2, "big"):
                return self._reply(t0, opcode, INVALID_PROTOCOL)
            st.protocol = GEN2
            return self._reply(t0, opcode)
        if opcode == SET_ANTENNA_PORT:
            if n == 2:
                ports: tuple[int, ...] = (data[0],)
            elif n >= 3 and data[0] == 0x02 and n % 2 == 1:
                ports = tuple(data[1::2])
            else:
                return self._reply(t0, opcode, INVALID_PARAMETER)
            if any(not 1 <= p <= self.config.ports for p in ports):
                return self._reply(t0, opcode, INVALID_PARAMETER)
            st.antennas = ports
            log.info("antennas %s", list(ports))
            return self._reply(t0, opcode)
        if opcode == GET_ANTENNA_PORT:
            if n == 0 or data[0] == 0x00:
                return self._reply(t0, opcode, OK, bytes((st.antennas[0], st.antennas[0])))
            if data[0] == 0x02:
                return self._reply(t0, opcode, OK,
                                   bytes([0x02, *(b for p in st.antennas for b in (p, p))]))
            return self._reply(t0, opcode, INVALID_PARAMETER)
        if opcode == SET_PROTOCOL_PARAM:
            return self._set_gen2(data, t0)
        if opcode == GET_PROTOCOL_PARAM:
            if data == bytes((GEN2, GEN2_SESSION)):
                return self._reply(t0, opcode, OK, data + bytes((st.session,)))
            if data == bytes((GEN2, GEN2_TARGET)):
                return self._reply(t0, opcode, OK, data + st.target.to_bytes(2, "big"))
            return self._reply(t0, opcode, INVALID_PARAMETER)
        if opcode == SET_READ_TX_POWER:
            if n != 2:
                return self._reply(t0, opcode, INVALID_PARAMETER)
            centi = int.from_bytes(data, "big", signed=True)
            if centi > self.config.max_power_centi_dbm:
                return self._reply(t0, opcode, POWER_TOO_HIGH)
            if centi < 0:
                return self._reply(t0, opcode, POWER_TOO_LOW)
            st.power_centi_dbm = centi
            return self._reply(t0, opcode)
        if opcode == GET_READ_TX_POWER:
            return self._reply(t0, opcode, OK,
                               b"\x00" + st.power_centi_dbm.to_bytes(2, "big", signed=True))
        if opcode == GET_TEMPERATURE:
            return self._reply(t0, opcode, OK,
                               self.temperature_at(t0).to_bytes(1, "big", signed=True))
        if opcode == SET_READER_OPTIONAL_PARAMS:
            return self._reply(t0, opcode)
        if opcode == MULTI_PROTOCOL_TAG_OP:
            option = data[2] if n >= 3 else -1
            if option == 0x02:
                return self._reply(t0, opcode, OK, data[:3])  # not streaming: nothing to stop
            if option != 0x01:
                return self._reply(t0, opcode, INVALID_PARAMETER)
            if st.region is None:
                return self._reply(t0, opcode, AFE_NOT_ON)
            st.streaming = True
            st.started_s = t0
            st.last_emit_s = t0
            return self._reply(t0, opcode, OK, data[:3])
        return self._reply(t0, opcode, INVALID_OPCODE)

    def _set_gen2(self, data: bytes, t0: float) -> Job:
        """0x9B [protocol 05][key][value]: session 1 byte 0..3, target 2 bytes (TARGETS)."""
        st = self.state
        if len(data) == 3 and data[:2] == bytes((GEN2, GEN2_SESSION)) and data[2] <= 3:
            st.session = data[2]
            log.info("Gen2 session %d", st.session)
            return self._reply(t0, SET_PROTOCOL_PARAM)
        if len(data) == 4 and data[:2] == bytes((GEN2, GEN2_TARGET)):
            target = int.from_bytes(data[2:], "big")
            if target in TARGETS:
                st.target = target
                log.info("Gen2 target %s", TARGETS[target])
                return self._reply(t0, SET_PROTOCOL_PARAM)
        return self._reply(t0, SET_PROTOCOL_PARAM, INVALID_PARAMETER)

    def temperature_at(self, t_s: float) -> int:
        temp = self.config.temperature_c
        for at_s, value in sorted(self.config.temperature_steps):
            if self.world_s(t_s) >= at_s:
                temp = value
        return temp

    def _set_baud(self, data: bytes, t0: float) -> Job:
        baud = int.from_bytes(data, "big") if len(data) == 4 else -1
        if baud not in BAUD_RATES:
            yield from self._reply(t0, SET_BAUD_RATE, INVALID_BAUD_RATE)
            return
        yield from self._reply(t0, SET_BAUD_RATE)
        self._baud = baud  # answered at the old rate; the new one from here on

    # -- continuous reading --------------------------------------------------------------------

    def _auto_job(self, t0_s: float) -> Job | None:
        if self.state.streaming:
            return self._search(t0_s)
        return None

    def _frequency_khz(self) -> int:
        first, step, count = HOPS.get(self.state.region or 0, DEFAULT_HOP)
        self.state.hop = (self.state.hop + 1) % count
        return first + step * self.state.hop

    def _record(self, tag: TagSpec, port: int, t_s: float) -> bytes:
        cfg = self.config
        jitter = cfg.rssi_jitter_db
        rssi = round(tag.rssi_dbm + (self._rng.uniform(-jitter, jitter) if jitter else 0.0))
        data = bytes([0x10]) + (0x001B).to_bytes(2, "big") + (0x01FF).to_bytes(2, "big")
        data += bytes([0x01, 0x01, rssi & 0xFF, (port << 4) | port])
        data += self._frequency_khz().to_bytes(3, "big")
        data += round((t_s - self.state.started_s) * 1000).to_bytes(4, "big")
        data += self._rng.randrange(181).to_bytes(2, "big") + bytes([GEN2])
        data += b"\x00\x00" + b"\x00"  # no embedded data; GPIO
        data += ((len(tag.epc) + 4) * 8).to_bytes(2, "big") + tag.pc.to_bytes(2, "big")
        data += tag.epc + self._rng.randrange(0x10000).to_bytes(2, "big")
        return encode_reply(READ_TAG_ID_MULTIPLE, OK, data)

    def _search(self, t0: float) -> Generator[Emission, None, None]:
        """One search cycle over the antenna list; a keep-alive when a second passed unread."""
        cfg, st = self.config, self.state
        err = self._error_code(t0)
        if err is not None:
            # An injected status (0x0504 temperature throttle, ...) in place of this cycle's
            # reads: a 0x22 message with that status and no data, as the keep-alive is.
            st.last_emit_s = t0
            self._busy_until_s = max(self._busy_until_s, t0 + max(cfg.min_round_s, 0.05))
            yield Emission(t0, encode_reply(READ_TAG_ID_MULTIPLE, err))
            return
        rate = math.inf if cfg.saturate else cfg.read_rate_per_s
        limited = rate > 0 and math.isfinite(rate)
        t = t0
        reads = 0
        for port in st.antennas:
            tags = [
                tag
                for tag in self.population.visible(self.world_s(t), port)
                for _ in range(tag.reads_per_round)
                if tag.read_probability >= 1.0 or self._rng.random() < tag.read_probability
            ]
            self._rng.shuffle(tags)
            for tag in tags:
                t = t + 1 / rate if limited else t
                reads += 1
                st.last_emit_s = t
                yield Emission(t, self._record(tag, port, t))
        if not reads and t0 >= st.last_emit_s + cfg.keepalive_s - 1e-9:
            # once a second on the module's own timer (no drift of one cycle per keep-alive)
            st.last_emit_s = max(st.last_emit_s + cfg.keepalive_s, t0 - cfg.keepalive_s)
            yield Emission(t0, encode_reply(READ_TAG_ID_MULTIPLE, NO_TAGS_FOUND))
        min_round_s = 0.0 if cfg.saturate else cfg.min_round_s
        self._busy_until_s = max(self._busy_until_s, t0 + min_round_s, t)
