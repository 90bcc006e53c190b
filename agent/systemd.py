"""sd_notify for a systemd ``Type=notify`` service, without dependencies.

systemd passes the address of its notification socket in ``NOTIFY_SOCKET``: a file-system path,
or a Linux abstract-namespace name when it starts with ``@``. A message is one datagram of
newline-separated ``KEY=VALUE`` assignments (sd_notify(3)): ``READY=1``, ``STATUS=...``,
``STOPPING=1``, ``WATCHDOG=1``. Outside systemd every call is a no-op that returns False, so the
agent runs unchanged from a shell and under tests.

With ``WatchdogSec=`` systemd sets ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) and restarts the
service when no ``WATCHDOG=1`` arrives for that long. :func:`watchdog_loop` pings at half the
interval from the event loop, and only while the caller's health check passes: a blocked event
loop or a dead pipeline stops the pings, and systemd restarts the agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# systemd reads its notification socket promptly; the bound only matters if PID 1 is stuck.
_SEND_TIMEOUT_S = 1.0


def _address() -> str | bytes | None:
    value = os.environ.get("NOTIFY_SOCKET", "")
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])  # abstract namespace: leading NUL, no file
    if value:
        # e.g. "vsock:CID:PORT" (systemd >= 254, for virtual machines): not needed on a gateway.
        log.debug("NOTIFY_SOCKET=%s: unsupported address, not notifying systemd", value)
    return None


def notify(state: str) -> bool:
    """Send ``state`` (``KEY=VALUE`` lines) to systemd. False outside systemd or on failure."""
    if not state:
        raise ValueError("sd_notify state must not be empty")
    address = _address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning(
            "sd_notify %s to %s failed: %s",
            state.partition("\n")[0], os.environ.get("NOTIFY_SOCKET"), exc,
        )
        return False
    return True


def _one_line(text: str) -> str:
    # A newline would start another assignment (a status text could otherwise say READY=1).
    return " ".join(text.splitlines())


def ready(status_text: str | None = None) -> bool:
    """Startup finished: systemd marks the unit started (``Type=notify``)."""
    return notify("READY=1" if status_text is None else f"READY=1\nSTATUS={_one_line(status_text)}")


def stopping(status_text: str | None = None) -> bool:
    """Shutdown began: ``systemctl status`` shows "deactivating" instead of a hang."""
    return notify(
        "STOPPING=1" if status_text is None else f"STOPPING=1\nSTATUS={_one_line(status_text)}"
    )


def reloading(status_text: str) -> bool:
    """The agent stops to run again in the same process (a config applied from the page):
    ``RELOADING=1`` (with ``MONOTONIC_USEC``, sd_notify(3)) keeps the unit active until the
    new image sends ``READY=1``; ``STOPPING=1`` would mark it deactivating."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={_one_line(status_text)}")


def status(text: str) -> bool:
    """One line shown by ``systemctl status edge-agent`` ("Status: ...")."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """One watchdog keep-alive ping."""
    return notify("WATCHDOG=1")


def extend_timeout(seconds: float) -> bool:
    """Ask for ``seconds`` more before the start or stop timeout (e.g. a long buffer salvage)."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")


def watchdog_interval_s() -> float | None:
    """The watchdog timeout systemd set for this process, or None when there is none.

    ``WATCHDOG_PID`` names the process the watchdog is meant for; when it is another process
    (the variables were inherited by a child), the watchdog is not ours.
    """
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


async def watchdog_loop(is_healthy: Callable[[], bool]) -> None:
    """Ping the watchdog every half interval while ``is_healthy()`` is true.

    Returns at once when systemd set no watchdog. Run it as a named task in the agent's
    TaskGroup: it pings from the event loop itself, so a blocked loop stops the pings too.
    ``is_healthy`` must be quick and must not block; an exception from it is a bug and ends
    the loop (and with it the TaskGroup).
    """
    interval_s = watchdog_interval_s()
    if interval_s is None:
        log.debug("systemd watchdog not enabled")
        return
    withheld = False
    while True:
        if is_healthy():
            if withheld:
                log.warning("health check passes again: watchdog pings resumed")
                withheld = False
            watchdog()
        elif not withheld:
            log.error(
                "health check failed: watchdog pings withheld, systemd restarts the agent "
                "within %.0f s unless it recovers", interval_s,
            )
            withheld = True
        await asyncio.sleep(interval_s / 2)
