"""Turns accepted reads into EPCIS events, atomically (reads out, events in, one transaction).

Each :meth:`Pipeline.step` takes a batch of stored reads, folds tag reads of ``presence`` readers
into the :class:`~agent.pipeline.presence.PresenceEngine`, builds one event per read for
``every_read`` readers and per barcode scan, then advances the engine to the agent's clock
(closing transition batches, detecting departures, heartbeats) and commits - in one SQLite
transaction - the consumed read ids, the events and the engine's changed state. A crash before
the commit replays the reads against the state as it was; after it, nothing is redone. So a
read is never lost and an arrival never emitted twice. ``step`` also runs when no reads came:
that is the periodic tick that detects departures.

The wall clock may step (NTP on a machine without RTC): each step is detected by
:class:`~agent.clock.ClockSteps` (wall against elapsed time) and the presence engine's times are
shifted by it; reads stamped before a step are corrected by it as they are taken (see
docs/pipeline.md, "Time and clock sync").
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from agent.buffer.api import Buffer, BufferFullError, OutEvent, StoredRead, event_out
from agent.clock import ClockSteps, steps_for
from agent.config import AnyReaderConfig
from agent.model import BarcodeRead, Read, TagRead
from agent.pipeline.barcode_events import barcode_json
from agent.pipeline.epcis import every_read_json, presence_event
from agent.pipeline.former import BarcodeItem, EventFormer, form_barcode
from agent.pipeline.mapping import ReaderPlan, plans_for
from agent.pipeline.presence import STATE_PREFIX, PresenceEngine, Transition

log = logging.getLogger(__name__)


MIN_BATCH = 10
SLICE_READS = 100  # reads turned into events between two returns to the event loop
# While reads keep coming, at most one step per this long (presence folding: see run()); far
# below the presence window (window_s, 1 s by default), so no event comes noticeably later.
STEP_INTERVAL_S = 0.1
# At most this many committed reads wait in memory for the steps (more: the steps take them
# from the file, as after a start).
FRESH_MAX = 200_000


# A scan's place in _read_events' answer while its event is formed by the former's process
_APART: OutEvent = OutEvent(kind="event", payload="", created_at_s=0.0)


class Pipeline:
    def __init__(
        self,
        buffer: Buffer,
        *,
        timezone: str,
        wake: asyncio.Event,
        clock: Callable[[], float],
        readers: Iterable[AnyReaderConfig] = (),
        batch: int = 2000,
        idle_poll_s: float = 1.0,  # also the departure tick (presence)
        step_interval_s: float = STEP_INTERVAL_S,
        elapsed: Callable[[], float] | None = None,
        steps: ClockSteps | None = None,
    ) -> None:
        """``clock`` is the wall clock (epoch seconds). Steps of it are detected against
        ``elapsed`` (a clock that never steps) or by ``steps``; with neither, only the real
        ``time.time`` is watched (the process-wide detector): a fake clock in a test jumps
        at will without it being taken for a step."""
        self._buffer = buffer
        self._timezone = timezone
        self._wake = wake
        self._clock = clock
        self._steps = steps_for(clock, elapsed, steps)
        self._step_seq = self._steps.seq if self._steps is not None else 0
        self._batch = batch
        self._batch_now = batch  # shrinks while the disk is full, so a commit can still fit
        self._waiting_for_space = False
        self._idle_poll_s = idle_poll_s
        self._step_interval_s = step_interval_s
        self._plans: dict[str, ReaderPlan] = plans_for(readers)
        self.presence = PresenceEngine(self.plan)
        self._loaded = False
        self._last_scan: dict[tuple[str, bytes], float] = {}  # barcode double-scan window
        self._before_build: tuple[dict[tuple[str, bytes], float], int] = ({}, 0)
        self.produced = asyncio.Event()  # set after events are committed: wakes the forwarder
        self.events_total = 0
        self.double_scans = 0
        self.on_events: Callable[[Sequence[OutEvent]], None] | None = None  # live view hook
        # Reads the ingest committed in this run (presence reads), in id order, not yet folded:
        # a step takes them from here instead of reading them back from the file (issue 12:
        # decoding stored reads was a fifth of sixteen busy R2000 readers' cost). The file
        # stays the truth: what is here is also there, until the step that folds it deletes
        # it there in the transaction that stores its effects.
        self._fresh: collections.deque[StoredRead] = collections.deque()
        self._fresh_ok = False  # every read older than _fresh[0] was taken from the file
        self._fresh_gen = ""  # the buffer generation _fresh belongs to
        self._folded_upto = 0  # the highest read id a committed step took
        self.reads_from_memory = 0  # for the tests and the benchmark
        # Set by the app: a busy batch of direct scans has its events formed in a process of
        # its own (issue 12: forming was a third of what held the GIL on a busy line).
        self.former: EventFormer | None = None

    def plan(self, reader: str) -> ReaderPlan:
        """The reader's plan; a reader missing from the config gets the defaults (presence)."""
        plan = self._plans.get(reader)
        if plan is None:
            plan = self._plans[reader] = ReaderPlan(name=reader)
        return plan

    async def load(self) -> None:
        """Restore the presence state committed by the previous run."""
        state = await self._buffer.load_state(STATE_PREFIX)
        self.presence.restore({k: v for k, v in state.items() if k.startswith(STATE_PREFIX)})
        self._loaded = True
        if state:
            log.info("presence state restored: %d key(s)", len(state))

    def _event(self, event: dict[str, Any], now: float) -> OutEvent:
        return OutEvent(kind="event", payload=json.dumps(event, separators=(",", ":")),
                        created_at_s=now)

    def _barcode_accepted(self, read: BarcodeRead, window_s: float) -> bool:
        if window_s <= 0:
            return True
        t = read.read_at.timestamp()
        key = (read.reader, read.data)
        last = self._last_scan.get(key)
        if last is not None and 0 <= t - last < window_s:
            return False
        self._last_scan[key] = t
        if len(self._last_scan) > 4096:  # forget scans older than any window
            self._last_scan = {k: v for k, v in self._last_scan.items() if t - v < 3600}
        return True

    def _now(self) -> float:
        """The wall clock; a step detected since the last call shifts the in-memory times."""
        if self._steps is None:
            return self._clock()
        now = self._steps.poll()
        for step in self._steps.steps_since(self._step_seq):
            self.presence.shift(step.delta_s)
            self._last_scan = {k: v + step.delta_s for k, v in self._last_scan.items()}
            self._step_seq = step.seq
        return now

    def _step_of(self, t: float) -> float:
        """The correction for a read stamped ``t`` (before a clock step; else 0.0)."""
        if self._steps is None or not self._steps.seq:
            return 0.0
        return self._steps.correction(t)

    def events_for(self, stored: list[StoredRead], now: float) -> list[OutEvent]:
        return self._read_events([s.id for s in stored], [s.read for s in stored],
                                 now) + self._transitions(now)

    # -- reads whose events are formed before they are stored (ingest.DirectEvents) ----------

    def direct(self, read: Read) -> bool:
        """A read of an every-read reader or a barcode scan: its event is formed at once and
        committed with it (one transaction instead of storing, taking and committing; issue
        12). Presence reads fold into the engine, which needs them stored first."""
        if isinstance(read, TagRead):
            return self.plan(read.reader).mode != "presence"
        return True

    async def build(self, reads: Sequence[Read], ids: Sequence[int]) -> list[OutEvent]:
        """The events of these direct reads, ``ids`` their reserved read ids (the same events
        as :meth:`step` would form from them stored; handing the loop back between slices).

        The clock is polled, not taken through _now(): a step of it is detected (and corrects
        these reads' times) but shifting the presence engine's times is left to step(), which
        may be between two slices of its own right now. A double scan across a clock step is
        then judged on unshifted times until the next step: the window fails open (the scan
        is kept), never shut."""
        now = self._clock() if self._steps is None else self._steps.poll()
        self._before_build = (dict(self._last_scan), self.double_scans)
        if self.former is not None and self.former.wants(
                sum(type(r) is BarcodeRead for r in reads)):
            return await self._build_apart(self.former, ids, reads, now)
        out: list[OutEvent] = []
        for i in range(0, len(reads), SLICE_READS):
            if i:
                await asyncio.sleep(0)
            out += self._read_events(ids[i : i + SLICE_READS], reads[i : i + SLICE_READS], now)
        return out

    async def _build_apart(self, former: EventFormer, ids: Sequence[int], reads: Sequence[Read],
                           now: float) -> list[OutEvent]:
        """:meth:`build` with the scans' events formed by the former's process: what is
        decided about each read (its clock step, a double scan) is decided here, in one pass;
        only the texts are computed there. If it does not answer, they are formed here."""
        apart: list[BarcodeItem] = []
        out = self._read_events(ids, reads, now, apart=apart)
        if not apart:
            return out
        tz = self._timezone
        mappings = {r: self.plan(r).mapping for r in {item[0] for item in apart}}
        texts = await former.form(tz, mappings, apart)
        if texts is None:
            texts = []
            for i in range(0, len(apart), SLICE_READS):
                if i:
                    await asyncio.sleep(0)
                texts += [form_barcode(item, tz, mappings) for item in apart[i : i + SLICE_READS]]
        formed = iter(texts)
        return [event_out(next(formed), now) if e is _APART else e for e in out]

    def unbuild(self) -> None:
        """The last build's events were never stored (its batch is numbered again): forget
        its double-scan decisions, so that building the same reads again judges them anew
        rather than as repeats of themselves. (The file was recovered under us: the reads
        kept in memory may not be its reads any more; the steps take from the file again.)"""
        self._last_scan, self.double_scans = self._before_build
        self._forget_fresh()

    def stored(self, rows: Sequence[tuple[int, Read]]) -> None:
        """The ingest committed these reads to the file (ids in order): keep them for step()."""
        gen = self._buffer.generation
        if gen != self._fresh_gen or len(self._fresh) + len(rows) > FRESH_MAX:
            # Another file (recovered under us), or the steps far behind: forget, and take
            # from the file until it has caught up again.
            self._forget_fresh()
            self._fresh_gen = gen
        if self._fresh and rows and rows[0][0] <= self._fresh[-1].id:
            self._forget_fresh()  # renumbered (ReadIdsOutOfStepError): the file decides
        self._fresh.extend(StoredRead(i, r) for i, r in rows if i > self._folded_upto)

    def _forget_fresh(self) -> None:
        self._fresh.clear()
        self._fresh_ok = False

    async def _take(self) -> tuple[list[StoredRead], bool]:
        """The next reads to fold: from memory once the file's older reads are done, else from
        the file (the first steps after a start, or after the memory was forgotten)."""
        if self._fresh_ok and self._buffer.generation == self._fresh_gen:
            return list(itertools.islice(self._fresh, self._batch_now)), True
        stored = await self._buffer.take_reads(self._batch_now)
        if len(stored) < self._batch_now:
            # The file held no more: every read it will hold from now on comes through
            # stored() (which the ingest calls after each commit), so memory can take over.
            self._fresh_ok = self._buffer.generation == self._fresh_gen
        return [s for s in stored if s.id > self._folded_upto], False

    def _taken(self, stored: list[StoredRead]) -> None:
        """A step committed the effects of these reads (their rows are deleted)."""
        if stored:
            self._folded_upto = max(self._folded_upto, stored[-1].id)
        while self._fresh and self._fresh[0].id <= self._folded_upto:
            self._fresh.popleft()

    def committed(self, events: Sequence[OutEvent]) -> None:
        """The events of direct reads are stored: count them, show them, wake the forwarder."""
        self.events_total += len(events)
        if self.on_events is not None:
            self.on_events(events)
        self.produced.set()

    async def _events_yielding(self, stored: list[StoredRead], now: float) -> list[OutEvent]:
        """events_for, handing the event loop back every SLICE_READS reads.

        A step takes up to 2,000 reads at ~100 µs each: 200 ms in one go kept the reader
        tasks from draining their ports, and a 4 KB tty buffer holds 32 ms of a 2,000 lines/s
        scanner (issue 12: lines lost at the input). Between slices the loop polls the ports.
        """
        out: list[OutEvent] = []
        for i in range(0, len(stored), SLICE_READS):
            if i:
                await asyncio.sleep(0)
            part = stored[i : i + SLICE_READS]
            out += self._read_events([s.id for s in part], [s.read for s in part], now)
        return out + self._transitions(now)

    def _transitions(self, now: float) -> list[OutEvent]:
        return [self._event(self.transition_event(t), now) for t in self.presence.advance(now)]

    def _read_events(self, ids: Sequence[int], reads: Sequence[Read], now: float,
                     apart: list[BarcodeItem] | None = None) -> list[OutEvent]:
        """The events of these reads, in order. With ``apart``, a scan's event is left as
        ``_APART`` and what forms it is appended there (:meth:`_build_apart`)."""
        out: list[OutEvent] = []
        gen = self._buffer.generation
        tz = self._timezone
        plans = self._plans
        # No clock step yet (the usual case): no read's time needs a correction (issue 12:
        # asking per read was a tenth of forming a busy scanner's events)
        stepped = self._steps is not None and bool(self._steps.seq)
        for read_id, read in zip(ids, reads, strict=True):
            plan = plans.get(read.reader) or self.plan(read.reader)
            step_s = self._step_of(read.read_at.timestamp()) if stepped else 0.0
            if step_s and not (isinstance(read, TagRead) and plan.mode == "presence"):
                read = replace(read, read_at=read.read_at + timedelta(seconds=step_s))
            if isinstance(read, TagRead):
                if plan.mode == "presence":
                    self.presence.fold(read, step_s=step_s)
                else:
                    out.append(event_out(every_read_json(
                        read, timezone=tz, mapping=plan.mapping_for(read.antenna),
                        source_id=f"{gen}:{read_id}", step_s=step_s), now))
            elif plan.double_scan_window_s > 0 and not self._barcode_accepted(
                    read, plan.double_scan_window_s):
                # Accounted for, never silent: counted (status/metrics) and logged.
                self.double_scans += 1
                log.info("reader %s: repeated scan of %r within %.1f s ignored (read %s:%d)",
                         read.reader, read.data[:64], plan.double_scan_window_s, gen, read_id)
            elif apart is not None:
                apart.append((read.reader, read.data, read.symbology, read.read_at,
                              read.clock_synced, f"{gen}:{read_id}", step_s))
                out.append(_APART)
            else:
                out.append(event_out(barcode_json(
                    read, timezone=tz, mapping=plan.mapping, source_id=f"{gen}:{read_id}",
                    step_s=step_s), now))
        return out

    def transition_event(self, t: Transition) -> dict[str, Any]:
        return presence_event(t.kind, t.tags, timezone=self._timezone, mapping=t.mapping,
                              at=t.at)

    async def step(self) -> int:
        """Process one batch of reads (possibly none: then it is a tick); returns reads taken."""
        if not self._loaded:
            await self.load()
        if self._buffer.disk_full and (await self._buffer.stats()).events_pending:
            # The disk is full: the space the buffer keeps in reserve is for deleting what the
            # broker confirmed. Turning reads into (larger) events waits until the outbox drained.
            if not self._waiting_for_space:
                log.warning("pipeline: disk full: reads wait as reads until delivered events "
                            "free space")
                self._waiting_for_space = True
            return 0
        last_scan, double_scans = dict(self._last_scan), self.double_scans
        step_seq = self._step_seq
        stored, from_memory = await self._take()
        now = self._now()
        events = await self._events_yielding(stored, now)
        state = self.presence.take_state()
        if stored or events or state:
            try:
                await self._buffer.commit_events([s.id for s in stored], events, state)
            except BufferFullError as exc:
                # Nothing of this step was stored. Forget its in-memory effects exactly as a
                # crash would (presence state is reloaded from what is committed), and try a
                # smaller batch: the reads stay in the buffer, nothing is lost or doubled.
                self._loaded = False
                self._last_scan, self.double_scans = last_scan, double_scans
                self._step_seq = step_seq  # a clock step is applied again to the reloaded state
                self._batch_now = max(MIN_BATCH, self._batch_now // 2)
                if not self._waiting_for_space:
                    log.warning("pipeline: cannot store events (%s); retrying with smaller "
                                "batches while the delivered backlog frees space", exc)
                    self._waiting_for_space = True
                return 0
        self._taken(stored)
        if from_memory:
            self.reads_from_memory += len(stored)
        if self._waiting_for_space:
            log.info("pipeline: storing events again")
            self._waiting_for_space = False
        self._batch_now = min(self._batch, self._batch_now * 2)
        if events:
            self.events_total += len(events)
            if self.on_events is not None:
                self.on_events(events)
            self.produced.set()
        return len(stored)

    async def run(self) -> None:
        if not self._loaded:
            await self.load()
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()  # before step(): a wake-up during step() is not lost
            started = loop.time()
            taken = await self.step()
            if taken >= self._batch_now:
                continue  # a backlog: take the next batch at once
            if taken:
                # Caught up. The reads left for steps are presence reads (every-read reads
                # and scans are committed as their events by the ingest): a step per ingest
                # commit wrote every changed tag's state a hundred times a second, for events
                # that wait window_s (1 s) anyway. Reads arriving meanwhile wait, committed.
                await asyncio.sleep(max(0.0, started + self._step_interval_s - loop.time()))
                continue
            try:
                async with asyncio.timeout(self._idle_poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
