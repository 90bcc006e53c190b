"""Settings a reader should have, kept across connections (output power, reader settings).

One ReaderControl per configured reader, owned by the app and handed to the reader's
supervisor, lives longer than any connection: the desired power starts as the config's
``power_dbm``, a remote ``set power`` changes it, and every (re)connect applies it (a reader
replaced on the same port gets it too). While a driver is attached, a change is queued on it
and applied between inventory rounds; the caller learns what the reader reports afterwards.

Reader settings (antennas, session, inventory mode / target, LLRP reader_mode / search_mode)
are applied by the driver's configure() at connect, so a live change (``set_settings``) is
validated by building the reader's config model with it, kept as an override that
connect_config() applies, and made effective by ending the current connection cleanly: the
supervisor reconnects at once (no backoff), and the caller waits (bounded) until the reader is
connected again and reads back what the reader reports (LLRP: GET_ROSPECS of our ROSpec).
Reads pause only for that reconnect; what was accepted stays accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import ValidationError

from agent.config import (
    AnyReaderConfig,
    BarcodeConfig,
    ChafonConfig,
    HidReaderConfig,
    LlrpConfig,
    R2000Config,
    ThingMagicReaderConfig,
)
from agent.model import Read
from agent.readers.drivers.base import (
    Power,
    PowerResult,
    ReaderDriver,
    ReaderGone,
    SettingNotSupported,
    power_text,
)
from agent.readers.session import ReaderCommandError
from agent.readers.status import ReaderStatus, power_json

log = logging.getLogger(__name__)

R2000_MAX_DBM = 33
R2000_POWER_PORTS = 8  # 0x76 takes 1, 4 or 8 values
CHAFON_MAX_DBM = 30
# Mercury read power (0x92): the M6e Nano stops at 27 dBm, the M6e/M7e at 31.5; the module
# refuses what it cannot do (0x0103 msg_power_too_high), so the agent allows up to 31.
THINGMAGIC_MAX_DBM = 31
LLRP_MAX_DBM = 40  # as power_dbm in the config; the reader's table decides what it can do


def check_power(cfg: AnyReaderConfig, power: Power) -> Power:
    """The power if this reader can take it; ValueError (range) / SettingNotSupported."""
    if isinstance(cfg, BarcodeConfig | HidReaderConfig):
        raise SettingNotSupported(f"reader {cfg.name} is a barcode scanner: no output power")
    if isinstance(cfg, LlrpConfig):
        # Whole dBm from a command; the driver maps each to the reader's TransmitPowerTable
        # (the highest entry not above it), as at connect.
        levels = list(power.values()) if isinstance(power, dict) else [power]
        if isinstance(power, dict):
            if not power:
                raise ValueError("no antenna given")
            unknown = sorted(set(power) - set(cfg.antennas))
            if unknown:
                raise ValueError(f"antenna(s) {unknown} are not in this reader's antennas "
                                 f"{cfg.antennas}")
        if not all(0 <= v <= LLRP_MAX_DBM for v in levels):
            raise ValueError(f"dbm must be within 0..{LLRP_MAX_DBM} for an LLRP reader "
                             "(mapped to its power table)")
        return dict(power) if isinstance(power, dict) else power
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


def _whole_power(power: float | dict[int, float] | None) -> Power | None:
    """An LLRP config's power_dbm as whole dBm, or None when any value is a fraction."""
    if power is None:
        return None
    if isinstance(power, dict):
        if all(v == int(v) for v in power.values()):
            return {a: int(v) for a, v in power.items()}
        return None
    return int(power) if power == int(power) else None


def _collapse(power: dict[int, int], antennas: list[int]) -> Power:
    """One number when every antenna has the same power."""
    if set(power) >= set(antennas) and len(set(power.values())) == 1:
        return next(iter(power.values()))
    return power


# The settings a live change may touch, per driver (only keys of that driver's config model).
SETTING_KEYS: dict[str, tuple[str, ...]] = {
    "r2000": ("antennas", "session", "inventory", "target"),
    "chafon": ("antennas", "session", "target"),
    "llrp": ("antennas", "session", "reader_mode", "search_mode"),
    "thingmagic": ("antennas", "session", "target"),
}
RESTART_PROBLEM = "reconnecting to apply new reader settings"


def _literal_choices(model: type[Any], name: str) -> list[Any] | None:
    annotation = model.model_fields[name].annotation
    for arg in (annotation, *get_args(annotation)):
        choices = get_args(arg)
        if choices and all(isinstance(c, str) for c in choices):
            return list(choices)
    return None


def settings_choices(cfg: AnyReaderConfig, max_antennas: int | None = None) -> dict[str, Any]:
    """What the page offers for this reader: each settable key and its choices
    (``max_antennas``: the ports an LLRP reader reported, when it has connected)."""
    keys = SETTING_KEYS.get(cfg.driver, ())
    out: dict[str, Any] = {}
    for key in keys:
        if key == "antennas":
            most = max(getattr(cfg, "antennas", [1]))
            top = 4 if most <= 4 else 8 if most <= 8 else 16
            if isinstance(cfg, LlrpConfig):
                top = max(max_antennas or 4, most)
            if isinstance(cfg, ThingMagicReaderConfig):  # the module's ports, once it answered
                top = max(max_antennas or 4, most)
            if isinstance(cfg, ChafonConfig) and cfg.protocol == "uhfreader18":
                top = 1
            out[key] = list(range(1, top + 1))
        elif key == "session":
            out[key] = [0, 1, 2, 3]
        elif key == "reader_mode":
            out[key] = None  # a number or a name of the reader's RF mode table
        else:
            out[key] = _literal_choices(type(cfg), key)
    return out


def settings_of(cfg: AnyReaderConfig) -> dict[str, Any] | None:
    """The settable settings as they are in ``cfg`` (None: a reader without any)."""
    keys = SETTING_KEYS.get(cfg.driver)
    if keys is None:
        return None
    return {k: getattr(cfg, k) for k in keys}


def _issue_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def check_settings(cfg: AnyReaderConfig, change: Mapping[str, Any]) -> AnyReaderConfig:
    """``cfg`` with ``change`` applied, validated by the reader's own config model.

    SettingNotSupported for a reader without such settings; ValueError naming the field for
    a key this driver does not have or a value its model refuses."""
    keys = SETTING_KEYS.get(cfg.driver)
    if keys is None:
        raise SettingNotSupported(
            f"reader {cfg.name} is a {cfg.driver} reader: it has no antennas/session settings")
    if not change:
        raise ValueError(f"no setting given; a {cfg.driver} reader takes {', '.join(keys)}")
    unknown = sorted(set(change) - set(keys))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a setting of a {cfg.driver} reader "
                         f"(it takes {', '.join(keys)})")
    for key, value in change.items():  # no lax coercion from a command: true is not 1
        whole = isinstance(value, int) and not isinstance(value, bool)
        if key == "session" and not (whole or value is None):  # null: the reader's own
            raise ValueError(f"session: expected a whole number 0..3, got {value!r}")
        if key == "antennas" and not (isinstance(value, list) and all(
                isinstance(a, int) and not isinstance(a, bool) for a in value)):
            raise ValueError(f"antennas: expected a list of antenna numbers, got {value!r}")
        if key in ("inventory", "target", "search_mode") and not (
                isinstance(value, str) or (key != "inventory" and value is None)):
            raise ValueError(f"{key}: expected one of its names, got {value!r}")
        if key == "reader_mode" and not (whole or value is None or isinstance(value, str)):
            raise ValueError(f"reader_mode: expected a number or a name, got {value!r}")
    data = cfg.model_dump(exclude_unset=True)
    data.update(change)
    try:
        new: AnyReaderConfig = type(cfg).model_validate(data)
    except ValidationError as exc:
        raise ValueError(_issue_text(exc)) from None
    return new


@dataclass(frozen=True, slots=True)
class SettingsOutcome:
    confirmed: bool
    desired: dict[str, Any]  # the settings this change asked for (validated values)
    read_back: dict[str, Any] | None = None  # what the reader reported (None: cannot tell)
    verified_by: str | None = None  # "GET_ROSPECS", or "connect" (configure() succeeded)
    note: str | None = None
    mismatch: list[str] = field(default_factory=list)

    def as_dict(self, reader: str) -> dict[str, Any]:
        out: dict[str, Any] = {"reader": reader, "confirmed": self.confirmed,
                               "desired": self.desired, "readBack": self.read_back,
                               "verifiedBy": self.verified_by}
        if not self.confirmed:
            out["queued"] = not self.mismatch
        if self.mismatch:
            out["mismatch"] = self.mismatch
        if self.note:
            out["note"] = self.note
        return out


def compare_read_back(desired: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    """What the reader reports otherwise than asked (only keys the read-back carries)."""
    out = []
    if "antennas" in desired and "antennas" in got \
            and sorted(got["antennas"]) != sorted(desired["antennas"]):
        out.append(f"antennas: asked {desired['antennas']}, the reader reports {got['antennas']}")
    # Asked None: the reader's own, whatever it reports.
    out.extend(f"{key}: asked {desired[key]}, the reader reports {got[key]}"
               for key in ("session", "target")
               if desired.get(key) is not None and got.get(key) is not None
               and got[key] != desired[key])
    return out


@dataclass(frozen=True, slots=True)
class PowerOutcome:
    applied: bool  # the reader reported the power after the change
    desired: Power
    reported: tuple[float, ...] | None = None
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
        # LLRP power_dbm may be a fraction (mapped to the reader's table); a command takes
        # whole dBm, so a fractional config value stays the config's (desired None) until one.
        self.desired: Power | None = _whole_power(power) if isinstance(cfg, LlrpConfig) \
            else power
        self._driver: ReaderDriver | None = None
        self._status: ReaderStatus | None = None
        # Live reader settings: the changes on top of the config, applied at every connect.
        self.overrides: dict[str, Any] = {}
        self.generation = 0  # bumped by every settings change: connections built before end
        self._up_gen = -1  # the generation of the connection configured last
        self._failed: tuple[int, str] | None = None  # a connection of that generation failed
        self._changed: asyncio.Event | None = None
        self._scope: asyncio.Timeout | None = None
        self._lock: asyncio.Lock | None = None
        self.confirming = False  # a settings change waits: the next connect reads back

    @property
    def ports(self) -> int:
        antennas = getattr(self.cfg, "antennas", [1])
        return 8 if max(antennas) > 4 else 4

    # -- the supervisor's side -------------------------------------------------------------------

    def bind(self, status: ReaderStatus) -> None:
        """The status the current supervisor reports into."""
        self._status = status
        status.power_desired = self.desired
        status.settings = settings_of(self.settings_config())

    def settings_config(self) -> AnyReaderConfig:
        """The config with the live settings changes (not the power)."""
        if not self.overrides:
            return self.cfg
        return check_settings(self.cfg, self.overrides)

    def connect_config(self) -> AnyReaderConfig:
        """The reader config for a new connection: configure() applies the desired power and
        the reader settings changed live."""
        cfg = self.settings_config()
        if (isinstance(cfg, BarcodeConfig | HidReaderConfig) or self.desired is None
                or self.desired == cfg.power_dbm):
            return cfg
        if isinstance(cfg, LlrpConfig) and isinstance(self.desired, dict):
            # Antennas changed live since: power only for the antennas the reader uses.
            kept = {a: d for a, d in self.desired.items() if a in cfg.antennas}
            return cfg.model_copy(update={"power_dbm": kept or None})
        return cfg.model_copy(update={"power_dbm": self.desired})

    def attach(self, driver: ReaderDriver) -> None:
        self._driver = driver

    def configured(self, driver: ReaderDriver, built: int) -> None:
        """The supervisor: a connection built at generation ``built`` is configured."""
        self._up_gen = max(self._up_gen, built)
        if self._status is not None:
            self._status.settings_read_back = getattr(driver, "read_back", None)
        self._notify()

    def connect_failed(self, built: int, problem: str, *, refused: bool) -> None:
        """The supervisor: a connection built at ``built`` failed before it was configured;
        ``refused``: the reader refused something (ReaderCommandError), not a lost link."""
        if refused:
            self._failed = (built, problem)
            self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def pump(self, reads: AsyncIterator[Read], built: int,
                   put_nowait: Callable[[Read], bool]) -> Read | None:
        """The driver's reads, each handed to ``put_nowait``, inside one interruption scope
        rather than one per read (issue 12: entering a scope per read was
        4 % of a busy agent's time). Returns a read ``put_nowait`` refused (the caller waits
        for room, hands it over itself and calls again), or None when a settings change wants
        a new connection. ``put_nowait`` never awaits, so the interruption only ever lands in
        the driver's wait for its next read: a read received is never dropped."""
        if self.generation != built:
            return None
        scope = asyncio.timeout(None)
        self._scope = scope
        try:
            async with scope:
                while self.generation == built:
                    read = await anext(reads)
                    if not put_nowait(read):
                        return read
                return None
        except TimeoutError:
            if scope.expired() and self.generation != built:
                return None
            raise
        finally:
            self._scope = None

    def _restart(self) -> int:
        """End the current connection cleanly (the supervisor reconnects with connect_config)."""
        self.generation += 1
        scope = self._scope
        if scope is not None and not scope.expired():
            scope.reschedule(asyncio.get_running_loop().time())
        return self.generation

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
        cfg = self.settings_config()
        power = check_power(cfg, power)
        previous = self.desired
        if (isinstance(cfg, LlrpConfig) and previous is None and isinstance(power, dict)
                and cfg.power_dbm is not None and set(power) != set(cfg.antennas)):
            raise ValueError(f"the config's power_dbm {cfg.power_dbm} is not whole dBm: give "
                             f"every antenna ({cfg.antennas}) or one power for all")
        self.desired = merge(previous, power, self.ports)
        if isinstance(cfg, LlrpConfig) and isinstance(self.desired, dict):
            self.desired = _collapse({a: d for a, d in self.desired.items()
                                      if a in cfg.antennas}, cfg.antennas)
        asked = self.desired
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
            if self.desired == asked:
                self.desired = previous  # refused: do not push it on every reconnect
                self._show()
            raise
        log.info("reader %s: output power %s (reported %s)", name, power_text(self.desired),
                 power_text(result.reported))
        return PowerOutcome(True, self.desired, result.reported, result.written)

    async def set_settings(self, change: Mapping[str, Any], *, timeout_s: float
                           ) -> SettingsOutcome:
        """Make ``change`` (antennas, session, ...) part of the reader's settings and apply it
        now: reconnect, wait (bounded) until the reader is configured with it, read back.

        Raises ValueError / SettingNotSupported before anything is kept, and
        ReaderCommandError when the reader refuses the new configuration at connect (the
        previous settings are restored and applied again). A connection lost meanwhile (an
        unplug) is not a refusal: the settings stay and the answer is "not confirmed"."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._set_settings(change, timeout_s)

    async def _set_settings(self, change: Mapping[str, Any], timeout_s: float
                            ) -> SettingsOutcome:
        name = self.cfg.name
        new_cfg = check_settings(self.settings_config(), change)
        wanted = {k: getattr(new_cfg, k) for k in change}
        previous = dict(self.overrides)
        base = settings_of(self.cfg) or {}
        merged = {**self.overrides, **wanted}
        self.overrides = {k: v for k, v in merged.items() if base.get(k) != v}
        self._show()
        state = self._status.state if self._status is not None else "stopped"
        if state == "stopped":
            self.generation += 1
            return SettingsOutcome(False, wanted, note=(
                f"reader {name} is stopped; the settings are kept and applied when it starts"))
        log.info("reader %s: new settings %s: reconnecting to apply them", name, wanted)
        self.confirming = True
        gen = self._restart()
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while self._up_gen < gen:
                failed = self._failed
                if failed is not None and failed[0] >= gen:
                    self.overrides = previous
                    self._show()
                    self._restart()
                    raise ReaderCommandError(
                        f"reader {name} did not take the new settings: {failed[1]}; the "
                        "previous settings are restored")
                self._changed.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._changed.wait()
                except TimeoutError:
                    return SettingsOutcome(False, wanted, note=(
                        f"reader {name} was not connected again within {timeout_s:g} s "
                        f"({self._status.state if self._status else 'stopped'}); the "
                        "settings are kept and applied when it connects"))
        finally:
            self._changed = None
            self.confirming = False
        got = self._status.settings_read_back if self._status is not None else None
        if got is None:
            log.info("reader %s: connected again with %s (the reader cannot report them)",
                     name, wanted)
            return SettingsOutcome(True, wanted, None, "connect", note=(
                f"a {self.cfg.driver} reader cannot report its antennas or session: confirmed "
                "means it was configured with them at connect and reads go on"))
        mismatch = compare_read_back(wanted, got)
        if mismatch:
            log.warning("reader %s: settings not as asked: %s", name, "; ".join(mismatch))
            return SettingsOutcome(False, wanted, got, str(got.get("source")),
                                   note="the reader reports other settings than asked",
                                   mismatch=mismatch)
        log.info("reader %s: settings %s confirmed by %s", name, wanted, got.get("source"))
        return SettingsOutcome(True, wanted, got, str(got.get("source")))

    def _show(self) -> None:
        if self._status is not None:
            self._status.power_desired = self.desired
            self._status.settings = settings_of(self.settings_config())
