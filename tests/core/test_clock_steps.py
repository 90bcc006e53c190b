"""Wall-clock step detection (agent/clock.py ClockSteps), with both clocks injected."""

from __future__ import annotations

import logging

import pytest

from agent.clock import ClockSteps, format_step

H = 3600.0
T0 = 1_800_000_000.0


class Clocks:
    """A wall clock and an elapsed clock; ``run`` advances both, ``step`` only the wall."""

    def __init__(self, wall: float = T0) -> None:
        self.wall = wall
        self.elapsed = 100.0

    def run(self, s: float) -> None:
        self.wall += s
        self.elapsed += s

    def step(self, delta: float) -> None:
        self.wall += delta

    def detector(self, tolerance_s: float = 2.0) -> ClockSteps:
        return ClockSteps(wall=lambda: self.wall, elapsed=lambda: self.elapsed,
                          tolerance_s=tolerance_s)


def test_format_step() -> None:
    assert format_step(3 * H + 12 * 60 + 5) == "+3h12m"
    assert format_step(-45) == "-45s"
    assert format_step(2.5) == "+2.5s"
    assert format_step(-(400 * 86400 + 2 * H)) == "-400d2h"


def test_a_step_is_detected_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    c = Clocks()
    d = c.detector()
    caplog.set_level(logging.WARNING, "agent.clock")
    assert d.poll() == T0
    c.run(1.0)
    d.poll()
    assert d.seq == 0
    c.step(3 * H + 12 * 60)
    c.run(0.5)
    d.poll()
    for _ in range(10):
        c.run(1.0)
        d.poll()
    assert d.seq == 1
    (step,) = d.steps_since(0)
    assert step.delta_s == pytest.approx(3 * H + 12 * 60)
    assert d.steps_since(1) == []
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["system clock stepped by +3h12m (NTP sync?); presence timing and buffer "
                    "ages corrected"]


def test_slewing_and_small_jitter_are_not_steps() -> None:
    c = Clocks()
    d = c.detector(tolerance_s=2.0)
    d.poll()
    for _ in range(10_000):  # 0.5 ms/s slew for almost 3 hours: 5 s in all, never a step
        c.run(1.0)
        c.step(0.0005)
        d.poll()
    c.step(1.5)
    d.poll()
    assert d.seq == 0


def test_correction_of_stamps_across_a_forward_step() -> None:
    c = Clocks()
    d = c.detector()
    d.poll()
    c.run(1.0)
    pre = c.wall - 0.3  # stamped just before the step
    old = c.wall - 600  # stamped long before it
    d.poll()
    c.run(0.4)
    c.step(3 * H)
    post = c.wall
    c.run(0.5)
    d.poll()
    assert d.correction(pre) == pytest.approx(3 * H)
    assert d.correction(old) == pytest.approx(3 * H)
    assert d.correction(post) == 0.0


def test_correction_of_stamps_across_a_backward_step() -> None:
    c = Clocks()
    d = c.detector()
    d.poll()
    c.run(1.0)
    pre = c.wall - 0.3
    old = c.wall - 600
    d.poll()
    c.run(0.4)
    c.step(-3 * H)
    post = c.wall
    c.run(0.5)
    d.poll()
    assert d.correction(pre) == pytest.approx(-3 * H)  # "in the future" on the new clock
    assert d.correction(old) == pytest.approx(-3 * H)
    assert d.correction(post) == 0.0
    # The documented limit: a read stamped before a backward step and processed more than
    # |step| later is ambiguous (a post-step read could carry the same stamp): taken as recent.
    c.run(4 * H)
    d.poll()
    assert d.correction(pre) == 0.0
    assert d.correction(pre - 5 * H) == pytest.approx(-3 * H)  # no post-step read is that old


def test_two_steps_compose() -> None:
    c = Clocks()
    d = c.detector()
    d.poll()
    first = c.wall
    c.run(1.0)
    d.poll()
    c.step(2 * H)
    c.run(1.0)
    d.poll()
    second = c.wall
    c.run(1.0)
    d.poll()
    c.step(-30.0)
    c.run(1.0)
    d.poll()
    assert [s.delta_s for s in d.steps_since(0)] == pytest.approx([2 * H, -30.0])
    assert d.correction(first) == pytest.approx(2 * H - 30)
    assert d.correction(second) == pytest.approx(-30.0)
    assert d.correction(c.wall) == 0.0
