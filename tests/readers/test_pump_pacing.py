"""The port pump's pacing rule (agent/readers/pump.py, ``_Pacer``): pause after a pass only
while every port is slow, so sixteen R2000 lines share wake-ups and a fast barcode line never
waits for a pause (issue 12). The rule is pure: the clock is passed in. Through real ports:
tests/readers/test_port_pump.py and ``python -m bench e2e`` / ``bench.bench_footprint``."""

from __future__ import annotations

import os

from agent.readers import pump
from agent.readers.pump import PACE_BURST_BYTES, PACE_RATE_MAX, PACE_WINDOW_S, _Pacer

PAUSE_S = 0.002


def _run(pacer: _Pacer, t_s: float, seconds: float, ports: int, bytes_per_s: float,
         chunk: int) -> tuple[float, list[float]]:
    """Passes every ``chunk / bytes_per_s`` seconds, each reading ``chunk`` bytes from each
    of ``ports``, the pause included in the time; the pauses asked for."""
    pauses: list[float] = []
    end_s = t_s + seconds
    while t_s < end_s:
        for port_id in range(ports):
            pacer.took(port_id, chunk)
        pause_s = pacer.pause_s_after_pass(t_s, moved=True)
        pauses.append(pause_s)
        t_s += max(chunk / bytes_per_s, pause_s)
    return t_s, pauses


def test_sixteen_r2000_lines_are_paced_after_the_first_window() -> None:
    pacer = _Pacer(PAUSE_S, now_s=0.0)
    # 115,200 baud: 11,520 bytes/s a line at most, a 25-byte frame each pass
    _t_s, pauses = _run(pacer, 0.0, 1.0, ports=16, bytes_per_s=11_520, chunk=25)
    first_window = [p for i, p in enumerate(pauses) if i * 25 / 11_520 < PACE_WINDOW_S]
    assert first_window[0] == 0.0  # not judged yet: no pause before a window is slow
    assert set(first_window) <= {0.0, PAUSE_S}
    assert pauses[-10:] == [PAUSE_S] * 10


def test_a_fast_line_is_never_paced() -> None:
    pacer = _Pacer(PAUSE_S, now_s=0.0)
    # barcode lines at 15,000/s into a pty (bench e2e): 960,000 bytes/s, read one line a pass
    _t, pauses = _run(pacer, 0.0, 1.0, ports=1, bytes_per_s=960_000, chunk=64)
    assert set(pauses) == {0.0}


def test_one_fast_port_among_slow_ones_stops_the_pauses() -> None:
    pacer = _Pacer(PAUSE_S, now_s=0.0)
    t_s, _ = _run(pacer, 0.0, 0.5, ports=4, bytes_per_s=11_520, chunk=25)
    assert pacer.pause_s_after_pass(t_s, moved=True) == PAUSE_S
    # port 9 goes at twice the limit in small reads: paced until its window is judged
    step_s = 64 / (2 * PACE_RATE_MAX)
    pauses = []
    for i in range(int(5 * PACE_WINDOW_S / step_s)):
        pacer.took(9, 64)
        pauses.append(pacer.pause_s_after_pass(t_s + i * step_s, moved=True))
    assert pauses[-1] == 0.0
    assert pauses.count(PAUSE_S) < len(pauses) / 2


def test_a_burst_stops_the_pauses_at_once_and_they_wait_for_a_slow_window() -> None:
    pacer = _Pacer(PAUSE_S, now_s=0.0)
    t_s, _ = _run(pacer, 0.0, 0.5, ports=2, bytes_per_s=11_520, chunk=25)
    assert pacer.pause_s_after_pass(t_s, moved=True) == PAUSE_S
    pacer.took(0, PACE_BURST_BYTES + 1)  # a fast line's first pause let this in (or we were late)
    assert pacer.pause_s_after_pass(t_s + 0.002, moved=True) == 0.0
    # slow again: no pause until the window is judged slow
    t_s, pauses = _run(pacer, t_s + 0.002, 3 * PACE_WINDOW_S, ports=2, bytes_per_s=11_520,
                       chunk=25)
    assert pauses[0] == 0.0
    assert pauses[-1] == PAUSE_S


def test_a_pass_that_moved_nothing_asks_no_pause() -> None:
    pacer = _Pacer(PAUSE_S, now_s=0.0)
    t_s, _ = _run(pacer, 0.0, 0.5, ports=1, bytes_per_s=11_520, chunk=25)
    assert pacer.pause_s_after_pass(t_s, moved=False) == 0.0  # a control request, a flush


def test_pacing_is_on_by_default_and_its_limit_leaves_the_tty_buffer_a_margin() -> None:
    if "EDGE_AGENT_PUMP_PACE_S" not in os.environ:
        assert pump.PACE_S == PAUSE_S
    tty_buffer_bytes = 4096
    assert tty_buffer_bytes >= PACE_RATE_MAX * PAUSE_S * 16
    assert tty_buffer_bytes >= PACE_BURST_BYTES * 4
    assert PACE_RATE_MAX > 921_600 // 10  # any real UART up to 921,600 baud is paced
