"""Each reader on its own supervisor: expected failures are retried with full-jitter backoff.

A reader that vanishes (USB unplug, EIO, EOF, TCP reset) or falls silent is reopened,
re-identified and re-configured without disturbing other readers or the uplink.
Anything else is a bug: it propagates, the TaskGroup ends, the process exits, systemd restarts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from agent.config import R2000Config
from agent.model import Read
from agent.readers.drivers.r2000 import R2000Reader
from agent.readers.link import Link, LinkError, SerialLink
from agent.readers.session import ReaderError
from agent.readers.status import ReaderStatus

log = logging.getLogger(__name__)

ReaderConfigT = R2000Config
OpenLink = Callable[[str, int], Awaitable[Link]]


def backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full jitter: ``uniform(0, min(cap, base * 2**attempt))``."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))


async def supervise_reader(
    cfg: ReaderConfigT,
    put: Callable[[Read], Awaitable[None]],
    status: ReaderStatus,
    *,
    open_link: OpenLink = SerialLink.open,
    rng: random.Random | None = None,
) -> None:
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    attempt = 0
    last_problem: str | None = None
    while True:
        problem: str
        try:
            link = await open_link(cfg.port, cfg.baudrate)
        except (LinkError, OSError) as exc:
            problem = str(exc) or type(exc).__name__
        else:
            reader = R2000Reader(cfg, link, status)
            status.connects += 1
            try:
                status.firmware = await reader.identify()
                log.info("reader %s: R2000 firmware %s on %s", cfg.name, status.firmware, cfg.port)
                status.state = "connected"
                status.last_error = None
                attempt = 0
                last_problem = None
                async for read in reader.reads():
                    status.reads_total += 1
                    await put(read)
                problem = "inventory ended"
            except (LinkError, ReaderError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
            finally:
                status.decoder = reader.session.decoder.stats.as_dict()
                await link.aclose()
        if status.state == "connected":
            status.disconnects += 1
        status.state = "reconnecting"
        status.last_error = problem
        if problem != last_problem:
            log.warning("reader %s: %s; reconnecting with backoff", cfg.name, problem)
            last_problem = problem
        else:
            log.debug("reader %s: still failing: %s", cfg.name, problem)
        delay = backoff_s(attempt, cfg.reconnect_min_s, cfg.reconnect_max_s, rng)
        attempt += 1
        await asyncio.sleep(delay)
