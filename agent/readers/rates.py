"""Read rates per reader: the one tracker behind ``status``, ``/metrics`` and the health message.

``reads_total`` per reader is sampled (once a second by the field tools, once per health
interval by the health reporter); a rate is the growth since the oldest sample within the
window, or, when samples are sparser than the window, since the newest earlier sample.
A counter that went backwards (a reader restarted with a fresh status) gives 0, never a
negative rate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.readers.status import ReaderStatus

RATE_WINDOW_S = 10.0
_SLACK_S = 0.5  # a once-a-second sampler drifts; a sample 10.3 s old still belongs


@dataclass(slots=True)
class RateTracker:
    window_s: float = RATE_WINDOW_S
    samples: deque[tuple[float, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=64))

    def sample(self, now: float, readers: Mapping[str, ReaderStatus]) -> None:
        self.record(now, {n: r.reads_total for n, r in readers.items()})

    def record(self, now: float, counts: Mapping[str, int]) -> None:
        self.samples.append((now, dict(counts)))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()

    def rate(self, name: str, now: float, current: int) -> float:
        base: tuple[float, int] | None = None
        for t, counts in self.samples:
            if now <= t or name not in counts:
                continue
            base = (t, counts[name])
            if now - t <= self.window_s + _SLACK_S:
                break  # the oldest sample inside the window
        if base is None:
            return 0.0
        t, count = base
        return max(0.0, (current - count) / (now - t))

    def rates(self, now: float, readers: Mapping[str, ReaderStatus]) -> dict[str, float]:
        """Reads per second per reader (rounded to 0.01)."""
        return {n: round(self.rate(n, now, r.reads_total), 2) for n, r in readers.items()}
