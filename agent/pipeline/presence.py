"""Smoothing and presence: raw tag reads -> arrived / present / departed transitions (pure).

Per *station* (reader + read point, see :mod:`agent.pipeline.mapping`) and EPC, reads are folded
into first seen, last seen, read count and peak RSSI. A tag goes through::

    (absent) --read--> pending --min_reads within window_s--> arriving --batch closes--> present
    present --no read for depart_after_s--> departing --batch closes--> (absent)
    departing --read again--> present            (no event: it never left)
    pending --window_s without qualifying--> (absent)   (a stray: no event)

``arriving`` / ``departing`` tags of one station are collected for ``window_s`` from the first of
them and then emitted together: one transition batch = one EPCIS event. Reads weaker than
``min_rssi_dbm`` are ignored altogether. First/last seen are the reads' own ``read_at``;
absence and batch windows are judged against ``now`` (the agent's clock) passed to
:meth:`PresenceEngine.advance`. Time is epoch seconds throughout.

When the wall clock steps (NTP syncing a Raspberry Pi, which has no RTC), the pipeline calls
:meth:`PresenceEngine.shift` with the step: every time held here (first/last seen, windows,
heartbeat due times) moves with the clock, so absence keeps being measured in elapsed time, and
pre-step read times are corrected towards the synchronised clock. Tags whose times were
corrected carry the correction (``step_s`` -> ``tea:clockStepS``).

Everything lives in one dict keyed by (station, EPC); each change is also recorded as a
persistent key/value pair (:meth:`PresenceEngine.take_state`) that the pipeline commits in the
same transaction that consumes the reads, and :meth:`PresenceEngine.restore` rebuilds the engine
from them after a restart.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from agent.model import TagRead
from agent.pipeline.epcis import ARRIVED, DEPARTED, PRESENT, TagSummary
from agent.pipeline.mapping import EventMapping, ReaderPlan

STATE_PREFIX: Final = "presence/"  # "presence/t/<station>/<epc>" tags, "presence/h/<station>"
log = logging.getLogger(__name__)

_TAG_PREFIX: Final = STATE_PREFIX + "t/"
_HB_PREFIX: Final = STATE_PREFIX + "h/"

PENDING: Final = "pending"
ARRIVING: Final = "arriving"
PRESENT_S: Final = "present"
DEPARTING: Final = "departing"

DEPART_SCAN_S: Final = 0.25  # scan present tags for absence at most this often


@dataclass(slots=True)
class TagState:
    station: str
    reader: str
    antenna: int | None  # antenna of the first read: its mapping is the tag's business context
    epc: str
    pc: int | None
    status: str
    first_seen: float
    last_seen: float
    count: int
    peak_rssi: float | None
    synced: bool  # every folded read was taken with an NTP-synchronised clock
    since: float  # start of the current pending window / arriving or departing batch
    step_s: float = 0.0  # clock-step correction applied to (some of) its times; 0: none

    def summary(self) -> TagSummary:
        return TagSummary(reader=self.reader, antenna=self.antenna, epc=self.epc, pc=self.pc,
                          first_seen=self.first_seen, last_seen=self.last_seen, count=self.count,
                          peak_rssi=self.peak_rssi, clock_synced=self.synced,
                          clock_step_s=self.step_s)

    def dump(self) -> str:
        fields: list[object] = [self.station, self.reader, self.antenna, self.epc, self.pc,
                                self.status, self.first_seen, self.last_seen, self.count,
                                self.peak_rssi, self.synced, self.since]
        if self.step_s:  # without it, the state is the one older agents read
            fields.append(self.step_s)
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def load(cls, text: str) -> TagState:
        """Parse :meth:`dump` output; ValueError if it is not one (a corrupt state value)."""
        try:
            values = json.loads(text)
            step = 0.0
            if isinstance(values, list) and len(values) == 13:
                step = values.pop()
            (station, reader, antenna, epc, pc, status, first, last, count, peak, synced,
             since) = values
        except (TypeError, ValueError) as exc:  # JSONDecodeError, wrong shape
            raise ValueError(f"not a tag state: {exc}") from None

        def num(v: object) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if not (isinstance(station, str) and isinstance(reader, str) and isinstance(epc, str)
                and status in (PENDING, ARRIVING, PRESENT_S, DEPARTING)
                and (antenna is None or (isinstance(antenna, int) and num(antenna)))
                and (pc is None or (isinstance(pc, int) and num(pc)))
                and num(first) and num(last) and num(since)
                and isinstance(count, int) and num(count)
                and (peak is None or num(peak)) and isinstance(synced, bool) and num(step)):
            raise ValueError("not a tag state: a field has the wrong type")
        return cls(station=station, reader=reader, antenna=antenna, epc=epc, pc=pc,
                   status=status, first_seen=float(first), last_seen=float(last), count=count,
                   peak_rssi=peak, synced=synced, since=float(since),
                   step_s=float(step))


def _parse_state(key: str, value: str) -> TagState | float:
    """A heartbeat due time or a tag state; ValueError if the value is not one."""
    if key.startswith(_HB_PREFIX):
        due = float(value)
        if not math.isfinite(due):
            raise ValueError("not a finite time")
        return due
    tag = TagState.load(value)
    if key != _TAG_PREFIX + tag.station + "/" + tag.epc:
        raise ValueError("the key does not match the tag it holds")
    return tag


@dataclass(frozen=True, slots=True)
class Transition:
    """One batch: all tags of one station (and one business mapping) that changed together."""

    kind: str  # ARRIVED | DEPARTED | PRESENT (heartbeat)
    station: str
    mapping: EventMapping
    tags: tuple[TagSummary, ...]
    at: float  # the agent's clock when the batch was emitted


@dataclass(slots=True)
class _Station:
    plan: ReaderPlan
    tags: dict[str, TagState] = field(default_factory=dict)  # epc -> state
    arriving: dict[str, TagState] = field(default_factory=dict)
    departing: dict[str, TagState] = field(default_factory=dict)
    heartbeat_due: float | None = None


class PresenceEngine:
    def __init__(self, plan_for: Callable[[str], ReaderPlan]) -> None:
        self._plan_for = plan_for
        self._stations: dict[str, _Station] = {}
        self._station_of: dict[tuple[str, int | None], tuple[str, ReaderPlan]] = {}
        self._dirty: dict[str, str | None] = {}
        self._next_scan = float("-inf")
        self.ignored_weak = 0  # reads below min_rssi_dbm
        self.strays = 0  # pending tags that never qualified
        self.corrupt_state = 0  # state values that could not be restored (logged, deleted)

    # ------------------------------------------------------------------ folding

    def _station(self, reader: str, antenna: int | None) -> tuple[_Station, ReaderPlan]:
        hit = self._station_of.get((reader, antenna))
        if hit is None:
            plan = self._plan_for(reader)
            hit = (plan.station(antenna), plan)
            self._station_of[(reader, antenna)] = hit
        name, plan = hit
        st = self._stations.get(name)
        if st is None:
            st = self._stations[name] = _Station(plan)
        return st, plan

    def fold(self, read: TagRead, *, step_s: float = 0.0) -> None:
        """Fold one read; ``step_s`` is the clock-step correction to add to its ``read_at``
        (stamped before a step of the wall clock, see :class:`agent.clock.ClockSteps`)."""
        station, plan = self._station(read.reader, read.antenna)
        p = plan.presence
        rssi = read.rssi_dbm
        if p.min_rssi_dbm is not None and rssi is not None and rssi < p.min_rssi_dbm:
            self.ignored_weak += 1
            return
        t = read.read_at.timestamp() + step_s
        epc = read.epc.upper()
        tag = station.tags.get(epc)
        if tag is None or (tag.status == PENDING and t - tag.since > p.window_s):
            if tag is not None:
                self.strays += 1
            name = plan.station(read.antenna)
            tag = TagState(station=name, reader=read.reader, antenna=read.antenna, epc=epc,
                           pc=read.pc, status=PENDING, first_seen=t, last_seen=t, count=0,
                           peak_rssi=rssi, synced=read.clock_synced, since=t)
            station.tags[epc] = tag
        tag.count += 1
        if t > tag.last_seen:
            tag.last_seen = t
        if t < tag.first_seen:
            tag.first_seen = t
        if rssi is not None and (tag.peak_rssi is None or rssi > tag.peak_rssi):
            tag.peak_rssi = rssi
        if not read.clock_synced:
            tag.synced = False
        if abs(step_s) > abs(tag.step_s):
            tag.step_s = step_s
        if tag.status == PENDING:
            if tag.count >= p.min_reads:
                tag.status = ARRIVING
                tag.since = t
                station.arriving[epc] = tag
        elif tag.status == DEPARTING:
            tag.status = PRESENT_S  # read again before its departure was emitted: never left
            del station.departing[epc]
        self._dirty[_TAG_PREFIX + tag.station + "/" + epc] = None  # dumped in take_state

    # ------------------------------------------------------------------ time

    def shift(self, delta_s: float) -> None:
        """The wall clock stepped by ``delta_s``: move every time held by the same amount.

        Absence, batch windows and heartbeats keep being measured in elapsed time (no spurious
        departure after a forward step, no departure delayed by hours after a backward one),
        and first/last seen move towards the (NTP-)corrected clock. Every tag and heartbeat
        is marked changed, so the shifted times reach :meth:`take_state` and the store.
        """
        if not delta_s:
            return
        for name, st in self._stations.items():
            for tag in st.tags.values():
                tag.first_seen += delta_s
                tag.last_seen += delta_s
                tag.since += delta_s
                tag.step_s += delta_s
                self._touch(tag)
            if st.heartbeat_due is not None:
                st.heartbeat_due += delta_s
                self._dirty[_HB_PREFIX + name] = repr(st.heartbeat_due)
        self._next_scan = float("-inf")

    def advance(self, now: float) -> list[Transition]:
        """Close due batches, detect absences, emit heartbeats; returns the transitions."""
        out: list[Transition] = []
        scan = now >= self._next_scan
        if scan:
            self._next_scan = now + DEPART_SCAN_S
        for name, st in self._stations.items():
            p = st.plan.presence
            if st.arriving and now >= min(t.since for t in st.arriving.values()) + p.window_s:
                batch = list(st.arriving.values())
                st.arriving.clear()
                for tag in batch:
                    tag.status = PRESENT_S
                    self._touch(tag)
                out.extend(self._batches(ARRIVED, name, st, batch, now))
                if p.heartbeat_s is not None and st.heartbeat_due is None:
                    st.heartbeat_due = now + p.heartbeat_s
                    self._dirty[_HB_PREFIX + name] = repr(st.heartbeat_due)
            if scan:
                self._scan(st, now)
            if st.departing and now >= min(t.since for t in st.departing.values()) + p.window_s:
                batch = list(st.departing.values())
                st.departing.clear()
                for tag in batch:
                    del st.tags[tag.epc]
                    self._dirty[_TAG_PREFIX + name + "/" + tag.epc] = None
                out.extend(self._batches(DEPARTED, name, st, batch, now))
            if st.heartbeat_due is not None and now >= st.heartbeat_due:
                present = [t for t in st.tags.values() if t.status == PRESENT_S]
                if present and p.heartbeat_s is not None:
                    out.extend(self._batches(PRESENT, name, st, present, now))
                    st.heartbeat_due = now + p.heartbeat_s
                    self._dirty[_HB_PREFIX + name] = repr(st.heartbeat_due)
                else:
                    st.heartbeat_due = None
                    self._dirty[_HB_PREFIX + name] = None
        return out

    def _scan(self, st: _Station, now: float) -> None:
        p = st.plan.presence
        stale: list[TagState] = []
        for tag in st.tags.values():
            if tag.status == PRESENT_S and now - tag.last_seen >= p.depart_after_s:
                tag.status = DEPARTING
                tag.since = now
                st.departing[tag.epc] = tag
                self._touch(tag)
            elif tag.status == PENDING and now - tag.since > p.window_s:
                stale.append(tag)
        for tag in stale:
            self.strays += 1
            del st.tags[tag.epc]
            self._dirty[_TAG_PREFIX + tag.station + "/" + tag.epc] = None

    def _touch(self, tag: TagState) -> None:
        self._dirty[_TAG_PREFIX + tag.station + "/" + tag.epc] = None

    def _batches(self, kind: str, name: str, st: _Station, tags: list[TagState],
                 now: float) -> Iterator[Transition]:
        groups: dict[EventMapping, list[TagSummary]] = {}
        for tag in tags:
            groups.setdefault(st.plan.mapping_for(tag.antenna), []).append(tag.summary())
        for mapping, summaries in groups.items():
            yield Transition(kind, name, mapping, tuple(summaries), now)

    # ------------------------------------------------------------------ persistence

    def take_state(self) -> dict[str, str | None]:
        """Changes since the last call, as state keys -> JSON (None = delete)."""
        out: dict[str, str | None] = {}
        for key, value in self._dirty.items():
            if key.startswith(_TAG_PREFIX):
                name, _, epc = key[len(_TAG_PREFIX):].rpartition("/")
                st = self._stations.get(name)
                tag = st.tags.get(epc) if st is not None else None
                out[key] = tag.dump() if tag is not None else None
            else:
                out[key] = value
        self._dirty.clear()
        return out

    def restore(self, state: Mapping[str, str]) -> None:
        """Rebuild from :meth:`take_state` output as committed (``load_state(STATE_PREFIX)``)."""
        self._stations.clear()
        self._station_of.clear()
        self._dirty.clear()
        hb: dict[str, float] = {}
        for key, value in state.items():
            if not key.startswith((_HB_PREFIX, _TAG_PREFIX)):
                continue
            try:
                parsed = _parse_state(key, value)
            except ValueError as exc:
                # Never a crash loop on one bad value: report it, drop it with the next commit
                # (the tag is then seen afresh: at worst one extra arrival, never a lost read).
                self.corrupt_state += 1
                self._dirty[key] = None
                log.error("corrupt presence state %s = %.200r ignored and deleted: %s",  # noqa: TRY400
                          key, value, exc)
                continue
            if isinstance(parsed, float):
                hb[key[len(_HB_PREFIX):]] = parsed
                continue
            tag = parsed
            if tag.station not in self._stations:  # as it was keyed when it was stored
                self._stations[tag.station] = _Station(self._plan_for(tag.reader))
            st = self._stations[tag.station]
            st.tags[tag.epc] = tag
            if tag.status == ARRIVING:
                st.arriving[tag.epc] = tag
            elif tag.status == DEPARTING:
                st.departing[tag.epc] = tag
        for name, due in hb.items():
            if name in self._stations:
                self._stations[name].heartbeat_due = due

    # ------------------------------------------------------------------ introspection

    def present(self, station: str | None = None) -> dict[str, set[str]]:
        """station -> EPCs currently present (arriving, present or departing)."""
        return {name: {e for e, t in st.tags.items() if t.status != PENDING}
                for name, st in self._stations.items() if station in (None, name)}
