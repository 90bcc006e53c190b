"""What each reader is doing, for status, health and the technician's live view."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from agent.readers.codecs.base import DecoderStats

MAX_PENDING_ALARMS = 100
log = logging.getLogger("agent.readers.drivers")


@dataclass(slots=True)
class ReaderStatus:
    name: str
    driver: str
    port: str
    state: str = "starting"  # starting | connected | reconnecting | stopped
    firmware: str | None = None
    model: str | None = None  # what identify() learnt: "R2000", "UHFReader288M", ...
    device: str | None = None  # the device path the port spec resolved to at the last connect
    temperature_c: int | None = None  # R2000 0x7B / Mercury 0x72, at connect and every interval
    temperature_high: bool = False  # above the warning threshold (logged once each way)
    # Output power: what the agent wants (int = all ports, {port: dBm}) and what the reader
    # reported at the last connect / change (per port, 1-based order).
    power_desired: int | dict[int, int] | None = None
    power_reported: tuple[float, ...] | None = None  # LLRP: its table's dBm (can be 30.25)
    power_error: str | None = None  # the last refusal, until a change succeeds
    # Reader settings (antennas, session, inventory mode...): what the agent applies at every
    # connect (the config with any live change) and what the reader reported at the last one
    # (LLRP: GET_ROSPECS; None where the protocol cannot tell).
    settings: dict[str, Any] | None = None
    settings_read_back: dict[str, Any] | None = None
    max_antennas: int | None = None  # antenna ports the reader reports (LLRP capabilities)
    last_error: str | None = None
    connects: int = 0
    disconnects: int = 0
    reads_total: int = 0
    tag_frames: int = 0
    rounds: int = 0
    stray_frames: int = 0
    malformed_frames: int = 0
    # inventory rounds whose end frame never came (noise swallowed it): the next round was
    # started after round_end_timeout_s instead of a reconnect
    rounds_unconfirmed: int = 0
    command_retries: int = 0  # commands asked a second time after a lost reply
    # LLRP: the reader's clock minus the gateway's (from its timestamps), seconds; None: unknown
    reader_clock_offset_s: float | None = None
    reader_clock_steps: int = 0  # LLRP: steps of the reader's clock seen mid-session
    # LLRP: antenna -> connected, from the reader's AntennaEvents (absent: never reported)
    antennas: dict[int, bool] = field(default_factory=dict)
    # LLRP with gpi_trigger: GPI port -> high, from the reader's GPIEvents; and whether the
    # inventory runs (None: not GPI-triggered, it always runs)
    gpi: dict[int, bool] = field(default_factory=dict)
    inventory_active: bool | None = None
    # Alarms the driver raised for ``.../alarms`` (antenna disconnected, reader exception),
    # taken by the agent's reader-alarms task into the buffer. Bounded; overflow counted.
    pending_alarms: list[dict[str, Any]] = field(default_factory=list)
    alarms_dropped: int = 0
    # Error codes / statuses the reader reported (A0 error code, Chafon status byte) -> count.
    error_codes: dict[int, int] = field(default_factory=dict)
    # Decoder counters summed over closed connections; the open one's stats are live (attach()).
    decoder_closed: dict[str, int] = field(default_factory=dict)
    decoder_live: DecoderStats | None = None

    @property
    def decoder(self) -> dict[str, int]:
        """Frames, discarded bytes, bad checksums, ... since the agent started."""
        total = dict(self.decoder_closed)
        if self.decoder_live is not None:
            for k, v in self.decoder_live.as_dict().items():
                total[k] = total.get(k, 0) + v
        return total

    def attach(self, stats: DecoderStats) -> None:
        """A new connection's decoder: its counters show live."""
        self.detach()
        self.decoder_live = stats

    def detach(self) -> None:
        """The connection closed: fold its counters into the totals."""
        if self.decoder_live is not None:
            for k, v in self.decoder_live.as_dict().items():
                self.decoder_closed[k] = self.decoder_closed.get(k, 0) + v
            self.decoder_live = None

    def raise_alarm(self, alarm: dict[str, Any]) -> None:
        if len(self.pending_alarms) >= MAX_PENDING_ALARMS:
            self.alarms_dropped += 1  # a flapping antenna: the log has every one
            return
        self.pending_alarms.append({"reader": self.name, **alarm})

    def take_alarms(self) -> list[dict[str, Any]]:
        taken, self.pending_alarms = self.pending_alarms, []
        return taken

    def note_temperature(self, temp_c: int, warn_c: int) -> None:
        """A module temperature reading: kept, and one WARNING each way across ``warn_c``."""
        self.temperature_c = temp_c
        if temp_c > warn_c and not self.temperature_high:
            self.temperature_high = True
            log.warning("reader %s: temperature %d °C is above %d °C", self.name, temp_c, warn_c)
        elif temp_c < warn_c and self.temperature_high:
            self.temperature_high = False
            log.warning("reader %s: temperature back to %d °C, below %d °C", self.name, temp_c,
                        warn_c)

    def note_error(self, code: int) -> None:
        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "port": self.port,
            "state": self.state,
            "firmware": self.firmware,
            "model": self.model,
            "device": self.device,
            "temperatureC": self.temperature_c,
            "power": {
                "desiredDbm": power_json(self.power_desired),
                "reportedDbm": power_json(self.power_reported),
                "error": self.power_error,
            },
            "settings": {"desired": self.settings, "readBack": self.settings_read_back,
                         "maxAntennas": self.max_antennas},
            "lastError": self.last_error,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "readsTotal": self.reads_total,
            "tagFrames": self.tag_frames,
            "roundsTotal": self.rounds,
            "strayFrames": self.stray_frames,
            "malformedFrames": self.malformed_frames,
            "roundsUnconfirmed": self.rounds_unconfirmed,
            "commandRetries": self.command_retries,
            "readerClockOffsetS": self.reader_clock_offset_s,
            "readerClockSteps": self.reader_clock_steps,
            "antennas": {str(a): "connected" if up else "disconnected"
                         for a, up in sorted(self.antennas.items())},
            "gpi": {str(p): "high" if high else "low" for p, high in sorted(self.gpi.items())},
            "inventoryActive": self.inventory_active,
            "errorCodes": {f"0x{k:02X}": v for k, v in sorted(self.error_codes.items())},
            "decoder": self.decoder,
        }


def power_json(power: int | dict[int, int] | tuple[float, ...] | None) -> Any:
    """One number when every port has the same power, else {"port": dBm}."""
    if power is None or isinstance(power, int):
        return power
    pairs = sorted(power.items()) if isinstance(power, dict) else list(enumerate(power, 1))
    if not isinstance(power, dict) and len({d for _, d in pairs}) == 1:
        return pairs[0][1]
    return {str(p): d for p, d in pairs}
