"""What each reader is doing, for status, health and the technician's live view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ReaderStatus:
    name: str
    driver: str
    port: str
    state: str = "starting"  # starting | connected | reconnecting | stopped
    firmware: str | None = None
    last_error: str | None = None
    connects: int = 0
    disconnects: int = 0
    reads_total: int = 0
    tag_frames: int = 0
    rounds: int = 0
    stray_frames: int = 0
    malformed_frames: int = 0
    error_codes: dict[int, int] = field(default_factory=dict)
    decoder: dict[str, int] = field(default_factory=dict)

    def note_error(self, code: int) -> None:
        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "port": self.port,
            "state": self.state,
            "firmware": self.firmware,
            "lastError": self.last_error,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "readsTotal": self.reads_total,
            "roundsTotal": self.rounds,
            "errorCodes": {f"0x{k:02X}": v for k, v in sorted(self.error_codes.items())},
            "decoder": dict(self.decoder),
        }
