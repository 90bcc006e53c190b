"""The one fake clock of the suite: a time the test moves by hand.

``FakeClock()`` is a callable returning seconds (wall or monotonic, as the code under test
injects it). ``now`` and ``now_s`` are the same value; ``advance`` moves it.
"""

from __future__ import annotations

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: a wall time well after any build date


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    @property
    def now_s(self) -> float:
        return self.now

    @now_s.setter
    def now_s(self, value: float) -> None:
        self.now = value

    def advance(self, seconds: float) -> None:
        self.now += seconds
