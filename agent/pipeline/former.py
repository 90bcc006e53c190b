"""Forming barcode scans' events in a process of its own, while a line is busy (issue 12).

The agent is one process of Python: its event loop, the buffer's writer thread and the MQTT
thread share one GIL. On a busy scanner line, forming each scan's event (its JSON text and
its CBV 2.0 event hash) was about a third of what held the GIL (py-spy, docs/benchmarks.md),
and the agent topped out near 15,000 events/s with most of a second core idle. Forming is
pure (:func:`form_barcode`: a scan in, a text out), so it can run in another interpreter:

* :class:`EventFormer` owns a child process (``serve``) and hands it whole batches of scans
  through a pipe, as pickled tuples (about 0.3 µs a scan to encode, against 10-20 µs to form).
* Only batches of at least ``min_reads`` direct scans go there. A quiet line never starts the
  process (no memory spent, no round trip added to a lone scan's latency); the first busy
  batch asks for it, and batches are formed on the event loop until it is ready. After
  ``idle_stop_s`` without a busy batch the process is stopped, and its memory freed.
* The durability contract is unchanged: the ingest still commits a batch's reads, as their
  events, in one transaction; only where the text is computed moved. A batch the process did
  not answer (it died, hung past ``FORM_TIMEOUT_S``, or failed) is formed on the event loop
  by the same function, so nothing is lost and the events are the same; the failure is logged
  and counted, and the process is started again (after ``restart_s``) when a batch wants it.

Wire (both ways): a 4-byte big-endian length, then a pickle. The child's first frame is
``("ready", pid)``; a request is ``(timezone, {reader: EventMapping}, [item, ...])`` and its
answer ``("ok", [text, ...])`` or ``("error", traceback)``. The child exits at EOF (the agent
is gone, even by SIGKILL) and ignores SIGINT and SIGTERM (a Ctrl-C or systemd's stop reaches
every process of the agent; the agent stops this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.model import barcode_read
from agent.pipeline.barcode_events import barcode_json
from agent.pipeline.mapping import EventMapping

log = logging.getLogger(__name__)

# (reader, data, symbology, read_at, clock_synced, source_id, step_s): a scan whose event is
# to be formed, its time already corrected for a clock step (step_s says by how much).
BarcodeItem = tuple[str, bytes, str | None, datetime, bool, str, float]

# A line the event loop cannot keep up with only: the ingest's batches reach this size when
# the loop falls behind (its largest is 2,000). At 512, batches of a 20,000 lines/s line crossed
# it, and the pickling both ways and the second interpreter cost 5-9 ms of CPU per 1,000
# events and 42 MB, for no more events/s (issue 12, docs/benchmarks.md "2026-12-08, later").
FORMER_MIN_READS = 1500
FORM_TIMEOUT_S = 5.0  # a batch of 2,000 takes the child about 30 ms
RESTART_S = 5.0
IDLE_STOP_S = 60.0  # no busy batch for this long: the process is stopped (its ~37 MB freed)
START_TIMEOUT_S = 30.0  # imports on a Pi's SD card, cold
_HEAD = struct.Struct(">I")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding agent/
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from agent.pipeline.former import serve; serve()")


def form_barcode(item: BarcodeItem, timezone: str, mappings: Mapping[str, EventMapping]) -> str:
    """The stored JSON text of one scan's event: what Pipeline forms on the event loop."""
    reader, data, symbology, read_at, clock_synced, source_id, step_s = item
    read = barcode_read(reader, data, symbology, read_at, clock_synced)
    return barcode_json(read, timezone=timezone, mapping=mappings[reader], source_id=source_id,
                        step_s=step_s)


class EventFormer:
    """The agent's side of the forming process; :meth:`run` is its task (the app's TaskGroup)."""

    def __init__(self, *, min_reads: int = FORMER_MIN_READS, restart_s: float = RESTART_S,
                 form_timeout_s: float = FORM_TIMEOUT_S, idle_stop_s: float = IDLE_STOP_S,
                 argv: Sequence[str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_reads = min_reads
        self._restart_s = restart_s
        self._form_timeout_s = form_timeout_s
        self._idle_stop_s = idle_stop_s
        self._used_at_s = 0.0  # the last batch's end (or the start), on ``clock``
        self._busy = False  # a batch is in the process
        self._argv = list(argv) if argv is not None else [
            sys.executable, "-I", "-c", _BOOT, _PACKAGE_ROOT]
        self._clock = clock
        self._wanted = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = False
        self.pid: int | None = None
        self.starts = 0
        self.batches = 0  # batches formed there
        self.events = 0
        self.failures = 0  # batches it did not answer (formed on the event loop instead)

    @property
    def ready(self) -> bool:
        return self._ready

    def as_dict(self) -> dict[str, Any]:
        """For ``edge-agent status`` and /metrics: ``running`` while a process is ready."""
        return {"running": self._ready, "pid": self.pid if self._ready else None,
                "starts": self.starts, "batches": self.batches, "events": self.events,
                "failures": self.failures}

    def wants(self, reads: int) -> bool:
        """Should a batch of ``reads`` direct scans be formed there? False while the process
        is not ready; a busy batch then asks :meth:`run` to start it."""
        if reads < self.min_reads:
            return False
        if self._ready:
            return True
        self._wanted.set()
        return False

    async def run(self) -> None:
        """Start the process when a busy batch wants it; start it again after it died."""
        while True:
            await self._wanted.wait()
            try:
                proc = await self._start()
            except (OSError, TimeoutError, EOFError, pickle.UnpicklingError, ValueError) as exc:
                log.warning("event former: cannot start the process (%s); events are formed "
                            "on the event loop, again in %.0f s", exc, self._restart_s)
                await asyncio.sleep(self._restart_s)
                continue
            try:
                rc = await self._watch(proc)
            finally:
                self._ready = False
                self._proc = None
                if proc.returncode is None:  # cancelled: the agent stops
                    await _stop(proc)
            self._wanted.clear()
            if rc is None:
                log.info("event former: no busy batch for %g s; process %d stopped (the next "
                         "busy batch starts it again)", self._idle_stop_s, proc.pid)
                continue
            log.warning("event former: the process (pid %s) exited with %s; events are formed "
                        "on the event loop until it is back (in %.0f s, if a line is busy)",
                        proc.pid, rc, self._restart_s)
            await asyncio.sleep(self._restart_s)

    async def _watch(self, proc: asyncio.subprocess.Process) -> int | None:
        """Wait for the process to exit (its exit code), or stop it when no batch came for
        ``idle_stop_s`` (None): a burst, or the drain after an outage (the writer busy, the
        ingest's batches grow), must not keep its memory for the rest of the agent's life."""
        while True:
            left_s = self._idle_stop_s - (self._clock() - self._used_at_s)
            try:
                async with asyncio.timeout(max(0.0, left_s)):
                    return await proc.wait()
            except TimeoutError:
                if self._busy or self._clock() - self._used_at_s < self._idle_stop_s:
                    continue
            self._ready = False  # no batch goes there from now on
            await _stop(proc, gently=True)
            return None

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=4 * 1024 * 1024)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                _check_hello(await _read_frame(proc))
        except BaseException:
            await _stop(proc)
            raise
        self._proc = proc
        self._ready = True
        self._used_at_s = self._clock()
        self.pid = proc.pid
        self.starts += 1
        log.info("event former: process %d ready; busy batches of scans (%d or more) are "
                 "formed there", proc.pid, self.min_reads)
        return proc

    async def form(self, timezone: str, mappings: Mapping[str, EventMapping],
                   items: Sequence[BarcodeItem]) -> list[str] | None:
        """The texts of these scans' events, in order; None when the process did not answer
        (logged and counted): the caller forms them itself, with :func:`form_barcode`."""
        proc = self._proc
        if proc is None or not self._ready or proc.stdin is None:
            return None
        body = pickle.dumps((timezone, dict(mappings), list(items)), protocol=5)
        self._busy = True
        try:
            async with asyncio.timeout(self._form_timeout_s):
                proc.stdin.writelines((_HEAD.pack(len(body)), body))
                await proc.stdin.drain()
                reply = await _read_frame(proc)
        except (OSError, EOFError, TimeoutError, pickle.UnpicklingError, ValueError) as exc:
            self._failed(proc, f"no answer ({exc!r})", len(items))
            return None
        except BaseException:
            # Cancelled between a request and its answer: the pipe is out of step, so the
            # process goes (run() starts another when it is wanted). The batch is the
            # ingest's, which stores it as reads at drain().
            _kill(proc)
            raise
        finally:
            self._busy = False
            self._used_at_s = self._clock()
        if not (isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok"
                and isinstance(reply[1], list) and len(reply[1]) == len(items)):
            detail = reply[1] if isinstance(reply, tuple) and len(reply) == 2 else reply
            self._failed(proc, f"a wrong answer (a bug): {detail!s:.2000}", len(items))
            return None
        self.batches += 1
        self.events += len(items)
        return reply[1]

    def _failed(self, proc: asyncio.subprocess.Process, why: str, count: int) -> None:
        self.failures += 1
        self._ready = False
        log.error("event former: %s for a batch of %d scans; they are formed on the event "
                  "loop (nothing lost); the process is stopped", why, count)
        _kill(proc)


def _check_hello(hello: object) -> None:
    if not (isinstance(hello, tuple) and hello[:1] == ("ready",)):
        raise ValueError(f"unexpected first frame {hello!r:.100}")


async def _read_frame(proc: asyncio.subprocess.Process) -> object:
    assert proc.stdout is not None  # started with stdout=PIPE
    try:
        head = await proc.stdout.readexactly(_HEAD.size)
        body = await proc.stdout.readexactly(_HEAD.unpack(head)[0])
    except asyncio.IncompleteReadError as exc:
        raise EOFError("the process closed its pipe") from exc
    return pickle.loads(body)  # noqa: S301 - our own child's answer


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        if proc.returncode is None:
            proc.kill()


async def _stop(proc: asyncio.subprocess.Process, *, gently: bool = False) -> None:
    """Stop the process and reap it. ``gently``: close its pipe (it exits at the EOF) and
    kill it only if it is still there after 2 s."""
    if gently and proc.stdin is not None:
        proc.stdin.close()
    else:
        _kill(proc)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            await proc.wait()
    _kill(proc)


def serve() -> None:
    """The child: answer requests on stdin until EOF. Runs in its own interpreter."""
    import signal
    import traceback

    # A Ctrl-C or systemd's SIGTERM reaches every process of the agent at once: the agent
    # stops this one itself (or its pipe's EOF does), after the batch in hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from agent.osnames import name_thread

    name_thread("event-former")  # the process, in ps and top (agent/osnames.py)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s event former: %(name)s: %(message)s")
    # GS1 parsing (biip, 16 MB) is imported at the first GS1 scan, not here: a plain line
    # never needs it, and a wait here holds no port (the agent's loop is not blocked).
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the pipe

    def send(value: object) -> None:
        body = pickle.dumps(value, protocol=5)
        out.write(_HEAD.pack(len(body)))
        out.write(body)
        out.flush()

    send(("ready", os.getpid()))
    while True:
        head = inp.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return  # the agent is gone
        body = inp.read(_HEAD.unpack(head)[0])
        try:
            timezone, mappings, items = pickle.loads(body)  # noqa: S301 - from our parent
            texts = [form_barcode(item, timezone, mappings) for item in items]
        except Exception:  # a bug: the agent logs it and forms the batch itself
            send(("error", traceback.format_exc()))
            continue
        send(("ok", texts))
