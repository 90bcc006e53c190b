"""R2000 "A0" protocol reader (Invelion/INNOD, Rodinbell, YR9xx ...): a pure state machine.

Protocol doc §1. Frames both ways::

    # [Head:1=A0][Len:1][Addr:1][Cmd:1][Data:Len-3][Check:1]      (§1.3)
    # Check = two's complement of the 8-bit sum of Head..Data    (§1.4)

Tag frames of the real-time inventories 0x89 / 0x8A / 0x8B (§1.6)::

    # [A0][Len][Addr][Cmd][FreqAnt:1][PC:2][EPC:N][RSSI:1][Phase:2, when asked][Check]
    # FreqAnt = freq_index << 2 | (ant & 3); RSSI bit 7 = antenna bit 2 (8-port readers)

then one end-of-command summary (§1.8).
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Literal

from readersim.device import Clock, Emission, Job, ScheduledDevice
from readersim.faults import DeviceFaults
from readersim.population import Population, TagSpec, rssi_raw

HEAD = 0xA0
BROADCAST = 0xFF
MAX_FRAME_LEN = 2 + 0xFF

# Command codes (§1.5), with the manual's names.
RESET = 0x70  # cmd_reset
SET_UART_BAUDRATE = 0x71  # cmd_set_uart_baudrate
GET_FIRMWARE_VERSION = 0x72  # cmd_get_firmware_version
SET_READER_ADDRESS = 0x73  # cmd_set_reader_address
SET_WORK_ANTENNA = 0x74  # cmd_set_work_antenna
GET_WORK_ANTENNA = 0x75  # cmd_get_work_antenna
SET_OUTPUT_POWER = 0x76  # cmd_set_output_power
GET_OUTPUT_POWER = 0x77  # cmd_get_output_power
SET_FREQUENCY_REGION = 0x78  # cmd_set_frequency_region
GET_FREQUENCY_REGION = 0x79  # cmd_get_frequency_region
SET_BEEPER_MODE = 0x7A  # cmd_set_beeper_mode
GET_READER_TEMPERATURE = 0x7B  # cmd_get_reader_temperature
SET_TEMPORARY_OUTPUT_POWER = 0x66  # cmd_set_temporary_output_power
SET_READER_IDENTIFIER = 0x67  # cmd_set_reader_identifier
GET_READER_IDENTIFIER = 0x68  # cmd_get_reader_identifier
SET_ANT_CONNECTION_DETECTOR = 0x62  # cmd_set_ant_connection_detector
GET_ANT_CONNECTION_DETECTOR = 0x63  # cmd_get_ant_connection_detector
SET_READER_ANT_GROUP = 0x6C  # cmd_set_reader_ant_group
GET_READER_ANT_GROUP = 0x6D  # cmd_get_reader_ant_group
REAL_TIME_INVENTORY = 0x89  # cmd_real_time_inventory
FAST_SWITCH_ANT_INVENTORY = 0x8A  # cmd_fast_switch_ant_inventory
CUSTOMIZED_SESSION_TARGET_INVENTORY = 0x8B  # cmd_customized_session_target_inventory
GET_OUTPUT_POWER_EIGHT = 0x97  # cmd_get_output_power_eight

# Error codes (§1.11).
SUCCESS = 0x10
FAIL = 0x11
ANTENNA_MISSING = 0x22
NO_TAG = 0x36
INVALID_PARAMETER = 0x41
ANTENNA_ID_OUT_OF_RANGE = 0x47
OUTPUT_POWER_OUT_OF_RANGE = 0x48
FREQUENCY_REGION_INVALID = 0x49
BAUD_RATE_INVALID = 0x4A

BAUD_CODES = {0x01: 9600, 0x02: 19200, 0x03: 38400, 0x04: 115200}  # cmd 0x71 (§1.2)

# Frequency regions (cmd 0x78/0x79): region -> (start index, end index), §1.6 table.
REGIONS: dict[int, tuple[int, int]] = {0x01: (7, 59), 0x02: (0, 6), 0x03: (43, 53)}
MAX_POWER_DBM = 33

# Published frames whose checksum is wrong (§1.8 [BAD]): line-fault injection sends them.
BAD_VECTORS_A0: tuple[bytes, ...] = (
    bytes.fromhex("a0 0a 01 89 00 00 1d 00 00 00 01 bc"),
    bytes.fromhex("a0 04 01 89 11 bd"),
    bytes.fromhex("a0 04 01 89 01 71"),
)


def checksum(data: bytes) -> int:
    """Two's complement of the 8-bit byte sum (§1.4)."""
    return -sum(data) & 0xFF


def encode_frame(address: int, cmd: int, data: bytes = b"") -> bytes:
    """``A0 Len Addr Cmd Data Check``."""
    if len(data) > 0xFF - 3:
        raise ValueError("A0 frame data too long")
    body = bytes([HEAD, len(data) + 3, address, cmd]) + data
    return body + bytes([checksum(body)])


def frequency_mhz(index: int) -> float:
    """Frequency index -> MHz (§1.6): 0-6 from 865.0, 7-59 from 902.0, 0.5 MHz steps."""
    return 865.0 + 0.5 * index if index < 7 else 902.0 + 0.5 * (index - 7)


@dataclass(frozen=True, slots=True, kw_only=True)
class R2000Config:
    address: int = 0x01
    firmware: tuple[int, int] = (1, 9)
    ports: int = 4  # 1, 4, 8 or 16
    connected_antennas: frozenset[int] = frozenset({1, 2, 3, 4})  # 1-based ports
    baud: int = 115200
    summary_version: Literal["v3", "v2.2"] = "v3"
    read_rate_per_s: float = 200.0  # the radio's reads/s; 0 or inf = unlimited (line-bound)
    min_round_s: float = 0.04  # shortest inventory round (1 tag, Repeat 1 -> 25 reads/s)
    rssi_jitter_db: float = 2.0
    region: int = 0x01  # FCC
    channels: tuple[int, ...] | None = None  # hop table override (frequency indices)
    temperature_c: int = 35
    # (scenario seconds, °C) steps: from each time on, 0x7B reports that temperature.
    temperature_steps: tuple[tuple[float, int], ...] = ()
    identifier: bytes = b"READERSIM-01"
    output_power_dbm: int = 30
    reply_latency_s: float = 0.0
    reset_boot_s: float = 0.0
    input_timeout_s: float = 0.05  # a partial request older than this is dropped
    saturate: bool = False  # once the host has spoken, inventory continuously (0x89 rounds)

    def __post_init__(self) -> None:
        if self.ports not in (1, 4, 8, 16):
            raise ValueError("ports must be 1, 4, 8 or 16")
        if not 0 <= self.address <= 0xFE:
            raise ValueError("reader address must be 0x00-0xFE")
        bad = [a for a in self.connected_antennas if not 1 <= a <= self.ports]
        if bad:
            raise ValueError(f"antennas {sorted(bad)} do not exist on a {self.ports}-port reader")
        if len(self.identifier) != 12:
            raise ValueError("reader identifier must be 12 bytes")
        if self.region not in REGIONS:
            raise ValueError("region must be 1 (FCC), 2 (ETSI) or 3 (CHN)")


@dataclass(slots=True)
class _State:
    """What the reader's firmware remembers (reset by 0x70)."""

    address: int
    work_antenna: int = 0  # AntID byte, 0-based within the antenna group
    antenna_group: int = 0
    power_dbm: list[int] = field(default_factory=lambda: [30] * 8)
    power_form: int = 1  # how it was last set (1, 4 or 8 bytes) -> shape of the 0x77 reply
    region: int = 0x01
    channels: tuple[int, ...] = ()
    identifier: bytes = b""
    detector_db: int = 0
    streaming: bool = False


class R2000Device(ScheduledDevice):
    """A simulated A0-protocol reader."""

    BAD_VECTORS = BAD_VECTORS_A0

    def __init__(
        self,
        config: R2000Config,
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
        self._hops: list[int] = []
        self.state = self._fresh_state(config.address)

    def _fresh_state(self, address: int) -> _State:
        cfg = self.config
        start, end = REGIONS[cfg.region]
        return _State(
            address=address,
            power_dbm=[cfg.output_power_dbm] * 8,
            region=cfg.region,
            channels=cfg.channels if cfg.channels else tuple(range(start, end + 1)),
            identifier=cfg.identifier,
        )

    # -- input: resync parser (§1.9) ------------------------------------------------------------

    def _parse(self, data: bytes, now_s: float) -> list[bytes]:
        buf = self._buf
        if buf and now_s - self._last_rx_s > self.config.input_timeout_s:
            # A stalled partial frame (say A0 FF from line noise) must not swallow what follows.
            self.stats.bytes_discarded += len(buf)
            buf.clear()
        self._last_rx_s = now_s
        buf += data
        frames: list[bytes] = []
        while buf:
            if buf[0] != HEAD:
                skip = buf.find(HEAD)
                skip = len(buf) if skip < 0 else skip
                del buf[:skip]
                self.stats.bytes_discarded += skip
                continue
            if len(buf) < 2:
                break
            length = buf[1]
            if length < 3:
                del buf[:1]
                self.stats.bytes_discarded += 1
                continue
            if len(buf) < length + 2:
                break
            frame = bytes(buf[: length + 2])
            if sum(frame) & 0xFF:
                # Bad checksum: drop one byte and rescan, A0 can occur inside a frame.
                self.stats.bad_checksums += 1
                self.stats.bytes_discarded += 1
                del buf[:1]
                continue
            del buf[: length + 2]
            if frame[2] not in (self.state.address, BROADCAST):
                self.stats.other_address += 1
                continue
            frames.append(frame)
        if frames:
            self.state.streaming = True
        return frames

    def _on_abort(self) -> None:
        self._buf.clear()

    # -- output helpers ------------------------------------------------------------------------

    def _frame(self, cmd: int, data: bytes = b"") -> bytes:
        return encode_frame(self.state.address, cmd, data)

    def _reply(self, t0_s: float, cmd: int, data: bytes = b"") -> Job:
        yield Emission(t0_s + self.config.reply_latency_s, self._frame(cmd, data))

    def _code(self, t0_s: float, cmd: int, code: int) -> Job:
        return self._reply(t0_s, cmd, bytes([code]))

    def _antenna_ids(self) -> int:
        """How many AntID values a command may name (per antenna group)."""
        return min(self.config.ports, 8)

    def _port(self, ant_id: int) -> int:
        """AntID (0-based, within the current group) -> 1-based physical port."""
        return self.state.antenna_group * 8 + ant_id + 1

    def _connected(self, ant_id: int) -> bool:
        return self._port(ant_id) in self.config.connected_antennas

    def _next_channel(self) -> int:
        if not self._hops:
            self._hops = list(self.state.channels)
            self._rng.shuffle(self._hops)
        return self._hops.pop()

    def _tag_frame(self, cmd: int, freq: int, ant_id: int, tag: TagSpec, phase: bool) -> bytes:
        jitter = self.config.rssi_jitter_db
        dbm = tag.rssi_dbm + (self._rng.uniform(-jitter, jitter) if jitter else 0.0)
        rssi = rssi_raw(dbm) | (0x80 if ant_id & 0x04 else 0)
        data = bytes([(freq << 2) | (ant_id & 0x03)]) + tag.pc.to_bytes(2, "big") + tag.epc
        data += bytes([rssi])
        if phase:
            data += self._rng.randrange(0x1000).to_bytes(2, "big")
        return self._frame(cmd, data)

    # -- commands ------------------------------------------------------------------------------

    def _start(self, command: bytes, t0_s: float) -> Job:
        cmd = command[3]
        data = command[4:-1]
        if cmd == REAL_TIME_INVENTORY:
            return self._inventory_89(data, t0_s)
        if cmd == FAST_SWITCH_ANT_INVENTORY:
            return self._inventory_8a(data, t0_s)
        if cmd == CUSTOMIZED_SESSION_TARGET_INVENTORY:
            return self._inventory_8b(data, t0_s)
        if cmd == RESET:
            return self._reset(data, t0_s)
        return self._simple(cmd, data, t0_s)

    def _auto_job(self, t0_s: float) -> Job | None:
        if self.config.saturate and self.state.streaming:
            return self._single_antenna(REAL_TIME_INVENTORY, 1, False, t0_s)
        return None

    def _simple(self, cmd: int, data: bytes, t0: float) -> Job:
        st = self.state
        n = len(data)
        if cmd == GET_FIRMWARE_VERSION:
            return self._reply(t0, cmd, bytes(self.config.firmware))
        if cmd == SET_WORK_ANTENNA:
            if n != 1:
                return self._code(t0, cmd, INVALID_PARAMETER)
            if data[0] >= self._antenna_ids():
                return self._code(t0, cmd, ANTENNA_ID_OUT_OF_RANGE)
            st.work_antenna = data[0]
            return self._code(t0, cmd, SUCCESS)
        if cmd == GET_WORK_ANTENNA:
            return self._reply(t0, cmd, bytes([st.work_antenna]))
        if cmd in (SET_OUTPUT_POWER, SET_TEMPORARY_OUTPUT_POWER):
            forms = (1, 4, 8) if cmd == SET_OUTPUT_POWER else (1,)
            if n not in forms:
                return self._code(t0, cmd, INVALID_PARAMETER)
            if any(p > MAX_POWER_DBM for p in data):
                return self._code(t0, cmd, OUTPUT_POWER_OUT_OF_RANGE)
            if n == 1:
                st.power_dbm = [data[0]] * 8
            else:
                st.power_dbm[:n] = list(data)
            st.power_form = n
            return self._code(t0, cmd, SUCCESS)
        if cmd == GET_OUTPUT_POWER:
            four = st.power_dbm[:4]
            if st.power_form == 1 and len(set(four)) == 1:
                return self._reply(t0, cmd, bytes(four[:1]))
            return self._reply(t0, cmd, bytes(four))
        if cmd == GET_OUTPUT_POWER_EIGHT:
            return self._reply(t0, cmd, bytes(st.power_dbm))
        if cmd == GET_READER_TEMPERATURE:
            # PlusMinus: 01 = positive in practice (§1.10), then the magnitude in °C.
            temp = self.temperature_at(t0)
            return self._reply(t0, cmd, bytes([1 if temp >= 0 else 0, abs(temp)]))
        if cmd == SET_UART_BAUDRATE:
            return self._set_baud(data, t0)
        if cmd == SET_READER_ADDRESS:
            if n != 1 or data[0] > 0xFE:
                return self._code(t0, cmd, INVALID_PARAMETER)
            replies = list(self._code(t0, cmd, SUCCESS))  # answered from the old address
            st.address = data[0]
            return iter(replies)
        if cmd == SET_READER_ANT_GROUP:
            if n != 1 or data[0] > 1 or (data[0] == 1 and self.config.ports < 16):
                return self._code(t0, cmd, INVALID_PARAMETER)
            st.antenna_group = data[0]
            return self._code(t0, cmd, SUCCESS)
        if cmd == GET_READER_ANT_GROUP:
            return self._reply(t0, cmd, bytes([st.antenna_group]))
        if cmd == SET_FREQUENCY_REGION:
            return self._set_region(data, t0)
        if cmd == GET_FREQUENCY_REGION:
            lo, hi = min(st.channels), max(st.channels)
            return self._reply(t0, cmd, bytes([st.region, lo, hi]))
        if cmd == SET_BEEPER_MODE:
            ok = n == 1 and data[0] <= 2
            return self._code(t0, cmd, SUCCESS if ok else INVALID_PARAMETER)
        if cmd == SET_READER_IDENTIFIER:
            if n != 12:
                return self._code(t0, cmd, INVALID_PARAMETER)
            st.identifier = bytes(data)
            return self._code(t0, cmd, SUCCESS)
        if cmd == GET_READER_IDENTIFIER:
            return self._reply(t0, cmd, st.identifier)
        if cmd == SET_ANT_CONNECTION_DETECTOR:
            if n != 1:
                return self._code(t0, cmd, INVALID_PARAMETER)
            st.detector_db = data[0]
            return self._code(t0, cmd, SUCCESS)
        if cmd == GET_ANT_CONNECTION_DETECTOR:
            return self._reply(t0, cmd, bytes([st.detector_db]))
        return self._code(t0, cmd, FAIL)  # not simulated

    def temperature_at(self, t_s: float) -> int:
        temp = self.config.temperature_c
        for at_s, value in sorted(self.config.temperature_steps):
            if self.world_s(t_s) >= at_s:
                temp = value
        return temp

    def _set_baud(self, data: bytes, t0: float) -> Job:
        if len(data) != 1 or data[0] not in BAUD_CODES:
            yield from self._code(t0, SET_UART_BAUDRATE, BAUD_RATE_INVALID)
            return
        yield from self._code(t0, SET_UART_BAUDRATE, SUCCESS)
        # The reader resets after answering; from now on it talks at the new rate.
        self._baud = BAUD_CODES[data[0]]

    def _set_region(self, data: bytes, t0: float) -> Job:
        st = self.state
        if len(data) == 3 and data[0] in REGIONS:
            lo, hi = REGIONS[data[0]]
            if not lo <= data[1] <= data[2] <= hi:
                return self._code(t0, SET_FREQUENCY_REGION, FREQUENCY_REGION_INVALID)
            st.region = data[0]
            st.channels = tuple(range(data[1], data[2] + 1))
            self._hops = []
            return self._code(t0, SET_FREQUENCY_REGION, SUCCESS)
        if len(data) == 6 and data[0] == 0x04:  # user region: Space Qty Freq(3, kHz)
            return self._code(t0, SET_FREQUENCY_REGION, SUCCESS)  # accepted, hops unchanged
        return self._code(t0, SET_FREQUENCY_REGION, FREQUENCY_REGION_INVALID)

    def _reset(self, data: bytes, t0: float) -> Job:
        # No reply on success: the reader reboots (and may stay deaf for reset_boot_s).
        self.state = self._fresh_state(self.state.address)
        self._baud = self.config.baud
        self._hops = []
        self._queue.clear()
        self._mute_for(self.config.reset_boot_s, t0)
        return iter(())

    # -- inventories ---------------------------------------------------------------------------

    def _round(
        self, cmd: int, ant_id: int, t_start: float, phase: bool
    ) -> Generator[Emission, None, tuple[int, float]]:
        """One inventory round on one antenna. Returns (reads, radio seconds)."""
        cfg = self.config
        tags = self.population.visible(self.world_s(t_start), self._port(ant_id))
        reads = [
            tag
            for tag in tags
            for _ in range(tag.reads_per_round)
            if tag.read_probability >= 1.0 or self._rng.random() < tag.read_probability
        ]
        self._rng.shuffle(reads)
        freq = self._next_channel()
        rate = cfg.read_rate_per_s
        limited = rate > 0 and math.isfinite(rate)
        for i, tag in enumerate(reads):
            due = t_start + (i + 1) / rate if limited else t_start
            yield Emission(due, self._tag_frame(cmd, freq, ant_id, tag, phase))
        busy_s = len(reads) / rate if limited else 0.0
        return len(reads), max(cfg.min_round_s, busy_s)

    @staticmethod
    def _read_rate(total: int, radio_s: float) -> int:
        return min(0xFFFF, round(total / radio_s)) if radio_s > 0 else min(0xFFFF, total)

    def _single_antenna(self, cmd: int, rounds: int, phase: bool, t0: float) -> Job:
        """0x89 / 0x8B: rounds on the work antenna, then the summary (§1.8)."""
        err = self._error_code(t0)
        if err is not None:
            yield from self._code(t0, cmd, err)
            return
        ant = self.state.work_antenna
        if not self._connected(ant):
            yield from self._code(t0, cmd, ANTENNA_MISSING)
            return
        total, radio_s, t = 0, 0.0, t0
        for _ in range(rounds):
            t = max(t, self._clock())
            reads, duration_s = yield from self._round(cmd, ant, t, phase)
            total += reads
            radio_s += duration_s
            t += duration_s
        if cmd == REAL_TIME_INVENTORY and self.config.summary_version == "v2.2":
            data = bytes([ant]) + total.to_bytes(4, "big")  # Len 0x08
        else:
            rate = self._read_rate(total, radio_s)
            data = bytes([ant]) + rate.to_bytes(2, "big") + total.to_bytes(4, "big")  # Len 0x0A
        yield Emission(t, self._frame(cmd, data))

    @staticmethod
    def _rounds(repeat: int) -> int:
        return 1 if repeat in (0x00, 0xFF) else repeat  # FF = one round, minimal round time

    def _inventory_89(self, data: bytes, t0: float) -> Job:
        # Data: Repeat (§1.7)
        if len(data) != 1:
            return self._code(t0, REAL_TIME_INVENTORY, INVALID_PARAMETER)
        return self._single_antenna(REAL_TIME_INVENTORY, self._rounds(data[0]), False, t0)

    def _inventory_8b(self, data: bytes, t0: float) -> Job:
        # Data: Session Target [SL [Phase [PowerSave]]] Repeat, Len tells which (§1.7)
        cmd = CUSTOMIZED_SESSION_TARGET_INVENTORY
        n = len(data)
        if not 3 <= n <= 6 or data[0] > 3 or data[1] > 1:
            return self._code(t0, cmd, INVALID_PARAMETER)
        phase = n >= 5 and data[3] == 0x01
        return self._single_antenna(cmd, self._rounds(data[-1]), phase, t0)

    def _inventory_8a(self, data: bytes, t0: float) -> Job:
        """Fast switch antenna inventory (§1.7), all known forms, told apart by length."""
        cmd = FAST_SWITCH_ANT_INVENTORY
        n = len(data)
        phase = False
        interval_ms = 0
        max_ant = 7
        if n == 5:  # V2.2: Ant1..Ant4 Repeat (ant > 3 = skip)
            plan = [(a, 1) for a in data[:4]]
            max_ant = 3
        elif n == 10:  # V3 4-port: A stayA .. D stayD Interval Repeat
            plan = [(data[i], data[i + 1]) for i in range(0, 8, 2)]
            interval_ms = data[8]
        elif n in (18, 28, 29, 34):  # V3 8-port, plain / with session block / with powers
            plan = [(data[i], data[i + 1]) for i in range(0, 16, 2)]
            interval_ms = data[16]
            if n in (28, 29):  # Reserve×5 Session Target Optimize Ongoing [TargetQty] Phase
                phase = data[-2] == 0x01
            elif n == 34:  # Reserve×4 SL Session Target Phase Pow×8
                phase = data[24] == 0x01
        else:
            return self._code(t0, cmd, INVALID_PARAMETER)
        return self._fast_switch(plan, max_ant, interval_ms, self._rounds(data[-1]), phase, t0)

    def _fast_switch(
        self,
        plan: list[tuple[int, int]],
        max_ant: int,
        interval_ms: int,
        repeat: int,
        phase: bool,
        t0: float,
    ) -> Job:
        cmd = FAST_SWITCH_ANT_INVENTORY
        err = self._error_code(t0)
        if err is not None:
            yield from self._code(t0, cmd, err)
            return
        total, radio_s, t = 0, 0.0, t0
        for _ in range(repeat):
            for ant, stay in plan:
                if ant > max_ant or stay == 0:
                    continue  # disabled slot (FF)
                t = max(t, self._clock())
                if not self._connected(ant):
                    # Not terminal: the inventory goes on with the next antenna (§1.8).
                    yield Emission(t, self._frame(cmd, bytes([ant, ANTENNA_MISSING])))
                    continue
                for _ in range(stay):
                    t = max(t, self._clock())
                    reads, duration_s = yield from self._round(cmd, ant, t, phase)
                    total += reads
                    radio_s += duration_s
                    t += duration_s
                radio_s += interval_ms / 1000
                t += interval_ms / 1000
        duration_ms = round(radio_s * 1000)
        if self.config.summary_version == "v2.2":
            data = total.to_bytes(4, "big") + duration_ms.to_bytes(4, "big")  # Len 0x0B
        else:
            data = min(total, 0xFFFFFF).to_bytes(3, "big") + duration_ms.to_bytes(4, "big")
        yield Emission(t, self._frame(cmd, data))
