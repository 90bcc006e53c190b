"""Presence across steps of the wall clock (NTP syncing a Pi without RTC), injected clocks.

The engine is driven as the pipeline drives it: each tick polls the step detector, shifts the
engine by any new step, folds the reads stamped since the previous tick (with the correction the
detector gives for their stamps) and advances to the wall clock. Reads are stamped by the
"driver" with the wall clock when they are taken, so reads taken just before a step are folded
after it, with pre-step stamps.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from agent.buffer.sqlite import SqliteBuffer
from agent.clock import ClockSteps
from agent.pipeline.epcis import ARRIVED, DEPARTED, PRESENT, iso_ms_s
from agent.pipeline.mapping import ReaderPlan
from agent.pipeline.presence import PresenceEngine, Transition
from agent.pipeline.worker import Pipeline
from tests.support.buffer_helpers import FakeClock, make_cfg
from tests.support.pipeline_helpers import T0, dock_plan, read, sgtin_hex

H = 3600.0
PALLET = [sgtin_hex(n) for n in range(1, 6)]
TICK_S = 0.5


class Sim:
    def __init__(self, plan: ReaderPlan) -> None:
        self.wall = T0
        self.elapsed = 1000.0
        self.steps = ClockSteps(wall=lambda: self.wall, elapsed=lambda: self.elapsed)
        self.eng = PresenceEngine(lambda name: plan)
        self.seq = 0
        self.queue: list[tuple[float, str]] = []  # stamped, not yet folded
        self.log: list[tuple[float, Transition]] = []  # (elapsed, transition)

    def step_clock(self, delta: float) -> None:
        self.wall += delta

    def tick(self) -> list[Transition]:
        now = self.steps.poll()
        for st in self.steps.steps_since(self.seq):
            self.eng.shift(st.delta_s)
            self.seq = st.seq
        for t, epc in self.queue:
            self.eng.fold(read(t, epc), step_s=self.steps.correction(t))
        self.queue.clear()
        out = self.eng.advance(now)
        self.log += [(self.elapsed, tr) for tr in out]
        return out

    def run(self, seconds: float, epcs: list[str] | None = None, *, every_s: float = 0.5,
            step_at: float | None = None, step: float = 0.0) -> list[Transition]:
        """Tick every 0.5 s (the pipeline's idle tick is 1 s) for ``seconds``; read ``epcs``
        every ``every_s`` (stamped then, folded at the next tick); the wall clock steps by
        ``step`` once ``step_at`` seconds have passed (between a read and its fold)."""
        out: list[Transition] = []
        done = 0.0
        next_read = 0.0
        while done < seconds:
            if epcs and done >= next_read - 1e-9:
                self.queue += [(self.wall, e) for e in epcs]
                next_read += every_s
            self.wall += TICK_S
            self.elapsed += TICK_S
            done += TICK_S
            if step_at is not None and done >= step_at:
                self.step_clock(step)
                step_at = None
            out += self.tick()
        return out


def kinds(out: list[Transition]) -> list[str]:
    return [tr.kind for tr in out]


# Tags read every 0.5 s, or only every 2 s (sporadic, longer than window_s: a departure batch
# is not cancelled by the next read and would be emitted).
@pytest.mark.parametrize("every_s", [0.5, 2.0])
@pytest.mark.parametrize("delta", [3 * H, -3 * H])
def test_a_pallet_stays_present_across_a_step(delta: float, every_s: float) -> None:
    sim = Sim(dock_plan(window_s=1.0, depart_after_s=10.0))
    assert kinds(sim.run(30, PALLET, every_s=every_s)) == [ARRIVED]
    arrival_first_seen = min(t.first_seen for t in sim.log[0][1].tags)
    # the clock steps mid-read: reads stamped just before it are folded just after it
    out = sim.run(60, PALLET, every_s=every_s, step_at=10.2, step=delta)
    assert out == []  # no departure, no re-arrival
    assert sim.eng.present() == {sim.log[0][1].station: set(PALLET)}
    left_at = sim.elapsed
    out = sim.run(30)
    assert kinds(out) == [DEPARTED]
    (at, dep), = sim.log[1:]
    # depart_after_s (counted from the last read) + window_s + a tick
    assert 10.0 - every_s <= at - left_at <= 10.0 + 1.0 + 0.5
    tag = dep.tags[0]
    # last seen is on the corrected clock: the last read, every_s before the pallet left
    assert tag.last_seen == pytest.approx(sim.wall - (sim.elapsed - left_at) - every_s,
                                          abs=1e-3)
    # first seen was shifted with the clock (towards the NTP time) and says so
    assert tag.first_seen == pytest.approx(arrival_first_seen + delta, abs=1e-3)
    assert tag.clock_step_s == pytest.approx(delta)


def test_without_the_correction_a_forward_step_would_depart_everything() -> None:
    """What the review found: the same run with the engine not told about the step."""
    sim = Sim(dock_plan(window_s=1.0, depart_after_s=10.0))
    sim.run(30, PALLET, every_s=2.0)
    sim.steps = ClockSteps(wall=lambda: sim.wall, elapsed=lambda: sim.wall)  # blind detector
    out = sim.run(60, PALLET, every_s=2.0, step_at=10.2, step=3 * H)
    assert kinds(out) == [DEPARTED, ARRIVED]


def test_backward_step_departure_after_real_absence_not_hours_later() -> None:
    sim = Sim(dock_plan(window_s=1.0, depart_after_s=10.0))
    sim.run(30, PALLET)
    # the pallet leaves right as the clock steps back 3 h: its last reads are "in the future"
    sim.run(2, PALLET, step_at=2, step=-3 * H)
    left_at = sim.elapsed
    out = sim.run(30)
    assert kinds(out) == [DEPARTED]
    at = sim.log[-1][0]
    assert 10.0 <= at - left_at <= 12.0
    assert max(t.last_seen for t in out[0].tags) <= sim.wall - 10.0


@pytest.mark.parametrize("delta", [3 * H, -3 * H])
def test_arrival_window_closes_after_window_s_of_elapsed_time(delta: float) -> None:
    sim = Sim(dock_plan(window_s=5.0, depart_after_s=30.0))
    start = sim.elapsed
    sim.run(2, PALLET[:2], every_s=0.25)
    out = sim.run(2, PALLET[2:4], every_s=0.25, step_at=0.5, step=delta)  # step mid-window
    assert out == []
    out = sim.run(10, PALLET[:4], every_s=0.25)
    assert kinds(out) == [ARRIVED]
    at, arr = sim.log[0]
    assert 5.0 <= at - start <= 5.0 + 0.5
    assert {t.epc for t in arr.tags} == set(PALLET[:4])  # one batch, not split by the step


@pytest.mark.parametrize("delta", [3 * H, -3 * H])
def test_heartbeats_keep_their_period_across_a_step(delta: float) -> None:
    sim = Sim(dock_plan(window_s=1.0, depart_after_s=10.0, heartbeat_s=60))
    sim.run(150, PALLET[:2], every_s=1.0)
    sim.run(200, PALLET[:2], every_s=1.0, step_at=30, step=delta)
    beats = [at for at, tr in sim.log if tr.kind == PRESENT]
    assert len(beats) == 5
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert all(60.0 <= g <= 61.0 for g in gaps), gaps
    assert all(tr.kind != DEPARTED for _, tr in sim.log)


def test_shifted_times_reach_the_persisted_state() -> None:
    plan = dock_plan(window_s=1.0, depart_after_s=10.0, heartbeat_s=60)
    sim = Sim(plan)
    sim.run(10, PALLET[:2])
    sim.eng.take_state()
    sim.run(2, PALLET[:2], step_at=1, step=3 * H)
    state = {k: v for k, v in sim.eng.take_state().items() if v is not None}
    assert len(state) == 3  # both tags and the heartbeat due time
    # a restart after the step: the restored engine agrees with the new clock
    eng2 = PresenceEngine(lambda name: plan)
    eng2.restore(state)
    assert eng2.advance(sim.wall + 5) == []
    assert eng2.present() == sim.eng.present()
    assert eng2.advance(sim.wall + 12) == []  # absent for depart_after_s: departing
    (dep,) = eng2.advance(sim.wall + 13.5)
    assert dep.kind == DEPARTED
    assert {t.clock_step_s for t in dep.tags} == {3 * H}


def test_a_step_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sim = Sim(dock_plan(window_s=1.0, depart_after_s=10.0))
    sim.run(20, PALLET, step_at=5, step=3 * H + 12 * 60)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["system clock stepped by +3h12m (NTP sync?); presence timing and "
                        "buffer ages corrected"]


# ------------------------------------------------------------------ the pipeline, real SQLite


async def test_pipeline_on_sqlite_across_a_forward_step(tmp_path: Path) -> None:
    from tests.pipeline.test_pipeline_worker import EVERY, READER, drain

    wall = FakeClock(T0)
    elapsed = [1000.0]

    def passes(s: float) -> None:
        wall.advance(s)
        elapsed[0] += s

    async def open_pipe() -> tuple[SqliteBuffer, Pipeline]:
        buf = await SqliteBuffer.open(make_cfg(tmp_path), clock=wall)
        pipe = Pipeline(buf, timezone="+00:00", wake=asyncio.Event(), clock=wall,
                        elapsed=lambda: elapsed[0], readers=[READER, EVERY])
        return buf, pipe

    buf, pipe = await open_pipe()
    pallet = PALLET
    for _ in range(25):  # 5 s at the door
        await buf.put_reads([read(wall.now, e) for e in pallet])
        passes(0.2)
        await pipe.step()
    (arrival,) = await drain(buf)
    assert arrival["tea:transition"] == "arrived"
    # reads taken just before NTP steps the clock 3 h forward, processed just after
    stamped = wall.now
    await buf.put_reads([read(stamped, e) for e in pallet]
                        + [read(stamped, sgtin_hex(99), reader="line")])
    passes(0.2)
    wall.advance(3 * H)
    await pipe.step()
    for _ in range(50):  # 10 more seconds at the door, on the new clock
        await buf.put_reads([read(wall.now, e) for e in pallet])
        passes(0.2)
        await pipe.step()
    (every,) = await drain(buf)  # no departure, no second arrival: only the every_read event
    assert every["eventTime"] == iso_ms_s(stamped + 3 * H)
    assert every["tea:reads"][0]["tea:clockStepS"] == 10800.0
    await buf.aclose()

    buf, pipe = await open_pipe()  # a restart after the step: the stored state was shifted
    left = wall.now - 0.2
    for _ in range(30):
        passes(0.5)
        await pipe.step()
    (dep,) = await drain(buf)
    assert dep["tea:transition"] == "departed"
    assert dep["eventTime"] == iso_ms_s(left)
    details = dep["tea:reads"]
    assert {d["tea:clockStepS"] for d in details} == {10800.0}
    assert {d["tea:firstSeen"] for d in details} == {iso_ms_s(T0 + 3 * H)}
    await buf.aclose()
