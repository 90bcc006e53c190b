"""Each reader on its own supervisor: expected failures are retried with full-jitter backoff.

On every connection attempt the configured port is resolved again (``usb:VID:PID[:SERIAL]``
specs follow the adapter to whatever ttyUSB name it got; a hid scanner's spec is matched among
the input devices, to its /dev/input/eventN, and opened as an InputLink), opened, and a fresh
driver from the registry (keyed by the config's ``driver``) identifies and configures the
reader, then streams reads. A reader that vanishes (USB unplug, EIO, EOF, TCP reset), cannot
be found (PortError) or falls silent is closed and reopened with backoff, re-identified and
re-configured, without disturbing other readers or the uplink. Anything else is a bug: it
propagates, the TaskGroup ends, the process exits, systemd restarts it.

The reader's ReaderControl (desired power) outlives the connections: each new driver gets the
desired power in its config (configure() applies it), and is attached to the control from its
creation, so a change requested meanwhile is queued on it and applied between rounds. When the
connection ends, requests still queued fail with ReaderGone (the desired power stays).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

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
from agent.readers.control import RESTART_PROBLEM, ReaderControl
from agent.readers.drivers.barcode import BarcodeReader
from agent.readers.drivers.base import ReaderDriver
from agent.readers.drivers.chafon import ChafonReader
from agent.readers.drivers.hid import HidReader
from agent.readers.drivers.llrp import LlrpReader
from agent.readers.drivers.r2000 import R2000Reader
from agent.readers.drivers.thingmagic import ThingMagicReader
from agent.readers.input_devices import resolve_input_port
from agent.readers.link import InputLink, Link, LinkError, SerialLink, TlsLink, tls_context
from agent.readers.ports import PortError, resolve_port
from agent.readers.session import ReaderCommandError, ReaderError
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)

OpenLink = Callable[[str, int], Awaitable[Link]]
OpenInput = Callable[[HidReaderConfig, str], Awaitable[Link]]
ResolvePort = Callable[[str], Awaitable[str]]
DriverFactory = Callable[[AnyReaderConfig, Link, ReaderStatus], ReaderDriver]


def _r2000(cfg: AnyReaderConfig, link: Link, status: ReaderStatus) -> ReaderDriver:
    assert isinstance(cfg, R2000Config)
    return R2000Reader(cfg, link, status)


def _chafon(cfg: AnyReaderConfig, link: Link, status: ReaderStatus) -> ReaderDriver:
    assert isinstance(cfg, ChafonConfig)
    return ChafonReader(cfg, link, status)


def _thingmagic(cfg: AnyReaderConfig, link: Link, status: ReaderStatus) -> ReaderDriver:
    assert isinstance(cfg, ThingMagicReaderConfig)
    return ThingMagicReader(cfg, link, status)


def _barcode(cfg: AnyReaderConfig, link: Link, status: ReaderStatus) -> ReaderDriver:
    assert isinstance(cfg, BarcodeConfig)
    return BarcodeReader(cfg, link, status)


def _hid(cfg: AnyReaderConfig, link: Link, status: ReaderStatus) -> ReaderDriver:
    assert isinstance(cfg, HidReaderConfig)
    return HidReader(cfg, link, status)


def _llrp(cfg: AnyReaderConfig, link: Link, status: ReaderStatus) -> ReaderDriver:
    assert isinstance(cfg, LlrpConfig)
    return LlrpReader(cfg, link, status)


DRIVERS: dict[str, DriverFactory] = {"r2000": _r2000, "chafon": _chafon,
                                     "thingmagic": _thingmagic, "barcode": _barcode,
                                     "llrp": _llrp, "hid": _hid}


def _line_summary(stats: dict[str, int]) -> str:
    shown = [f"{k} {v}" for k, v in stats.items() if v and k != "bytes_in"]
    return ", ".join(shown) or "nothing received"


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter: ``uniform(0, min(cap, base * 2**attempt))``."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))


async def _resolve(spec: str) -> str:
    # list_ports() walks sysfs: cheap, but blocking, so off the event loop.
    return await asyncio.to_thread(resolve_port, spec)


async def _resolve_input(spec: str) -> str:
    # A sysfs walk: cheap, but blocking, so off the event loop.
    return await asyncio.to_thread(resolve_input_port, spec)


async def _open_input(cfg: HidReaderConfig, device: str) -> Link:
    return await InputLink.open(device, grab=cfg.grab)


async def supervise_reader(
    cfg: AnyReaderConfig,
    put: Callable[[Read], Awaitable[None]],
    status: ReaderStatus,
    *,
    open_link: OpenLink = SerialLink.open,
    resolve: ResolvePort = _resolve,
    drivers: dict[str, DriverFactory] | None = None,
    rng: random.Random | None = None,
    control: ReaderControl | None = None,
    resolve_input: ResolvePort = _resolve_input,
    open_input: OpenInput = _open_input,
    put_nowait: Callable[[Read], bool] | None = None,
) -> None:
    """Connect, configure and read one reader forever, reconnecting with jittered backoff.

    ``put`` hands a read over, waiting for room; ``put_nowait``, if given, without waiting
    (False: no room, nothing done), which lets reads flow without a wait per read."""
    make = (drivers or DRIVERS)[cfg.driver]
    control = control or ReaderControl(cfg)
    control.bind(status)
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 0
    last_problem: str | None = None
    while True:
        problem: str
        try:
            hid = isinstance(cfg, HidReaderConfig)
            device = await (resolve_input if hid else resolve)(cfg.link_spec)
            status.device = device
            link: Link
            if isinstance(cfg, HidReaderConfig):  # an input device, not a serial line
                link = await open_input(cfg, device)
            elif device.startswith("tls://") and isinstance(cfg, LlrpConfig) and cfg.tls:
                link = await TlsLink.open(device, tls_context(cfg.tls))
            else:
                link = await open_link(device, cfg.link_baudrate)
        except (LinkError, PortError, OSError) as exc:
            problem = str(exc) or type(exc).__name__
        else:
            built = control.generation
            reader = make(control.connect_config(), link, status)
            if control.confirming:  # a settings change waits for the reader's read-back
                reader.read_back_wanted = True
            status.attach(reader.session.decoder.stats)
            status.connects += 1
            control.attach(reader)
            problem = "connection closed"
            up = False
            try:
                who = await reader.identify()
                spec = cfg.link_spec
                where = spec if device == spec else f"{spec} ({device})"
                log.info("reader %s: %s on %s", cfg.name, who, where)
                await reader.configure()
                status.state = "connected"
                status.last_error = None
                up = True
                control.configured(reader, built)
                attempt = 0
                last_problem = None
                reads = reader.reads()

                def handed(read: Read) -> bool:
                    if put_nowait is None or not put_nowait(read):
                        return False  # put() it below, outside the interruption scope
                    status.reads_total += 1
                    return True

                try:
                    # Reads handed over without a wait go in one interruption scope; a read
                    # that must wait for room (or every read, without put_nowait) comes back.
                    while (read := await control.pump(reads, built, handed)) is not None:
                        status.reads_total += 1
                        await put(read)
                finally:
                    # Close the generator now, while the link is open: a driver's cleanup (the
                    # ThingMagic stop-reading) must reach the reader, not run at GC after close.
                    aclose = getattr(reads, "aclose", None)
                    if aclose is not None:
                        await aclose()
                problem = RESTART_PROBLEM
                # A settings change: leave the reader tidy (LLRP: STOP_ROSPEC,
                # CLOSE_CONNECTION), then connect again at once with the new settings.
                await reader.goodbye()
            except StopAsyncIteration:
                problem = "inventory ended"
            except (LinkError, ReaderError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
                if not up:
                    control.connect_failed(built, problem,
                                           refused=isinstance(exc, ReaderCommandError))
            except asyncio.CancelledError:
                # The agent stops: a driver that can leave its reader tidy does (LLRP:
                # STOP_ROSPEC, CLOSE_CONNECTION), bounded by the driver; then the stop goes on.
                if status.state == "connected":
                    await reader.goodbye()
                raise
            finally:
                control.detach(reader, f"connection lost ({problem})")
                status.detach()
                await link.aclose()
        if problem == RESTART_PROBLEM:
            status.state = "reconnecting"
            log.info("reader %s: %s", cfg.name, problem)
            attempt = 0
            continue
        if status.state == "connected":
            status.disconnects += 1
        status.state = "reconnecting"
        status.last_error = problem
        if problem != last_problem:
            log.warning("reader %s: %s; reconnecting with backoff (line so far: %s)",
                        cfg.name, problem, _line_summary(status.decoder))
            last_problem = problem
        else:
            log.debug("reader %s: still failing: %s", cfg.name, problem)
        delay = backoff_s(attempt, cfg.reconnect_min_s, cfg.reconnect_max_s, rng)
        attempt += 1
        await asyncio.sleep(delay)
