"""After a config "apply" from the page: keep the new config only if it works.

At start the agent looks for ``<config>.apply.json``. In state "probation" it waits up to
``confirmS`` for every enabled reader and the broker to be connected; then the note says
"confirmed", or the backup is put back ("rolled back", with the reason) and the agent
restarts with it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from agent.fieldtools.runtime import Runtime
from agent.fieldtools.web import configedit

log = logging.getLogger(__name__)

POLL_S = 0.25


def _missing(rt: Runtime) -> list[str]:
    out = [f"reader {r.name} is {rt.readers[r.name].state}"
           + (f" ({rt.readers[r.name].last_error})" if rt.readers[r.name].last_error else "")
           for r in rt.cfg.readers
           if r.enabled and r.name in rt.readers and rt.readers[r.name].state != "connected"]
    if not rt.uplink.connected:
        m = rt.cfg.uplink.mqtt
        out.append(f"the broker {m.host}:{m.port} is not connected")
    return out


async def watch_apply(rt: Runtime) -> None:
    path = rt.config_path
    if path is None:
        return
    note = await asyncio.to_thread(configedit.read_note, path)
    if note is None or note.get("state") != "probation":
        return
    limit = float(note.get("confirmS") or rt.cfg.http.apply_confirm_s)
    log.info("config apply: the new configuration %s has %g s to connect its readers and the "
             "broker", path, limit)
    deadline = time.monotonic() + limit
    # Polled: reader states and the broker connection change in other layers, which signal
    # nothing to the field tools.
    while (missing := _missing(rt)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(POLL_S)
    if not missing:
        await asyncio.to_thread(configedit.write_note, path, {
            **note, "state": "confirmed", "finishedAt": time.time()})
        log.info("config apply: the new configuration %s is confirmed (readers and broker "
                 "connected)", path)
        return
    reason = f"within {limit:g} s: " + "; ".join(missing)
    await asyncio.to_thread(configedit.roll_back, path, note, reason)
    if rt.restart is not None:
        rt.restart()
