"""A network reader's clock against the gateway's (LLRP timestamps are the reader's clock).

Pure and clock-free: the caller passes the reader's timestamp and the gateway time at which
the message carrying it arrived.

* Every sample ``reader_time - arrival`` is the offset minus the message's delay (>= 0), so the
  largest sample since the last step is the best estimate of the offset (the delay of the
  fastest message is all that remains in it).
* A read is stamped ``reader_time - offset`` on the gateway's timeline, clamped to
  ``[arrival - hold_s, arrival]``: never in the future, never earlier than the reader can have
  held it (``hold_s``: how long a report may wait in the reader before it is sent). Whatever
  the reader's clock does, a read's time moves by at most ``hold_s``, so a clock step cannot
  make a tag look gone (a presence window ends) or back.
* A step forward (a sample above the estimate by more than ``STEP_S``) re-baselines at once. A
  step back shows as samples below the estimate by more than ``hold_s + STEP_S``; a late burst
  (a TCP stall) looks the same for a moment, so the step is taken only after ``STEP_SAMPLES``
  such samples spanning at least ``STEP_SPAN_S`` of arrival time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

STEP_S = 1.0
STEP_SAMPLES = 3
STEP_SPAN_S = 2.0


@dataclass(frozen=True, slots=True)
class ClockStep:
    """The reader's clock moved by ``step_s`` (reader minus gateway, new minus old)."""

    step_s: float
    offset_s: float


class ReaderClock:
    def __init__(self, hold_s: float) -> None:
        self.hold_s = max(0.0, hold_s)
        self.offset_s: float | None = None
        self.steps = 0
        self._low: list[tuple[float, float]] = []  # (arrival_s, sample) below the estimate

    def observe(self, reader_us: int, arrival: datetime) -> ClockStep | None:
        """One timestamp of the reader and when its message arrived; a step, when one is seen."""
        at_s = arrival.timestamp()
        sample = reader_us / 1e6 - at_s
        old = self.offset_s
        if old is None:
            self.offset_s = sample
            return None
        if sample > old + STEP_S:
            return self._step(sample, old)
        if sample >= old - (self.hold_s + STEP_S):
            self._low.clear()
            self.offset_s = max(old, sample)
            return None
        self._low.append((at_s, sample))
        if len(self._low) >= STEP_SAMPLES and at_s - self._low[0][0] >= STEP_SPAN_S:
            return self._step(max(s for _, s in self._low), old)
        return None

    def _step(self, sample: float, old: float) -> ClockStep:
        self.offset_s = sample
        self.steps += 1
        self._low.clear()
        return ClockStep(round(sample - old, 3), round(sample, 3))

    def stamp(self, reader_us: int | None, arrival: datetime) -> datetime:
        """A read's time on the gateway's timeline (``arrival`` when nothing better is known)."""
        if reader_us is None or self.offset_s is None:
            return arrival
        at_s = arrival.timestamp()
        t_s = reader_us / 1e6 - self.offset_s
        t_s = min(at_s, max(at_s - self.hold_s, t_s))
        return datetime.fromtimestamp(t_s, UTC) if t_s != at_s else arrival

    @staticmethod
    def hold_for(every_n_tags: int, timeout_ms: int | None) -> float:
        """How long a report may wait in the reader: with a report per tag, about nothing; with
        a timeout, that timeout; with N tags and no timeout, until N tags were seen (capped:
        a read older than that is stamped as if read that long before it arrived)."""
        if timeout_ms is not None:
            return timeout_ms / 1000 + 0.5
        return 1.0 if every_n_tags <= 1 else 10.0
