"""Settings a reader should have, kept across connections (output power today).

One ReaderControl per configured reader, owned by the app and handed to the reader's
supervisor, lives longer than any connection: the desired power starts as the config's
``power_dbm``, a remote ``set power`` changes it, and every (re)connect applies it (a reader
replaced on the same port gets it too). While a driver is attached, a change is queued on it
and applied between inventory rounds; the caller learns what the reader reports afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.config import (
    AnyReaderConfig,
    BarcodeConfig,
    ChafonConfig,
    HidReaderConfig,
    LlrpConfig,
    R2000Config,
    ThingMagicReaderConfig,
)
from agent.readers.drivers.base import (
    Power,
    PowerResult,
    ReaderDriver,
    ReaderGone,
    SettingNotSupported,
    power_text,
)
from agent.readers.status import ReaderStatus, power_json

log = logging.getLogger(__name__)

R2000_MAX_DBM = 33
R2000_POWER_PORTS = 8  # 0x76 takes 1, 4 or 8 values
CHAFON_MAX_DBM = 30
# Mercury read power (0x92): the M6e Nano stops at 27 dBm, the M6e/M7e at 31.5; the module
# refuses what it cannot do (0x0103 msg_power_too_high), so the agent allows up to 31.
THINGMAGIC_MAX_DBM = 31


def check_power(cfg: AnyReaderConfig, power: Power) -> Power:
    """The power if this reader can take it; ValueError (range) / SettingNotSupported."""
    if isinstance(cfg, BarcodeConfig | HidReaderConfig):
        raise SettingNotSupported(f"reader {cfg.name} is a barcode scanner: no output power")
    if isinstance(cfg, LlrpConfig):
        raise SettingNotSupported(
            f"reader {cfg.name}: an LLRP reader's power is set by power_dbm in the config "
            "(mapped to its power table at connect); changing it at run time is not supported")
    if isinstance(cfg, ChafonConfig):
        if cfg.work_mode == "push":
            raise SettingNotSupported(
                f"reader {cfg.name}: setting power is not supported in push mode (a Chafon "
                "reader in scan mode does not take commands reliably)")
        if isinstance(power, dict):
            values = set(power.values())
            if len(values) != 1:
                raise ValueError("Chafon readers have one power for all ports (0x2F)")
            power = values.pop()
        if not 0 <= power <= CHAFON_MAX_DBM:
            raise ValueError(f"dbm must be within 0..{CHAFON_MAX_DBM} for a Chafon reader")
        return power
    if isinstance(cfg, ThingMagicReaderConfig):
        if isinstance(power, dict):
            values = set(power.values())
            if len(values) != 1:
                raise ValueError("a Mercury module has one read power for all ports (0x92)")
            power = values.pop()
        if not 0 <= power <= THINGMAGIC_MAX_DBM:
            raise ValueError(f"dbm must be within 0..{THINGMAGIC_MAX_DBM} for a Mercury module")
        return power
    assert isinstance(cfg, R2000Config)
    if isinstance(power, int):
        if not 0 <= power <= R2000_MAX_DBM:
            raise ValueError(f"dbm must be within 0..{R2000_MAX_DBM} for an R2000 reader")
        return power
    if not power:
        raise ValueError("no port given")
    for port, dbm in power.items():
        if not 1 <= port <= R2000_POWER_PORTS:
            raise ValueError(f"port {port}: per-port power is for ports 1..{R2000_POWER_PORTS}")
        if not 0 <= dbm <= R2000_MAX_DBM:
            raise ValueError(f"port {port}: dbm must be within 0..{R2000_MAX_DBM}")
    return dict(power)


def power_from_wire(value: Any) -> Power:
    """A command's ``dbm``: a whole number, or ``{"port": dBm, ...}``; ValueError otherwise."""

    def whole(v: Any, what: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
            raise ValueError(f"{what} must be a whole number of dBm, got {v!r}")
        return int(v)

    if isinstance(value, Mapping):
        out: dict[int, int] = {}
        for key, v in value.items():
            try:
                port = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"port {key!r} is not a number") from None
            out[port] = whole(v, f"port {port}")
        return out
    return whole(value, "dbm")


def merge(old: Power | None, new: Power, ports: int) -> Power:
    """The desired power after ``new``: per-port values add to the previous ones."""
    if isinstance(new, int) or old is None:
        return new
    base = dict(old) if isinstance(old, dict) else dict.fromkeys(range(1, ports + 1), old)
    base.update(new)
    if len(set(base.values())) == 1 and set(base) >= set(range(1, ports + 1)):
        return next(iter(base.values()))
    return base


@dataclass(frozen=True, slots=True)
class PowerOutcome:
    applied: bool  # the reader reported the power after the change
    desired: Power
    reported: tuple[int, ...] | None = None
    written: bool = False  # False with applied: the reader had it already
    note: str | None = None

    def as_dict(self, reader: str) -> dict[str, Any]:
        out: dict[str, Any] = {"reader": reader, "applied": self.applied,
                               "desiredDbm": power_json(self.desired),
                               "reportedDbm": power_json(self.reported)}
        if self.applied:
            out["written"] = self.written
        else:
            out["queued"] = True
        if self.note:
            out["note"] = self.note
        return out


def _consume(fut: asyncio.Future[PowerResult]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a late failure is logged by the driver, not by asyncio


class ReaderControl:
    def __init__(self, cfg: AnyReaderConfig) -> None:
        self.cfg = cfg
        power = getattr(cfg, "power_dbm", None)
        # LLRP power (float dBm, mapped to the reader's table) is config-only: not shown here.
        self.desired: Power | None = None if isinstance(cfg, LlrpConfig) else power
        self._driver: ReaderDriver | None = None
        self._status: ReaderStatus | None = None

    @property
    def ports(self) -> int:
        antennas = getattr(self.cfg, "antennas", [1])
        return 8 if max(antennas) > 4 else 4

    # -- the supervisor's side -------------------------------------------------------------------

    def bind(self, status: ReaderStatus) -> None:
        """The status the current supervisor reports into."""
        self._status = status
        status.power_desired = self.desired

    def connect_config(self) -> AnyReaderConfig:
        """The reader config for a new connection: configure() applies the desired power."""
        cfg = self.cfg
        if (isinstance(cfg, BarcodeConfig | HidReaderConfig | LlrpConfig)
                or self.desired == cfg.power_dbm):
            return cfg
        return cfg.model_copy(update={"power_dbm": self.desired})

    def attach(self, driver: ReaderDriver) -> None:
        self._driver = driver

    def detach(self, driver: ReaderDriver, why: str) -> None:
        if self._driver is driver:
            self._driver = None
        driver.fail_requests(ReaderGone(why))

    # -- the app's side --------------------------------------------------------------------------

    async def set_power(self, power: Power, *, timeout_s: float) -> PowerOutcome:
        """Make ``power`` the desired power and apply it now if a reader is connected.

        Raises ValueError / SettingNotSupported before anything is kept, and
        ReaderCommandError when the reader refuses (the previous desired power is kept).
        """
        name = self.cfg.name
        power = check_power(self.cfg, power)
        previous = self.desired
        self.desired = merge(previous, power, self.ports)
        self._show()
        driver = self._driver
        state = self._status.state if self._status is not None else "stopped"
        if driver is None:
            where = "is stopped" if state == "stopped" else f"is not connected ({state})"
            return PowerOutcome(False, self.desired, note=(
                f"reader {name} {where}; {power_text(self.desired)} is kept and applied "
                "when it connects"))
        fut = driver.request_power(self.desired)
        fut.add_done_callback(_consume)
        try:
            async with asyncio.timeout(timeout_s):
                result = await asyncio.shield(fut)
        except TimeoutError:
            return PowerOutcome(False, self.desired, note=(
                f"reader {name} did not confirm within {timeout_s:g} s; the change stays "
                "queued (applied between inventory rounds, and on every connect)"))
        except ReaderGone as exc:
            return PowerOutcome(False, self.desired, note=(
                f"reader {name}: {exc}; {power_text(self.desired)} is kept and applied when "
                "it connects again"))
        except Exception:
            if self.desired == merge(previous, power, self.ports):
                self.desired = previous  # refused: do not push it on every reconnect
                self._show()
            raise
        log.info("reader %s: output power %s (reported %s)", name, power_text(self.desired),
                 power_text(result.reported))
        return PowerOutcome(True, self.desired, result.reported, result.written)

    def _show(self) -> None:
        if self._status is not None:
            self._status.power_desired = self.desired
