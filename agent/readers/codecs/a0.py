"""The R2000 "A0" serial protocol (Impinj Indy R2000 white-label modules).

Source: docs reader-protocols.md §1 (vendor "UHF RFID Reader Serial Interface Protocol" V2.2 and
V3.x). Pure: bytes in, frozen dataclasses out; never raises on line noise.

    # [Head:1=A0][Len:1][Addr:1][Cmd:1][Data:Len-3][Check:1]          (§1.3)
    # Check = two's complement of the 8-bit sum of Head..Data          (§1.4)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from agent.readers.codecs.base import DecoderStats, to_header

HEAD = 0xA0
BROADCAST = 0xFF
MIN_LEN = 3  # Addr + Cmd + Check
MAX_FRAME = 0xFF + 2


class Cmd(IntEnum):
    """Command codes (§1.5), snake_case names with the manual's name beside them."""

    RESET = 0x70  # reset
    SET_UART_BAUDRATE = 0x71  # set_uart_baudrate
    GET_FIRMWARE_VERSION = 0x72  # get_firmware_version
    SET_READER_ADDRESS = 0x73  # set_reader_address
    SET_WORK_ANTENNA = 0x74  # set_work_antenna
    GET_WORK_ANTENNA = 0x75  # get_work_antenna
    SET_OUTPUT_POWER = 0x76  # set_output_power
    GET_OUTPUT_POWER = 0x77  # get_output_power
    GET_OUTPUT_POWER_EIGHT = 0x97  # get_output_power_eight (V3)
    SET_TEMPORARY_OUTPUT_POWER = 0x66  # set_temporary_output_power
    GET_READER_TEMPERATURE = 0x7B  # get_reader_temperature
    SET_ANTENNA_GROUP = 0x6C  # set_reader_antenna_group (16-port readers)
    GET_ANTENNA_GROUP = 0x6D  # get_reader_antenna_group
    REAL_TIME_INVENTORY = 0x89  # cmd_real_time_inventory
    FAST_SWITCH_ANT_INVENTORY = 0x8A  # cmd_fast_switch_ant_inventory
    CUSTOMIZED_SESSION_TARGET_INVENTORY = 0x8B  # cmd_customized_session_target_inventory


INVENTORY_CMDS = frozenset(
    {
        Cmd.REAL_TIME_INVENTORY,
        Cmd.FAST_SWITCH_ANT_INVENTORY,
        Cmd.CUSTOMIZED_SESSION_TARGET_INVENTORY,
    }
)

SUCCESS = 0x10

# §1.11 error codes (V2.2 §3; identical in the vendor demo and open implementations).
ERROR_CODES: dict[int, tuple[str, str]] = {
    0x10: ("command_success", "command succeeded"),
    0x11: ("command_fail", "command failed"),
    0x20: ("mcu_reset_error", "MCU reset error"),
    0x21: ("cw_on_error", "failed to turn on the carrier wave"),
    0x22: ("antenna_missing", "antenna not connected"),
    0x23: ("write_flash_error", "writing flash failed"),
    0x24: ("read_flash_error", "reading flash failed"),
    0x25: ("set_output_power_error", "setting output power failed"),
    0x31: ("tag_inventory_error", "tag inventory failed"),
    0x32: ("tag_read_error", "tag read failed"),
    0x33: ("tag_write_error", "tag write failed"),
    0x34: ("tag_lock_error", "tag lock failed"),
    0x35: ("tag_kill_error", "tag kill failed"),
    0x36: ("no_tag_error", "no tag in the field"),
    0x37: ("inventory_ok_but_access_fail", "inventory succeeded but access failed"),
    0x38: ("buffer_is_empty_error", "tag buffer is empty"),
    0x3C: ("nxp_custom_command_fail", "NXP custom command failed"),
    0x40: ("access_or_password_error", "access failed or wrong password"),
    0x41: ("parameter_invalid", "invalid parameter"),
    0x42: ("parameter_invalid_wordcnt_too_long", "WordCnt too long"),
    0x43: ("parameter_invalid_membank_out_of_range", "memory bank out of range"),
    0x44: ("parameter_invalid_lock_region_out_of_range", "lock region out of range"),
    0x45: ("parameter_invalid_lock_action_out_of_range", "lock action out of range"),
    0x46: ("parameter_reader_address_invalid", "reader address invalid"),
    0x47: ("parameter_invalid_antenna_id_out_of_range", "antenna id out of range"),
    0x48: ("parameter_invalid_output_power_out_of_range", "output power out of range"),
    0x49: ("parameter_invalid_frequency_region_out_of_range", "frequency region out of range"),
    0x4A: ("parameter_invalid_baudrate_out_of_range", "baud rate out of range"),
    0x4B: ("parameter_beeper_mode_out_of_range", "beeper mode out of range"),
    0x4C: ("parameter_epc_match_len_too_long", "EPC match too long"),
    0x4D: ("parameter_epc_match_len_error", "EPC match length wrong"),
    0x4E: ("parameter_invalid_epc_match_mode", "invalid EPC match mode"),
    0x4F: ("parameter_invalid_frequency_range", "invalid frequency range"),
    0x50: ("fail_to_get_rn16_from_tag", "no RN16 from the tag"),
    0x51: ("parameter_invalid_drm_mode", "invalid DRM mode"),
    0x52: ("pll_lock_fail", "PLL lock failed"),
    0x53: ("rf_chip_fail_to_response", "RF chip does not respond"),
    0x54: ("fail_to_achieve_desired_output_power", "cannot reach the desired output power"),
    0x55: ("copyright_authentication_fail", "copyright authentication failed"),
    0x56: ("spectrum_regulation_error", "spectrum regulation error"),
    0x57: ("output_power_too_low", "output power too low"),
    0xEE: ("fail_to_get_rf_port_return_loss", "return-loss measurement failed"),
}


def error_name(code: int) -> str:
    name, meaning = ERROR_CODES.get(code, ("unknown_error", "error code not in the manual"))
    return f"0x{code:02X} {name} ({meaning})"


def checksum(data: bytes) -> int:
    """§1.4: ``uSum = Σ bytes; uSum = ~uSum + 1`` (ISO 1155 LRC)."""
    return (-sum(data)) & 0xFF


def encode(address: int, cmd: int, data: bytes = b"") -> bytes:
    body = bytes((HEAD, len(data) + 3, address & 0xFF, cmd & 0xFF)) + data
    return body + bytes((checksum(body),))


@dataclass(frozen=True, slots=True)
class A0Frame:
    address: int
    cmd: int
    data: bytes


class A0Decoder:
    """Stream decoder: scan for 0xA0, read Len, wait for Len+2 bytes, verify the checksum.

    On a bad frame drop ONE byte and rescan (§1.9: 0xA0 can occur inside an EPC).
    Memory is bounded: the buffer never holds more than one maximal frame of pending bytes.

    The 8-bit checksum passes one noise candidate in 256, and a candidate whose Len reaches
    into real frames would swallow them (a lost round end). So a frame that passes the checksum
    but is for another address, or that ``accept`` rejects (see :func:`plausible`), is treated
    like a bad checksum: one byte dropped, rescan -- the real frames behind it are still found.
    """

    __slots__ = ("_buf", "accept", "address", "exact", "stats")

    def __init__(
        self, address: int | None = None, *, accept: Callable[[A0Frame], bool] | None = None,
        exact: bool = False,
    ) -> None:
        self._buf = bytearray()
        self.address = address  # None: accept any; else own address and broadcast (§1.3)
        # True: the own address only (a reader's replies carry its address, learned at identify)
        self.exact = exact
        self.accept = accept  # None: every checksum-valid frame
        self.stats = DecoderStats()

    def feed(self, data: bytes) -> list[A0Frame]:
        self.stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[A0Frame] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] != HEAD:
                pos = to_header(buf, pos, HEAD, self.stats)
                continue
            if pos + 1 >= n:
                break  # need the Len byte
            length = buf[pos + 1]
            if length < MIN_LEN:
                self.stats.oversize += 1
                self.stats.bytes_discarded += 1
                pos += 1
                continue
            end = pos + length + 2
            if end > n:
                break  # need more bytes
            if sum(buf[pos:end]) & 0xFF:
                self.stats.bad_checksums += 1
                self.stats.bytes_discarded += 1
                pos += 1
                continue
            addr = buf[pos + 2]
            own = self.address
            if own is not None and addr != own and (self.exact or addr != BROADCAST):
                self.stats.wrong_address += 1
                self.stats.bytes_discarded += 1
                pos += 1
                continue
            frame = A0Frame(addr, buf[pos + 3], bytes(buf[pos + 4 : end - 1]))
            if self.accept is not None and not self.accept(frame):
                self.stats.implausible += 1
                self.stats.bytes_discarded += 1
                pos += 1
                continue
            pos = end
            self.stats.frames += 1
            out.append(frame)
        del buf[:pos]
        return out

    def resync(self) -> list[A0Frame]:
        """The line went idle with a partial frame pending: that frame can never complete.

        Its Len byte was probably noise (an 0xA0 then a plausible length), so drop one byte and
        rescan what is buffered. Called by the session after an inter-byte idle timeout.
        """
        if not self._buf:
            return []
        del self._buf[0]
        self.stats.bytes_discarded += 1
        out: list[A0Frame] = []
        while self._buf:
            pending = bytes(self._buf)
            self._buf.clear()
            self.stats.bytes_in -= len(pending)  # re-fed bytes are not new input
            out += self.feed(pending)
            if self._buf:  # still a partial frame: it cannot complete either
                del self._buf[0]
                self.stats.bytes_discarded += 1
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


# ----------------------------------------------------------------------------- inventory frames


@dataclass(frozen=True, slots=True)
class TagFrame:
    """§1.6: ``FreqAnt | PC(2) | EPC(N) | RSSI | [Phase(2)]``."""

    antenna: int  # 1-based
    frequency_index: int
    pc: int
    epc: bytes
    rssi_raw: int  # 7-bit value, bit 7 removed (it is the antenna high bit on 8-port readers)
    phase: int | None

    @property
    def rssi_dbm(self) -> int:
        # §1.6 recommendation: store the raw byte, use raw - 129 (the V3 demo's flat offset).
        return self.rssi_raw - 129

    @property
    def frequency_khz(self) -> int:
        i = self.frequency_index
        return 865_000 + 500 * i if i <= 6 else 902_000 + 500 * (i - 7)


@dataclass(frozen=True, slots=True)
class InventorySummary:
    """End of an inventory round (§1.8), V3 or V2.2 form."""

    cmd: int
    antenna: int | None  # 0-based AntID as sent, for 0x89/0x8B
    read_rate: int | None  # reads/s (V3 0x89/0x8B)
    total_reads: int
    duration_ms: int | None  # 0x8A


@dataclass(frozen=True, slots=True)
class InventoryError:
    """A 1-byte ErrorCode reply to an inventory command: terminal for that command."""

    cmd: int
    code: int

    @property
    def description(self) -> str:
        return error_name(self.code)


@dataclass(frozen=True, slots=True)
class AntennaMissing:
    """0x8A notice: an antenna in the switch sequence is not connected; inventory continues."""

    antenna: int  # 1-based
    code: int


InventoryFrame = TagFrame | InventorySummary | InventoryError | AntennaMissing


def parse_inventory(
    frame: A0Frame, *, antenna_group: int = 0, phase: bool = False
) -> InventoryFrame | None:
    """Classify a 0x89/0x8A/0x8B reply with the parity rule of §1.9; None if malformed."""
    data = frame.data
    n = len(data)
    cmd = frame.cmd
    if n == 1:
        return InventoryError(cmd, data[0])
    if n == 2 and cmd == Cmd.FAST_SWITCH_ANT_INVENTORY:
        return AntennaMissing(data[0] + 1, data[1])
    if n % 2 == 1:
        if n == 7:  # V3 summaries
            if cmd == Cmd.FAST_SWITCH_ANT_INVENTORY:
                return InventorySummary(
                    cmd, None, None, int.from_bytes(data[0:3], "big"),
                    int.from_bytes(data[3:7], "big"),
                )
            return InventorySummary(
                cmd, data[0], int.from_bytes(data[1:3], "big"),
                int.from_bytes(data[3:7], "big"), None,
            )
        if n == 5:  # V2.2 0x89 summary
            return InventorySummary(cmd, data[0], None, int.from_bytes(data[1:5], "big"), None)
        return None
    if n < 6:
        return None
    pc = (data[1] << 8) | data[2]
    # The V2.2 0x8A summary (n == 8) collides with a 2-word-EPC tag frame: PC decides (§1.9).
    if n == 8 and cmd == Cmd.FAST_SWITCH_ANT_INVENTORY and (pc >> 11) != 2:
        return InventorySummary(
            cmd, None, None, int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
        )
    rssi_at = n - 3 if phase else n - 1
    if rssi_at < 3:
        return None
    rssi = data[rssi_at]
    epc_len = 2 * (pc >> 11)
    avail = rssi_at - 3
    # FastTID appends CRC + TID after the EPC: keep the EPC as the PC declares it (§1.6).
    epc = data[3 : 3 + epc_len] if 0 < epc_len <= avail else data[3:rssi_at]
    freq_ant = data[0]
    antenna = (freq_ant & 0x03) + (rssi >> 7) * 4 + (8 if antenna_group == 1 else 0) + 1
    return TagFrame(
        antenna=antenna,
        frequency_index=freq_ant >> 2,
        pc=pc,
        epc=bytes(epc),
        rssi_raw=rssi & 0x7F,
        phase=int.from_bytes(data[n - 2 : n], "big") if phase else None,
    )


KNOWN_CMDS = frozenset(int(c) for c in Cmd)
# Data lengths of the replies to the other commands (§1.5, §1.10): 1 = an ErrorCode or the
# success code 0x10; firmware and temperature are 2 bytes; output power 1, 4 or 8.
REPLY_SIZES: dict[int, frozenset[int]] = {
    Cmd.RESET: frozenset({0, 1}),
    Cmd.SET_UART_BAUDRATE: frozenset({1}),
    Cmd.GET_FIRMWARE_VERSION: frozenset({1, 2}),
    Cmd.SET_READER_ADDRESS: frozenset({1}),
    Cmd.SET_WORK_ANTENNA: frozenset({1}),
    Cmd.GET_WORK_ANTENNA: frozenset({1}),
    Cmd.SET_OUTPUT_POWER: frozenset({1}),
    Cmd.GET_OUTPUT_POWER: frozenset({1, 4, 8}),
    Cmd.GET_OUTPUT_POWER_EIGHT: frozenset({1, 8}),
    Cmd.SET_TEMPORARY_OUTPUT_POWER: frozenset({1}),
    Cmd.GET_READER_TEMPERATURE: frozenset({1, 2}),
    Cmd.SET_ANTENNA_GROUP: frozenset({1}),
    Cmd.GET_ANTENNA_GROUP: frozenset({1}),
}
MAX_FREQUENCY_INDEX = 59  # §1.6 frequency table: 0-59
# §1.6 RSSI byte (bit 7 removed) as dBm = raw - 129. Real modules report about -99..-20 dBm
# (V2.2 table: raw 31..110); outside -110..-5 dBm (raw 19..124) the frame is noise.
RSSI_RAW_MIN = 19
RSSI_RAW_MAX = 124


def plausible(
    frame: A0Frame,
    *,
    phase: bool | None = None,
    antennas: frozenset[int] | None = None,
    antenna_group: int = 0,
) -> bool:
    """Could the reader have sent this checksum-valid frame? (issue: noise invents reads)

    Replies must carry a known command code. For inventory commands the data length must be
    one of §1.8/§1.9's forms, and a tag frame must agree with its own PC word: ``n == 4 + 2 *
    (PC >> 11)`` (+2 with phase), at least one EPC word, a frequency index of the table, an
    RSSI in range, and (when ``antennas`` is given) an antenna the agent asked for. FastTID
    frames (EPC + CRC + TID after the PC's length) are therefore refused: the agent never
    turns FastTID on. ``phase=None`` accepts both forms.
    """
    cmd = frame.cmd
    if cmd not in KNOWN_CMDS:
        return False
    if cmd not in INVENTORY_CMDS:
        sizes = REPLY_SIZES.get(cmd)
        return sizes is None or len(frame.data) in sizes
    data = frame.data
    n = len(data)
    if n == 1:
        return True  # ErrorCode
    if n == 2:
        return cmd == Cmd.FAST_SWITCH_ANT_INVENTORY and data[0] <= 7  # antenna missing
    if n in (5, 7):
        return True  # summaries (§1.8)
    if n % 2 or n < 6:
        return False
    words = data[1] >> 3  # PC >> 11
    if n == 8 and cmd == Cmd.FAST_SWITCH_ANT_INVENTORY and words != 2:
        return True  # V2.2 0x8A summary (§1.9)
    tag_sizes = (4 + 2 * words, 6 + 2 * words) if phase is None else (4 + 2 * words + 2 * phase,)
    if words == 0 or n not in tag_sizes:
        return False
    if data[0] >> 2 > MAX_FREQUENCY_INDEX:
        return False
    rssi = data[3 + 2 * words]
    if not RSSI_RAW_MIN <= rssi & 0x7F <= RSSI_RAW_MAX:
        return False
    if antennas is not None:
        antenna = (data[0] & 0x03) + (rssi >> 7) * 4 + (8 if antenna_group == 1 else 0) + 1
        if antenna not in antennas:
            return False
    return True


def real_time_inventory(address: int, repeat: int = 1) -> bytes:
    """§1.7: ``A0 04 Addr 89 Repeat Check``."""
    return encode(address, Cmd.REAL_TIME_INVENTORY, bytes((repeat & 0xFF,)))


def session_inventory(
    address: int, session: int, target: int, repeat: int = 1, *, sl: int | None = None,
    phase: bool | None = None,
) -> bytes:
    """§1.7: ``Session Target [SL [Phase]] Repeat``; Len tells which optional fields exist."""
    data = bytearray((session & 0x03, target & 0x01))
    if sl is not None or phase is not None:
        data.append((sl or 0) & 0x03)
        if phase is not None:
            data.append(1 if phase else 0)
    data.append(repeat & 0xFF)
    return encode(address, Cmd.CUSTOMIZED_SESSION_TARGET_INVENTORY, bytes(data))


DISABLED_ANTENNA = 0xFF  # 0x8A: a slot that is skipped


def fast_switch_inventory(
    address: int,
    plan: list[tuple[int, int]],
    *,
    interval_ms: int = 0,
    repeat: int = 1,
    session: int | None = None,
    target: int = 0,
    phase: bool = False,
) -> bytes:
    """§1.7 0x8A fast switch antenna inventory, V3 forms; ``plan`` = [(AntID 0-7, stay)].

    4-port form (Len 0x0D): ``A stayA B stayB C stayC D stayD Interval Repeat`` when every AntID
    is 0-3, there are at most 4 slots and neither session nor phase is asked for.
    8-port form (Len 0x15): ``A stayA .. H stayH Interval Repeat``; with a session or phase the
    session block follows Interval:
    ``Reserve x5 Session Target Optimize Ongoing TargetQuantity Phase`` (Len 0x20).
    Unused slots are ``FF 00`` (disabled).
    """
    if not 1 <= len(plan) <= 8:
        raise ValueError(f"0x8A takes 1-8 antennas, got {len(plan)}")
    for ant, stay in plan:
        if not 0 <= ant <= 7 or not 0 <= stay <= 255:
            raise ValueError(f"0x8A slot (AntID {ant}, stay {stay}) out of range")
    four = len(plan) <= 4 and all(a <= 3 for a, _ in plan) and session is None and not phase
    slots = 4 if four else 8
    padded = list(plan) + [(DISABLED_ANTENNA, 0)] * (slots - len(plan))
    data = bytearray(b for pair in padded for b in pair)
    data.append(interval_ms & 0xFF)
    if not four and (session is not None or phase):
        data += bytes(5)  # Reserve x5
        data += bytes(((session or 0) & 0x03, target & 0x01, 0, 0, 0, 1 if phase else 0))
    data.append(repeat & 0xFF)
    return encode(address, Cmd.FAST_SWITCH_ANT_INVENTORY, bytes(data))


def set_work_antenna(address: int, ant_id: int) -> bytes:
    """§1.10 ``A0 04 Addr 74 AntID Check``; AntID 0-based (0-7 on 8-port readers)."""
    return encode(address, Cmd.SET_WORK_ANTENNA, bytes((ant_id & 0xFF,)))


def set_output_power(address: int, dbm: list[int]) -> bytes:
    """§1.5 0x76: 1 byte = every port, 4 bytes (4-port) or 8 bytes (8-port), dBm each."""
    if len(dbm) not in (1, 4, 8):
        raise ValueError(f"0x76 takes 1, 4 or 8 power values, got {len(dbm)}")
    return encode(address, Cmd.SET_OUTPUT_POWER, bytes(dbm))


def parse_temperature(data: bytes) -> int | None:
    """§1.10 0x7B reply ``PlusMinus Temp``: 01 = positive in practice (rust-invelion, node-r2k);
    None if the reply is not two bytes (an error code)."""
    if len(data) != 2:
        return None
    return data[1] if data[0] else -data[1]
