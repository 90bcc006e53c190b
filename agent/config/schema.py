"""Configuration: one YAML file, validated completely before anything starts.

pydantic v2 models with ``extra="forbid"`` at the edge; every error is reported as
``file:line: field.path: what is wrong, what is expected`` and the CLI exits with code 2.
Values may reference environment variables as ``${NAME}`` (or ``${NAME:-default}``).
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from agent.config.values import parse_gs_substitute, parse_size, parse_terminator
from agent.config.vocab import check_uri, check_vocabulary


class _Model(BaseModel):
    # allow_inf_nan: "inf" or "nan" as text would otherwise pass every float bound (issue 13).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GatewayConfig(_Model):
    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    site: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    # EPCIS eventTimeZoneOffset of the place the gateway stands (EPCIS 2.0 §7.3.4).
    timezone: Annotated[str, Field(pattern=r"^[+-](0\d|1[0-3]):[0-5]\d$|^[+-]14:00$")] = "+00:00"


def _vocab(kind: str, value: str | None) -> str | None:
    if value is not None and (problem := check_vocabulary(kind, value)):
        raise ValueError(problem)
    return value


def _uri(value: str | None) -> str | None:
    if value is not None and (problem := check_uri(value)):
        raise ValueError(problem)
    return value


class _Vocabulary(_Model):
    """bizStep and disposition: CBV 2.0 words (checked at load) or URIs outside the CBV."""

    biz_step: str | None = None
    disposition: str | None = None

    @field_validator("biz_step")
    @classmethod
    def _biz_step(cls, v: str | None) -> str | None:
        return _vocab("bizStep", v)

    @field_validator("disposition")
    @classmethod
    def _disposition(cls, v: str | None) -> str | None:
        return _vocab("disposition", v)


class _EventContext(_Vocabulary):
    """Where events happen: EPCIS readPoint.id and bizLocation.id (an SGLN URN, a Digital
    Link, any URI), plus the vocabulary above."""

    read_point: str | None = None
    biz_location: str | None = None

    @field_validator("read_point", "biz_location")
    @classmethod
    def _ids(cls, v: str | None) -> str | None:
        return _uri(v)


class OnDepartConfig(_Vocabulary):
    """bizStep / disposition of departure events (action is always OBSERVE); none by default."""


class AntennaMapping(_EventContext):
    """Per-antenna overrides of the reader's event mapping (one reader can serve two doors)."""

    action: Literal["OBSERVE", "ADD"] | None = None  # ADD at commissioning points
    on_depart: OnDepartConfig | None = None


class PresenceConfig(_Model):
    """Smoothing and presence (docs/pipeline.md): arrived -> present -> departed per read point."""

    # Reads are folded and transitions of one read point batched into one event over this window.
    window_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # A present tag not read for this long (agent clock minus its last read) has departed.
    depart_after_s: Annotated[float, Field(gt=0)] = 10.0
    # A tag arrives only with this many reads within window_s (suppresses strays/reflections).
    min_reads: Annotated[int, Field(ge=1, le=100000)] = 1
    # Reads weaker than this are ignored altogether (None: every read counts).
    min_rssi_dbm: Annotated[float, Field(ge=-150, le=20)] | None = None
    # Emit a "still present" event per read point this often (None: never).
    heartbeat_s: Annotated[float, Field(gt=0)] | None = None


class _ReaderBase(_EventContext):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    # A device path (/dev/serial/by-id/..., /dev/ttyUSB0), a pyserial URL (socket://host:port)
    # or a USB match spec usb:VID:PID[:SERIAL], resolved again on every (re)connect.
    port: Annotated[str, Field(min_length=1)]
    enabled: bool = True
    # Full-jitter backoff between reconnect attempts: uniform(0, min(max, min * 2**attempt)).
    # Opening a missing local port is cheap, so the cap is low: a replugged reader is back
    # within about reconnect_max_s.
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.2
    reconnect_max_s: Annotated[float, Field(gt=0)] = 2.0
    response_timeout_s: Annotated[float, Field(gt=0)] = 1.0
    # A reader that sends nothing for this long during inventory is closed, reopened,
    # re-identified and re-configured (no 0x70 reset: that reboots the module).
    silence_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    @property
    def link_spec(self) -> str:
        """What the supervisor opens: the port spec (LLRP readers: a socket:// URL)."""
        return str(self.port)

    @property
    def link_baudrate(self) -> int:
        """The line rate to open with (0 for network readers)."""
        return int(getattr(self, "baudrate", 0))

    # --- Event mapping (agent/pipeline; docs/pipeline.md). Tag reads: `presence` folds reads
    # into arrival/departure events per read point, `every_read` makes one event per read.
    # Barcode scans always become one event each (minus double scans).
    mode: Literal["presence", "every_read"] = "presence"
    # read_point, biz_location, biz_step, disposition: see _EventContext.
    action: Literal["OBSERVE", "ADD"] = "OBSERVE"  # ADD at commissioning points
    on_depart: OnDepartConfig | None = None  # departure events' bizStep / disposition
    antenna_map: dict[Annotated[int, Field(ge=1, le=16)], AntennaMapping] = Field(
        default_factory=dict)
    presence: PresenceConfig = Field(default_factory=PresenceConfig)
    # Barcode readers: the same code from the same reader again within this window is dropped.
    double_scan_window_s: Annotated[float, Field(ge=0, le=3600)] = 0.0



Dbm = Annotated[int, Field(ge=0, le=33)]


class R2000Config(_ReaderBase):
    driver: Literal["r2000"]
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400] = 115200
    # Reader address (reader-protocols.md §1.3); 0xFF = broadcast: any reader answers.
    address: Annotated[int, Field(ge=0, le=255)] = 0xFF
    # Antenna ports to inventory, 1-based; 9-16 use antenna group 2 (cmd 0x6C, 16-port readers).
    antennas: list[Annotated[int, Field(ge=1, le=16)]] = Field(default_factory=lambda: [1])
    # Repeat byte of the inventory commands (V2.2 §2.2.8): rounds per command; 0xFF = one round
    # with the minimal round time.
    inventory_repeat: Annotated[int, Field(ge=1, le=255)] = 1
    # Output power in dBm (cmd 0x76, saved to flash by the reader, so written only when the
    # reader reports something else): one value for every port, or {port: dBm} for ports 1-8
    # (ports not named keep their current power). null: leave the reader's setting alone.
    power_dbm: Dbm | dict[Annotated[int, Field(ge=1, le=8)], Dbm] | None = None
    # real_time: 0x89 per antenna; session: 0x8B with session/target (and phase) per antenna;
    # fast_switch: 0x8A over the antennas in one command (per antenna group).
    inventory: Literal["real_time", "session", "fast_switch"] = "real_time"
    session: Annotated[int, Field(ge=0, le=3)] = 1  # Gen2 session for 0x8B / 0x8A 8-port form
    target: Literal["A", "B"] = "A"
    # Ask for the 2-byte phase after RSSI (0x8B, or the 8-port 0x8A form).
    phase: bool = False
    # 0x8A: inventory rounds per antenna before switching, and the pause between antennas.
    fast_switch_stay: Annotated[int, Field(ge=1, le=255)] = 1
    fast_switch_interval_ms: Annotated[int, Field(ge=0, le=255)] = 0
    # After 5 inventory cycles without a tag, pause this long between cycles (0 = never): an
    # empty field then costs a few exchanges per second instead of dozens. The first tag
    # read returns to full speed. The pauses end on a beat all idle readers share
    # (drivers/r2000.py idle_beat_s), so their exchanges wake the agent together.
    idle_pause_ms: Annotated[int, Field(ge=0, le=1000)] = 100
    # Read the reader's temperature (0x7B) this often, between inventory rounds (0 = only at
    # connect); above temperature_warn_c one WARNING, and one more when it is back below.
    temperature_interval_s: Annotated[float, Field(ge=0)] = 60.0
    temperature_warn_c: Annotated[int, Field(ge=-40, le=150)] = 60
    # No frame for this long during an inventory round: its end frame was lost (line noise
    # that passed the 8-bit checksum can swallow it), so the next round is started and the
    # round counted in roundsUnconfirmed. Only silence_timeout_s without any frame reconnects.
    round_end_timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _check_modes(self) -> R2000Config:
        if self.phase and self.inventory == "real_time":
            raise ValueError(
                "phase needs inventory: session or fast_switch (0x89 cannot report phase)"
            )
        if len(set(self.antennas)) != len(self.antennas):
            raise ValueError(f"antennas lists a port twice: {self.antennas}")
        return self

    @model_validator(mode="after")
    def _mapped_antennas_exist(self) -> R2000Config:
        extra = sorted(set(self.antenna_map) - set(self.antennas))
        if extra:
            raise ValueError(f"antenna_map: antenna(s) {extra} are not in antennas "
                             f"{self.antennas}; add them to antennas or remove the mapping")
        return self


class ChafonConfig(_ReaderBase):
    """Chafon / UHFReader18 / UHFReader288 / UR-series readers (reader-protocols.md §2)."""

    driver: Literal["chafon"]
    baudrate: Literal[9600, 19200, 38400, 57600, 115200] = 57600
    # 0xFF = broadcast (the reader answers with its own address; factory address is 0x00).
    address: Annotated[int, Field(ge=0, le=255)] = 0xFF
    protocol: Literal["uhfreader288", "uhfreader18"] = "uhfreader288"
    # answer: the agent sends inventory commands (0x01); push: the reader is in scan mode and
    # pushes 0xEE frames on its own (set it up with the vendor tool).
    work_mode: Literal["answer", "push"] = "answer"  # Chafon "work mode" (cmd 0x35)
    antennas: list[Annotated[int, Field(ge=1, le=8)]] = Field(default_factory=lambda: [1])
    q_value: Annotated[int, Field(ge=0, le=15)] = 4
    session: Annotated[int, Field(ge=0, le=3)] = 0
    target: Literal["A", "B"] = "A"
    # Inventory scan time (x100 ms on the wire): uhfreader288 sends it with every inventory,
    # uhfreader18 stores it with cmd 0x25 (written only when the reader reports another value).
    scan_time_ms: Annotated[int, Field(ge=100, le=25500, multiple_of=100)] = 1000
    # cmd 0x2F, 0-30 dBm, stored by the reader: written only when it reports another value.
    power_dbm: Annotated[int, Field(ge=0, le=30)] | None = None
    # §2.2: a gap longer than this inside a frame abandons the partial frame.
    inter_byte_gap_ms: Annotated[float, Field(gt=0, le=1000)] = 15.0

    @model_validator(mode="after")
    def _check_antennas(self) -> ChafonConfig:
        if self.protocol == "uhfreader18" and self.antennas != [1]:
            raise ValueError("uhfreader18 readers have one antenna: use antennas: [1]")
        if len(set(self.antennas)) != len(self.antennas):
            raise ValueError(f"antennas lists a port twice: {self.antennas}")
        return self


# Mercury region codes by name (agent/readers/codecs/mercury.py REGIONS has the numbers).
ThingMagicRegion = Literal["NA", "EU", "KR", "IN", "JP", "PRC", "EU2", "EU3", "KR2", "PRC2",
                           "AU", "NZ", "NA2", "NA3", "OPEN"]
# What a missing required key should have been (the loader adds it to "required key is missing").
MISSING_HINTS: dict[str, str] = {
    "region": "the Mercury region the module may transmit in, one of "
              + ", ".join(get_args(ThingMagicRegion)),
}


class ThingMagicReaderConfig(_ReaderBase):
    """ThingMagic/JADAK Mercury embedded modules: M6e Nano (SparkFun Simultaneous RFID board),
    M6e, M7e (reader-protocols.md §3)."""

    driver: Literal["thingmagic"]
    baudrate: Literal[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] = 115200
    # Required: the module transmits nothing until a region is set, and the right one is a
    # legal question of where the reader stands (EU3 = ETSI 865-868 MHz, NA = FCC 902-928).
    region: ThingMagicRegion
    # Logical antenna ports (the Nano has port 1 only; the M6e has 4).
    antennas: list[Annotated[int, Field(ge=1, le=4)]] = Field(default_factory=lambda: [1])
    # Read power in dBm (cmd 0x92, centi-dBm on the wire; the Nano's maximum is 27 dBm, the
    # module refuses more with 0x0103). null: leave the module's setting alone.
    power_dbm: Annotated[int, Field(ge=0, le=31)] | None = None
    # Gen2 session (cmd 0x9B, Gen2 key 00; read back with 0x6B); null: the module's own
    # (S0 after power-up). S1/S2 let a crowd of tags stay quiet once read.
    session: Annotated[int, Field(ge=0, le=3)] | None = None
    # Gen2 target (0x9B key 01): A, B, AB (A then B), BA; null: the module's own (A).
    target: Literal["A", "B", "AB", "BA"] | None = None
    # The module does not answer at baudrate: look for it at the other rates (115200, 9600,
    # 921600, ...) and switch it to baudrate (cmd 0x06). false: only ever talk at baudrate.
    baud_search: bool = True
    # Search time of each continuous-read cycle (the 0x22 sub-command's timeout).
    search_ms: Annotated[int, Field(ge=50, le=65535)] = 1000
    # A module left streaming by an earlier process: after stop-reading, discard what arrives
    # until the line has been quiet this long (bounded by 10x) before asking its version.
    drain_quiet_s: Annotated[float, Field(gt=0, le=5)] = 0.2
    # Read the module's temperature (0x72) this often, pausing the stream briefly (0 = only
    # at connect); above temperature_warn_c one WARNING, and one more when back below.
    temperature_interval_s: Annotated[float, Field(ge=0)] = 60.0
    temperature_warn_c: Annotated[int, Field(ge=-40, le=150)] = 75
    # Boot firmware (0x04) can take a while: the application checks its image first.
    boot_timeout_s: Annotated[float, Field(gt=0, le=30)] = 3.0

    @model_validator(mode="after")
    def _check_antennas(self) -> ThingMagicReaderConfig:
        if len(set(self.antennas)) != len(self.antennas):
            raise ValueError(f"antennas lists a port twice: {self.antennas}")
        extra = sorted(set(self.antenna_map) - set(self.antennas))
        if extra:
            raise ValueError(f"antenna_map: antenna(s) {extra} are not in antennas "
                             f"{self.antennas}; add them to antennas or remove the mapping")
        return self


class BarcodeConfig(_ReaderBase):
    """A barcode scanner in serial line mode (reader-protocols.md §4)."""

    driver: Literal["barcode"]
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    # CR | LF | CRLF | TAB | ETX | none (timeout framing only) | any string with escapes ("\x03")
    terminator: str = "CR"
    # End a scan after this much silence (scanners without a suffix); null: terminator only.
    idle_flush_ms: Annotated[float, Field(gt=0, le=10000)] | None = 80.0
    max_length: Annotated[int, Field(ge=1, le=65536)] = 4096
    # Split an AIM symbology identifier ("]d2") off the front of each scan.
    aim: bool = True
    # A scanner is quiet between scans: no silence check, so a large default.
    silence_timeout_s: Annotated[float, Field(gt=0)] = 3600.0

    @field_validator("terminator")
    @classmethod
    def _terminator(cls, v: str) -> str:
        parse_terminator(v)  # ValueError -> a validation error naming the field
        return v

    @model_validator(mode="after")
    def _check_framing(self) -> BarcodeConfig:
        if parse_terminator(self.terminator) is None and self.idle_flush_ms is None:
            raise ValueError("terminator: none needs idle_flush_ms (or a scan could never end)")
        return self

    @property
    def terminator_bytes(self) -> bytes | None:
        return parse_terminator(self.terminator)


class HidReaderConfig(_ReaderBase):
    """A USB barcode scanner in keyboard-wedge (HID) mode, read from its Linux input device
    (docs/readers.md, USB keyboard-wedge scanners)."""

    driver: Literal["hid"]
    # port: /dev/input/by-id/usb-...-event-kbd, /dev/input/eventN, a udev name such as
    # /dev/scanner-1, usb:VID:PID[:SERIAL] (resolved to /dev/input/eventN on every connect),
    # or a FIFO / file carrying the same records (reader-sim hid).
    # The keyboard layout ("keyboard country") the scanner is set up for.
    keymap: Literal["us", "de", "fr", "uk"] = "us"
    # The key that ends a scan (the scanner's suffix); none: inter_key_timeout_ms only.
    terminator: Literal["enter", "tab", "none"] = "enter"
    # End a scan when no key came for this long (scanners without a suffix); null: the
    # terminator only (a scan whose Enter was lost is dropped after 1 s, counted).
    inter_key_timeout_ms: Annotated[float, Field(gt=0, le=10000)] | None = None
    # How the scanner types GS (0x1D, the GS1 separator): ctrl+], f1..f12, one printable
    # character (which then cannot occur in data), or none.
    gs_substitute: str = "ctrl+]"
    # Size of the kernel's input_event record: auto = this process's (24 bytes for 64-bit,
    # 16 for 32-bit); set it only for a file recorded on another machine.
    record_size: Literal["auto", 16, 24] = "auto"
    # EVIOCGRAB: this agent alone gets the keys (they do not reach a console login or X).
    grab: bool = True
    max_length: Annotated[int, Field(ge=1, le=65536)] = 4096
    # Split an AIM symbology identifier ("]C1") off the front of each scan.
    aim: bool = True
    # A scanner is quiet between scans: no silence check, so a large default.
    silence_timeout_s: Annotated[float, Field(gt=0)] = 3600.0

    @field_validator("gs_substitute")
    @classmethod
    def _gs(cls, v: str) -> str:
        parse_gs_substitute(v)  # ValueError -> a validation error naming the field
        return v

    @model_validator(mode="after")
    def _check_framing(self) -> HidReaderConfig:
        if self.terminator == "none" and self.inter_key_timeout_ms is None:
            raise ValueError("terminator: none needs inter_key_timeout_ms (or a scan could "
                             "never end)")
        return self

    @property
    def record_bytes(self) -> int | None:
        """16 or 24, or None: the process's native size."""
        return None if self.record_size == "auto" else int(self.record_size)


class LlrpReportConfig(_Model):
    # ROReportSpec (LLRP 1.1 §13.2.6): a report every N tags (or at the end of the ROSpec).
    every_n_tags: Annotated[int, Field(ge=1, le=65535)] = 1
    # ... and at least this often (the AISpec ends every timeout_ms and the ROSpec loops, so a
    # report with every_n_tags > 1 never waits longer). null: only every_n_tags.
    timeout_ms: Annotated[int, Field(ge=10, le=3_600_000)] | None = None


class LlrpGpiTrigger(_Model):
    """Inventory only while a GPI input is high (a dock door's photo-eye or a push button):
    the reader starts the ROSpec when GPI ``port`` goes high and stops it when it goes low, or
    ``stop_after_s`` after the start, whichever comes first."""

    port: Annotated[int, Field(ge=1, le=65535)]
    stop_after_s: Annotated[float, Field(gt=0, le=86_400)] | None = None


# Impinj ImpinjInventorySearchMode values (Octane LLRP): the Gen2 target strategy.
LLRP_SEARCH_MODES: dict[str, int] = {
    "reader_selected": 0, "single_target": 1, "dual_target": 2,
    "single_target_with_suppression": 3, "single_target_reset": 5,
    "dual_target_with_b_to_a_select": 6,
}
LlrpSearchMode = Literal["reader_selected", "single_target", "dual_target",
                         "single_target_with_suppression", "single_target_reset",
                         "dual_target_with_b_to_a_select"]


class LlrpConfig(_ReaderBase):
    """A fixed network reader speaking LLRP 1.0.1 / 1.1 over TCP (Impinj Speedway/R700,
    Zebra FX7500/FX9600): docs/readers.md, LLRP."""

    driver: Literal["llrp"]
    host: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9.:_-]+$")]
    # The reader's TCP port (5084 is LLRP's; 5085, LLRP over TLS, is not supported yet).
    port: Annotated[int, Field(ge=1, le=65535)] = 5084  # type: ignore[assignment]
    antennas: list[Annotated[int, Field(ge=1, le=64)]] = Field(default_factory=lambda: [1])
    # Transmit power in dBm: mapped to the reader's TransmitPowerTable, the highest entry not
    # above the request (logged). One value for every antenna, or {antenna: dBm}. null: the
    # reader's own setting.
    power_dbm: Annotated[float, Field(ge=0, le=40)] | dict[
        Annotated[int, Field(ge=1, le=64)], Annotated[float, Field(ge=0, le=40)]] | None = None
    session: Annotated[int, Field(ge=0, le=3)] = 1  # Gen2 session (C1G2SingulationControl)
    tag_population: Annotated[int, Field(ge=1, le=65535)] = 32
    # The reader's RF mode: a ModeIdentifier of its UHFC1G2RFModeTable, or a name (Impinj's,
    # e.g. autoset_dense_reader, or built from the table entry, e.g. m4_250k). Checked at
    # connect: a mode the reader does not list is refused naming the ones it has. null: its
    # default.
    reader_mode: Annotated[int, Field(ge=0, le=2**32 - 1)] | Annotated[
        str, Field(min_length=1, max_length=64)] | None = None
    # Impinj readers only (ImpinjInventorySearchMode); ignored with a WARNING on others.
    search_mode: LlrpSearchMode | None = None
    gpi_trigger: LlrpGpiTrigger | None = None
    # The reader sends KEEPALIVE this often; three missed ones (or a dead socket) reconnect.
    keepalive_s: Annotated[float, Field(ge=0.5, le=3600)] = 10.0
    report: LlrpReportConfig = Field(default_factory=LlrpReportConfig)
    # LLRP over TLS (port 5085 unless port is given): a tls: section means TLS unless
    # enabled: false; ca / cert / key as for the broker (system store without ca).
    tls: TlsConfig | None = None

    @property
    def tls_on(self) -> bool:
        return self.tls is not None and self.tls.enabled is not False

    @property
    def link_spec(self) -> str:
        """The link the supervisor opens: pyserial's TCP URL (the same seam as serial), or
        ``tls://`` for LLRP over TLS."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.tls_on:
            port = self.port if "port" in self.model_fields_set else 5085
            return f"tls://{host}:{port}"
        return f"socket://{host}:{self.port}"

    @model_validator(mode="after")
    def _check_antennas(self) -> LlrpConfig:
        if len(set(self.antennas)) != len(self.antennas):
            raise ValueError(f"antennas lists an antenna twice: {self.antennas}")
        extra = sorted(set(self.antenna_map) - set(self.antennas))
        if extra:
            raise ValueError(f"antenna_map: antenna(s) {extra} are not in antennas "
                             f"{self.antennas}; add them to antennas or remove the mapping")
        if self.tls is not None and not self.tls.verify:
            raise ValueError("tls.verify: false is not supported for readers: give the "
                             "reader's CA in tls.ca (or its self-signed certificate) instead")
        if isinstance(self.power_dbm, dict):
            unknown = sorted(set(self.power_dbm) - set(self.antennas))
            if unknown:
                raise ValueError(f"power_dbm names antenna(s) {unknown} that are not in "
                                 f"antennas {self.antennas}")
        return self


# A new driver adds its model to this union; DRIVER_TAGS and the loader's messages follow.
AnyReaderConfig = (
    R2000Config | ChafonConfig | ThingMagicReaderConfig | BarcodeConfig | LlrpConfig
    | HidReaderConfig
)
ReaderConfig = Annotated[AnyReaderConfig, Field(discriminator="driver")]
DRIVER_TAGS: frozenset[str] = frozenset(
    tag
    for model in get_args(AnyReaderConfig)
    for tag in get_args(model.model_fields["driver"].annotation)
)


BUFFER_MIN_SIZE = 64 * 1024


class BufferConfig(_Model):
    path: Path
    # FULL (and EXTRA, the same in WAL mode) lost nothing in 40 simulated power cuts; NORMAL
    # lost committed rows in every cut (docs/buffer.md).
    synchronous: Literal["FULL", "EXTRA", "NORMAL"] = "FULL"
    max_size: int = 512 * 1024**2
    max_age_s: Annotated[float, Field(gt=0)] | None = None
    when_full: Literal["drop_oldest", "backpressure"] = "drop_oldest"
    commit_interval_ms: Annotated[float, Field(ge=0, le=1000)] = 5.0
    lease_s: Annotated[float, Field(gt=0)] = 60.0
    # Disk space held back in <path>.reserve and given up when the disk fills, so the buffer can
    # still checkpoint, turn reads into events and delete delivered rows: a full disk then
    # drains instead of deadlocking. 0 = no reserve.
    reserve_bytes: int = 4 * 1024**2
    # Dead letters (messages the broker refused for good) are kept for a technician
    # (`edge-agent buffer dead-letters`). At dead_letters_max an alarm is raised and the policy
    # applies: keep = new refusals stay in the outbox and are retried later (backpressure, no
    # deletion); drop_oldest = the oldest dead letters are deleted, counted and logged.
    dead_letters_max: Annotated[int, Field(ge=1)] = 10_000
    dead_letter_policy: Literal["keep", "drop_oldest"] = "keep"

    @field_validator("max_size", "reserve_bytes", mode="before")
    @classmethod
    def _size(cls, v: object) -> int:
        return parse_size(v)

    @field_validator("max_size")
    @classmethod
    def _room_for_work(cls, v: int) -> int:
        # An empty buffer (schema, indexes, the first WAL checkpoint) already uses ~40 KiB of
        # pages; below this the first batch of reads would find the buffer full.
        if v < BUFFER_MIN_SIZE:
            raise ValueError(f"{v} bytes leaves no room for reads (an empty buffer uses about "
                             f"40 KiB); expected at least {BUFFER_MIN_SIZE // 1024}KiB, and "
                             "10MiB or more to ride out an outage")
        return v


class TlsConfig(_Model):
    """TLS towards the broker. ``enabled`` None means: on for any host that is not loopback."""

    enabled: bool | None = None
    ca: Path | None = None  # CA bundle (PEM); None = the system trust store
    cert: Path | None = None  # client certificate (PEM) for mutual TLS
    key: Path | None = None  # its private key (PEM); must not be group/world readable
    key_password_file: Path | None = None
    # Certificate and hostname verification. Turning it off needs allow_insecure: true.
    verify: bool = True

    @model_validator(mode="after")
    def _files_mean_tls(self) -> TlsConfig:
        # A CA or a client certificate is only ever given to talk TLS: plain text next to
        # them is a mistake that would send the password in the clear (issue 13).
        given = [n for n in ("ca", "cert", "key") if getattr(self, n) is not None]
        if self.enabled is False and given:
            raise ValueError(f"tls.{given[0]} is set but tls.enabled is false; expected "
                             "enabled: true (or no enabled key) to connect with TLS, or no "
                             f"{'/'.join(given)} to connect in plain text")
        return self


class BrokerAddress(_Model):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # default: 8883 with TLS, else 1883


class MqttConfig(_Model):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topic_prefix: Annotated[str, Field(min_length=1, pattern=r"^[^#+]+$")] = "trace"
    client_id: str | None = None  # default: edge-agent-{site}-{gateway id}
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    # In-flight QoS 1 messages; the broker's Receive Maximum caps it further.
    inflight_window: Annotated[int, Field(ge=1, le=65535)] = 20
    publish_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    batch_max_events: Annotated[int, Field(ge=1, le=10000)] = 500
    batch_max_bytes: int = 128 * 1024
    batch_max_delay_ms: Annotated[float, Field(ge=0, le=60000)] = 50.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0
    # Added for the uplink: broker credentials, and how long the broker keeps our session
    # (MQTT 5 Session Expiry Interval) so a reconnect finds it again.
    username: str | None = None
    # Plain passwords in the file work but log a warning: prefer password_file / password_env.
    password: Annotated[str | None, Field(repr=False)] = None
    session_expiry_s: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 24 * 3600
    # ---- issue 6 (uplink) additions; every default keeps the minimal config working.
    protocol: Literal["5", "3.1.1"] = "5"  # 3.1.1 cannot report refusals (see docs/uplink.md)
    password_file: Path | None = None
    password_env: str | None = None
    tls: TlsConfig = Field(default_factory=TlsConfig)
    # Refuse insecure settings (plaintext to a non-loopback host, verify off) unless true.
    allow_insecure: bool = False
    # Further brokers tried in order after host/port (the first broker); fail back when the
    # first answers again (probed every failback_probe_s while on another one).
    failover: list[BrokerAddress] = Field(default_factory=list)
    failback_probe_s: Annotated[float, Field(gt=0)] = 60.0
    # Backlog drain limit (token bucket, events per second); None = unlimited.
    drain_rate_events_s: Annotated[float, Field(gt=0)] | None = None
    # Publish attempts before a message refused with a transient code is dead-lettered.
    max_attempts: Annotated[int, Field(ge=1)] = 10
    retry_min_s: Annotated[float, Field(gt=0)] = 1.0
    retry_max_s: Annotated[float, Field(gt=0)] = 60.0
    quota_pause_s: Annotated[float, Field(ge=0)] = 5.0  # after PUBACK 0x97 Quota exceeded
    compression: Literal["none", "gzip"] = "none"
    health_interval_s: Annotated[float, Field(gt=0)] = 60.0
    # The retained status is published again this soon after the chain head moves, at most
    # once per interval (docs/provenance.md "The chain head in the retained status").
    status_min_interval_s: Annotated[float, Field(gt=0)] = 1.0
    cert_expiry_warn_days: Annotated[int, Field(ge=0)] = 30

    @model_validator(mode="after")
    def _check_combinations(self) -> MqttConfig:
        if self.compression != "none" and self.protocol != "5":
            raise ValueError("compression needs protocol \"5\" (the content type and "
                             "content-encoding are MQTT 5 properties)")
        sources = [n for n, v in (("password", self.password),
                                  ("password_file", self.password_file),
                                  ("password_env", self.password_env)) if v is not None]
        if len(sources) > 1:
            raise ValueError(f"give only one of {', '.join(sources)}")
        if (self.tls.cert is None) != (self.tls.key is None):
            raise ValueError("tls.cert and tls.key go together (mutual TLS needs both)")
        return self

    @property
    def tls_enabled(self) -> bool:
        if self.tls.enabled is not None:
            return self.tls.enabled
        if self.tls.ca is not None or self.tls.cert is not None:
            return True  # a CA or certificate means TLS whatever the host
        return not is_loopback(self.host)

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """(host, port) in failover order; the first is host/port."""
        default = 8883 if self.tls_enabled else 1883
        first = self.port if "port" in self.model_fields_set or not self.tls_enabled else 8883
        out = [(self.host, first)]
        out += [(b.host, b.port if b.port is not None else default) for b in self.failover]
        return out

    @field_validator("batch_max_bytes", mode="before")
    @classmethod
    def _size(cls, v: object) -> int:
        return parse_size(v)


class CommandsConfig(_Model):
    """Remote commands on {prefix}/{site}/{gateway}/cmd/#, HMAC-SHA256 signed."""

    enabled: bool = False
    secret_file: Path | None = None
    secret_env: str | None = None
    max_skew_s: Annotated[float, Field(gt=0)] = 300.0
    # Replies of verified commands go to their MQTT 5 Response Topic only when it is under this
    # prefix (never one of the agent's other topics or another gateway's); None = the agent's
    # own {prefix}/{site}/{gateway}/cmd-reply. Refused commands are answered only there.
    reply_prefix: Annotated[str, Field(min_length=1, pattern=r"^[^+#\x00]+$")] | None = None

    @model_validator(mode="after")
    def _secret(self) -> CommandsConfig:
        if self.enabled and (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("commands.enabled needs exactly one of secret_file or secret_env")
        return self


class EstConfig(_Model):
    """The plant CA's EST server (RFC 7030) that issues and renews the gateway's certificate
    (the mTLS identity: ``uplink.mqtt.tls.cert`` / ``key``). docs/identity.md."""

    # https://HOST[:PORT]/.well-known/est (or .../est/LABEL)
    url: Annotated[str, Field(pattern=r"^https://[^/\s]+(/\S*)?$")]
    ca: Path | None = None  # trust anchor for the EST server (PEM); None: the system store
    # First enrollment: HTTP Basic (username + password_file) or a bootstrap certificate (a
    # manufacturer's, or one the technician installed). Re-enrollment uses the current one.
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None  # or the name of an environment variable holding it
    bootstrap_cert: Path | None = None
    bootstrap_key: Path | None = None
    key_type: Literal["ec", "ed25519", "rsa"] = "ec"  # a new key at every renewal
    # Renew this far into the certificate's lifetime (notBefore + fraction * lifetime).
    renew_fraction: Annotated[float, Field(gt=0, lt=1)] = 2 / 3
    retry_min_s: Annotated[float, Field(gt=0)] = 60.0
    retry_max_s: Annotated[float, Field(gt=0)] = 3600.0
    # Where /cacerts' certificates are written (to trust the broker with): None: not written.
    cacerts_out: Path | None = None
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0

    @model_validator(mode="after")
    def _auth(self) -> EstConfig:
        if (self.bootstrap_cert is None) != (self.bootstrap_key is None):
            raise ValueError("bootstrap_cert and bootstrap_key go together")
        if (self.password_file is not None or self.password_env) and self.username is None:
            raise ValueError("password_file / password_env need username (HTTP Basic)")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError("retry_min_s must not exceed retry_max_s")
        return self


class SigningConfig(_Model):
    """Document signatures (docs/provenance.md). Without key/cert: the mTLS client key and
    certificate (uplink.mqtt.tls); with neither, documents are chained but unsigned."""

    enabled: bool = True
    key: Path | None = None  # PEM private key (P-256, Ed25519 or RSA); mode 600 or stricter
    cert: Path | None = None  # PEM certificate of that key
    key_password_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> SigningConfig:
        if (self.key is None) != (self.cert is None):
            raise ValueError("signing.key and signing.cert go together; expected both (or "
                             "neither, to sign with the mTLS client key and certificate)")
        return self


class UplinkConfig(_Model):
    mqtt: MqttConfig
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    est: EstConfig | None = None
    signing: SigningConfig = Field(default_factory=SigningConfig)

    @property
    def signing_files(self) -> tuple[Path, Path, Path | None] | None:
        """(key, cert, key password file) to sign with, or None: documents go unsigned."""
        s = self.signing
        if not s.enabled:
            return None
        if s.key is not None and s.cert is not None:
            return s.key, s.cert, s.key_password_file
        tls = self.mqtt.tls
        if tls.key is not None and tls.cert is not None and self.mqtt.tls_enabled:
            return tls.key, tls.cert, tls.key_password_file
        return None

    @model_validator(mode="after")
    def _est_needs_an_identity(self) -> UplinkConfig:
        if self.est is not None and (self.mqtt.tls.cert is None or self.mqtt.tls.key is None):
            raise ValueError("est: the certificate it issues is the mTLS identity: set "
                             "uplink.mqtt.tls.cert and uplink.mqtt.tls.key (the files "
                             "`edge-agent identity init` / `enroll` write)")
        return self


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class StatusConfig(_Model):
    """The local status socket (``edge-agent status`` / ``tail``). None: the first usable of
    /run/edge-agent/agent.sock, $XDG_RUNTIME_DIR/edge-agent.sock, <buffer path>.sock."""

    socket: Path | None = None
    enabled: bool = True

    @field_validator("socket")
    @classmethod
    def _not_another_file(cls, v: Path | None) -> Path | None:
        # The agent replaces a stale socket at start; anything else at that path is someone's
        # file, which it must neither delete nor fail on later (issue 13).
        if v is not None:
            try:
                mode = v.lstat().st_mode
            except OSError:
                return v
            if not stat.S_ISSOCK(mode):
                raise ValueError(f"{str(v)!r} exists and is not a socket; expected a path that "
                                 "does not exist yet (the agent creates the socket) or an old "
                                 "socket of the agent")
        return v


class HttpTlsConfig(_Model):
    """HTTPS for the technician's page (needed when http.listen is not loopback)."""

    cert: Path | None = None  # server certificate (PEM)
    key: Path | None = None  # its private key (PEM)

    @model_validator(mode="after")
    def _both(self) -> HttpTlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("http.tls needs both cert and key (PEM files), or neither")
        return self


class HttpConfig(_Model):
    """/metrics (Prometheus text format), /health and the technician's page (issue 15)
    on a local TCP port."""

    enabled: bool = True
    listen: Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$")] = (
        "127.0.0.1:9108"
    )
    # /health turns 503 when a reader has been neither connected nor starting for this long.
    reader_down_max_s: Annotated[float, Field(gt=0)] = 300.0
    # The technician's page at / (read-only pages open on loopback; changes need the admin
    # password, stored as a scrypt hash by `edge-agent set-admin-password`).
    ui: bool = True
    admin_password_file: Path | None = None
    tls: HttpTlsConfig = Field(default_factory=HttpTlsConfig)
    session_idle_s: Annotated[float, Field(gt=0)] = 1800.0
    # Config "apply" from the page: the new config must connect every enabled reader and the
    # broker within this time, or the agent restores the backup and restarts with it.
    apply_confirm_s: Annotated[float, Field(gt=0)] = 60.0

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class AgentConfig(_Model):
    gateway: GatewayConfig
    readers: Annotated[list[ReaderConfig], Field(min_length=1)]
    buffer: BufferConfig
    uplink: UplinkConfig
    # Field tools (issue 7): local status socket, HTTP metrics and health.
    status: StatusConfig = Field(default_factory=StatusConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)

    @property
    def mqtt_client_id(self) -> str:
        """The uplink's MQTT client id: configured, or one per gateway (a broker keeps one
        session per id, so two gateways must never share it)."""
        return self.uplink.mqtt.client_id or f"edge-agent-{self.gateway.site}-{self.gateway.id}"

    @field_validator("readers")
    @classmethod
    def _unique_names(cls, v: list[AnyReaderConfig]) -> list[AnyReaderConfig]:
        seen: set[str] = set()
        for r in v:
            if r.name in seen:
                raise ValueError(f"reader name {r.name!r} is used twice; names must be unique")
            seen.add(r.name)
        return v
